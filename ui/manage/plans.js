// Plans: what the provider sells. The list with a form for a new plan, and a plan's
// own page to change it (admin); a tenant may read the list.

import { ApiError, api, get, seg } from '../api.js';
import { identity } from '../auth.js';
import { fill, h } from '../dom.js';
import { fmt, time } from '../format.js';
import { failed, frame, generation, say } from '../page.js';
import { section, table } from '../widgets.js';
import { planFields } from './fields.js';
import { managedForm } from './forms.js';

const money = (cents, currency) => `${(cents / 100).toFixed(2)} ${currency}`;

function plansTable(items, admin) {
  return table(
    'plans',
    ['Code', 'Name', 'Limit', 'Counts', 'At the limit', 'Price / month', 'Changed', ''],
    items.map((p) =>
      h(
        'tr',
        { 'data-plan': p.code },
        h('td', { class: 'mono' }, p.code),
        h('td', {}, p.name),
        h('td', { class: 'num' }, fmt(p.session_limit)),
        h('td', {}, p.count_mode),
        h('td', {}, p.over_limit),
        h('td', { class: 'num' }, money(p.monthly_price_cents, p.currency)),
        h('td', {}, time(p.updated_at)),
        h('td', {}, admin ? h('a', { href: `#/plans/${seg(p.code)}/edit`, class: 'edit' }, 'Edit') : null),
      ),
    ),
    'No plans yet.',
  );
}

export function renderPlans() {
  const gen = generation;
  const admin = identity().role === 'admin';
  document.title = 'headcount · plans';
  const list = h('div', { id: 'plans-list' }, h('p', { class: 'loading' }, 'Loading…'));
  const load = async () => {
    try {
      const page = await get('/v1/plans?limit=500');
      if (gen === generation) fill(list, plansTable(page.items, admin));
    } catch (e) {
      failed(gen, e);
    }
  };
  const created = h('div', { id: 'plan-created' });
  const create = admin
    ? managedForm({
        id: 'plan-form',
        specs: planFields(),
        mode: 'create',
        submitLabel: 'Create plan',
        submit: async (body) => {
          const p = await api('POST', '/v1/plans', body);
          say(`Plan ${p.code} created.`);
          fill(created, h('p', { class: 'done' }, `Plan ${p.code} created: ${fmt(p.session_limit)} sessions. `, h('a', { href: `#/plans/${seg(p.code)}/edit` }, 'Change it')));
          create.form.reset();
          load();
        },
      })
    : null;
  frame(
    admin ? [{ text: 'Provider', href: '#/' }, { text: 'Plans' }] : [{ text: 'Tenant', href: '#/' }, { text: 'Plans' }],
    h('h1', {}, 'Plans'),
    section('plans', 'What is sold', list),
    admin ? section('new-plan', 'A new plan', created, create.form) : null,
  );
  load();
}

export function renderPlanEdit(code) {
  const gen = generation;
  document.title = `headcount · plan ${code}`;
  const body = h('div', { id: 'plan-edit' }, h('p', { class: 'loading' }, 'Loading…'));
  frame([{ text: 'Provider', href: '#/' }, { text: 'Plans', href: '#/plans' }, { text: `Plan ${code}` }], h('h1', {}, `Plan ${code}`), body);
  (async () => {
    try {
      const plan = await get(`/v1/plans/${seg(code)}`);
      if (gen !== generation) return;
      const meta = h('p', { class: 'meta', id: 'plan-meta' });
      const showMeta = (p) => fill(meta, `Created `, time(p.created_at), ', last changed ', time(p.updated_at), '. A change of its rules is pushed to every site on it.');
      showMeta(plan);
      const edit = managedForm({
        id: 'plan-form',
        specs: planFields(),
        values: plan,
        mode: 'edit',
        submitLabel: 'Save plan',
        submit: async (patch) => {
          const p = await api('PATCH', `/v1/plans/${seg(code)}`, patch);
          edit.reset(p);
          showMeta(p);
          say(`Plan ${p.code} saved.`);
        },
      });
      fill(body, meta, section('plan-change', 'Change', edit.form));
    } catch (e) {
      if (e instanceof ApiError && e.status === 404 && gen === generation) {
        fill(body, h('p', { class: 'empty', id: 'not-found' }, `No plan ${code}.`));
        return;
      }
      failed(gen, e);
    }
  })();
}
