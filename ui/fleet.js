// The overview pages: the provider's (every tenant and site) and a tenant's (its
// sites), both with totals, sites fullest first, recent failed pushes and billing.

import { ApiError, get, seg } from './api.js';
import { identity } from './auth.js';
import { billingSection } from './billing.js';
import { failedDeliveries, failedTable } from './deliveries.js';
import { fill, h } from './dom.js';
import { fmt, pct } from './format.js';
import { every, failed, frame, generation } from './page.js';
import { actionLinks, card, fullness, meter, section, table } from './widgets.js';

const OVERVIEW_REFRESH_MS = 15000;

function totalsCards(u) {
  return h(
    'div',
    { class: 'cards' },
    card('counted of the summed limits', `${fmt(u.counted)} / ${fmt(u.session_limit)}`, 'total-counted'),
    card('utilization', pct(u.utilization), 'total-utilization'),
    card('active sessions', fmt(u.active), 'total-active'),
    card('live (recently used)', fmt(u.live), 'total-live'),
    card('dangling (idle, still open)', fmt(u.dangling), 'total-dangling'),
    card('refusals in the last 24 h', fmt(u.denied_last_24h), 'total-denied'),
  );
}

// The fullest sites first: the ones at or near their limit are what to look at.
function bySiteFullness(a, b) {
  return b.utilization - a.utilization || b.counted - a.counted || a.site.localeCompare(b.site);
}

function sitesTable(rows, info, withTenant) {
  return table(
    'sites',
    [withTenant ? 'Tenant' : null, 'Site', 'Counted / limit', 'Utilization', 'Active', 'Live', 'Dangling', 'Refused 24 h'].filter(Boolean),
    rows.map((s) => {
      const i = info.get(s.site);
      return h(
        'tr',
        { 'data-site': s.site },
        withTenant ? h('td', {}, h('a', { href: `#/tenants/${seg(s.tenant)}` }, s.tenant)) : null,
        h('td', {}, h('a', { href: `#/sites/${seg(s.site)}`, class: 'site-link' }, s.site), i && i.name !== s.site ? h('div', { class: 'sub' }, i.name) : null),
        h('td', { class: 'num' }, `${fmt(s.counted)} / ${fmt(s.session_limit)} `, meter(s.counted, s.session_limit)),
        h('td', { class: 'num util' }, pct(s.utilization), ' ', fullness(s.counted, s.session_limit)),
        h('td', { class: 'num' }, fmt(s.active)),
        h('td', { class: 'num' }, fmt(s.live)),
        h('td', { class: 'num' }, fmt(s.dangling)),
        h('td', { class: 'num' }, fmt(s.denied_last_24h)),
      );
    }),
    'No sites yet.',
  );
}

function tenantsTable(tenants) {
  return table(
    'tenants',
    ['Tenant', 'Sites', 'Counted / limit', 'Utilization', 'Dangling', 'Refused 24 h'],
    [...tenants]
      .sort((a, b) => b.utilization - a.utilization || a.tenant.localeCompare(b.tenant))
      .map((t) =>
        h(
          'tr',
          {},
          h('td', {}, h('a', { href: `#/tenants/${seg(t.tenant)}` }, t.tenant)),
          h('td', { class: 'num' }, fmt(t.sites.length)),
          h('td', { class: 'num' }, `${fmt(t.counted)} / ${fmt(t.session_limit)} `, meter(t.counted, t.session_limit)),
          h('td', { class: 'num' }, pct(t.utilization)),
          h('td', { class: 'num' }, fmt(t.dangling)),
          h('td', { class: 'num' }, fmt(t.denied_last_24h)),
        ),
      ),
    'No tenants yet.',
  );
}

// Names of the sites, by slug: the usage reports carry only slugs.
async function siteInfo(tenant) {
  const q = new URLSearchParams({ limit: '500' });
  if (tenant) q.set('tenant', tenant);
  const page = await get(`/v1/sites?${q}`);
  return new Map(page.items.map((s) => [s.slug, s]));
}

export function renderProvider() {
  const gen = generation;
  document.title = 'headcount · provider';
  const totals = h('div', { id: 'totals' }, h('p', { class: 'loading' }, 'Loading…'));
  const sites = h('div', { id: 'fleet-sites' });
  const tenants = h('div', { id: 'fleet-tenants' });
  const failures = h('div', { id: 'fleet-failed' });
  frame(
    [{ text: 'Provider' }],
    h('h1', {}, 'All tenants and sites'),
    actionLinks('manage-links', [['#/new-site', 'New site'], ['#/tenants', 'Tenants'], ['#/plans', 'Plans'], ['#/tokens', 'Tokens']]),
    totals,
    section('sites', 'Sites, fullest first', sites),
    section('tenants', 'Tenants', tenants),
    section('failed', 'Recent failed pushes', failures),
    billingSection(null),
  );
  const load = async () => {
    try {
      const [usage, info] = await Promise.all([get('/v1/usage'), siteInfo(null)]);
      if (gen !== generation) return;
      const rows = usage.tenants.flatMap((t) => t.sites.map((s) => ({ ...s, tenant: t.tenant }))).sort(bySiteFullness);
      fill(totals, totalsCards(usage));
      fill(sites, sitesTable(rows, info, true));
      fill(tenants, tenantsTable(usage.tenants));
      const failedRows = await failedDeliveries(rows.map((r) => r.site));
      if (gen !== generation) return;
      fill(failures, failedTable(failedRows, load));
    } catch (e) {
      failed(gen, e);
    }
  };
  load();
  every(OVERVIEW_REFRESH_MS, load);
}

export function renderTenant(slug) {
  const gen = generation;
  const c = identity();
  document.title = `headcount · ${slug}`;
  const totals = h('div', { id: 'totals' }, h('p', { class: 'loading' }, 'Loading…'));
  const sites = h('div', { id: 'tenant-sites' });
  const pool = h('p', { id: 'pool', class: 'hint' });
  const failures = h('div', { id: 'tenant-failed' });
  const crumbs = c.role === 'admin' ? [{ text: 'Provider', href: '#/' }, { text: `Tenant ${slug}` }] : [{ text: `Tenant ${slug}` }];
  frame(
    crumbs,
    h('h1', {}, `Tenant ${slug}`),
    actionLinks('manage-links', c.role === 'admin'
      ? [[`#/new-site?tenant=${seg(slug)}`, 'New site'], [`#/tenants/${seg(slug)}/edit`, 'Change tenant']]
      : [[`#/tenants/${seg(slug)}/edit`, 'Contact and alerts'], ['#/tokens', 'Site tokens'], ['#/plans', 'Plans']]),
    totals,
    pool,
    section('sites', 'Sites, fullest first', sites),
    section('failed', 'Recent failed pushes', failures),
    billingSection(slug),
  );
  const load = async () => {
    try {
      const [usage, info] = await Promise.all([get(`/v1/tenants/${seg(slug)}/usage`), siteInfo(slug)]);
      if (gen !== generation) return;
      const rows = usage.sites.map((s) => ({ ...s, tenant: usage.tenant })).sort(bySiteFullness);
      fill(totals, totalsCards(usage));
      pool.textContent =
        usage.pooled_session_limit !== null && usage.pooled_session_limit !== undefined
          ? `Pool: ${fmt(usage.pool_counted)} counted of the tenant's pooled limit of ${fmt(usage.pooled_session_limit)}.`
          : '';
      fill(sites, sitesTable(rows, info, false));
      const failedRows = await failedDeliveries(rows.map((r) => r.site));
      if (gen !== generation) return;
      fill(failures, failedTable(failedRows, load));
    } catch (e) {
      if (e instanceof ApiError && e.status === 404 && gen === generation) {
        fill(totals, h('p', { class: 'empty' }, `No tenant ${slug} that you may see.`));
        return;
      }
      failed(gen, e);
    }
  };
  load();
  every(OVERVIEW_REFRESH_MS, load);
}
