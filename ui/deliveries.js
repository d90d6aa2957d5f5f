// Pushes to the sites (kills, config changes): how to describe one, retry a failed
// one, and the recent failures across many sites.

import { api, get, seg } from './api.js';
import { h } from './dom.js';
import { fmt, plural, time } from './format.js';
import { failed, generation, say } from './page.js';
import { table } from './widgets.js';

export function deliveryTarget(d) {
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

export function retryButton(d, after) {
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

// The latest failed pushes of up to 100 sites, four requests at a time.
export async function failedDeliveries(sites) {
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

export function failedTable(rows, after) {
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
