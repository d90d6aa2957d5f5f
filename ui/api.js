// The REST API, called as the person signed in (their bearer token, or the session
// cookie of a sign-in through the identity provider): each role sees exactly what it
// may see. Every request, reads and writes, goes through `call`.

import { csrfToken, token } from './auth.js';

export class ApiError extends Error {
  // `errors`: the problem's field errors ({field, message}), when it names fields.
  constructor(status, detail, errors) {
    super(detail);
    this.status = status;
    this.errors = Array.isArray(errors) ? errors : [];
  }
}

// What to do when the server refuses the token; the router sets it (it owns the
// sign-in page), so this module needs nothing from the pages.
let unauthorized = () => {};
export function onUnauthorized(fn) {
  unauthorized = fn;
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

// How the request proves who sends it. With a bearer token the token goes in the
// Authorization header and no cookie is sent. Without one the browser's own session
// cookie for this origin goes along, and a write carries the session's CSRF token
// (from `GET /auth/session`): the server refuses a cookie write without it.
function authenticate(method, headers, init) {
  const t = token();
  if (t) {
    headers.Authorization = `Bearer ${t}`;
    init.credentials = 'omit';
  } else {
    init.credentials = 'same-origin';
  }
  const csrf = csrfToken();
  if (csrf && !SAFE_METHODS.has(method)) headers['X-CSRF-Token'] = csrf;
}

export async function call(method, path, body) {
  const headers = { Accept: 'application/json' };
  const init = { method, headers, cache: 'no-store' };
  authenticate(method, headers, init);
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (res.status === 401) {
    unauthorized(init.credentials === 'omit'
      ? 'The server refused this token (expired, revoked, or not one of its tokens). Sign in again.'
      : 'Your session ended; sign in again.');
    throw new ApiError(401, 'signed out');
  }
  if (!res.ok) {
    let detail = `${res.status} ${res.statusText}`;
    let errors = [];
    try {
      const p = await res.json();
      if (p && p.detail) detail = p.detail;
      if (p && Array.isArray(p.errors)) errors = p.errors;
    } catch {
      // not a problem document; the status line says enough
    }
    throw new ApiError(res.status, detail, errors);
  }
  return res;
}

export async function api(method, path, body) {
  const res = await call(method, path, body);
  return res.status === 204 ? null : res.json();
}

export const get = (path) => api('GET', path);
export const seg = encodeURIComponent;
