// The site page's pushes: each kill or config change sent to the site, with its
// attempts, and a retry for a failed one.

import { get } from '../api.js';
import { deliveryTarget, retryButton } from '../deliveries.js';
import { fill, h } from '../dom.js';
import { fmt, time } from '../format.js';
import { section, table } from '../widgets.js';

function attempts(d) {
  if (!d.attempts.length) return 'none yet';
  return h(
    'ol',
    { class: 'attempts' },
    d.attempts.map((a) => h('li', {}, time(a.at), ' · ', a.status_code ? `HTTP ${a.status_code}` : 'no answer', ` · ${fmt(a.duration_ms)} ms`, a.error ? h('div', { class: 'err' }, a.error) : null)),
  );
}

export function deliveriesSection(ctx) {
  const { view } = ctx;
  const box = h('div', { id: 'deliveries-table' });
  const failedOnly = h('input', {
    type: 'checkbox',
    id: 'deliveries-failed',
    onchange: () => {
      view.deliveriesFailedOnly = failedOnly.checked;
      load();
    },
  });

  const load = () =>
    ctx.guard(async () => {
      const q = new URLSearchParams({ limit: '20' });
      if (view.deliveriesFailedOnly) q.set('status', 'failed');
      const page = await get(`${ctx.base}/deliveries?${q}`);
      if (ctx.stale()) return;
      fill(box,
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
              h('td', {}, attempts(d)),
              h('td', {}, retryButton(d, load)),
            ),
          ),
          view.deliveriesFailedOnly ? 'No failed pushes.' : 'No pushes yet.',
        ),
      );
    });

  const element = section('deliveries', 'Pushes to the site', h('div', { class: 'toolbar' }, h('label', {}, failedOnly, ' failed only')), box);
  return { element, load };
}
