// The REST API, called with the caller's own token: each role sees exactly what its
// token may see.

import { token } from './auth.js';

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

// What to do when the server refuses the token; the router sets it (it owns the
// sign-in page), so this module needs nothing from the pages.
let unauthorized = () => {};
export function onUnauthorized(fn) {
  unauthorized = fn;
}

export async function call(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}`, Accept: 'application/json' };
  const init = { method, headers, cache: 'no-store', credentials: 'omit' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (res.status === 401) {
    unauthorized('The server refused this token (expired, revoked, or not one of its tokens). Sign in again.');
    throw new ApiError(401, 'signed out');
  }
  if (!res.ok) {
    let detail = `${res.status} ${res.statusText}`;
    try {
      const p = await res.json();
      if (p && p.detail) detail = p.detail;
    } catch {
      // not a problem document; the status line says enough
    }
    throw new ApiError(res.status, detail);
  }
  return res;
}

export async function api(method, path, body) {
  const res = await call(method, path, body);
  return res.status === 204 ? null : res.json();
}

export const get = (path) => api('GET', path);
export const seg = encodeURIComponent;
