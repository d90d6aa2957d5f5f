// The headcount dashboard: native ES modules, no build step, no dependencies. This
// is the entry: it reads the address and shows the page it names.
//
// It speaks the REST API as the person signed in, so each role sees exactly what it
// may see: with a bearer token (kept in sessionStorage, sent only in the
// Authorization header, never in a URL the server sees), or with the session cookie
// that a sign-in through the identity provider set (auth.js). Every string that comes
// from the API is put on the page as text (textContent, text nodes, attribute
// values), never parsed as HTML: user references, user agents and ips are the sites'
// data.

import { onUnauthorized } from './api.js';
import {
  askSession, cookieMode, endSession, forgetSession, forgetToken, identity, sessionKnown, takeTokenFromFragment, token,
} from './auth.js';
import { $, h } from './dom.js';
import { renderProvider, renderTenant } from './fleet.js';
import { frame, generation, nextPage, say } from './page.js';
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

// Shows the sign-in page. `keepAddress`: stay on the page's address, so that signing
// in again (through the identity provider) comes back to it.
function showSignIn(message, keepAddress) {
  nextPage();
  if (!keepAddress && location.hash !== '#/' && location.hash !== '') history.replaceState(null, '', `${location.pathname}#/`);
  renderSignIn(message, route);
}

// The server refused the token or the session cookie (api.js): forget it and sign in
// again. A cookie session is asked about again, which also tells where the identity
// provider's sign-in starts.
async function refused(message) {
  if (token()) {
    forgetToken();
    if (!sessionKnown()) await askSession();
    return showSignIn(message);
  }
  const gen = nextPage();
  forgetSession();
  await askSession();
  if (gen === generation) showSignIn(message, true);
}

// The Sign out button: a token is forgotten; a cookie session is ended at the server,
// then at the identity provider when it has an end-session address.
async function signOut() {
  if (!cookieMode()) {
    forgetToken();
    if (!sessionKnown()) await askSession();
    return showSignIn('Signed out.');
  }
  let next;
  const button = $('sign-out');
  button.disabled = true;
  try {
    next = await endSession();
  } catch (e) {
    say(e.message || String(e), 'error');
    return;
  } finally {
    button.disabled = false;
  }
  if (next) {
    location.assign(next);
    return;
  }
  await askSession();
  showSignIn('Signed out.');
}

async function route() {
  const gen = nextPage();
  $('status').textContent = '';
  takeTokenFromFragment();
  if (!token() && !sessionKnown()) {
    await askSession();
    if (gen !== generation) return;
  }
  const c = identity();
  if (!c) {
    if (token()) return refused('The stored token could not be read; sign in again.');
    return renderSignIn(undefined, route);
  }
  if (routeTo(location.hash, c.role)) return;
  if (c.role === 'admin') return renderProvider();
  if (c.role === 'tenant' && c.tenant) return renderTenant(c.tenant);
  frame(
    [{ text: 'Site token' }],
    h('h1', {}, 'A site token'),
    h('p', {}, `This token belongs to the agent of site ${c.site || '?'}: it may send events and read the config, not the dashboard. Sign in with an admin or tenant token.`),
  );
}

onUnauthorized(refused);

// A module runs once the document is parsed, before DOMContentLoaded; waiting for
// the event keeps the start the same whichever way the script is loaded.
document.addEventListener('DOMContentLoaded', () => {
  $('sign-out').addEventListener('click', signOut);
  window.addEventListener('hashchange', route);
  route();
});
