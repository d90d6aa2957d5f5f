//! The usage history as a self-contained SVG chart: most active, live and dangling
//! sessions per bucket as step lines against the limit, refusals marked, time on a
//! UTC axis labelled the way a person reads it ("Dec 2 14:00"). Pure rendering.

use std::fmt::Write as _;

use chrono::{Datelike, TimeZone, Utc};

use super::history::{Buckets, Point};
use crate::domain::Millis;

/// What to draw: one site's points over `[from, to)` (`from` at a bucket start).
#[derive(Debug, Clone, Copy)]
pub struct Chart<'a> {
    pub site: &'a str,
    pub from: Millis,
    pub to: Millis,
    pub step_ms: i64,
    pub points: &'a [Point],
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 40.0;
const PLOT_W: f64 = WIDTH - LEFT - RIGHT;
const PLOT_H: f64 = HEIGHT - TOP - BOTTOM;
const BASE: f64 = TOP + PLOT_H;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// The most time labels on the axis: about 90 px each, room for "Dec 12 14:00".
const MAX_TICKS: i64 = 6;

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn step_name(step_ms: i64) -> &'static str {
    match step_ms {
        DAY => "day",
        HOUR => "hour",
        _ => "minute",
    }
}

/// Maps instants and counts to the plot area.
struct Scale {
    from: Millis,
    to: Millis,
    y_max: f64,
}

impl Scale {
    fn new(c: &Chart<'_>) -> Self {
        let top = c
            .points
            .iter()
            .map(|p| p.max_active.max(p.session_limit))
            .max()
            .unwrap_or(0)
            .max(1);
        Self {
            from: c.from,
            to: c.to.max(c.from + 1),
            // Head room above the highest value so that the limit line is never on
            // the frame.
            y_max: (top as f64 * 1.15).ceil().max(1.0),
        }
    }

    fn x(&self, t: Millis) -> f64 {
        let t = t.clamp(self.from, self.to);
        LEFT + (t - self.from) as f64 / (self.to - self.from) as f64 * PLOT_W
    }

    fn y(&self, v: i64) -> f64 {
        BASE - v as f64 / self.y_max * PLOT_H
    }
}

/// The SVG document.
pub fn svg(c: &Chart<'_>) -> String {
    let s = Scale::new(c);
    let site = xml_escape(c.site);
    let step = step_name(c.step_ms);
    let mut svg = String::with_capacity(8192);
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11"><title>{site} sessions per {step}</title><rect width="100%" height="100%" fill="#ffffff"/><text x="{LEFT}" y="16" font-size="13" fill="#222">{site} — sessions per {step}</text>"##
    );
    count_axis(&mut svg, &s);
    time_axis(&mut svg, &s, c.step_ms);
    if c.points.is_empty() {
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#888">no sessions or refusals in this range</text>"##,
            LEFT + PLOT_W / 2.0,
            TOP + PLOT_H / 2.0
        );
    } else {
        let b = Buckets::new(c.from, c.to, c.step_ms);
        let limits = limit_per_bucket(c.points, &b);
        let dangling = values(c.points, &b, |p| p.max_dangling);
        let live = values(c.points, &b, |p| p.max_live);
        let active = values(c.points, &b, |p| p.max_active);
        let dashed = r#" stroke-dasharray="6 4""#;
        // The most important line last, on top.
        for (name, color, width, dash, values) in [
            ("session limit", "#d62728", 1.5, dashed, limits),
            ("dangling", "#ff7f0e", 1.2, "", dangling),
            ("live", "#2ca02c", 1.2, "", live),
            ("active", "#1f77b4", 1.8, "", active),
        ] {
            let _ = write!(
                svg,
                r##"<path d="{}" fill="none" stroke="{color}" stroke-width="{width}"{dash}><title>{name}</title></path>"##,
                steps(&s, &b, &values)
            );
        }
        refusals(&mut svg, &s, c);
    }
    legend(&mut svg);
    svg.push_str("</svg>\n");
    svg
}

/// Three horizontal guides with their counts, and the vertical axis.
fn count_axis(svg: &mut String, s: &Scale) {
    for v in [0, (s.y_max / 2.0).round() as i64, s.y_max as i64] {
        let yy = s.y(v);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">{v}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            yy + 4.0
        );
    }
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{BASE}" stroke="#888"/>"##
    );
}

/// The time axis: ticks at whole UTC minutes, hours or days, labelled with the
/// date (and the time of day unless the step is a day), and "UTC" said once.
fn time_axis(svg: &mut String, s: &Scale, step_ms: i64) {
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="{BASE}" x2="{:.1}" y2="{BASE}" stroke="#888"/>"##,
        WIDTH - RIGHT
    );
    let ticks = ticks(s.from, s.to, step_ms);
    let with_year = year_of(s.from) != year_of(s.to - 1);
    for (i, &t) in ticks.iter().enumerate() {
        let xx = s.x(t);
        // The outermost labels stay inside the frame.
        let anchor = match (i, xx) {
            (0, xx) if xx < LEFT + 40.0 => "start",
            (_, xx) if xx > WIDTH - RIGHT - 40.0 => "end",
            _ => "middle",
        };
        let _ = write!(
            svg,
            r##"<line x1="{xx:.1}" y1="{BASE}" x2="{xx:.1}" y2="{:.1}" stroke="#888"/><text x="{xx:.1}" y="{:.1}" text-anchor="{anchor}" fill="#555">{}</text>"##,
            BASE + 4.0,
            BASE + 16.0,
            label(t, step_ms, with_year)
        );
    }
    let _ = write!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">time (UTC)</text>"##,
        WIDTH - RIGHT,
        HEIGHT - 8.0
    );
}

fn year_of(t: Millis) -> i32 {
    Utc.timestamp_millis_opt(t).single().map_or(0, |d| d.year())
}

/// "Dec 2 14:00", or "Dec 2" for day steps; the year too when the range spans two.
fn label(t: Millis, step_ms: i64, with_year: bool) -> String {
    let Some(d) = Utc.timestamp_millis_opt(t).single() else {
        return String::new();
    };
    let format = match (step_ms >= DAY, with_year) {
        (true, false) => "%b %-d",
        (true, true) => "%b %-d %Y",
        (false, false) => "%b %-d %H:%M",
        (false, true) => "%b %-d %Y %H:%M",
    };
    d.format(format).to_string()
}

/// Tick instants in `[from, to]`: multiples of the smallest round interval (never
/// shorter than the step) that gives at most [`MAX_TICKS`] intervals.
fn ticks(from: Millis, to: Millis, step_ms: i64) -> Vec<Millis> {
    const ROUND: [i64; 19] = [
        MINUTE,
        2 * MINUTE,
        5 * MINUTE,
        10 * MINUTE,
        15 * MINUTE,
        30 * MINUTE,
        HOUR,
        2 * HOUR,
        3 * HOUR,
        6 * HOUR,
        12 * HOUR,
        DAY,
        2 * DAY,
        7 * DAY,
        14 * DAY,
        30 * DAY,
        90 * DAY,
        180 * DAY,
        365 * DAY,
    ];
    let span = (to - from).max(1);
    let every = ROUND
        .into_iter()
        .find(|&i| i >= step_ms && span / i <= MAX_TICKS)
        .unwrap_or_else(|| (span / MAX_TICKS + DAY - 1) / DAY * DAY);
    // Weeks and longer start on a Monday (1970-01-05), not on the epoch's Thursday.
    let origin = if every >= 7 * DAY { 4 * DAY } else { 0 };
    let first = from + (every - (from - origin).rem_euclid(every)) % every;
    (0..)
        .map(|n| first + n * every)
        .take_while(|&t| t <= to)
        .collect()
}

/// A value per bucket; a bucket without a point had no session open (0).
fn values(points: &[Point], b: &Buckets, value: impl Fn(&Point) -> i64) -> Vec<i64> {
    let mut out = vec![0; b.len()];
    for p in points {
        if let Some(k) = b.index(p.at) {
            out[k] = value(p);
        }
    }
    out
}

/// The limit per bucket; buckets without a point keep the limit of the one before
/// (the first point's before it), so the limit line runs through quiet times.
fn limit_per_bucket(points: &[Point], b: &Buckets) -> Vec<i64> {
    let mut out = vec![None; b.len()];
    for p in points {
        if let Some(k) = b.index(p.at) {
            out[k] = Some(p.session_limit);
        }
    }
    let mut last = points.first().map_or(0, |p| p.session_limit);
    out.into_iter()
        .map(|v| {
            last = v.unwrap_or(last);
            last
        })
        .collect()
}

/// A step line over the buckets, one segment per run of equal values.
fn steps(s: &Scale, b: &Buckets, values: &[i64]) -> String {
    let mut d = String::new();
    let mut prev: Option<i64> = None;
    for (k, &v) in values.iter().enumerate() {
        let x0 = s.x(b.start(k));
        match prev {
            None => {
                let _ = write!(d, "M{x0:.1},{:.1}", s.y(v));
            }
            Some(p) if p != v => {
                let _ = write!(d, " L{x0:.1},{:.1} L{x0:.1},{:.1}", s.y(p), s.y(v));
            }
            Some(_) => {}
        }
        prev = Some(v);
    }
    if let Some(p) = prev {
        let _ = write!(d, " L{:.1},{:.1}", s.x(s.to), s.y(p));
    }
    d
}

/// A triangle over each bucket with refusals, saying how many on hover.
fn refusals(svg: &mut String, s: &Scale, c: &Chart<'_>) {
    for p in c.points.iter().filter(|p| p.denied > 0) {
        let cx = s.x(p.at + c.step_ms / 2);
        let word = if p.denied == 1 { "refusal" } else { "refusals" };
        let _ = write!(
            svg,
            r##"<path d="M{cx:.1},{:.1} l-4,-7 h8 z" fill="#d62728"><title>{} {word}</title></path>"##,
            TOP + 8.0,
            p.denied
        );
    }
}

fn legend(svg: &mut String) {
    let ly = HEIGHT - 8.0;
    for (i, (name, color, dash)) in [
        ("active", "#1f77b4", ""),
        ("live", "#2ca02c", ""),
        ("dangling", "#ff7f0e", ""),
        ("limit", "#d62728", r#" stroke-dasharray="6 4""#),
    ]
    .into_iter()
    .enumerate()
    {
        let lx = LEFT + 90.0 * i as f64;
        let _ = write!(
            svg,
            r##"<line x1="{lx:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="2"{dash}/><text x="{:.1}" y="{ly:.1}" fill="#333">{name}</text>"##,
            ly - 4.0,
            lx + 18.0,
            ly - 4.0,
            lx + 22.0
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2030-12-02T00:00:00Z
    const DEC_2: Millis = 1_922_400_000_000;

    fn point(at: Millis, active: i64, denied: i64) -> Point {
        Point {
            at,
            max_active: active,
            max_live: active,
            max_dangling: 0,
            denied,
            session_limit: 5,
        }
    }

    fn chart(step_ms: i64, from: Millis, to: Millis, points: &[Point]) -> String {
        svg(&Chart {
            site: "a<b",
            from,
            to,
            step_ms,
            points,
        })
    }

    #[test]
    fn the_date_is_the_one_meant() {
        assert_eq!(label(DEC_2, DAY, false), "Dec 2");
        assert_eq!(label(DEC_2 + 14 * HOUR, HOUR, false), "Dec 2 14:00");
    }

    #[test]
    fn draws_the_series_and_escapes_text() {
        let from = DEC_2 + 12 * HOUR;
        let points = [point(from, 3, 0), point(from + 2 * HOUR, 5, 2)];
        let svg = chart(HOUR, from, from + 4 * HOUR, &points);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>\n"));
        assert!(svg.contains("a&lt;b"));
        assert!(!svg.contains("a<b"));
        // A bucket without a point had nothing open: the line drops to 0 and back,
        // one path from start to end.
        let active = svg.split("<title>active</title>").next().unwrap();
        let d = active.rsplit("d=\"").next().unwrap();
        assert_eq!(d.matches('M').count(), 1);
        assert_eq!(d.matches('L').count(), 7, "{d}");
        assert!(svg.contains("<title>2 refusals</title>"));
        let empty = chart(HOUR, from, from + 4 * HOUR, &[]);
        assert!(empty.contains("no sessions or refusals in this range"));
    }

    #[test]
    fn axes_read_as_dates_and_times_in_utc() {
        let from = DEC_2 + 9 * HOUR;
        let svg = chart(MINUTE, from, from + 3 * HOUR, &[point(from, 1, 0)]);
        for l in ["Dec 2 09:00", "Dec 2 10:00", "Dec 2 11:00", "Dec 2 12:00"] {
            assert!(svg.contains(&format!(">{l}</text>")), "{l} in {svg}");
        }
        assert!(svg.contains(">Dec 2 09:30</text>"));
        assert_eq!(svg.matches("UTC").count(), 1);
        assert!(!svg.contains("T09:00"), "no RFC 3339 on the axis");
        // Day steps name the days alone.
        let svg = chart(DAY, DEC_2, DEC_2 + 5 * DAY, &[point(DEC_2, 1, 0)]);
        assert!(svg.contains(">Dec 2</text>") && svg.contains(">Dec 7</text>"));
        assert!(!svg.contains("00:00"));
        // Across a new year the year is said.
        let svg = chart(DAY, DEC_2, DEC_2 + 35 * DAY, &[point(DEC_2, 1, 0)]);
        assert!(svg.contains(">Jan 6 2031</text>"), "{svg}");
    }

    #[test]
    fn ticks_are_round_and_few() {
        assert_eq!(
            ticks(DEC_2 + 5 * MINUTE, DEC_2 + HOUR, MINUTE),
            (1..=6).map(|n| DEC_2 + n * 10 * MINUTE).collect::<Vec<_>>()
        );
        // Never finer than the step, and at most MAX_TICKS + 1 over 10,000 days.
        assert!(ticks(DEC_2, DEC_2 + 10 * MINUTE, DAY).len() <= 1);
        let many = ticks(0, 10_000 * DAY, DAY);
        assert!(many.len() <= MAX_TICKS as usize + 1 && many.len() >= 2);
    }
}
