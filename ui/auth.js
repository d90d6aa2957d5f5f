// Who is signed in, by either of two ways:
// - a bearer token (pasted, or a `#token=…` link): kept in sessionStorage (this tab
//   only), sent only in the Authorization header, never in a URL the server sees;
// - the server's session cookie, set by a sign-in through the identity provider
//   (`/auth/login`): the page learns who it names from `GET /auth/session`, and
//   keeps only that answer (role, tenant, name, the CSRF token) in memory.

const TOKEN_KEY = 'headcount.token';

export const token = () => sessionStorage.getItem(TOKEN_KEY);
export const keepToken = (t) => sessionStorage.setItem(TOKEN_KEY, t);

// The CSRF token of the cookie session: held in memory only, sent by api.js with
// every write.
let csrf = null;
export const setCsrf = (t) => {
  csrf = t || null;
};
export const csrfToken = () => csrf;

// The cookie session as `GET /auth/session` described it, or null; `undefined`
// until asked. `loginUrl`: where the identity provider's sign-in starts, when the
// server has one configured (it says so in its 401).
let cookieSession;
let loginUrl = null;

export const forgetToken = () => {
  sessionStorage.removeItem(TOKEN_KEY);
  csrf = null;
};

export const sessionKnown = () => cookieSession !== undefined;
export const cookieMode = () => !token() && Boolean(cookieSession);
export const identityProviderLogin = () => loginUrl;

// Drops the cookie session on this page (the server's was ended, or is to be asked
// about again).
export function forgetSession() {
  cookieSession = undefined;
  csrf = null;
}

// Asks the server who the session cookie names. Nothing to sign in with is not an
// error: the page then shows the sign-in form (with the provider's link, if any).
export async function askSession() {
  cookieSession = null;
  csrf = null;
  let res;
  try {
    res = await fetch('/auth/session', { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } });
  } catch {
    return null;
  }
  let body = null;
  try {
    body = await res.json();
  } catch {
    // not JSON: nothing more to learn
  }
  if (res.ok && body && (body.role === 'admin' || body.role === 'tenant')) {
    cookieSession = body;
    setCsrf(body.csrf_token);
    return body;
  }
  const url = body && typeof body.login_url === 'string' ? body.login_url : '';
  loginUrl = url.startsWith('/') && !url.startsWith('//') ? url : null;
  return null;
}

// Ends the cookie session at the server. Returns where the browser goes next (the
// identity provider's end-session address) or null; throws when the server refused.
export async function endSession() {
  const headers = { Accept: 'application/json' };
  if (csrf) headers['X-CSRF-Token'] = csrf;
  const res = await fetch('/auth/logout', { method: 'POST', credentials: 'same-origin', cache: 'no-store', headers });
  if (res.status === 401) {
    forgetSession();
    return null;
  }
  if (!res.ok) throw new Error(`Sign-out failed: ${res.status} ${res.statusText}`);
  let next = null;
  try {
    const body = await res.json();
    if (body && typeof body.end_session_url === 'string' && /^https?:\/\//.test(body.end_session_url)) next = body.end_session_url;
  } catch {
    // no body: nowhere else to go
  }
  forgetSession();
  return next;
}

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

// Who the page acts for: the token's claims ({role, tenant, site, exp}) or the
// cookie session's answer ({role, tenant, name, email, expires_at}); null when
// signed out. The pages read `role` and `tenant` from it.
export function identity() {
  const t = token();
  if (t) return claimsOf(t);
  return cookieSession || null;
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
