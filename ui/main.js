// The headcount dashboard: native ES modules, no build step, no dependencies. This
// is the entry: it reads the address and shows the page it names.
//
// It speaks the REST API with the caller's own bearer token, so each role sees exactly
// what its token may see. The token lives in sessionStorage and travels only in the
// Authorization header, never in a URL the server sees. Every string that comes from
// the API is put on the page as text (textContent, text nodes, attribute values),
// never parsed as HTML: user references, user agents and ips are the sites' data.

import { onUnauthorized } from './api.js';
import { claimsOf, forgetToken, takeTokenFromFragment, token } from './auth.js';
import { $, h } from './dom.js';
import { renderProvider, renderTenant } from './fleet.js';
import { frame, nextPage } from './page.js';
import { renderSignIn } from './signin.js';
import { renderSite } from './site/page.js';

function signOut(message) {
  forgetToken();
  nextPage();
  if (location.hash !== '#/' && location.hash !== '') history.replaceState(null, '', `${location.pathname}#/`);
  renderSignIn(message, route);
}

function route() {
  nextPage();
  $('status').textContent = '';
  takeTokenFromFragment();
  const t = token();
  if (!t) return renderSignIn(undefined, route);
  const c = claimsOf(t);
  if (!c) return signOut('The stored token could not be read; sign in again.');
  const hash = location.hash;
  let m;
  if ((m = hash.match(/^#\/sites\/([^/?#]+)$/))) return renderSite(decodeURIComponent(m[1]));
  if ((m = hash.match(/^#\/tenants\/([^/?#]+)$/))) return renderTenant(decodeURIComponent(m[1]));
  if (c.role === 'admin') return renderProvider();
  if (c.role === 'tenant' && c.tenant) return renderTenant(c.tenant);
  frame(
    [{ text: 'Site token' }],
    h('h1', {}, 'A site token'),
    h('p', {}, `This token belongs to the agent of site ${c.site || '?'}: it may send events and read the config, not the dashboard. Sign in with an admin or tenant token.`),
  );
}

onUnauthorized(signOut);

// A module runs once the document is parsed, before DOMContentLoaded; waiting for
// the event keeps the start the same whichever way the script is loaded.
document.addEventListener('DOMContentLoaded', () => {
  $('sign-out').addEventListener('click', () => signOut('Signed out.'));
  window.addEventListener('hashchange', route);
  route();
});
