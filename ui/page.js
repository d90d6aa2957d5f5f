// What every page shares: which page is current, its refresh timers, the status
// line, the confirmation dialog and the header (who is signed in, where they are).

import { ApiError } from './api.js';
import { identity } from './auth.js';
import { $, fill, h } from './dom.js';
import { dateTimeFormat } from './format.js';

// Bumped each time another page is shown: a load started for an earlier page sees
// that its generation is gone and drops what it fetched.
export let generation = 0;
let timers = [];

export function stopTimers() {
  for (const t of timers) clearInterval(t);
  timers = [];
}

// Leaves the current page: its pending loads are dropped, its timers stop. Returns
// the new page's generation.
export function nextPage() {
  generation++;
  stopTimers();
  return generation;
}

// Runs `fn` every `ms` while this page is shown and the tab is visible.
export function every(ms, fn) {
  const gen = generation;
  timers.push(
    setInterval(() => {
      if (gen === generation && !document.hidden) fn();
    }, ms),
  );
}

// ---- status line and confirmation dialog

let statusTimer = null;
export function say(text, kind) {
  const el = $('status');
  el.textContent = text;
  el.className = `status ${kind || 'info'}`;
  clearTimeout(statusTimer);
  if (kind !== 'error') statusTimer = setTimeout(() => (el.textContent = ''), 8000);
}

export function failed(gen, e) {
  if (gen !== generation || (e instanceof ApiError && e.status === 401)) return;
  say(e.message || String(e), 'error');
}

export function confirmDialog(text, okLabel) {
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

export function frame(crumbs, ...content) {
  const c = identity();
  $('who').textContent = c ? whoText(c) : '';
  $('sign-out').hidden = !c;
  frameCrumbs(crumbs);
  const main = $('main');
  fill(main, content);
  return main;
}

// The role, and for a sign-in through the identity provider the person's name and
// e-mail; then until when the token or session holds.
function whoText(c) {
  const end = c.exp ? new Date(c.exp * 1000) : c.expires_at ? new Date(c.expires_at) : null;
  const until = end && !Number.isNaN(end.getTime()) ? ` · until ${dateTimeFormat.format(end)}` : '';
  const person = [c.name, c.email && c.email !== c.name ? `<${c.email}>` : null].filter(Boolean).join(' ');
  const role = c.role === 'tenant' ? `tenant ${c.tenant}` : c.role === 'site' ? `site ${c.site}` : 'provider (admin)';
  return `${person ? `${person} · ` : ''}${role}${until}`;
}

export function frameCrumbs(crumbs) {
  fill($('crumbs'),
    ...crumbs.flatMap((cr, i) => [i ? h('span', { class: 'sep', 'aria-hidden': 'true' }, '›') : null, cr.href ? h('a', { href: cr.href }, cr.text) : h('span', {}, cr.text)]).filter(Boolean),
  );
}
