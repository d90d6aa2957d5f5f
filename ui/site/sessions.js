// The site page's sessions: the list filtered by state and user, ending one session,
// and ending the dangling ones (of the site, or of one user).

import { api, get, seg } from '../api.js';
import { fill, h } from '../dom.js';
import { duration, fmt, plural, time } from '../format.js';
import { confirmDialog, say } from '../page.js';
import { section, table } from '../widgets.js';

const STATES = [
  ['active', 'active (live and dangling)'],
  ['live', 'live'],
  ['dangling', 'dangling'],
  ['expired', 'expired'],
  ['ended', 'ended'],
  ['all', 'all'],
];

function sessionRow(s, killOne) {
  return h(
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
  );
}

export function sessionsSection(ctx) {
  const { view, base, slug } = ctx;
  const box = h('div', { id: 'sessions-table' });

  const stateSelect = h(
    'select',
    {
      id: 'session-state',
      onchange: () => {
        view.state = stateSelect.value;
        view.limit = 50;
        load();
      },
    },
    STATES.map(([v, label]) => h('option', { value: v }, label)),
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
        load();
      }, 300);
    },
  });
  const bulkButton = h('button', { type: 'button', id: 'kill-dangling', class: 'danger', disabled: true, onclick: () => bulkKill() }, 'End dangling sessions…');

  const killOne = async (s) => {
    const who = s.user === null ? 'with no user' : `of user “${s.user}”`;
    if (!(await confirmDialog(`End the session ${who} (idle ${duration(s.idle_seconds)})? The site is told to log it out.`, 'End session'))) return;
    await ctx.guard(async () => {
      const r = await api('DELETE', `${base}/sessions/${seg(s.session)}`);
      say(r.killed ? 'Session ended; the site was sent the kill.' : 'That session had already ended.');
      ctx.refresh();
    });
  };

  // The site's dangling sessions, or one user's (a row of the users table).
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
    await ctx.guard(async () => {
      const body = { state: 'dangling' };
      if (user !== undefined) body.user = user.user;
      const r = await api('POST', `${base}/sessions/kill`, body);
      say(`Ended ${plural(r.killed, 'dangling session', 'dangling sessions')}; the site was sent the kill.`);
      ctx.refresh();
    });
  };

  const load = () =>
    ctx.guard(async () => {
      const q = new URLSearchParams({ state: view.state, limit: String(view.limit) });
      if (view.user) q.set('user', view.user);
      const page = await get(`${base}/sessions?${q}`);
      if (ctx.stale()) return;
      const more = page.next_cursor && view.limit < 500
        ? h('button', { type: 'button', class: 'more', onclick: () => { view.limit = Math.min(500, view.limit + 100); load(); } }, 'Show more')
        : null;
      fill(box,
        h('p', { class: 'hint', id: 'sessions-count' }, `${plural(page.items.length, 'session', 'sessions')} shown${page.next_cursor ? ' (more exist)' : ''}, most recently used first.`),
        table('sessions', ['User', 'State', 'Idle', 'Last activity', 'Started', 'Ends', 'Client', 'IP', 'Session', ''], page.items.map((s) => sessionRow(s, killOne)), 'No sessions match.'),
        more,
      );
    });

  // Shows one user's sessions (from the users table).
  const showUser = (user) => {
    userInput.value = user;
    view.user = user;
    load();
    element.scrollIntoView();
  };

  // The bulk button says how many it would end, from the latest usage.
  const showDangling = (n) => {
    bulkButton.disabled = n === 0;
    bulkButton.textContent = n ? `End ${plural(n, 'dangling session', 'dangling sessions')}…` : 'No dangling sessions';
  };

  const element = section(
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
    box,
  );
  return { element, load, showUser, bulkKill, showDangling };
}
