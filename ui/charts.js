// The site page's pictures, inline SVG built with DOM APIs: the gauge of how full the
// site is now, and the usage history over a range.

import { h, svg } from './dom.js';
import { dateTimeFormat, duration, fmt, pct, plural, utc } from './format.js';
import { fullness } from './widgets.js';

// ---- gauge

function arcPoint(cx, cy, r, f) {
  const a = Math.PI * (1 - f);
  return [cx + r * Math.cos(a), cy - r * Math.sin(a)];
}

export function gauge(u, site) {
  const f = u.session_limit > 0 ? Math.min(u.counted / u.session_limit, 1) : 1;
  const [cx, cy, r] = [100, 100, 80];
  const [x0, y0] = arcPoint(cx, cy, r, 0);
  const [x1, y1] = arcPoint(cx, cy, r, f);
  const [xe, ye] = arcPoint(cx, cy, r, 1);
  const level = f >= 1 ? 'full' : f >= 0.8 ? 'near' : 'ok';
  const mode = site && site.effective ? site.effective.count_mode : 'active';
  const chart = svg(
    'svg',
    { viewBox: '0 0 200 120', class: 'gauge', role: 'img', 'aria-label': `${u.counted} counted of a limit of ${u.session_limit}` },
    svg('path', { d: `M${x0},${y0} A${r},${r} 0 0 1 ${xe},${ye}`, class: 'track' }),
    f > 0 ? svg('path', { d: `M${x0},${y0} A${r},${r} 0 0 1 ${x1.toFixed(2)},${y1.toFixed(2)}`, class: `fill ${level}` }) : null,
    svg('text', { x: cx, y: cy - 12, class: 'big', 'text-anchor': 'middle', id: 'gauge-counted' }, String(u.counted)),
    svg('text', { x: cx, y: cy + 12, class: 'small', 'text-anchor': 'middle' }, 'of ', svg('tspan', { id: 'gauge-limit' }, String(u.session_limit))),
  );
  const stat = (label, value, id, hint) => h('div', { class: 'stat' }, h('dt', {}, label), h('dd', { id }, fmt(value)), hint ? h('dd', { class: 'hint' }, hint) : null);
  return h(
    'div',
    { class: 'gauge-box' },
    h('div', {}, chart, h('p', { class: 'gauge-caption' }, `${pct(u.utilization)} full · counting ${mode === 'live' ? 'live sessions only' : 'every active session'}`, ' ', fullness(u.counted, u.session_limit))),
    h(
      'dl',
      { class: 'stats' },
      stat('counted', u.counted, 'stat-counted', `against the limit of ${fmt(u.session_limit)}`),
      stat('active', u.active, 'gauge-active', 'not ended, not expired'),
      stat('live', u.live, 'gauge-live', 'used within the idle timeout'),
      stat('dangling', u.dangling, 'gauge-dangling', site ? `idle longer than ${duration(site.effective.idle_timeout_seconds)}` : 'idle too long'),
      stat('refused', u.denied_last_24h, 'gauge-denied', 'admissions in the last 24 h'),
    ),
  );
}

// ---- history chart

// The ranges the history offers, and the step the API sums each one by.
export const RANGES = {
  day: { label: 'Last day', step: 'minute', span: 86400e3 },
  week: { label: 'Last week', step: 'hour', span: 7 * 86400e3 },
  month: { label: 'Last month', step: 'day', span: 30 * 86400e3 },
};

function niceStep(max) {
  const raw = max / 5;
  const mag = 10 ** Math.floor(Math.log10(Math.max(raw, 1)));
  return [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || mag * 10;
}

export function historyChart(hist, rangeKey) {
  const pts = hist.points;
  if (!pts.length) return h('p', { class: 'empty' }, 'No sessions and no refusals in this range.');
  const [W, H, L, R, T, B] = [800, 260, 44, 16, 16, 36];
  const from = Date.parse(hist.from);
  const to = Date.parse(hist.to);
  const x = (ms) => L + ((ms - from) / Math.max(to - from, 1)) * (W - L - R);
  const top = Math.max(1, ...pts.map((p) => Math.max(p.max_active, p.session_limit)));
  const step = niceStep(top * 1.1);
  const ymax = Math.ceil((top * 1.1) / step) * step;
  const y = (v) => T + (1 - v / ymax) * (H - T - B);
  const kids = [];
  for (let v = 0; v <= ymax; v += step) {
    kids.push(svg('line', { x1: L, x2: W - R, y1: y(v), y2: y(v), class: 'grid' }));
    kids.push(svg('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'tick' }, fmt(v)));
  }
  // Ticks in the browser's zone, the UTC instant on hover. The last day spans two
  // dates, so its ticks carry the date as well as the time.
  const tickFormat =
    rangeKey === 'day'
      ? new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' })
      : new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
  for (let i = 0; i <= 6; i++) {
    const ms = from + ((to - from) * i) / 6;
    const d = new Date(ms);
    kids.push(svg('line', { x1: x(ms), x2: x(ms), y1: H - B, y2: H - B + 4, class: 'axis' }));
    kids.push(
      svg('text', { x: x(ms), y: H - B + 18, 'text-anchor': i === 0 ? 'start' : i === 6 ? 'end' : 'middle', class: 'tick' }, svg('title', {}, utc(d)), tickFormat.format(d)),
    );
  }
  kids.push(svg('line', { x1: L, x2: W - R, y1: H - B, y2: H - B, class: 'axis' }));
  const stepMs = { minute: 60e3, hour: 3600e3, day: 86400e3 }[hist.step] || 60e3;
  // Every bucket of the range: one without a point had no session open and no
  // refusal, so its counts are 0; the limit carries on from the bucket before.
  const byAt = new Map(pts.map((p) => [Date.parse(p.at), p]));
  const buckets = [];
  let limit = pts[0].session_limit;
  for (let at = from - (from % stepMs); at < to; at += stepMs) {
    const p = byAt.get(at);
    if (p) limit = p.session_limit;
    buckets.push({ at, p, limit });
  }
  const line = (key, cls, name) => {
    const d = buckets.map((b, i) => `${i ? 'L' : 'M'}${x(Math.min(b.at + stepMs / 2, to)).toFixed(1)},${y(b.p ? b.p[key] : 0).toFixed(1)}`).join('');
    return svg('path', { d, class: `series ${cls}` }, svg('title', {}, name));
  };
  // The limit as a step line: it may change within the range.
  const limitPath = buckets
    .map((b, i) => {
      const x0 = x(Math.max(b.at, from)).toFixed(1);
      const x1 = x(Math.min(b.at + stepMs, to)).toFixed(1);
      return `${i ? 'L' : 'M'}${x0},${y(b.limit).toFixed(1)}L${x1},${y(b.limit).toFixed(1)}`;
    })
    .join('');
  kids.push(svg('path', { d: limitPath, class: 'series limit' }, svg('title', {}, 'sessions limit')));
  kids.push(line('max_active', 'active', 'most active sessions'));
  kids.push(line('max_live', 'live', 'most live sessions'));
  kids.push(line('max_dangling', 'dangling', 'most dangling sessions'));
  let refusals = 0;
  for (const p of pts) {
    if (!p.denied) continue;
    refusals += p.denied;
    const cx = x(Date.parse(p.at) + stepMs / 2);
    const at = new Date(p.at);
    kids.push(
      svg(
        'path',
        { d: `M${cx.toFixed(1)},${T + 10}l-5,-9h10z`, class: 'refusal', 'data-denied': String(p.denied) },
        svg('title', {}, `${plural(p.denied, 'refusal', 'refusals')} from ${dateTimeFormat.format(at)} (${utc(at)})`),
      ),
    );
    kids.push(svg('line', { x1: cx, x2: cx, y1: T + 10, y2: H - B, class: 'refusal-line' }));
  }
  const chart = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'history', role: 'img', 'aria-label': `usage history, ${RANGES[rangeKey].label.toLowerCase()}` }, kids);
  const legend = h(
    'ul',
    { class: 'legend' },
    h('li', { class: 'active' }, 'most active'),
    h('li', { class: 'live' }, 'most live'),
    h('li', { class: 'dangling' }, 'most dangling'),
    h('li', { class: 'limit' }, 'limit'),
    h('li', { class: 'refusal' }, `▼ refusals (${fmt(refusals)} in range)`),
  );
  return h('div', {}, h('div', { class: 'scroll' }, chart), legend);
}
