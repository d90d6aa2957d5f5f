// The site page's history: a chart of the last day, week or month.

import { get } from '../api.js';
import { RANGES, historyChart } from '../charts.js';
import { fill, h } from '../dom.js';
import { section } from '../widgets.js';

export function historySection(ctx) {
  const { view } = ctx;
  const box = h('div', { id: 'history-chart' });

  const load = () =>
    ctx.guard(async () => {
      const r = RANGES[view.range];
      const to = new Date();
      const from = new Date(to.getTime() - r.span);
      const q = new URLSearchParams({ from: from.toISOString(), to: to.toISOString(), step: r.step });
      const hist = await get(`${ctx.base}/usage/history?${q}`);
      if (ctx.stale()) return;
      fill(box, historyChart(hist, view.range));
    });

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
          load();
        },
      },
      r.label,
    ),
  );

  const element = section('history', 'History', h('div', { class: 'toolbar', role: 'group', 'aria-label': 'range' }, rangeButtons), box);
  return { element, load };
}
