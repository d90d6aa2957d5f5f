// The site's users, most dangling sessions first: whose sessions to look at, or end.

import { get } from '../api.js';
import { fill, h } from '../dom.js';
import { fmt } from '../format.js';
import { section, table } from '../widgets.js';

function actions(u, sessions) {
  if (u.user === null) return [];
  return [
    h('button', { type: 'button', onclick: () => sessions.showUser(u.user) }, 'Show sessions'),
    u.dangling > 0 ? h('button', { type: 'button', class: 'danger', onclick: () => sessions.bulkKill(u) }, 'End dangling…') : null,
  ];
}

export function usersSection(ctx, sessions) {
  const box = h('div', { id: 'users-table' });

  const load = () =>
    ctx.guard(async () => {
      const page = await get(`${ctx.base}/users?limit=20`);
      if (ctx.stale()) return;
      fill(box,
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
              h('td', { class: 'actions' }, actions(u, sessions)),
            ),
          ),
          'No active sessions.',
        ),
      );
    });

  return { element: section('users', 'Users by dangling sessions', box), load };
}
