// Tokens: minted here and shown once; revoked by their id (admin). The provider
// mints admin, tenant and site tokens and sees the recent ones in the audit trail; a
// tenant mints site tokens for its own sites (revoking is the provider's).

import { ApiError, api, get, seg } from '../api.js';
import { identity } from '../auth.js';
import { fill, h } from '../dom.js';
import { time } from '../format.js';
import { confirmDialog, failed, frame, generation, say } from '../page.js';
import { section, table } from '../widgets.js';
import { managedForm, shownOnce } from './forms.js';

const ROLES = [
  ['site', "site: a site's agent (events, admissions, config)"],
  ['tenant', 'tenant: a maintainer of one tenant'],
  ['admin', 'admin: the provider'],
];

// A minted token, shown once, with its id (what revokes it).
export function mintedView(id, t, admin, after) {
  return h(
    'div',
    { class: 'minted', 'data-jti': t.jti },
    shownOnce(id, t.token || '', 'The token: shown only now. It is a bearer credential, keep it secret.'),
    h('p', { class: 'hint' }, 'Its id ', h('code', { class: 'jti' }, t.jti), ', valid until ', time(t.expires_at), '. ', admin ? revokeButton(t.jti, after) : 'The provider revokes it by that id.'),
  );
}

export async function revoke(jti) {
  if (!(await confirmDialog(`Revoke the token ${jti}? Every request with it is refused within a second.`, 'Revoke'))) return false;
  await api('DELETE', `/v1/tokens/${seg(jti)}`);
  say(`Token ${jti} revoked.`);
  return true;
}

function revokeButton(jti, after) {
  return h(
    'button',
    {
      type: 'button',
      class: 'danger revoke',
      'data-jti': jti,
      onclick: async (ev) => {
        const b = ev.currentTarget;
        b.disabled = true;
        try {
          if (await revoke(jti)) {
            b.replaceWith(h('span', { class: 'badge full' }, 'revoked'));
            if (after) after();
            return;
          }
        } catch (e) {
          failed(generation, e);
        }
        b.disabled = false;
      },
    },
    'Revoke…',
  );
}

// The site's agent token, from the site's page: mint one (shown once).
export function siteTokenSection(slug, admin) {
  const out = h('div', { id: 'site-token' });
  const button = h(
    'button',
    {
      type: 'button',
      id: 'mint-site-token',
      onclick: async () => {
        button.disabled = true;
        try {
          const t = await api('POST', '/v1/tokens', { role: 'site', site: slug });
          fill(out, mintedView('site-token-value', t, admin));
          say('Token minted.');
        } catch (e) {
          failed(generation, e);
        } finally {
          button.disabled = false;
        }
      },
    },
    'Mint a token for the agent',
  );
  return section(
    'agent-token',
    "The agent's token",
    h('p', { class: 'hint' }, `The agent of ${slug} signs its requests with a site token (TOKEN in its settings). A new one does not end the others; the provider revokes a lost one.`),
    button,
    out,
  );
}

// Recent mints and revocations, from the audit trail (admin).
function recentTokens(entries, reload) {
  const revoked = new Set(entries.filter((e) => e.action === 'revoke').map((e) => e.key));
  const mints = entries.filter((e) => e.action === 'mint');
  return table(
    'tokens',
    ['Minted', 'Role', 'By', 'Id', ''],
    mints.map((e) =>
      h(
        'tr',
        { 'data-jti': e.key },
        h('td', {}, time(e.at)),
        h('td', {}, (e.detail && e.detail.role) || '–'),
        h('td', { class: 'mono' }, e.actor),
        h('td', { class: 'mono' }, e.key),
        h('td', {}, revoked.has(e.key) ? h('span', { class: 'badge full' }, 'revoked') : revokeButton(e.key, reload)),
      ),
    ),
    'No tokens minted through the API yet.',
  );
}

function mintSpecs(admin, tenants, sites) {
  return [
    { name: 'role', label: 'Role', kind: 'select', options: admin ? ROLES : ROLES.slice(0, 1) },
    admin ? { name: 'tenant', label: 'Tenant', kind: 'select', blank: '—', options: tenants.map((t) => [t.slug, t.slug]) } : null,
    { name: 'site', label: 'Site', kind: 'select', blank: '—', options: sites.map((s) => [s.slug, `${s.slug} (${s.tenant})`]) },
    { name: 'ttl_seconds', label: 'Valid for (seconds)', kind: 'int', hint: 'Empty: 30 days for admin and tenant tokens, a year for site tokens; at most ten years.' },
  ].filter(Boolean);
}

export function renderTokens() {
  const gen = generation;
  const admin = identity().role === 'admin';
  document.title = 'headcount · tokens';
  const mintBox = h('div', { id: 'mint' }, h('p', { class: 'loading' }, 'Loading…'));
  const minted = h('div', { id: 'minted' });
  const recent = h('div', { id: 'tokens-recent' });
  const loadRecent = async () => {
    try {
      const page = await get('/v1/audit?limit=500');
      if (gen === generation) fill(recent, recentTokens(page.items.filter((e) => e.entity === 'token'), loadRecent));
    } catch (e) {
      failed(gen, e);
    }
  };
  const revokeForm = managedForm({
    id: 'revoke-form',
    specs: [{ name: 'jti', label: 'Token id (jti)', kind: 'text', hint: 'What the token was shown with, or its jti claim.' }],
    mode: 'create',
    submitLabel: 'Revoke…',
    submit: async (body) => {
      if (!body.jti) throw new Error('jti: give the id of the token to revoke.');
      if (await revoke(body.jti)) {
        revokeForm.form.reset();
        loadRecent();
      }
    },
  });
  frame(
    admin ? [{ text: 'Provider', href: '#/' }, { text: 'Tokens' }] : [{ text: 'Tenant', href: '#/' }, { text: 'Tokens' }],
    h('h1', {}, 'Tokens'),
    section('mint-token', 'Mint a token', admin ? null : h('p', { class: 'hint' }, 'A tenant mints site tokens for its own sites; the provider revokes them.'), mintBox, minted),
    admin ? section('revoke-token', 'Revoke a token', revokeForm.form) : null,
    admin ? section('recent-tokens', 'Minted recently', recent) : null,
  );
  (async () => {
    try {
      const [tenants, sites] = await Promise.all([admin ? get('/v1/tenants?limit=500') : { items: [] }, get('/v1/sites?limit=500')]);
      if (gen !== generation) return;
      const mint = managedForm({
        id: 'mint-form',
        specs: mintSpecs(admin, tenants.items, sites.items),
        mode: 'create',
        submitLabel: 'Mint',
        submit: async (body) => {
          const t = await api('POST', '/v1/tokens', body);
          fill(minted, h('p', { class: 'done' }, `A ${body.role} token was minted.`), mintedView('minted-token', t, admin, loadRecent));
          say('Token minted.');
          if (admin) loadRecent();
        },
      });
      // Only the name the role needs is offered.
      const role = mint.field('role');
      const sync = () => {
        for (const name of ['tenant', 'site']) {
          const el = mint.field(name);
          if (!el) continue;
          const needed = role.value === name;
          el.closest('.field').hidden = !needed;
          if (!needed) el.value = '';
        }
      };
      role.addEventListener('change', sync);
      sync();
      fill(mintBox, mint.form);
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 401)) failed(gen, e);
    }
  })();
  if (admin) loadRecent();
}
