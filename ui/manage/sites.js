// Sites: a new one (provider), and a site's own management page. Creating a site
// mints its agent's token and shows once the settings block to paste, where pushes
// go, and then waits for the agent's first report. On a site's page the provider
// changes everything, a tenant only what the API lets a tenant change (webhook_url,
// its own limit up to what was sold, the refusal message); both rotate the webhook
// secret and mint the agent's tokens.

import { ApiError, api, get, seg } from '../api.js';
import { identity } from '../auth.js';
import { fill, h } from '../dom.js';
import { duration, fmt, time } from '../format.js';
import { confirmDialog, failed, frame, generation, say } from '../page.js';
import { actionLinks, section } from '../widgets.js';
import { MODES, WEBHOOK_PATH, agentSettings, agentWatch, settingsBlock, webhookAdvice } from './agent.js';
import { providerSiteFields, siteValues, tenantSiteFields } from './fields.js';
import { managedForm, shownOnce } from './forms.js';
import { siteTokenSection } from './tokens.js';

const notFound = (what) => h('p', { class: 'empty', id: 'not-found' }, `No ${what} that you may see.`);

// What the agent's settings take besides the site: how it reaches headcount, its mode.
function agentFields() {
  const url = h('input', { id: 'agent-url', type: 'url', value: location.origin, autocomplete: 'off', spellcheck: 'false' });
  const mode = h('select', { id: 'agent-mode' }, MODES.map(([v, label]) => h('option', { value: v }, label)));
  const element = h(
    'details',
    { class: 'group', 'data-group': 'agent' },
    h('summary', {}, "The agent's settings"),
    h('div', { class: 'field' }, h('label', { for: 'agent-url' }, 'headcount URL as the site reaches it'), url),
    h('div', { class: 'field' }, h('label', { for: 'agent-mode' }, 'MODE'), mode),
  );
  return { element, read: () => ({ url: url.value.trim() || location.origin, mode: mode.value }) };
}

// The page after a site was created: the block, the webhook, the wait.
function showCreated(site, agent, minted, mintError) {
  const slug = site.slug;
  const tokenBox = h('div', { id: 'created-token' });
  const blockBox = h('div', { id: 'settings' });
  const showBlock = (t) => {
    const settings = agentSettings(agent.url, site, t.token, agent.mode);
    fill(blockBox,
      shownOnce('settings-block', settingsBlock(site, settings), "Paste into the site's settings.py. The token and the webhook secret are shown only now."),
      h('p', { class: 'hint' }, 'Token id ', h('code', { class: 'jti' }, t.jti), ', valid until ', time(t.expires_at), '.'),
    );
  };
  if (minted) showBlock(minted);
  else {
    // The site exists and its secret is not shown again: show it, and mint again.
    const retry = h('button', {
      type: 'button',
      id: 'mint-again',
      onclick: async () => {
        retry.disabled = true;
        try {
          showBlock(await api('POST', '/v1/tokens', { role: 'site', site: slug }));
          tokenBox.replaceChildren();
        } catch (e) {
          failed(generation, e);
          retry.disabled = false;
        }
      },
    }, "Mint the agent's token");
    fill(tokenBox,
      h('p', { class: 'form-error', role: 'alert' }, `The site was created but no token was minted for it: ${mintError.message}`),
      shownOnce('webhook-secret', site.webhook_secret || '', 'Its webhook secret, shown only now.'),
      retry,
    );
  }
  const hook = h('div', { id: 'created-webhook' }, webhookAdvice(site.webhook_url));
  if (!site.webhook_url) {
    const set = managedForm({
      id: 'webhook-form',
      specs: [{ name: 'webhook_url', label: 'Webhook URL', kind: 'url', placeholder: `https://the-site.example${WEBHOOK_PATH}` }],
      values: { webhook_url: null },
      mode: 'edit',
      submitLabel: 'Set',
      submit: async (patch) => {
        const s = await api('PATCH', `/v1/sites/${seg(slug)}`, patch);
        fill(hook, webhookAdvice(s.webhook_url));
        say('Webhook URL set; the site is sent its configuration.');
      },
    });
    hook.append(set.form);
  }
  frame(
    [{ text: 'Provider', href: '#/' }, { text: `Tenant ${site.tenant}`, href: `#/tenants/${seg(site.tenant)}` }, { text: `Site ${slug}` }],
    h('h1', { id: 'created-title' }, `Site ${slug} created`),
    h('p', { class: 'meta' }, `${site.name} · tenant ${site.tenant} · plan ${site.plan} · limit ${fmt(site.effective.session_limit)}`),
    section('agent-settings', "The agent's settings", tokenBox, blockBox),
    section('agent-webhook', 'Pushes to the site', hook),
    section('agent-first', 'First report', agentWatch(slug)),
    actionLinks('created-links', [[`#/sites/${seg(slug)}`, 'Site page'], [`#/sites/${seg(slug)}/edit`, 'Change it']]),
  );
}

export function renderSiteNew(tenant) {
  const gen = generation;
  document.title = 'headcount · new site';
  const body = h('div', { id: 'site-new' }, h('p', { class: 'loading' }, 'Loading…'));
  frame([{ text: 'Provider', href: '#/' }, { text: 'New site' }], h('h1', {}, 'A new site'), body);
  (async () => {
    try {
      const [tenants, plans] = await Promise.all([get('/v1/tenants?limit=500'), get('/v1/plans?limit=500')]);
      if (gen !== generation) return;
      if (!tenants.items.length || !plans.items.length) {
        fill(body, h('p', { class: 'empty' }, 'A site needs a tenant and a plan first: ', h('a', { href: '#/tenants' }, 'tenants'), ', ', h('a', { href: '#/plans' }, 'plans'), '.'));
        return;
      }
      const agent = agentFields();
      const create = managedForm({
        id: 'site-form',
        specs: providerSiteFields(tenants.items, plans.items),
        values: { tenant },
        mode: 'create',
        submitLabel: 'Create site',
        extra: agent.element,
        submit: async (b) => {
          const settings = agent.read();
          const site = await api('POST', '/v1/sites', { ...b, name: b.name || b.slug });
          let minted = null;
          let mintError = null;
          try {
            minted = await api('POST', '/v1/tokens', { role: 'site', site: site.slug });
          } catch (e) {
            mintError = e;
          }
          if (gen !== generation) return;
          say(`Site ${site.slug} created.`);
          showCreated(site, settings, minted, mintError);
        },
      });
      fill(body, section('new-site', 'The site', h('p', { class: 'hint' }, 'Creating the site also mints its agent’s token and shows, once, the block for its settings.py.'), create.form));
    } catch (e) {
      failed(gen, e);
    }
  })();
}

// What the site runs with, read-only: the effective values.
function effectiveList(site) {
  const e = site.effective;
  const roles = (r) => (r && r.length ? r.join(', ') : 'none');
  const rows = [
    ['Plan', site.plan],
    ['Session limit', fmt(e.session_limit)],
    ['Sold (provider’s limit)', site.provider_session_limit === null || site.provider_session_limit === undefined ? 'the plan’s' : fmt(site.provider_session_limit)],
    ['Which sessions count', e.count_mode],
    ['At the limit', e.over_limit],
    ['Dangling after', duration(e.idle_timeout_seconds)],
    ['Sessions expire after', duration(e.session_ttl_seconds)],
    ['Reserved places', `${fmt(e.reserved_slots)} for ${roles(e.reserved_roles)}`],
    ['Per user', e.per_user_limit === null || e.per_user_limit === undefined ? 'no cap' : `${fmt(e.per_user_limit)}, then ${e.per_user_over_limit}`],
    ['Never counted', roles(e.exempt_roles)],
    ['Refusal message', e.limit_message],
    ['Pushes signed', site.signature_scheme],
    ['Config version', fmt(e.config_version)],
  ];
  return h('dl', { class: 'effective', id: 'site-effective' }, rows.map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', {}, v))));
}

function rotateSection(slug) {
  const out = h('div', { id: 'rotated' });
  const button = h(
    'button',
    {
      type: 'button',
      id: 'rotate-webhook-secret',
      class: 'danger',
      onclick: async () => {
        if (!(await confirmDialog(`Rotate the webhook secret of ${slug}? The current one keeps signing alongside for 24 hours.`, 'Rotate'))) return;
        button.disabled = true;
        try {
          const r = await api('POST', `/v1/sites/${seg(slug)}/webhook-secret`);
          fill(out,
            shownOnce('new-webhook-secret', r.webhook_secret || r.webhook_public_key || '', "The new secret, for WEBHOOK_SECRET in the site's settings. Shown only now."),
            h('p', { class: 'hint', id: 'previous-valid' }, 'The previous secret signs too until ', time(r.previous_valid_until), '.'),
          );
          say('Webhook secret rotated.');
        } catch (e) {
          failed(generation, e);
        } finally {
          button.disabled = false;
        }
      },
    },
    'Rotate the webhook secret…',
  );
  return section('webhook-secret', 'Webhook secret', h('p', { class: 'hint' }, 'Signs the pushes to the site; its agent verifies them with WEBHOOK_SECRET.'), button, out);
}

export function renderSiteEdit(slug) {
  const gen = generation;
  const admin = identity().role === 'admin';
  document.title = `headcount · ${slug} · change`;
  const body = h('div', { id: 'site-edit' }, h('p', { class: 'loading' }, 'Loading…'));
  const crumbs = admin ? [{ text: 'Provider', href: '#/' }] : [{ text: 'Tenant', href: '#/' }];
  crumbs.push({ text: `Site ${slug}`, href: `#/sites/${seg(slug)}` }, { text: 'Change' });
  frame(crumbs, h('h1', {}, `Site ${slug}`), body);
  (async () => {
    try {
      const site = await get(`/v1/sites/${seg(slug)}`);
      const plans = admin ? (await get('/v1/plans?limit=500')).items : [await get(`/v1/plans/${seg(site.plan)}`)];
      if (gen !== generation) return;
      const sold = site.provider_session_limit ?? plans[0].session_limit;
      const effective = h('div', { id: 'effective-box' }, effectiveList(site));
      const meta = h('p', { class: 'meta', id: 'site-meta' });
      const showMeta = (s) => fill(meta, `${s.name} · tenant ${s.tenant} · last changed `, time(s.updated_at), s.webhook_disabled_at ? h('span', { class: 'badge full' }, ' pushes disabled (410 from the site)') : null);
      showMeta(site);
      const edit = managedForm({
        id: 'site-form',
        specs: admin ? providerSiteFields([], plans) : tenantSiteFields(sold),
        values: siteValues(site, admin),
        mode: 'edit',
        submitLabel: 'Save',
        submit: async (patch) => {
          const s = await api('PATCH', `/v1/sites/${seg(slug)}`, patch);
          edit.reset(siteValues(s, admin));
          fill(effective, effectiveList(s));
          showMeta(s);
          say(`Site ${slug} saved (config version ${s.config_version}).`);
        },
      });
      fill(
        body,
        meta,
        actionLinks('site-links', [[`#/sites/${seg(slug)}`, 'Sessions and usage']]),
        section(
          'site-change',
          admin ? 'Change the site and its overrides' : 'What a tenant may change',
          admin ? null : h('p', { class: 'hint', id: 'tenant-may' }, 'The webhook URL, your own limit up to the one sold, and the refusal message. The other rules are what the provider sold.'),
          edit.form,
        ),
        section('site-runs', 'What the site runs with', effective),
        rotateSection(slug),
        siteTokenSection(slug, admin),
      );
    } catch (e) {
      if (gen !== generation) return;
      if (e instanceof ApiError && e.status === 404) return fill(body, notFound(`site ${slug}`));
      failed(gen, e);
    }
  })();
}
