// A site's page: what it is (plan, limit, count mode), how full it is now, and its
// sections, each in its own module, sharing one context: the site's API path, the
// view's state, and `guard`, which turns a 404 into "no such site" for the page.

import { ApiError, get, seg } from '../api.js';
import { identity } from '../auth.js';
import { gauge } from '../charts.js';
import { fill, h } from '../dom.js';
import { duration, fmt } from '../format.js';
import { every, failed, frame, frameCrumbs, generation, stopTimers } from '../page.js';
import { actionLinks, section } from '../widgets.js';
import { deliveriesSection } from './deliveries.js';
import { historySection } from './history.js';
import { insightSection } from './insight.js';
import { sessionsSection } from './sessions.js';
import { usersSection } from './users.js';

const SITE_REFRESH_MS = 5000;
const HISTORY_REFRESH_MS = 60000;

function crumbsFor(c, slug) {
  const crumbs = [];
  if (c.role === 'admin') crumbs.push({ text: 'Provider', href: '#/' });
  crumbs.push({ text: 'Tenant', href: c.role === 'tenant' ? '#/' : null });
  crumbs.push({ text: `Site ${slug}` });
  return crumbs;
}

export function renderSite(slug) {
  const gen = generation;
  const c = identity();
  document.title = `headcount · ${slug}`;
  const view = { state: 'active', user: '', limit: 50, range: 'day', site: null, usage: null, deliveriesFailedOnly: false };
  const base = `/v1/sites/${seg(slug)}`;

  const title = h('h1', {}, `Site ${slug}`);
  const meta = h('p', { class: 'meta', id: 'site-meta' });
  const gaugeBox = h('div', { id: 'gauge' }, h('p', { class: 'loading' }, 'Loading…'));
  const crumbs = crumbsFor(c, slug);

  const notFound = () => {
    stopTimers();
    frame(crumbs, title, h('p', { class: 'empty', id: 'not-found' }, `No site ${slug} that you may see.`));
  };
  const guard = async (fn) => {
    try {
      await fn();
    } catch (e) {
      if (gen !== generation) return;
      if (e instanceof ApiError && e.status === 404) return notFound();
      failed(gen, e);
    }
  };
  const ctx = { slug, base, view, claims: c, guard, stale: () => gen !== generation, refresh: () => refresh() };

  const history = historySection(ctx);
  const sessions = sessionsSection(ctx);
  const users = usersSection(ctx, sessions);
  const insight = insightSection(ctx);
  const deliveries = deliveriesSection(ctx);
  frame(
    crumbs,
    title,
    meta,
    actionLinks('manage-links', [[`#/sites/${seg(slug)}/edit`, 'Change the site, secret and tokens']]),
    section('now', 'Now', gaugeBox),
    history.element,
    sessions.element,
    users.element,
    insight.element,
    deliveries.element,
  );

  const loadSite = () =>
    guard(async () => {
      const site = await get(base);
      if (gen !== generation) return;
      view.site = site;
      title.textContent = `Site ${site.slug}`;
      crumbs[crumbs.length - 2] = { text: `Tenant ${site.tenant}`, href: c.role === 'admin' ? `#/tenants/${seg(site.tenant)}` : '#/' };
      frameCrumbs(crumbs);
      const e = site.effective;
      fill(meta,
        site.name,
        ` · plan ${site.plan} · limit ${fmt(e.session_limit)} · counts ${e.count_mode} sessions · dangling after ${duration(e.idle_timeout_seconds)} idle · at the limit: ${e.over_limit}`,
        site.webhook_disabled_at ? h('span', { class: 'badge full' }, ' pushes disabled (410 from the site)') : null,
      );
    });

  const loadUsage = () =>
    guard(async () => {
      const u = await get(`${base}/usage`);
      if (gen !== generation) return;
      view.usage = u;
      fill(gaugeBox, gauge(u, view.site));
      sessions.showDangling(u.dangling);
    });

  const refresh = () => {
    loadUsage();
    sessions.load();
    users.load();
    deliveries.load();
  };

  loadSite().then(() => {
    if (gen !== generation) return;
    refresh();
    history.load();
    insight.load();
  });
  every(SITE_REFRESH_MS, refresh);
  every(HISTORY_REFRESH_MS, history.load);
}
