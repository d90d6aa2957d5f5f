// The site page's insight: the month's advice (which limit, count mode or plan would
// have admitted the refused users, at what cost) and who was on at the month's peak.

import { get, seg } from '../api.js';
import { fill, h } from '../dom.js';
import { fmt, plural, thisMonth, time } from '../format.js';
import { section, table } from '../widgets.js';

const money = (cents) => `${(cents / 100).toFixed(2)}`;

function optionsTable(options) {
  return table(
    'advice-options',
    ['plan', 'limit', 'counts', 'refusals', 'peak', 'overage', 'cost'],
    options.map((o) =>
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
  );
}

export function insightSection(ctx) {
  const { view } = ctx;
  const adviceBox = h('div', { id: 'advice' }, h('p', { class: 'loading' }, 'Loading…'));
  const peakBox = h('div', { id: 'peak-sessions' });

  const load = () =>
    ctx.guard(async () => {
      const period = thisMonth();
      const a = await get(`${ctx.base}/advice?period=${period}`);
      if (ctx.stale()) return;
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
        optionsTable(a.options),
        peakButton,
      );
    });

  // The peak's instant comes from the billing export; the sessions open then from
  // the sessions list at that instant.
  const showPeak = (period) =>
    ctx.guard(async () => {
      const site = view.site;
      const tenantQ = ctx.claims.role === 'admin' ? `&tenant=${seg(site.tenant)}` : '';
      const bill = await get(`/v1/billing/export?period=${period}&format=json${tenantQ}`);
      if (ctx.stale()) return;
      const rows = (bill.rows || []).filter((r) => r.site === site.slug && r.peak_active > 0);
      if (!rows.length) return fill(peakBox, h('p', { class: 'empty' }, 'No sessions this month yet.'));
      const top = rows.reduce((a, b) => (b.peak_active > a.peak_active ? b : a));
      const at = await get(`${ctx.base}/sessions?at=${encodeURIComponent(top.peak_at)}&limit=500`);
      if (ctx.stale()) return;
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

  const element = section('insight', 'This month: advice and the peak', adviceBox, peakBox);
  return { element, load };
}
