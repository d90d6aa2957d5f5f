// Building blocks the pages share: sections, tables, meters and cards.

import { h } from './dom.js';
import { fmt } from './format.js';

export function section(id, title, ...content) {
  return h('section', { id, 'aria-labelledby': `${id}-title` }, h('h2', { id: `${id}-title` }, title), ...content);
}

export function table(cls, headers, rows, empty) {
  if (!rows.length) return h('p', { class: 'empty' }, empty);
  return h(
    'div',
    { class: 'scroll', tabindex: '0' },
    h('table', { class: cls }, h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))), h('tbody', {}, rows)),
  );
}

export function meter(counted, limit) {
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

export function fullness(counted, limit) {
  if (limit <= 0 || counted >= limit) return h('span', { class: 'badge full' }, 'at limit');
  if (counted >= 0.8 * limit) return h('span', { class: 'badge near' }, 'near limit');
  return null;
}

export function card(label, value, id, hint) {
  return h('div', { class: 'card' }, h('div', { class: 'value', id }, value), h('div', { class: 'label' }, label), hint ? h('div', { class: 'hint' }, hint) : null);
}

// Links to the pages that change things, as a row under a page's title.
export function actionLinks(id, links) {
  const shown = links.filter(Boolean);
  if (!shown.length) return null;
  return h('nav', { class: 'page-actions', id, 'aria-label': 'Manage' }, shown.map(([href, text]) => h('a', { href, class: 'button-link' }, text)));
}
