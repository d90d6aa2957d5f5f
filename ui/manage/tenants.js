// Tenants: the provider's list with a form for a new tenant, and a tenant's page to
// change it. A tenant maintainer changes only its billing e-mail and alert URL (the
// API refuses the rest) and may rotate its alert secret.

import { ApiError, api, get, seg } from '../api.js';
import { identity } from '../auth.js';
import { fill, h } from '../dom.js';
import { fmt, time } from '../format.js';
import { confirmDialog, failed, frame, generation, say } from '../page.js';
import { actionLinks, section, table } from '../widgets.js';
import { tenantFields } from './fields.js';
import { managedForm, shownOnce } from './forms.js';

function tenantsTable(items) {
  return table(
    'tenants-admin',
    ['Slug', 'Name', 'Billing e-mail', 'Alert URL', 'Pool', ''],
    items.map((t) =>
      h(
        'tr',
        { 'data-tenant': t.slug },
        h('td', {}, h('a', { href: `#/tenants/${seg(t.slug)}` }, t.slug)),
        h('td', {}, t.name),
        h('td', {}, t.billing_email || '–'),
        h('td', { class: 'url' }, t.notify_url || '–'),
        h('td', { class: 'num' }, fmt(t.pooled_session_limit)),
        h('td', { class: 'actions' }, h('a', { href: `#/tenants/${seg(t.slug)}/edit`, class: 'edit' }, 'Edit'), ' ', h('a', { href: `#/new-site?tenant=${seg(t.slug)}` }, 'New site')),
      ),
    ),
    'No tenants yet.',
  );
}

const secretNote = 'The alert secret (notify_secret) verifies the alerts sent to the alert URL. Shown only now.';

export function renderTenants() {
  const gen = generation;
  document.title = 'headcount · tenants';
  const list = h('div', { id: 'tenants-list' }, h('p', { class: 'loading' }, 'Loading…'));
  const load = async () => {
    try {
      const page = await get('/v1/tenants?limit=500');
      if (gen === generation) fill(list, tenantsTable(page.items));
    } catch (e) {
      failed(gen, e);
    }
  };
  const created = h('div', { id: 'tenant-created' });
  const create = managedForm({
    id: 'tenant-form',
    specs: tenantFields(true),
    mode: 'create',
    submitLabel: 'Create tenant',
    submit: async (body) => {
      const t = await api('POST', '/v1/tenants', body);
      say(`Tenant ${t.slug} created.`);
      fill(
        created,
        h('p', { class: 'done' }, `Tenant ${t.slug} created. `, h('a', { href: `#/new-site?tenant=${seg(t.slug)}` }, 'Create its first site'), ' · ', h('a', { href: `#/tenants/${seg(t.slug)}` }, 'Its page')),
        t.notify_secret ? shownOnce('tenant-notify-secret', t.notify_secret, secretNote) : null,
      );
      create.form.reset();
      load();
    },
  });
  frame(
    [{ text: 'Provider', href: '#/' }, { text: 'Tenants' }],
    h('h1', {}, 'Tenants'),
    section('tenants', 'Every tenant', list),
    section('new-tenant', 'A new tenant', created, create.form),
  );
  load();
}

export function renderTenantEdit(slug) {
  const gen = generation;
  const admin = identity().role === 'admin';
  document.title = `headcount · tenant ${slug}`;
  const body = h('div', { id: 'tenant-edit' }, h('p', { class: 'loading' }, 'Loading…'));
  const crumbs = admin
    ? [{ text: 'Provider', href: '#/' }, { text: 'Tenants', href: '#/tenants' }, { text: `Tenant ${slug}`, href: `#/tenants/${seg(slug)}` }, { text: 'Change' }]
    : [{ text: `Tenant ${slug}`, href: '#/' }, { text: 'Change' }];
  frame(crumbs, h('h1', {}, `Tenant ${slug}`), body);
  (async () => {
    try {
      const tenant = await get(`/v1/tenants/${seg(slug)}`);
      if (gen !== generation) return;
      const edit = managedForm({
        id: 'tenant-form',
        specs: tenantFields(admin),
        values: tenant,
        mode: 'edit',
        submitLabel: 'Save',
        submit: async (patch) => {
          const t = await api('PATCH', `/v1/tenants/${seg(slug)}`, patch);
          edit.reset(t);
          say(`Tenant ${t.slug} saved.`);
        },
      });
      const rotated = h('div', { id: 'notify-rotated' });
      const rotate = h('button', {
        type: 'button',
        id: 'rotate-notify-secret',
        class: 'danger',
        onclick: async () => {
          const ok = await confirmDialog(`Rotate the alert secret of ${slug}? Alerts are signed with the new one at once, and no longer with the current one.`, 'Rotate');
          if (!ok) return;
          rotate.disabled = true;
          try {
            const r = await api('POST', `/v1/tenants/${seg(slug)}/notify-secret`);
            fill(rotated, shownOnce('notify-secret', r.notify_secret || '', 'The new alert secret: alerts are signed with it from now on. Shown only now.'));
            say('Alert secret rotated.');
          } catch (e) {
            failed(gen, e);
          } finally {
            rotate.disabled = false;
          }
        },
      }, 'Rotate the alert secret…');
      fill(
        body,
        h('p', { class: 'meta' }, tenant.name, ' · since ', time(tenant.created_at)),
        actionLinks('tenant-links', [[`#/tenants/${seg(slug)}`, 'Usage'], admin ? [`#/new-site?tenant=${seg(slug)}`, 'New site'] : null]),
        section('tenant-change', admin ? 'Change' : 'Contact and alerts', admin ? null : h('p', { class: 'hint' }, 'A tenant changes its billing e-mail and alert URL; its name and pool are the provider’s.'), edit.form),
        section('tenant-secret', 'Alert secret', h('p', { class: 'hint' }, 'Signs the alerts sent to the alert URL.'), rotate, rotated),
      );
    } catch (e) {
      if (e instanceof ApiError && e.status === 404 && gen === generation) {
        fill(body, h('p', { class: 'empty', id: 'not-found' }, `No tenant ${slug} that you may see.`));
        return;
      }
      failed(gen, e);
    }
  })();
}
