// Formatting: numbers that say what they count, times in the browser's zone (with
// the UTC instant on hover), months as the API names them.

import { h } from './dom.js';

const numberFormat = new Intl.NumberFormat();
export const fmt = (n) => (n === null || n === undefined ? '–' : numberFormat.format(n));
export const pct = (u) => `${Math.round((u || 0) * 100)} %`;
export const dateTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

// An instant in UTC as a person reads it: "UTC 2026-12-02 14:05".
export const utc = (d) => `UTC ${d.toISOString().slice(0, 16).replace('T', ' ')}`;

export function time(iso) {
  if (!iso) return '–';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return h('time', { datetime: iso, title: `UTC ${d.toISOString().replace('.000Z', 'Z')}` }, dateTimeFormat.format(d));
}

export function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds || 0));
  const d = Math.floor(s / 86400);
  const hr = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return hr ? `${d} d ${hr} h` : `${d} d`;
  if (hr > 0) return m ? `${hr} h ${m} min` : `${hr} h`;
  if (m > 0) return `${m} min`;
  return `${s} s`;
}

export function plural(n, one, many) {
  return `${fmt(n)} ${n === 1 ? one : many}`;
}

// The current month in UTC, "2026-12": billing periods and advice are per UTC month.
export function thisMonth() {
  const now = new Date();
  return `${now.getUTCFullYear()}-${String(now.getUTCMonth() + 1).padStart(2, '0')}`;
}
