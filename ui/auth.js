// The bearer token and who it names. The token lives in sessionStorage (this tab
// only) and travels only in the Authorization header, never in a URL the server sees.

const TOKEN_KEY = 'headcount.token';

export const token = () => sessionStorage.getItem(TOKEN_KEY);
export const keepToken = (t) => sessionStorage.setItem(TOKEN_KEY, t);
export const forgetToken = () => sessionStorage.removeItem(TOKEN_KEY);

// The claims are read only to choose the page and label it; the server checks the
// token on every call.
export function claimsOf(t) {
  try {
    const part = t.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const bin = atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), '='));
    const c = JSON.parse(new TextDecoder().decode(Uint8Array.from(bin, (ch) => ch.charCodeAt(0))));
    return c && typeof c.role === 'string' ? c : null;
  } catch {
    return null;
  }
}

// Signing in through `#token=…`: keep it, then take it out of the address bar (and
// out of the history) before anything else happens.
export function takeTokenFromFragment() {
  const m = location.hash.match(/^#token=([^&]*)/);
  if (!m) return;
  const t = decodeURIComponent(m[1]).trim();
  if (t) keepToken(t);
  history.replaceState(null, '', `${location.pathname}${location.search}#/`);
}
