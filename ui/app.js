// The headcount dashboard. Plain JavaScript, no build step, no dependencies.
//
// It speaks the REST API with the caller's own bearer token, so each role sees exactly
// what its token may see. The token lives in sessionStorage and travels only in the
// Authorization header, never in a URL the server sees. Every string that comes from
// the API is put on the page as text (textContent, text nodes, attribute values),
// never parsed as HTML: user references, user agents and ips are the sites' data.
'use strict';

(() => {
  const TOKEN_KEY = 'headcount.token';
  const SITE_REFRESH_MS = 5000;
  const OVERVIEW_REFRESH_MS = 15000;
  const HISTORY_REFRESH_MS = 60000;
  const SVG_NS = 'http://www.w3.org/2000/svg';

  // ---- DOM helpers: everything is built with DOM APIs, strings become text nodes.

  function add(el, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.append(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
    }
    return el;
  }

  function setAttrs(el, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') {
        el.addEventListener(k.slice(2), v);
      } else if (k === 'class') {
        el.setAttribute('class', v);
      } else {
        el.setAttribute(k, v === true ? '' : String(v));
      }
    }
    return el;
  }

  function h(tag, attrs, ...children) {
    return add(setAttrs(document.createElement(tag), attrs), children);
  }

  function svg(tag, attrs, ...children) {
    return add(setAttrs(document.createElementNS(SVG_NS, tag), attrs), children);
  }

  // Replaces an element's children; like replaceChildren, but skips empty values
  // instead of writing "null" on the page.
  function fill(el, ...children) {
    el.replaceChildren();
    return add(el, children);
  }

  const $ = (id) => document.getElementById(id);

  // ---- formatting: numbers that say what they count, times in the browser's zone.

  const numberFormat = new Intl.NumberFormat();
  const fmt = (n) => (n === null || n === undefined ? '–' : numberFormat.format(n));
  const pct = (u) => `${Math.round((u || 0) * 100)} %`;
  const dateTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

  function time(iso) {
    if (!iso) return '–';
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return iso;
    return h('time', { datetime: iso, title: `UTC ${d.toISOString().replace('.000Z', 'Z')}` }, dateTimeFormat.format(d));
  }

  function duration(seconds) {
    const s = Math.max(0, Math.floor(seconds || 0));
    const d = Math.floor(s / 86400);
    const hr = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    if (d > 0) return hr ? `${d} d ${hr} h` : `${d} d`;
    if (hr > 0) return m ? `${hr} h ${m} min` : `${hr} h`;
    if (m > 0) return `${m} min`;
    return `${s} s`;
  }

  function plural(n, one, many) {
    return `${fmt(n)} ${n === 1 ? one : many}`;
  }

  // ---- the token and who it names

  const token = () => sessionStorage.getItem(TOKEN_KEY);

  function claimsOf(t) {
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
  function takeTokenFromFragment() {
    const m = location.hash.match(/^#token=([^&]*)/);
    if (!m) return;
    const t = decodeURIComponent(m[1]).trim();
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    history.replaceState(null, '', `${location.pathname}${location.search}#/`);
  }

  let generation = 0;
  let timers = [];

  function stopTimers() {
    for (const t of timers) clearInterval(t);
    timers = [];
  }

  // Runs `fn` every `ms` while this page is shown and the tab is visible.
  function every(ms, fn) {
    const gen = generation;
    timers.push(
      setInterval(() => {
        if (gen === generation && !document.hidden) fn();
      }, ms),
    );
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    generation++;
    stopTimers();
    if (location.hash !== '#/' && location.hash !== '') history.replaceState(null, '', `${location.pathname}#/`);
    renderSignIn(message);
  }

  // ---- the API

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  async function call(method, path, body) {
    const headers = { Authorization: `Bearer ${token()}`, Accept: 'application/json' };
    const init = { method, headers, cache: 'no-store', credentials: 'omit' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    if (res.status === 401) {
      signOut('The server refused this token (expired, revoked, or not one of its tokens). Sign in again.');
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

  async function api(method, path, body) {
    const res = await call(method, path, body);
    return res.status === 204 ? null : res.json();
  }

  const get = (path) => api('GET', path);
  const seg = encodeURIComponent;

  // ---- status line and confirmation dialog

  let statusTimer = null;
  function say(text, kind) {
    const el = $('status');
    el.textContent = text;
    el.className = `status ${kind || 'info'}`;
    clearTimeout(statusTimer);
    if (kind !== 'error') statusTimer = setTimeout(() => (el.textContent = ''), 8000);
  }

  function failed(gen, e) {
    if (gen !== generation || (e instanceof ApiError && e.status === 401)) return;
    say(e.message || String(e), 'error');
  }

  function confirmDialog(text, okLabel) {
    const dialog = $('confirm');
    $('confirm-text').textContent = text;
    $('confirm-ok').textContent = okLabel;
    return new Promise((resolve) => {
      const done = (answer) => {
        $('confirm-ok').removeEventListener('click', ok);
        $('confirm-cancel').removeEventListener('click', cancel);
        dialog.removeEventListener('cancel', cancel);
        if (dialog.open) dialog.close();
        resolve(answer);
      };
      const ok = () => done(true);
      const cancel = () => done(false);
      $('confirm-ok').addEventListener('click', ok);
      $('confirm-cancel').addEventListener('click', cancel);
      dialog.addEventListener('cancel', cancel);
      dialog.showModal();
      $('confirm-cancel').focus();
    });
  }

  // ---- page frame

  function frame(crumbs, ...content) {
    const c = claimsOf(token() || '');
    $('who').textContent = c ? whoText(c) : '';
    $('sign-out').hidden = !c;
    frameCrumbs(crumbs);
    const main = $('main');
    fill(main, content);
    return main;
  }

  function whoText(c) {
    const until = c.exp ? ` · until ${dateTimeFormat.format(new Date(c.exp * 1000))}` : '';
    if (c.role === 'tenant') return `tenant ${c.tenant}${until}`;
    if (c.role === 'site') return `site ${c.site}${until}`;
    return `provider (admin)${until}`;
  }

  function section(id, title, ...content) {
    return h('section', { id, 'aria-labelledby': `${id}-title` }, h('h2', { id: `${id}-title` }, title), ...content);
  }

  function table(cls, headers, rows, empty) {
    if (!rows.length) return h('p', { class: 'empty' }, empty);
    return h(
      'div',
      { class: 'scroll', tabindex: '0' },
      h('table', { class: cls }, h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))), h('tbody', {}, rows)),
    );
  }

  function meter(counted, limit) {
    const max = Math.max(limit, 1);
    return h('meter', {
      min: '0',
      max: String(max),
      low: String(max * 0.7),
      high: String(max * 0.9),
      optimum: '0',
      value: String(Math.min(counted, max)),
      title: `${fmt(counted)} counted of ${fmt(limit)}`,
    });
  }

  function fullness(counted, limit) {
    if (limit <= 0 || counted >= limit) return h('span', { class: 'badge full' }, 'at limit');
    if (counted >= 0.8 * limit) return h('span', { class: 'badge near' }, 'near limit');
    return null;
  }

  function card(label, value, id, hint) {
    return h('div', { class: 'card' }, h('div', { class: 'value', id }, value), h('div', { class: 'label' }, label), hint ? h('div', { class: 'hint' }, hint) : null);
  }

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

  async function siteInfo(tenant) {
    const q = new URLSearchParams({ limit: '500' });
    if (tenant) q.set('tenant', tenant);
    const page = await get(`/v1/sites?${q}`);
    return new Map(page.items.map((s) => [s.slug, s]));
  }

  // ---- billing download: fetched with the token, saved through a Blob link

  function billingSection(tenant) {
    const now = new Date();
    const month = `${now.getUTCFullYear()}-${String(now.getUTCMonth() + 1).padStart(2, '0')}`;
    const input = h('input', { type: 'month', id: 'billing-period', value: month, max: month, required: true });
    const button = h('button', { type: 'submit', id: 'billing-download' }, 'Download CSV');
    const form = h(
      'form',
      {
        class: 'inline',
        onsubmit: async (ev) => {
          ev.preventDefault();
          const period = input.value;
          if (!/^\d{4}-\d{2}$/.test(period)) return say('Pick a month.', 'error');
          button.disabled = true;
          try {
            const q = new URLSearchParams({ period, format: 'csv' });
            if (tenant) q.set('tenant', tenant);
            const res = await call('GET', `/v1/billing/export?${q}`);
            const url = URL.createObjectURL(await res.blob());
            const a = h('a', { href: url, download: `headcount-billing-${tenant || 'all'}-${period}.csv`, hidden: true });
            document.body.append(a);
            a.click();
            a.remove();
            setTimeout(() => URL.revokeObjectURL(url), 30000);
            say(`Billing export for ${period} downloaded.`);
          } catch (e) {
            failed(generation, e);
          } finally {
            button.disabled = false;
          }
        },
      },
      h('label', { for: 'billing-period' }, 'Month (UTC) '),
      input,
      ' ',
      button,
    );
    return section(
      'billing',
      'Billing export',
      h('p', { class: 'hint' }, tenant ? 'What this tenant owes for a month: one line per site and plan segment.' : 'What every tenant owes for a month: one line per site and plan segment.'),
      form,
    );
  }

  // ---- failed deliveries, across sites

  function deliveryTarget(d) {
    const data = (d.payload && d.payload.data) || {};
    if (d.type === 'session.kill') return `${plural((data.sessions || []).length, 'session', 'sessions')} (${data.reason || 'killed'})`;
    if (d.type === 'site.config_changed') return `config version ${data.config_version ?? '?'}`;
    return '';
  }

  function lastAttempt(d) {
    const a = d.attempts[d.attempts.length - 1];
    if (!a) return 'no attempt yet';
    return a.error ? a.error : `HTTP ${a.status_code}`;
  }

  function retryButton(d, after) {
    if (d.status !== 'failed') return null;
    return h(
      'button',
      {
        type: 'button',
        class: 'retry',
        'data-delivery': String(d.id),
        onclick: async (ev) => {
          ev.currentTarget.disabled = true;
          try {
            await api('POST', `/v1/deliveries/${seg(d.id)}/retry`);
            say(`Push ${d.id} queued again with a fresh retry schedule.`);
            after();
          } catch (e) {
            failed(generation, e);
          }
        },
      },
      'Retry',
    );
  }

  async function failedDeliveries(sites) {
    const out = [];
    const queue = sites.slice(0, 100);
    const worker = async () => {
      while (queue.length) {
        const slug = queue.shift();
        const page = await get(`/v1/sites/${seg(slug)}/deliveries?status=failed&limit=5`);
        for (const d of page.items) out.push({ ...d, site: slug });
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    return out.sort((a, b) => (a.created_at < b.created_at ? 1 : -1)).slice(0, 20);
  }

  function failedTable(rows, after) {
    return table(
      'deliveries',
      ['Queued', 'Site', 'Push', 'Attempts', 'Last answer', ''],
      rows.map((d) =>
        h(
          'tr',
          {},
          h('td', {}, time(d.created_at)),
          h('td', {}, h('a', { href: `#/sites/${seg(d.site)}` }, d.site)),
          h('td', {}, d.type, h('div', { class: 'sub' }, deliveryTarget(d))),
          h('td', { class: 'num' }, fmt(d.attempts.length)),
          h('td', { class: 'err' }, lastAttempt(d)),
          h('td', {}, retryButton(d, after)),
        ),
      ),
      'No failed pushes.',
    );
  }

  // ---- provider page

  function renderProvider() {
    const gen = generation;
    document.title = 'headcount · provider';
    const totals = h('div', { id: 'totals' }, h('p', { class: 'loading' }, 'Loading…'));
    const sites = h('div', { id: 'fleet-sites' });
    const tenants = h('div', { id: 'fleet-tenants' });
    const failures = h('div', { id: 'fleet-failed' });
    frame(
      [{ text: 'Provider' }],
      h('h1', {}, 'All tenants and sites'),
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
        fill(tenants,
          table(
            'tenants',
            ['Tenant', 'Sites', 'Counted / limit', 'Utilization', 'Dangling', 'Refused 24 h'],
            [...usage.tenants]
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
          ),
        );
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

  // ---- tenant page

  function renderTenant(slug) {
    const gen = generation;
    const c = claimsOf(token());
    document.title = `headcount · ${slug}`;
    const totals = h('div', { id: 'totals' }, h('p', { class: 'loading' }, 'Loading…'));
    const sites = h('div', { id: 'tenant-sites' });
    const pool = h('p', { id: 'pool', class: 'hint' });
    const failures = h('div', { id: 'tenant-failed' });
    const crumbs = c.role === 'admin' ? [{ text: 'Provider', href: '#/' }, { text: `Tenant ${slug}` }] : [{ text: `Tenant ${slug}` }];
    frame(
      crumbs,
      h('h1', {}, `Tenant ${slug}`),
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
          fill(totals, h('p', { class: 'empty' }, `No tenant ${slug} that this token may see.`));
          return;
        }
        failed(gen, e);
      }
    };
    load();
    every(OVERVIEW_REFRESH_MS, load);
  }

  // ---- site page: gauge

  function arcPoint(cx, cy, r, f) {
    const a = Math.PI * (1 - f);
    return [cx + r * Math.cos(a), cy - r * Math.sin(a)];
  }

  function gauge(u, site) {
    const f = u.session_limit > 0 ? Math.min(u.counted / u.session_limit, 1) : 1;
    const [cx, cy, r] = [100, 100, 80];
    const [x0, y0] = arcPoint(cx, cy, r, 0);
    const [x1, y1] = arcPoint(cx, cy, r, f);
    const [xe, ye] = arcPoint(cx, cy, r, 1);
    const level = f >= 1 ? 'full' : f >= 0.8 ? 'near' : 'ok';
    const mode = site && site.effective ? site.effective.count_mode : 'active';
    const chart = svg(
      'svg',
      { viewBox: '0 0 200 120', class: 'gauge', role: 'img', 'aria-label': `${u.counted} counted of a limit of ${u.session_limit}` },
      svg('path', { d: `M${x0},${y0} A${r},${r} 0 0 1 ${xe},${ye}`, class: 'track' }),
      f > 0 ? svg('path', { d: `M${x0},${y0} A${r},${r} 0 0 1 ${x1.toFixed(2)},${y1.toFixed(2)}`, class: `fill ${level}` }) : null,
      svg('text', { x: cx, y: cy - 12, class: 'big', 'text-anchor': 'middle', id: 'gauge-counted' }, String(u.counted)),
      svg('text', { x: cx, y: cy + 12, class: 'small', 'text-anchor': 'middle' }, 'of ', svg('tspan', { id: 'gauge-limit' }, String(u.session_limit))),
    );
    const stat = (label, value, id, hint) => h('div', { class: 'stat' }, h('dt', {}, label), h('dd', { id }, fmt(value)), hint ? h('dd', { class: 'hint' }, hint) : null);
    return h(
      'div',
      { class: 'gauge-box' },
      h('div', {}, chart, h('p', { class: 'gauge-caption' }, `${pct(u.utilization)} full · counting ${mode === 'live' ? 'live sessions only' : 'every active session'}`, ' ', fullness(u.counted, u.session_limit))),
      h(
        'dl',
        { class: 'stats' },
        stat('counted', u.counted, 'stat-counted', `against the limit of ${fmt(u.session_limit)}`),
        stat('active', u.active, 'gauge-active', 'not ended, not expired'),
        stat('live', u.live, 'gauge-live', 'used within the idle timeout'),
        stat('dangling', u.dangling, 'gauge-dangling', site ? `idle longer than ${duration(site.effective.idle_timeout_seconds)}` : 'idle too long'),
        stat('refused', u.denied_last_24h, 'gauge-denied', 'admissions in the last 24 h'),
      ),
    );
  }

  // ---- site page: history chart (inline SVG built with DOM APIs)

  const RANGES = {
    day: { label: 'Last day', step: 'minute', span: 86400e3 },
    week: { label: 'Last week', step: 'hour', span: 7 * 86400e3 },
    month: { label: 'Last month', step: 'day', span: 30 * 86400e3 },
  };

  // An instant in UTC as a person reads it: "UTC 2026-12-02 14:05".
  const utc = (d) => `UTC ${d.toISOString().slice(0, 16).replace('T', ' ')}`;

  function niceStep(max) {
    const raw = max / 5;
    const mag = 10 ** Math.floor(Math.log10(Math.max(raw, 1)));
    return [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || mag * 10;
  }

  function historyChart(hist, rangeKey) {
    const pts = hist.points;
    if (!pts.length) return h('p', { class: 'empty' }, 'No sessions and no refusals in this range.');
    const [W, H, L, R, T, B] = [800, 260, 44, 16, 16, 36];
    const from = Date.parse(hist.from);
    const to = Date.parse(hist.to);
    const x = (ms) => L + ((ms - from) / Math.max(to - from, 1)) * (W - L - R);
    const top = Math.max(1, ...pts.map((p) => Math.max(p.max_active, p.session_limit)));
    const step = niceStep(top * 1.1);
    const ymax = Math.ceil((top * 1.1) / step) * step;
    const y = (v) => T + (1 - v / ymax) * (H - T - B);
    const kids = [];
    for (let v = 0; v <= ymax; v += step) {
      kids.push(svg('line', { x1: L, x2: W - R, y1: y(v), y2: y(v), class: 'grid' }));
      kids.push(svg('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'tick' }, fmt(v)));
    }
    // Ticks in the browser's zone, the UTC instant on hover. The last day spans two
    // dates, so its ticks carry the date as well as the time.
    const tickFormat =
      rangeKey === 'day'
        ? new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' })
        : new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
    for (let i = 0; i <= 6; i++) {
      const ms = from + ((to - from) * i) / 6;
      const d = new Date(ms);
      kids.push(svg('line', { x1: x(ms), x2: x(ms), y1: H - B, y2: H - B + 4, class: 'axis' }));
      kids.push(
        svg('text', { x: x(ms), y: H - B + 18, 'text-anchor': i === 0 ? 'start' : i === 6 ? 'end' : 'middle', class: 'tick' }, svg('title', {}, utc(d)), tickFormat.format(d)),
      );
    }
    kids.push(svg('line', { x1: L, x2: W - R, y1: H - B, y2: H - B, class: 'axis' }));
    const stepMs = { minute: 60e3, hour: 3600e3, day: 86400e3 }[hist.step] || 60e3;
    // Every bucket of the range: one without a point had no session open and no
    // refusal, so its counts are 0; the limit carries on from the bucket before.
    const byAt = new Map(pts.map((p) => [Date.parse(p.at), p]));
    const buckets = [];
    let limit = pts[0].session_limit;
    for (let at = from - (from % stepMs); at < to; at += stepMs) {
      const p = byAt.get(at);
      if (p) limit = p.session_limit;
      buckets.push({ at, p, limit });
    }
    const line = (key, cls, name) => {
      const d = buckets.map((b, i) => `${i ? 'L' : 'M'}${x(Math.min(b.at + stepMs / 2, to)).toFixed(1)},${y(b.p ? b.p[key] : 0).toFixed(1)}`).join('');
      return svg('path', { d, class: `series ${cls}` }, svg('title', {}, name));
    };
    // The limit as a step line: it may change within the range.
    const limitPath = buckets
      .map((b, i) => {
        const x0 = x(Math.max(b.at, from)).toFixed(1);
        const x1 = x(Math.min(b.at + stepMs, to)).toFixed(1);
        return `${i ? 'L' : 'M'}${x0},${y(b.limit).toFixed(1)}L${x1},${y(b.limit).toFixed(1)}`;
      })
      .join('');
    kids.push(svg('path', { d: limitPath, class: 'series limit' }, svg('title', {}, 'sessions limit')));
    kids.push(line('max_active', 'active', 'most active sessions'));
    kids.push(line('max_live', 'live', 'most live sessions'));
    kids.push(line('max_dangling', 'dangling', 'most dangling sessions'));
    let refusals = 0;
    for (const p of pts) {
      if (!p.denied) continue;
      refusals += p.denied;
      const cx = x(Date.parse(p.at) + stepMs / 2);
      const at = new Date(p.at);
      kids.push(
        svg(
          'path',
          { d: `M${cx.toFixed(1)},${T + 10}l-5,-9h10z`, class: 'refusal', 'data-denied': String(p.denied) },
          svg('title', {}, `${plural(p.denied, 'refusal', 'refusals')} from ${dateTimeFormat.format(at)} (${utc(at)})`),
        ),
      );
      kids.push(svg('line', { x1: cx, x2: cx, y1: T + 10, y2: H - B, class: 'refusal-line' }));
    }
    const chart = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'history', role: 'img', 'aria-label': `usage history, ${RANGES[rangeKey].label.toLowerCase()}` }, kids);
    const legend = h(
      'ul',
      { class: 'legend' },
      h('li', { class: 'active' }, 'most active'),
      h('li', { class: 'live' }, 'most live'),
      h('li', { class: 'dangling' }, 'most dangling'),
      h('li', { class: 'limit' }, 'limit'),
      h('li', { class: 'refusal' }, `▼ refusals (${fmt(refusals)} in range)`),
    );
    return h('div', {}, h('div', { class: 'scroll' }, chart), legend);
  }

  // ---- site page

  function renderSite(slug) {
    const gen = generation;
    const c = claimsOf(token());
    document.title = `headcount · ${slug}`;
    const view = { state: 'active', user: '', limit: 50, range: 'day', site: null, usage: null, deliveriesFailedOnly: false };
    const base = `/v1/sites/${seg(slug)}`;

    const title = h('h1', {}, `Site ${slug}`);
    const meta = h('p', { class: 'meta', id: 'site-meta' });
    const gaugeBox = h('div', { id: 'gauge' }, h('p', { class: 'loading' }, 'Loading…'));
    const historyBox = h('div', { id: 'history-chart' });
    const usersBox = h('div', { id: 'users-table' });
    const sessionsBox = h('div', { id: 'sessions-table' });
    const deliveriesBox = h('div', { id: 'deliveries-table' });
    const adviceBox = h('div', { id: 'advice' }, h('p', { class: 'loading' }, 'Loading…'));
    const peakBox = h('div', { id: 'peak-sessions' });

    const rangeButtons = Object.entries(RANGES).map(([key, r]) =>
      h(
        'button',
        {
          type: 'button',
          'data-range': key,
          'aria-pressed': String(key === view.range),
          onclick: () => {
            view.range = key;
            for (const b of rangeButtons) b.setAttribute('aria-pressed', String(b.dataset.range === key));
            loadHistory();
          },
        },
        r.label,
      ),
    );

    const stateSelect = h(
      'select',
      {
        id: 'session-state',
        onchange: () => {
          view.state = stateSelect.value;
          view.limit = 50;
          loadSessions();
        },
      },
      [
        ['active', 'active (live and dangling)'],
        ['live', 'live'],
        ['dangling', 'dangling'],
        ['expired', 'expired'],
        ['ended', 'ended'],
        ['all', 'all'],
      ].map(([v, label]) => h('option', { value: v }, label)),
    );
    let userTimer = null;
    const userInput = h('input', {
      type: 'search',
      id: 'session-user',
      placeholder: 'user reference',
      autocomplete: 'off',
      oninput: () => {
        clearTimeout(userTimer);
        userTimer = setTimeout(() => {
          view.user = userInput.value.trim();
          view.limit = 50;
          loadSessions();
        }, 300);
      },
    });
    const bulkButton = h('button', { type: 'button', id: 'kill-dangling', class: 'danger', disabled: true, onclick: () => bulkKill() }, 'End dangling sessions…');
    const failedOnly = h('input', {
      type: 'checkbox',
      id: 'deliveries-failed',
      onchange: () => {
        view.deliveriesFailedOnly = failedOnly.checked;
        loadDeliveries();
      },
    });

    const crumbs = [];
    if (c.role === 'admin') crumbs.push({ text: 'Provider', href: '#/' });
    crumbs.push({ text: 'Tenant', href: c.role === 'tenant' ? '#/' : null });
    crumbs.push({ text: `Site ${slug}` });
    frame(
      crumbs,
      title,
      meta,
      section('now', 'Now', gaugeBox),
      section('history', 'History', h('div', { class: 'toolbar', role: 'group', 'aria-label': 'range' }, rangeButtons), historyBox),
      section(
        'sessions',
        'Sessions',
        h(
          'div',
          { class: 'toolbar' },
          h('label', { for: 'session-state' }, 'State '),
          stateSelect,
          h('label', { for: 'session-user' }, ' User '),
          userInput,
          h('span', { class: 'spacer' }),
          bulkButton,
        ),
        sessionsBox,
      ),
      section('users', 'Users by dangling sessions', usersBox),
      section('insight', 'This month: advice and the peak', adviceBox, peakBox),
      section('deliveries', 'Pushes to the site', h('div', { class: 'toolbar' }, h('label', {}, failedOnly, ' failed only')), deliveriesBox),
    );

    const notFound = () => {
      stopTimers();
      frame(crumbs, title, h('p', { class: 'empty', id: 'not-found' }, `No site ${slug} that this token may see.`));
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
        bulkButton.disabled = u.dangling === 0;
        bulkButton.textContent = u.dangling ? `End ${plural(u.dangling, 'dangling session', 'dangling sessions')}…` : 'No dangling sessions';
      });

    const loadHistory = () =>
      guard(async () => {
        const r = RANGES[view.range];
        const to = new Date();
        const from = new Date(to.getTime() - r.span);
        const q = new URLSearchParams({ from: from.toISOString(), to: to.toISOString(), step: r.step });
        const hist = await get(`${base}/usage/history?${q}`);
        if (gen !== generation) return;
        fill(historyBox, historyChart(hist, view.range));
      });

    const killOne = async (s) => {
      const who = s.user === null ? 'with no user' : `of user “${s.user}”`;
      if (!(await confirmDialog(`End the session ${who} (idle ${duration(s.idle_seconds)})? The site is told to log it out.`, 'End session'))) return;
      await guard(async () => {
        const r = await api('DELETE', `${base}/sessions/${seg(s.session)}`);
        say(r.killed ? 'Session ended; the site was sent the kill.' : 'That session had already ended.');
        refresh();
      });
    };

    const bulkKill = async (user) => {
      // Ask for the number now, not the one on the screen a few seconds ago.
      let n;
      if (user === undefined) {
        const u = await get(`${base}/usage`).catch(() => null);
        n = u ? u.dangling : view.usage.dangling;
      } else {
        n = user.dangling;
      }
      if (!n) return say('No dangling sessions to end.');
      const whose = user === undefined ? `of site ${slug}` : `of user “${user.user}”`;
      const text = `End ${plural(n, 'dangling session', 'dangling sessions')} ${whose}? Their users are logged out on the site; live sessions stay.`;
      if (!(await confirmDialog(text, `End ${plural(n, 'session', 'sessions')}`))) return;
      await guard(async () => {
        const body = { state: 'dangling' };
        if (user !== undefined) body.user = user.user;
        const r = await api('POST', `${base}/sessions/kill`, body);
        say(`Ended ${plural(r.killed, 'dangling session', 'dangling sessions')}; the site was sent the kill.`);
        refresh();
      });
    };

    const loadSessions = () =>
      guard(async () => {
        const q = new URLSearchParams({ state: view.state, limit: String(view.limit) });
        if (view.user) q.set('user', view.user);
        const page = await get(`${base}/sessions?${q}`);
        if (gen !== generation) return;
        const rows = page.items.map((s) =>
          h(
            'tr',
            { 'data-session': s.session, 'data-state': s.state },
            h('td', { class: 'user' }, s.user === null ? h('span', { class: 'none' }, 'no user') : s.user),
            h('td', {}, h('span', { class: `state ${s.state}` }, s.state), s.end_reason ? h('div', { class: 'sub' }, s.end_reason) : null),
            h('td', { class: 'num', title: `${fmt(s.idle_seconds)} s since the last request` }, duration(s.idle_seconds)),
            h('td', {}, time(s.last_activity_at)),
            h('td', {}, time(s.started_at)),
            h('td', {}, s.ended_at ? time(s.ended_at) : time(s.expires_at), h('div', { class: 'sub' }, s.ended_at ? 'ended' : 'expires')),
            h('td', { class: 'ua' }, s.user_agent || '–'),
            h('td', {}, s.ip || '–'),
            h('td', { class: 'mono', title: s.session }, s.session.length > 12 ? `${s.session.slice(0, 12)}…` : s.session),
            h(
              'td',
              {},
              s.state === 'live' || s.state === 'dangling'
                ? h('button', { type: 'button', class: 'kill', 'aria-label': `End session ${s.session}`, onclick: () => killOne(s) }, 'End')
                : null,
            ),
          ),
        );
        const more = page.next_cursor && view.limit < 500
          ? h('button', { type: 'button', class: 'more', onclick: () => { view.limit = Math.min(500, view.limit + 100); loadSessions(); } }, 'Show more')
          : null;
        fill(sessionsBox,
          h('p', { class: 'hint', id: 'sessions-count' }, `${plural(page.items.length, 'session', 'sessions')} shown${page.next_cursor ? ' (more exist)' : ''}, most recently used first.`),
          table('sessions', ['User', 'State', 'Idle', 'Last activity', 'Started', 'Ends', 'Client', 'IP', 'Session', ''], rows, 'No sessions match.'),
          more,
        );
      });

    const loadUsers = () =>
      guard(async () => {
        const page = await get(`${base}/users?limit=20`);
        if (gen !== generation) return;
        fill(usersBox,
          table(
            'users',
            ['User', 'Active', 'Live', 'Dangling', ''],
            page.items.map((u) =>
              h(
                'tr',
                {},
                h('td', { class: 'user' }, u.user === null ? h('span', { class: 'none' }, 'no user') : u.user),
                h('td', { class: 'num' }, fmt(u.active)),
                h('td', { class: 'num' }, fmt(u.live)),
                h('td', { class: 'num' }, fmt(u.dangling)),
                h(
                  'td',
                  { class: 'actions' },
                  u.user !== null
                    ? h(
                        'button',
                        {
                          type: 'button',
                          onclick: () => {
                            userInput.value = u.user;
                            view.user = u.user;
                            loadSessions();
                            $('sessions').scrollIntoView();
                          },
                        },
                        'Show sessions',
                      )
                    : null,
                  u.user !== null && u.dangling > 0 ? h('button', { type: 'button', class: 'danger', onclick: () => bulkKill(u) }, 'End dangling…') : null,
                ),
              ),
            ),
            'No active sessions.',
          ),
        );
      });

    const loadDeliveries = () =>
      guard(async () => {
        const q = new URLSearchParams({ limit: '20' });
        if (view.deliveriesFailedOnly) q.set('status', 'failed');
        const page = await get(`${base}/deliveries?${q}`);
        if (gen !== generation) return;
        fill(deliveriesBox,
          table(
            'deliveries',
            ['Queued', 'Push', 'Status', 'Attempts', ''],
            page.items.map((d) =>
              h(
                'tr',
                { 'data-delivery': String(d.id) },
                h('td', {}, time(d.created_at)),
                h('td', {}, d.type, h('div', { class: 'sub' }, deliveryTarget(d))),
                h(
                  'td',
                  {},
                  h('span', { class: `status-${d.status}` }, d.status),
                  d.next_attempt_at ? h('div', { class: 'sub' }, 'next ', time(d.next_attempt_at)) : null,
                ),
                h(
                  'td',
                  {},
                  d.attempts.length
                    ? h(
                        'ol',
                        { class: 'attempts' },
                        d.attempts.map((a) => h('li', {}, time(a.at), ' · ', a.status_code ? `HTTP ${a.status_code}` : 'no answer', ` · ${fmt(a.duration_ms)} ms`, a.error ? h('div', { class: 'err' }, a.error) : null)),
                      )
                    : 'none yet',
                ),
                h('td', {}, retryButton(d, loadDeliveries)),
              ),
            ),
            view.deliveriesFailedOnly ? 'No failed pushes.' : 'No pushes yet.',
          ),
        );
      });

    // The month's advice (which limit, count mode or plan would have admitted the
    // refused users, at what cost) and who was on at the month's peak.
    const loadAdvice = () =>
      guard(async () => {
        const now = new Date();
        const period = `${now.getUTCFullYear()}-${String(now.getUTCMonth() + 1).padStart(2, '0')}`;
        const a = await get(`${base}/advice?period=${period}`);
        if (gen !== generation) return;
        const money = (cents) => `${(cents / 100).toFixed(2)}`;
        const peakButton = h('button', { type: 'button', id: 'show-peak', onclick: () => showPeak(period) }, `Who was on at the peak (${fmt(a.current.peak_active)})`);
        fill(
          adviceBox,
          h('p', { id: 'advice-text' }, a.recommendation.text),
          h(
            'p',
            { class: 'hint' },
            `Now: plan ${a.current.plan}, limit ${fmt(a.current.session_limit)}, counting ${a.current.count_mode} sessions, ${plural(a.current.refusals, 'refusal', 'refusals')} so far this month. `,
            `Refusals while a counted session was dangling: ${fmt(a.dangling.refusals_while_dangling)}; counting live sessions only would have avoided ${fmt(a.dangling.avoided_by_live)}.`,
          ),
          table(
            'advice-options',
            ['plan', 'limit', 'counts', 'refusals', 'peak', 'overage', 'cost'],
            a.options.map((o) =>
              h(
                'tr',
                {},
                h('td', {}, o.plan),
                h('td', { class: 'num' }, fmt(o.session_limit)),
                h('td', {}, o.count_mode),
                h('td', { class: 'num' }, fmt(o.refusals)),
                h('td', { class: 'num' }, fmt(o.peak_active)),
                h('td', { class: 'num' }, fmt(o.overage_sessions)),
                h('td', { class: 'num' }, money(o.total_cents)),
              ),
            ),
            'No options to compare.',
          ),
          peakButton,
        );
      });

    const showPeak = (period) =>
      guard(async () => {
        const site = view.site;
        const tenantQ = c.role === 'admin' ? `&tenant=${seg(site.tenant)}` : '';
        const bill = await get(`/v1/billing/export?period=${period}&format=json${tenantQ}`);
        if (gen !== generation) return;
        const rows = (bill.rows || []).filter((r) => r.site === site.slug && r.peak_active > 0);
        if (!rows.length) return fill(peakBox, h('p', { class: 'empty' }, 'No sessions this month yet.'));
        const top = rows.reduce((a, b) => (b.peak_active > a.peak_active ? b : a));
        const at = await get(`${base}/sessions?at=${encodeURIComponent(top.peak_at)}&limit=500`);
        if (gen !== generation) return;
        fill(
          peakBox,
          h('p', {}, `${plural(top.peak_active, 'session', 'sessions')} at once, first at `, time(top.peak_at), ':'),
          table(
            'peak-table',
            ['session', 'user', 'state then', 'last activity'],
            at.items.map((s) => h('tr', {}, h('td', { class: 'mono' }, s.session), h('td', {}, s.user || '–'), h('td', {}, s.state), h('td', {}, time(s.last_activity_at)))),
            'Nobody was on then.',
          ),
        );
      });

    const refresh = () => {
      loadUsage();
      loadSessions();
      loadUsers();
      loadDeliveries();
    };

    loadSite().then(() => {
      if (gen !== generation) return;
      refresh();
      loadHistory();
      loadAdvice();
    });
    every(SITE_REFRESH_MS, refresh);
    every(HISTORY_REFRESH_MS, loadHistory);
  }

  function frameCrumbs(crumbs) {
    fill($('crumbs'),
      ...crumbs.flatMap((cr, i) => [i ? h('span', { class: 'sep', 'aria-hidden': 'true' }, '›') : null, cr.href ? h('a', { href: cr.href }, cr.text) : h('span', {}, cr.text)]).filter(Boolean),
    );
  }

  // ---- sign-in

  function renderSignIn(message) {
    document.title = 'headcount · sign in';
    const input = h('input', { type: 'password', id: 'token-input', autocomplete: 'off', spellcheck: 'false', required: true, placeholder: 'eyJ…' });
    frame(
      [{ text: 'Sign in' }],
      h('h1', {}, 'Sign in'),
      message ? h('p', { class: 'notice', role: 'alert' }, message) : null,
      h(
        'form',
        {
          id: 'sign-in',
          class: 'sign-in',
          onsubmit: (ev) => {
            ev.preventDefault();
            const t = input.value.trim();
            if (!claimsOf(t)) {
              say('That is not a headcount token (a JWT: three parts separated by dots).', 'error');
              return;
            }
            sessionStorage.setItem(TOKEN_KEY, t);
            if (location.hash === '#/') route();
            else location.hash = '#/';
          },
        },
        h('label', { for: 'token-input' }, 'Token'),
        input,
        h('button', { type: 'submit' }, 'Sign in'),
      ),
      h(
        'p',
        { class: 'hint' },
        'Paste an admin or tenant token. It stays in this tab (sessionStorage) and is sent only in the Authorization header. ',
        'An operator can print a link that signs in: ',
        h('code', {}, 'headcount token create --role tenant --tenant SLUG --ui'),
        '.',
      ),
    );
    input.focus();
  }

  // ---- routing

  function route() {
    generation++;
    stopTimers();
    $('status').textContent = '';
    takeTokenFromFragment();
    const t = token();
    if (!t) return renderSignIn();
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

  document.addEventListener('DOMContentLoaded', () => {
    $('sign-out').addEventListener('click', () => signOut('Signed out.'));
    window.addEventListener('hashchange', route);
    route();
  });
})();
