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
import { renderPlanEdit, renderPlans } from './manage/plans.js';
import { renderSiteEdit, renderSiteNew } from './manage/sites.js';
import { renderTenantEdit, renderTenants } from './manage/tenants.js';
import { renderTokens } from './manage/tokens.js';
import { renderSignIn } from './signin.js';
import { renderSite } from './site/page.js';

// The pages by address: [pattern, page, roles that may open it]. A slug or code is
// the pattern's group; a query (`#/new-site?tenant=acme`) is passed as parameters.
const ANY = ['admin', 'tenant'];
const ROUTES = [
  [/^#\/plans$/, () => renderPlans(), ANY],
  [/^#\/plans\/([^/?#]+)\/edit$/, (code) => renderPlanEdit(code), ['admin']],
  [/^#\/tenants$/, () => renderTenants(), ['admin']],
  [/^#\/tenants\/([^/?#]+)\/edit$/, (slug) => renderTenantEdit(slug), ANY],
  [/^#\/tenants\/([^/?#]+)$/, (slug) => renderTenant(slug), ANY],
  [/^#\/new-site$/, (_, q) => renderSiteNew(q.get('tenant') || ''), ['admin']],
  [/^#\/sites\/([^/?#]+)\/edit$/, (slug) => renderSiteEdit(slug), ANY],
  [/^#\/sites\/([^/?#]+)$/, (slug) => renderSite(slug), ANY],
  [/^#\/tokens$/, () => renderTokens(), ANY],
];

// Shows the page the address names; false when it names none this role may open.
function routeTo(hash, role) {
  const [path, query] = hash.split('?');
  for (const [pattern, render, roles] of ROUTES) {
    const m = pattern.exec(path);
    if (!m) continue;
    if (!roles.includes(role)) return false;
    render(m[1] === undefined ? undefined : decodeURIComponent(m[1]), new URLSearchParams(query || ''));
    return true;
  }
  return false;
}

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
  if (routeTo(location.hash, c.role)) return;
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
