// The bearer token and who it names. The token lives in sessionStorage (this tab
// only) and travels only in the Authorization header, never in a URL the server sees.

const TOKEN_KEY = 'headcount.token';

export const token = () => sessionStorage.getItem(TOKEN_KEY);
export const keepToken = (t) => sessionStorage.setItem(TOKEN_KEY, t);

// The CSRF token of a cookie sign-in (none today): held in memory only, sent by
// api.js with every write. A sign-in that sets a session cookie hands it over here.
let csrf = null;
export const setCsrf = (t) => {
  csrf = t || null;
};
export const csrfToken = () => csrf;

export const forgetToken = () => {
  sessionStorage.removeItem(TOKEN_KEY);
  csrf = null;
};

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
