// The management forms: each field described once (its name as the API spells it, a
// label, a kind), read into the API's JSON, and the problem of a refused write shown
// next to the form and beside the fields it names. A refused form keeps what was
// typed; only a write that went through changes what the form shows.

import { ApiError } from '../api.js';
import { h } from '../dom.js';
import { say } from '../page.js';

// Kinds: text, url, email, int, textarea, select (`options`: [value, label] pairs,
// `blank`: the label of "no value"), roles (a comma-separated list).
// `empty`: what an emptied field means in a change (default `null`: cleared, or the
// plan's value for an override); `create: false` / `edit: false` leave a field out.

const show = (v) => (v === null || v === undefined ? '' : Array.isArray(v) ? v.join(', ') : String(v));
const same = (a, b) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);

function input(spec, id, value) {
  const common = { id, name: spec.name, 'aria-describedby': `${id}-error${spec.hint ? ` ${id}-hint` : ''}` };
  if (spec.kind === 'select') {
    const options = spec.blank !== undefined ? [['', spec.blank], ...spec.options] : spec.options;
    const sel = h('select', common, options.map(([v, label]) => h('option', { value: v }, label)));
    sel.value = show(value);
    return sel;
  }
  if (spec.kind === 'textarea') return h('textarea', { ...common, rows: '2', placeholder: spec.placeholder }, show(value));
  const type = { url: 'url', email: 'email' }[spec.kind] || 'text';
  return h('input', {
    ...common,
    type,
    value: show(value),
    inputmode: spec.kind === 'int' ? 'numeric' : null,
    autocomplete: 'off',
    spellcheck: 'false',
    placeholder: spec.placeholder,
  });
}

// What a field holds, as the API takes it: [value] or [undefined, what is wrong].
function read(spec, el) {
  const raw = el.value;
  const t = raw.trim();
  if (!t) return [spec.empty === undefined ? null : spec.empty];
  if (spec.kind === 'int') return /^-?\d+$/.test(t) ? [Number(t)] : [undefined, 'must be a whole number'];
  if (spec.kind === 'roles') return [t.split(',').map((r) => r.trim()).filter(Boolean)];
  if (spec.kind === 'textarea') return [raw];
  return [t];
}

// The API names a field as a JSON path (`reserved_roles[2]`); the form by its name.
const baseName = (path) => String(path).split(/[.[]/)[0];

// A 403 that lists the fields a role may not change ends in "…, not a, b".
function refusedFields(detail) {
  const m = /\bnot ([a-z_]+(?:, [a-z_]+)*)\s*$/.exec(detail || '');
  return m ? m[1].split(', ') : [];
}

// A form of `specs` (fields, or groups `{group, hint, fields, open}`) showing
// `values`. Mode `create` sends the fields that are filled; mode `edit` sends those
// that differ from `values`, an emptied one as its `empty`. `submit(body)` makes
// the call; what it throws is shown on the form.
export function managedForm({ id, specs, values, mode, submitLabel, submit, extra }) {
  const fields = new Map();
  let before = { ...(values || {}) };

  const fieldEl = (spec) => {
    if ((mode === 'create' && spec.create === false) || (mode === 'edit' && spec.edit === false)) return null;
    const fid = `${id}-${spec.name}`;
    const el = input(spec, fid, before[spec.name]);
    const error = h('p', { class: 'field-error', id: `${fid}-error`, 'data-for': spec.name, hidden: true });
    fields.set(spec.name, { spec, el, error });
    return h(
      'div',
      { class: 'field', 'data-field': spec.name },
      h('label', { for: fid }, spec.label, spec.required ? h('span', { class: 'req', 'aria-hidden': 'true' }, ' *') : null),
      el,
      spec.hint ? h('p', { class: 'hint', id: `${fid}-hint` }, spec.hint) : null,
      error,
    );
  };
  const parts = specs.map((s) =>
    s.group
      ? h(
          'details',
          { class: 'group', open: s.open ? true : null, 'data-group': s.id || null },
          h('summary', {}, s.group),
          s.hint ? h('p', { class: 'hint' }, s.hint) : null,
          h('div', { class: 'fields' }, s.fields.map(fieldEl)),
        )
      : fieldEl(s),
  );

  const problem = h('div', { class: 'form-error', role: 'alert', hidden: true });
  const button = h('button', { type: 'submit', class: 'primary' }, submitLabel);

  const clear = () => {
    problem.hidden = true;
    problem.replaceChildren();
    for (const f of fields.values()) {
      f.error.hidden = true;
      f.error.textContent = '';
      f.el.removeAttribute('aria-invalid');
    }
  };
  const mark = (name, message) => {
    const f = fields.get(baseName(name));
    if (!f) return false;
    f.error.textContent = f.error.textContent ? `${f.error.textContent}; ${message}` : message;
    f.error.hidden = false;
    f.el.setAttribute('aria-invalid', 'true');
    // A field in a closed group is shown.
    const group = f.el.closest('details');
    if (group) group.open = true;
    return true;
  };
  const fail = (e) => {
    clear();
    const detail = e instanceof Error ? e.message : String(e);
    problem.append(h('strong', {}, e instanceof ApiError ? `Refused (${e.status}): ` : 'Not sent: '), detail);
    problem.hidden = false;
    const named = e instanceof ApiError ? e.errors.map((x) => [x.field, x.message]) : [];
    if (e instanceof ApiError && !named.length && e.status === 403) {
      for (const f of refusedFields(detail)) named.push([f, 'not yours to change']);
    }
    const shown = named.filter(([f, m]) => mark(f, m));
    const first = shown.length ? fields.get(baseName(shown[0][0])).el : null;
    (first || problem).scrollIntoView({ block: 'center' });
    if (first) first.focus();
  };

  // The body to send, or the problems of the fields that cannot be read.
  const collect = () => {
    const body = {};
    const bad = [];
    for (const [name, { spec, el }] of fields) {
      const [v, wrong] = read(spec, el);
      if (wrong) bad.push([name, wrong]);
      else if (mode === 'create' ? el.value.trim() !== '' : !same(v, before[name])) body[name] = v;
    }
    return { body, bad };
  };

  let busy = false;
  const form = h(
    'form',
    {
      id,
      class: 'manage',
      novalidate: true,
      onsubmit: async (ev) => {
        ev.preventDefault();
        if (busy) return;
        clear();
        const { body, bad } = collect();
        if (bad.length) {
          problem.append(h('strong', {}, 'Not sent: '), 'some fields cannot be read.');
          problem.hidden = false;
          for (const [name, m] of bad) mark(name, m);
          return;
        }
        if (mode === 'edit' && !Object.keys(body).length) return say('Nothing changed.');
        busy = true;
        button.disabled = true;
        try {
          await submit(body);
        } catch (e) {
          // A refused token signs out; the sign-in page replaces this form.
          if (!(e instanceof ApiError && e.status === 401)) fail(e);
        } finally {
          busy = false;
          button.disabled = false;
        }
      },
    },
    problem,
    parts,
    extra || null,
    h('div', { class: 'form-actions' }, button),
  );

  // After a change went through: the form shows, and compares with, what was saved.
  const reset = (saved) => {
    before = { ...saved };
    for (const [name, { el }] of fields) el.value = show(before[name]);
  };
  return { form, fail, reset, field: (name) => fields.get(name)?.el };
}

// A secret or token shown once, with a button that copies it.
export function shownOnce(id, text, note) {
  const pre = h('pre', { id, class: 'once', tabindex: '0' }, text);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(pre.textContent);
      say('Copied.');
    } catch {
      // No clipboard here (another tab has the focus, or it is refused): select it.
      const range = document.createRange();
      range.selectNodeContents(pre);
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      say('Selected: press Ctrl+C to copy.');
    }
  };
  return h(
    'div',
    { class: 'shown-once' },
    h('p', { class: 'notice' }, note || 'Shown only now: copy it before you leave this page.'),
    pre,
    h('button', { type: 'button', class: 'copy', 'data-copy': id, onclick: copy }, 'Copy'),
  );
}
