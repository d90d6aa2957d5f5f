// The billing export: fetched with the token (a plain link could not carry it), then
// saved through a Blob link.

import { call } from './api.js';
import { h } from './dom.js';
import { thisMonth } from './format.js';
import { failed, generation, say } from './page.js';
import { section } from './widgets.js';

export function billingSection(tenant) {
  const month = thisMonth();
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
