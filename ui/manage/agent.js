// What a new site's agent needs, shown once: the `HEADCOUNT = {…}` block for the
// Django site's settings.py, exactly as `headcount site create` prints it (same
// comments, keys in the same order, values as JSON strings, which Python reads as
// string literals), where pushes go, and then the wait for the agent's first report.
//
// No field of the site changes when its agent first reports, so the first report is
// seen as the site's first session (of any state: events and admissions make one)
// or its first refusal the site reported.

import { get, seg } from '../api.js';
import { fill, h } from '../dom.js';
import { dateTimeFormat, time } from '../format.js';
import { every, failed, generation } from '../page.js';

// Where the agent answers pushes when its URLs are included under `headcount/`.
export const WEBHOOK_PATH = '/headcount/webhook/';
export const MODES = [
  ['local', 'local: refuse sign-ins by the pushed limit'],
  ['off', 'off: report only'],
  ['central', 'central: ask headcount at each sign-in'],
];
const KEYS = ['URL', 'SITE', 'TOKEN', 'WEBHOOK_SECRET', 'MODE'];
const AGENT_POLL_MS = 3000;

// The agent's settings, keys in the block's order.
export function agentSettings(url, site, token, mode) {
  return {
    URL: url.replace(/\/+$/, ''),
    SITE: site.slug,
    TOKEN: token,
    WEBHOOK_SECRET: site.webhook_secret ?? null,
    MODE: mode,
  };
}

// The block to paste into the site's settings.py, with what the site must serve as
// Python comments, so that the whole of it may be pasted.
export function settingsBlock(site, settings) {
  const limit = site.effective ? JSON.stringify(site.effective.session_limit ?? null) : 'null';
  let out =
    `# Site ${site.slug} created (tenant ${site.tenant || '?'}, plan ${site.plan || '?'}, limit ${limit}).\n` +
    "# Paste into the site's settings.py; the token and the webhook secret are shown only now.\n" +
    'HEADCOUNT = {\n';
  for (const key of KEYS) out += `    ${JSON.stringify(key)}: ${JSON.stringify(settings[key] ?? null)},\n`;
  out += '}\n';
  const include = '#     urlpatterns += [path("headcount/", include("headcount_django.urls"))]\n';
  if (site.webhook_url) {
    out +=
      "# headcount pushes limit changes and kills to the site's webhook_url\n" +
      `#     ${site.webhook_url}\n` +
      `# which the agent serves (at https://<the site>${WEBHOOK_PATH}) once the site's root URL conf has\n` +
      include;
    if (!site.webhook_url.endsWith(WEBHOOK_PATH)) out += `# Note: that URL does not end in ${WEBHOOK_PATH}, where the agent answers.\n`;
  } else {
    out +=
      "# No webhook_url yet, so headcount pushes nothing to the site. Once the site's root URL conf has\n" +
      include +
      `# set it: headcount site update ${site.slug} --webhook-url https://<the site>${WEBHOOK_PATH}\n`;
  }
  return out;
}

// Where pushes go, or what to set: the agent answers at …/headcount/webhook/.
export function webhookAdvice(url) {
  if (!url) {
    return h(
      'p',
      { id: 'webhook-advice' },
      'No webhook_url yet, so headcount pushes nothing to the site. Once the agent is installed, set it to ',
      h('code', {}, `https://<the site>${WEBHOOK_PATH}`),
      '.',
    );
  }
  return h(
    'p',
    { id: 'webhook-advice' },
    'Pushes (limit changes, kills) go to ',
    h('code', { id: 'webhook-url' }, url),
    url.endsWith(WEBHOOK_PATH) ? '.' : h('span', { class: 'warn' }, ` — it does not end in ${WEBHOOK_PATH}, where the agent answers.`),
  );
}

// Watches the site until its agent first reports, every few seconds while the page
// is shown; then says when it reported.
export function agentWatch(slug) {
  const gen = generation;
  const base = `/v1/sites/${seg(slug)}`;
  const checked = h('span', { class: 'sub', id: 'agent-checked' });
  const status = h('p', { id: 'agent-status', class: 'waiting', 'data-state': 'waiting' }, h('span', { class: 'pulse', 'aria-hidden': 'true' }), 'Waiting for the agent… ', checked);
  const element = h(
    'div',
    { id: 'agent-watch', role: 'status', 'aria-live': 'polite' },
    status,
    h('p', { class: 'hint' }, `Checked every ${AGENT_POLL_MS / 1000} s: the first session or refusal the agent reports.`),
  );
  let done = false;
  const check = async () => {
    if (done) return;
    try {
      const [sessions, denials] = await Promise.all([get(`${base}/sessions?state=all&limit=1`), get(`${base}/denials?limit=1`)]);
      if (gen !== generation || done) return;
      const session = sessions.items[0];
      const denial = denials.items[0];
      if (!session && !denial) {
        checked.textContent = `(checked ${dateTimeFormat.format(new Date())})`;
        return;
      }
      done = true;
      const at = session ? session.last_activity_at : denial.at;
      status.className = 'reported';
      status.dataset.state = 'reported';
      fill(
        status,
        'The agent reported at ',
        time(at),
        session ? ' (a session). ' : ' (a refusal). ',
        h('a', { href: `#/sites/${seg(slug)}`, id: 'agent-site-link' }, 'Open the site'),
      );
    } catch (e) {
      failed(gen, e);
    }
  };
  check();
  every(AGENT_POLL_MS, check);
  return element;
}
