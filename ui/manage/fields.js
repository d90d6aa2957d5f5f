// The fields of plans, tenants and sites as the management forms show them, named
// as the API names them. A site's override left empty is the plan's value; a plan
// has a value for each of them.

const COUNT_MODES = [
  ['active', 'active: every open session counts'],
  ['live', 'live: dangling sessions do not count'],
];
const OVER_LIMITS = [
  ['reject', 'reject the sign-in'],
  ['evict_dangling', 'end a dangling session to make room'],
  ['allow_overage', 'allow it, billed as overage'],
];
const PER_USER_OVER = [
  ['reject', 'reject the sign-in'],
  ['replace_oldest', "end the user's most idle session"],
];

const SLUG_HINT = 'Lower-case letters, digits and dashes, starting with a letter or digit; it cannot change later.';

// The rules a plan sets and a site may override. `site`: empty means the plan's.
export function limitFields(site) {
  const blank = site ? "the plan's" : undefined;
  const roles = site ? {} : { empty: [] };
  return [
    { name: 'count_mode', label: 'Which sessions count', kind: 'select', options: COUNT_MODES, blank },
    { name: 'over_limit', label: 'At the limit', kind: 'select', options: OVER_LIMITS, blank },
    { name: 'idle_timeout_seconds', label: 'Dangling after (seconds idle)', kind: 'int', hint: '60 to 31,536,000.' },
    { name: 'session_ttl_seconds', label: 'Sessions expire after (seconds)', kind: 'int', hint: '60 to 31,536,000.' },
    { name: 'limit_message', label: 'Message a refused user reads', kind: 'textarea' },
    { name: 'reserved_slots', label: 'Places reserved for some roles', kind: 'int' },
    { name: 'reserved_roles', label: 'Roles that may use the reserved places', kind: 'roles', hint: 'Comma-separated, e.g. admin, staff.', ...roles },
    { name: 'per_user_limit', label: 'Most sessions one user may hold', kind: 'int', hint: site ? "Empty: the plan's." : 'Empty: no cap.' },
    { name: 'per_user_over_limit', label: 'When a user holds that many', kind: 'select', options: PER_USER_OVER, blank },
    { name: 'exempt_roles', label: 'Roles that never count', kind: 'roles', hint: 'Comma-separated; listed but not counted.', ...roles },
  ];
}

export function planFields() {
  return [
    { name: 'code', label: 'Code', kind: 'text', required: true, edit: false, hint: SLUG_HINT },
    { name: 'name', label: 'Name', kind: 'text', required: true },
    { name: 'session_limit', label: 'Session limit', kind: 'int', required: true },
    {
      group: 'Prices',
      open: true,
      fields: [
        { name: 'monthly_price_cents', label: 'Monthly price (cents)', kind: 'int' },
        { name: 'currency', label: 'Currency', kind: 'text', placeholder: 'EUR', hint: 'ISO 4217, three capitals.' },
        { name: 'overage_unit_price_cents', label: 'Price of a session over the limit (cents)', kind: 'int' },
        { name: 'overage_percent', label: 'Overage allowed (percent of the limit)', kind: 'int' },
      ],
    },
    { group: 'Rules', id: 'rules', hint: 'Left empty on a new plan: the default.', fields: limitFields(false) },
  ];
}

export function tenantFields(admin) {
  return [
    { name: 'slug', label: 'Slug', kind: 'text', required: true, edit: false, hint: SLUG_HINT },
    admin ? { name: 'name', label: 'Name', kind: 'text', required: true } : null,
    { name: 'billing_email', label: 'Billing e-mail', kind: 'email' },
    { name: 'notify_url', label: 'Alert URL (notify_url)', kind: 'url', hint: 'Receives site.utilization_high and site.limit_reached, signed with the alert secret.' },
    admin ? { name: 'pooled_session_limit', label: 'Pooled session limit', kind: 'int', hint: "Counted sessions summed over the tenant's sites may not exceed it. Empty: no pool." } : null,
  ].filter(Boolean);
}

// A site as the provider writes it: who owns it, its plan and the provider's
// overrides. The provider's `session_limit` is the limit sold for this site.
export function providerSiteFields(tenants, plans) {
  return [
    { name: 'slug', label: 'Slug', kind: 'text', required: true, edit: false, hint: SLUG_HINT },
    { name: 'name', label: 'Name', kind: 'text', hint: 'Left empty on a new site: its slug.' },
    { name: 'tenant', label: 'Tenant', kind: 'select', required: true, edit: false, options: tenants.map((t) => [t.slug, `${t.slug} (${t.name})`]), blank: 'choose…' },
    { name: 'plan', label: 'Plan', kind: 'select', required: true, options: plans.map((p) => [p.code, `${p.code}: ${p.name}, ${p.session_limit} sessions`]), blank: 'choose…' },
    { name: 'webhook_url', label: 'Webhook URL', kind: 'url', placeholder: 'https://the-site.example/headcount/webhook/', hint: 'Where pushes go: the agent answers at /headcount/webhook/. Empty: no pushes.' },
    {
      group: 'Provider overrides',
      id: 'overrides',
      hint: "Left empty: the plan's value.",
      fields: [
        { name: 'session_limit', label: 'Session limit sold for this site', kind: 'int', hint: "Replaces the plan's limit, upwards too; the tenant may only lower it." },
        ...limitFields(true),
      ],
    },
  ];
}

// What a tenant may change on its own site (the API refuses the rest).
export function tenantSiteFields(sold) {
  return [
    { name: 'webhook_url', label: 'Webhook URL', kind: 'url', placeholder: 'https://the-site.example/headcount/webhook/', hint: 'Where pushes go: the agent answers at /headcount/webhook/.' },
    { name: 'session_limit', label: 'Your own session limit', kind: 'int', hint: `At most the ${sold} sold. Empty: all ${sold}.` },
    { name: 'limit_message', label: 'Message a refused user reads', kind: 'textarea', hint: "Empty: the plan's." },
  ];
}

// The form's values from a site as the API shows it, for the provider or a tenant.
export function siteValues(site, admin) {
  const o = site.overrides || {};
  if (!admin) return { webhook_url: site.webhook_url, session_limit: o.session_limit, limit_message: o.limit_message };
  return { ...o, slug: site.slug, name: site.name, tenant: site.tenant, plan: site.plan, webhook_url: site.webhook_url, session_limit: site.provider_session_limit };
}
