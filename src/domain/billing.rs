//! Billing arithmetic: periods, plan segments, the exact peak sweep, session hours,
//! the 95th percentile of samples, proration and the money of one export line.
//! Plain functions over plain values; the export in `db::billing` feeds them rows.
//!
//! Money is integer cents throughout. The prorated base is
//! `monthly_price_cents × time on the plan in the segment ÷ length of the month`,
//! rounded half up to a whole cent (`290.5` → `291`, `290.49` → `290`); overage is
//! `overage_sessions × overage_unit_price_cents`, exact. The base of a month split by
//! a plan change is rounded per line, so two lines may differ from an unsplit month
//! by a cent.

use std::collections::HashSet;

use chrono::{Datelike, NaiveDate, TimeZone, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::config::OverLimit;
use crate::domain::Millis;

const HOUR_MS: i64 = 3_600_000;

/// A billing period: one UTC calendar month, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    year: i32,
    month: u32,
    pub start: Millis,
    pub end: Millis,
}

impl Period {
    /// Parses `YYYY-MM` (years 1970–9999).
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a month like 2026-10 (YYYY-MM)");
        let (y, m) = s.split_once('-').ok_or_else(bad)?;
        if y.len() != 4
            || m.len() != 2
            || !y.bytes().all(|b| b.is_ascii_digit())
            || !m.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let year: i32 = y.parse().map_err(|_| bad())?;
        let month: u32 = m.parse().map_err(|_| bad())?;
        if year < 1970 || !(1..=12).contains(&month) {
            return Err(bad());
        }
        let start = month_start(year, month).ok_or_else(bad)?;
        let end = if month == 12 {
            month_start(year + 1, 1)
        } else {
            month_start(year, month + 1)
        }
        .ok_or_else(bad)?;
        Ok(Self {
            year,
            month,
            start,
            end,
        })
    }

    /// The period containing the instant.
    pub fn containing(at: Millis) -> Option<Self> {
        let d = Utc.timestamp_millis_opt(at).single()?;
        Self::parse(&format!("{:04}-{:02}", d.year(), d.month())).ok()
    }

    pub fn len_ms(&self) -> i64 {
        self.end - self.start
    }
}

impl std::fmt::Display for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

fn month_start(year: i32, month: u32) -> Option<Millis> {
    let d = NaiveDate::from_ymd_opt(year, month, 1)?.and_hms_opt(0, 0, 0)?;
    Some(d.and_utc().timestamp_millis())
}

/// One row of a site's plan history: from `effective_from` on, the site ran on this
/// plan with this effective limit and over-limit rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanSpan {
    pub plan_id: i64,
    pub session_limit: i64,
    pub over_limit: OverLimit,
    pub effective_from: Millis,
}

/// A part of the period during which one plan row was in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub plan_id: i64,
    pub session_limit: i64,
    pub over_limit: OverLimit,
    /// Usage is counted in `[from, to)`.
    pub from: Millis,
    pub to: Millis,
    /// The base price is prorated over `[billed_from, to)`: the time the site existed
    /// on this plan within the segment. Later than `from` only for a site created
    /// during the period.
    pub billed_from: Millis,
}

/// Splits a period along a site's plan history (sorted by `effective_from`, ties in
/// insertion order). Each history row in force for part of the period yields one
/// segment; a row superseded at the same instant yields none. The site's first
/// segment starts at the period start even when the site was created later, so that
/// sessions an agent reports from before the site existed are counted; it is billed
/// only from the creation on.
pub fn segments(history: &[PlanSpan], period: &Period) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    for (i, row) in history.iter().enumerate() {
        let until = history.get(i + 1).map_or(Millis::MAX, |n| n.effective_from);
        let from = row.effective_from.max(period.start);
        let to = until.min(period.end);
        if from >= to {
            continue;
        }
        out.push(Segment {
            plan_id: row.plan_id,
            session_limit: row.session_limit,
            over_limit: row.over_limit,
            from,
            to,
            billed_from: from,
        });
    }
    if let Some(first) = out.first_mut() {
        first.from = period.start;
    }
    out
}

/// A session as billing sees it: `[start, end)` with `end = min(ended_at, expires_at)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSpan {
    pub start: Millis,
    pub end: Millis,
    pub user: Option<String>,
}

/// The exact maximum number of overlapping `[start, end)` intervals within
/// `[from, to)`. An interval ending at the instant another starts does not overlap
/// it (ends are swept before starts); empty intervals cover no instant.
pub fn peak<I>(intervals: I, from: Millis, to: Millis) -> i64
where
    I: IntoIterator<Item = (Millis, Millis)>,
{
    peak_and_when(intervals, from, to).0
}

/// [`peak`] and the first instant it was reached (`from` when nothing overlaps
/// `[from, to)`): where to look for who was on at the peak.
pub fn peak_and_when<I>(intervals: I, from: Millis, to: Millis) -> (i64, Millis)
where
    I: IntoIterator<Item = (Millis, Millis)>,
{
    let mut edges: Vec<(Millis, i8)> = Vec::new();
    for (s, e) in intervals {
        let (s, e) = (s.max(from), e.min(to));
        if s < e {
            edges.push((s, 1));
            edges.push((e, -1));
        }
    }
    // -1 sorts before +1: at one instant, ends come first.
    edges.sort_unstable();
    let (mut now, mut max, mut when) = (0i64, 0i64, from);
    for (at, d) in edges {
        now += i64::from(d);
        // Strictly above: the first instant at the peak, not a later equal one.
        if now > max {
            (max, when) = (now, at);
        }
    }
    (max, when)
}

/// Total time, in milliseconds, that the intervals overlap `[from, to)`.
pub fn overlap_ms<I>(intervals: I, from: Millis, to: Millis) -> i64
where
    I: IntoIterator<Item = (Millis, Millis)>,
{
    intervals
        .into_iter()
        .map(|(s, e)| (e.min(to) - s.max(from)).max(0))
        .sum()
}

/// Milliseconds as hours, rounded half up to two decimals (to the 36 seconds).
pub fn hours(ms: i64) -> f64 {
    let hundredths =
        (i128::from(ms) * 100 + i128::from(HOUR_MS / 2)).div_euclid(i128::from(HOUR_MS));
    hundredths as f64 / 100.0
}

/// The 95th percentile by the nearest-rank method (the smallest value that at least
/// 95 % of the samples do not exceed), from `(value, count)` pairs in any order. No
/// samples give 0.
pub fn p95(histogram: &[(i64, i64)]) -> i64 {
    let mut h: Vec<(i64, i64)> = histogram.iter().copied().filter(|(_, n)| *n > 0).collect();
    h.sort_unstable();
    let total: i64 = h.iter().map(|(_, n)| n).sum();
    if total == 0 {
        return 0;
    }
    let rank = (total * 95 + 99) / 100;
    let mut seen = 0;
    for (v, n) in h {
        seen += n;
        if seen >= rank {
            return v;
        }
    }
    0
}

/// `monthly_price_cents × billed_ms ÷ period_ms`, rounded half up to a whole cent.
pub fn prorate(monthly_price_cents: i64, billed_ms: i64, period_ms: i64) -> i64 {
    prorate_parts(&[(monthly_price_cents, billed_ms)], period_ms)
}

/// `Σ monthly_price_cents × billed_ms ÷ period_ms` over parts of a period billed at
/// different prices, rounded half up to a whole cent once, at the end.
pub fn prorate_parts(parts: &[(i64, i64)], period_ms: i64) -> i64 {
    if period_ms <= 0 {
        return 0;
    }
    let total: i128 = parts
        .iter()
        .map(|&(price, ms)| i128::from(price) * i128::from(ms.clamp(0, period_ms)))
        .sum();
    let num = 2 * total + i128::from(period_ms);
    let cents = num.div_euclid(2 * i128::from(period_ms));
    i64::try_from(cents).unwrap_or(i64::MAX)
}

/// Sessions above the limit at the peak, billed only on `allow_overage` plans.
pub fn overage_sessions(peak_active: i64, session_limit: i64, over_limit: OverLimit) -> i64 {
    match over_limit {
        OverLimit::AllowOverage => (peak_active - session_limit).max(0),
        OverLimit::Reject | OverLimit::EvictDangling => 0,
    }
}

/// What a segment's sessions amount to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SegmentUsage {
    pub peak_active: i64,
    /// The first instant at `peak_active` (the segment's start when it had no sessions).
    pub peak_at: Millis,
    pub sessions_started: i64,
    /// Users with at least one session overlapping the segment.
    pub distinct_users: i64,
    pub session_ms: i64,
}

pub fn segment_usage(sessions: &[SessionSpan], from: Millis, to: Millis) -> SegmentUsage {
    let spans = || sessions.iter().map(|s| (s.start, s.end));
    let users: HashSet<&str> = sessions
        .iter()
        .filter(|s| s.end.min(to) > s.start.max(from))
        .filter_map(|s| s.user.as_deref())
        .collect();
    let (peak_active, peak_at) = peak_and_when(spans(), from, to);
    SegmentUsage {
        peak_active,
        peak_at,
        sessions_started: sessions
            .iter()
            .filter(|s| (from..to).contains(&s.start))
            .count() as i64,
        distinct_users: users.len() as i64,
        session_ms: overlap_ms(spans(), from, to),
    }
}

/// A plan's prices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prices {
    pub monthly_price_cents: i64,
    pub overage_unit_price_cents: i64,
    pub currency: String,
}

/// A plan's prices from an instant on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceSpan {
    pub prices: Prices,
    pub effective_from: Millis,
}

/// A segment with the prices it is billed at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedSegment {
    pub seg: Segment,
    /// The base price over `[billed_from, to)`: each monthly price prorated by the
    /// time it was in force, summed, then rounded half up to a cent once.
    pub base_cents: i64,
    /// The prices in force at the segment's end: overage is priced at these, and the
    /// line is in their currency.
    pub prices: Prices,
}

/// Prices a segment along its plan's price history (in `effective_from` order; an
/// empty one means `fallback` throughout). Before the first known change the first
/// known prices apply. A change of monthly or overage price stays within the line;
/// a change of currency starts a new line, since amounts of two currencies cannot
/// be added, and that new line starts, and is billed, at the change.
pub fn price_segment(
    seg: Segment, history: &[PriceSpan], fallback: &Prices, period: &Period,
) -> Vec<PricedSegment> {
    let mut current = history
        .iter()
        .take_while(|p| p.effective_from <= seg.billed_from)
        .last()
        .or(history.first())
        .map_or_else(|| fallback.clone(), |p| p.prices.clone());
    // (monthly price, milliseconds at it) of the line being built.
    let mut parts: Vec<(i64, i64)> = Vec::new();
    let mut line = seg.clone();
    let mut since = seg.billed_from;
    let mut out = Vec::new();
    for change in history {
        let t = change.effective_from;
        if t <= seg.billed_from || t >= seg.to {
            continue;
        }
        parts.push((current.monthly_price_cents, t - since));
        since = t;
        if change.prices.currency != current.currency {
            out.push(PricedSegment {
                seg: Segment {
                    to: t,
                    ..line.clone()
                },
                base_cents: prorate_parts(&parts, period.len_ms()),
                prices: current,
            });
            parts.clear();
            line = Segment {
                from: t,
                billed_from: t,
                ..line
            };
        }
        current = change.prices.clone();
    }
    parts.push((current.monthly_price_cents, seg.to - since));
    out.push(PricedSegment {
        seg: line,
        base_cents: prorate_parts(&parts, period.len_ms()),
        prices: current,
    });
    out
}

/// The money of one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charges {
    pub overage_sessions: i64,
    pub base_cents: i64,
    pub overage_cents: i64,
    pub total_cents: i64,
}

pub fn charges(seg: &Segment, peak_active: i64, prices: &Prices, period: &Period) -> Charges {
    let base_cents = prorate(
        prices.monthly_price_cents,
        seg.to - seg.billed_from,
        period.len_ms(),
    );
    charges_with_base(seg, peak_active, base_cents, prices)
}

/// The money of a line whose base price is already known.
pub fn charges_with_base(
    seg: &Segment, peak_active: i64, base_cents: i64, prices: &Prices,
) -> Charges {
    let overage_sessions = overage_sessions(peak_active, seg.session_limit, seg.over_limit);
    let overage_cents = overage_sessions.saturating_mul(prices.overage_unit_price_cents);
    Charges {
        overage_sessions,
        base_cents,
        overage_cents,
        total_cents: base_cents.saturating_add(overage_cents),
    }
}

/// One column of the export: its name (CSV header and JSON field) and its CSV text.
type Column = (&'static str, fn(&BillingRow) -> String);

/// The export's columns, in order. A new column is a field of [`BillingRow`] and one
/// line here.
const COLUMNS: [Column; 18] = [
    ("tenant", |r| r.tenant.clone()),
    ("site", |r| r.site.clone()),
    ("plan", |r| r.plan.clone()),
    ("session_limit", |r| r.session_limit.to_string()),
    ("from", |r| r.from.clone()),
    ("to", |r| r.to.clone()),
    ("peak_active", |r| r.peak_active.to_string()),
    ("p95_active", |r| r.p95_active.to_string()),
    ("sessions_started", |r| r.sessions_started.to_string()),
    ("distinct_users", |r| r.distinct_users.to_string()),
    ("session_hours", |r| format!("{:.2}", r.session_hours)),
    ("denied_admissions", |r| r.denied_admissions.to_string()),
    ("overage_sessions", |r| r.overage_sessions.to_string()),
    ("base_cents", |r| r.base_cents.to_string()),
    ("overage_cents", |r| r.overage_cents.to_string()),
    ("total_cents", |r| r.total_cents.to_string()),
    ("currency", |r| r.currency.clone()),
    ("peak_at", |r| r.peak_at.clone()),
];

/// The export's column names, in order.
pub fn column_names() -> [&'static str; 18] {
    COLUMNS.map(|(name, _)| name)
}

/// One line of the billing export: a site on one plan for part of a month.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct BillingRow {
    pub tenant: String,
    pub site: String,
    /// The plan's code.
    pub plan: String,
    /// The effective sessions limit in this segment.
    pub session_limit: i64,
    /// Start of the segment (RFC 3339); the period start for a site's first segment.
    pub from: String,
    /// End of the segment, exclusive (RFC 3339).
    pub to: String,
    /// Exact maximum of simultaneous sessions in the segment.
    pub peak_active: i64,
    /// 95th percentile (nearest rank) of the per-minute active-session samples.
    pub p95_active: i64,
    /// Sessions that started in the segment.
    pub sessions_started: i64,
    /// Users with at least one session overlapping the segment.
    pub distinct_users: i64,
    /// Overlap of session intervals with the segment, in hours, to two decimals.
    pub session_hours: f64,
    /// Refused admissions in the segment.
    pub denied_admissions: i64,
    /// `max(0, peak_active − session_limit)` on `allow_overage` plans, else 0.
    pub overage_sessions: i64,
    /// The monthly price prorated by the time on the plan, rounded half up.
    pub base_cents: i64,
    pub overage_cents: i64,
    pub total_cents: i64,
    pub currency: String,
    /// The first instant the segment reached `peak_active` (RFC 3339; `from` when it
    /// had no sessions): ask `GET /v1/sites/{slug}/sessions?at=` who was on then.
    pub peak_at: String,
}

impl BillingRow {
    fn fields(&self) -> [String; 18] {
        COLUMNS.map(|(_, text)| text(self))
    }
}

/// One CSV field as [`to_csv`] writes it, per RFC 4180: quoted when it holds a comma,
/// a quote, CR or LF, with quotes doubled. A leading `=`, `+`, `-` or `@` is left as
/// is: these are data, and slugs and plan codes cannot start with them.
pub fn csv_field(s: &str) -> String {
    // Alone on its line an empty field is written `""`, so that the line is not
    // blank; within a row, which is where it stands, it is written as nothing.
    if s.is_empty() {
        return String::new();
    }
    let mut line = csv_text(|w| w.write_record([s]));
    line.truncate(line.len() - "\r\n".len());
    line
}

/// The export as CSV: a header row, then one line per row, CRLF line ends (RFC 4180).
pub fn to_csv(rows: &[BillingRow]) -> String {
    csv_text(|w| {
        w.write_record(column_names())?;
        rows.iter().try_for_each(|r| w.write_record(r.fields()))
    })
}

/// What `write` writes with the csv crate's RFC 4180 defaults and CRLF line ends.
fn csv_text(write: impl FnOnce(&mut csv::Writer<Vec<u8>>) -> csv::Result<()>) -> String {
    const IN_MEMORY: &str = "a CSV writer into memory cannot fail";
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    write(&mut w).expect(IN_MEMORY);
    let bytes = w.into_inner().expect(IN_MEMORY);
    String::from_utf8(bytes).expect("CSV of UTF-8 fields is UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = HOUR_MS;
    const D: i64 = 24 * H;

    fn march() -> Period {
        Period::parse("2031-03").unwrap()
    }

    fn price(cents: i64) -> Prices {
        Prices {
            monthly_price_cents: cents,
            overage_unit_price_cents: cents / 10,
            currency: "EUR".into(),
        }
    }

    /// A site created on day 3 of a plan whose price changes on day 1 (before the
    /// site), on day 10, twice on day 20 (the second undoing the first), on day 25 to
    /// another currency, and on the segment's last instant.
    #[test]
    fn a_segment_is_billed_at_the_prices_in_force() {
        let p = march();
        let seg = Segment {
            plan_id: 1,
            session_limit: 5,
            over_limit: OverLimit::AllowOverage,
            from: p.start,
            to: p.end,
            billed_from: p.start + 3 * D,
        };
        let span = |day: i64, cents: i64, currency: &str| PriceSpan {
            prices: Prices {
                monthly_price_cents: cents,
                overage_unit_price_cents: cents / 10,
                currency: currency.into(),
            },
            effective_from: p.start + day * D,
        };
        let history = [
            span(-40, 100, "EUR"),
            span(1, 3100, "EUR"),
            span(10, 6200, "EUR"),
            span(20, 9999, "EUR"),
            span(20, 6200, "EUR"),
            span(25, 3100, "USD"),
            span(31, 1, "USD"),
        ];
        let lines = price_segment(seg.clone(), &history, &price(0), &p);
        assert_eq!(lines.len(), 2, "{lines:?}");
        // Days 3–10 at 31.00 and 10–25 at 62.00 (the undone change leaves no trace),
        // added before rounding: 700 + 3000 cents.
        assert_eq!(
            lines[0].seg,
            Segment {
                to: p.start + 25 * D,
                ..seg.clone()
            }
        );
        assert_eq!(lines[0].base_cents, 3700);
        assert_eq!(lines[0].prices, history[4].prices);
        // The new currency starts a line of its own, billed from the change.
        let usd = p.start + 25 * D;
        assert_eq!(
            lines[1].seg,
            Segment {
                from: usd,
                billed_from: usd,
                ..seg.clone()
            }
        );
        assert_eq!(lines[1].base_cents, 600);
        assert_eq!(lines[1].prices.currency, "USD");
        // Overage once per line, at the prices in force at its end.
        let money = charges_with_base(&lines[0].seg, 7, lines[0].base_cents, &lines[0].prices);
        assert_eq!(
            (
                money.overage_sessions,
                money.overage_cents,
                money.total_cents
            ),
            (2, 1240, 4940)
        );

        // No history: the plan's current prices over the whole segment.
        let plain = price_segment(seg.clone(), &[], &price(3100), &p);
        assert_eq!(
            plain,
            [PricedSegment {
                seg: seg.clone(),
                base_cents: 2800,
                prices: price(3100)
            }]
        );
        // A history that starts after the segment: its first prices.
        let later = price_segment(seg.clone(), &[span(40, 3100, "EUR")], &price(7), &p);
        assert_eq!(later[0].base_cents, 2800);
        assert_eq!(later.len(), 1);
        // Rounded once: three thirds of a cent each are one cent, not zero.
        let thirds = [span(0, 1, "EUR"), span(10, 1, "EUR"), span(20, 1, "EUR")];
        let third = Segment {
            billed_from: p.start,
            to: p.start + 30 * D,
            ..seg
        };
        assert_eq!(
            prorate_parts(&[(1, 10 * D), (1, 10 * D), (1, 10 * D)], p.len_ms()),
            1
        );
        assert_eq!(
            price_segment(third, &thirds, &price(0), &p)[0].base_cents,
            1
        );
    }

    #[test]
    fn periods_parse_strictly() {
        let p = march();
        assert_eq!(p.to_string(), "2031-03");
        assert_eq!(p.len_ms(), 31 * D);
        assert_eq!(Period::parse("2028-02").unwrap().len_ms(), 29 * D);
        let dec = Period::parse("2030-12").unwrap();
        assert_eq!(dec.end, Period::parse("2031-01").unwrap().start);
        for bad in [
            "2031-3",
            "2031-13",
            "2031-00",
            "31-03",
            "2031/03",
            "",
            "abcd-ef",
            "1969-12",
            "2031-03-01",
            "+031-03",
        ] {
            assert!(Period::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Period::containing(p.start + 5 * D), Some(p));
        assert_eq!(Period::containing(p.end), Period::parse("2031-04").ok());
    }

    #[test]
    fn peak_sweeps_ends_before_starts() {
        // Back to back: never two at once.
        assert_eq!(peak([(0, 10), (10, 20), (20, 30)], 0, 100), 1);
        // Overlapping by one millisecond.
        assert_eq!(peak([(0, 11), (10, 20)], 0, 100), 2);
        // Nested and staggered.
        assert_eq!(peak([(0, 100), (10, 20), (15, 30), (19, 25)], 0, 100), 4);
        // Empty intervals count nowhere, even at an instant others start or end.
        assert_eq!(peak([(5, 5), (5, 10), (0, 5)], 0, 100), 1);
        assert_eq!(peak([(7, 3)], 0, 100), 0);
        assert_eq!(peak(Vec::new(), 0, 100), 0);
    }

    #[test]
    fn the_peak_is_dated_by_its_first_instant() {
        // Reached at 15, lost at 20, reached again at 40: the first time counts.
        assert_eq!(
            peak_and_when([(0, 20), (15, 30), (40, 50), (35, 60)], 0, 100),
            (2, 15)
        );
        // Several starts at one instant reach the peak at that instant.
        assert_eq!(peak_and_when([(5, 9), (7, 9), (7, 8)], 0, 100), (3, 7));
        // Back to back is never two: the peak of one is at the first start.
        assert_eq!(peak_and_when([(10, 20), (20, 30)], 0, 100), (1, 10));
        // Sessions open at the segment start peak at the start; none: the start.
        assert_eq!(peak_and_when([(0, 60), (10, 55)], 50, 100), (2, 50));
        assert_eq!(peak_and_when([(0, 50), (7, 7)], 50, 100), (0, 50));
        assert_eq!(peak_and_when(Vec::new(), 50, 100), (0, 50));
    }

    #[test]
    fn peak_is_clipped_to_the_segment() {
        // Two sessions overlap only before the segment.
        assert_eq!(peak([(0, 60), (10, 55)], 50, 100), 2);
        assert_eq!(peak([(0, 50), (10, 50)], 50, 100), 0);
        assert_eq!(peak([(0, 51), (100, 150)], 50, 100), 1);
    }

    #[test]
    fn peak_matches_a_brute_force_count() {
        // Pseudo-random intervals on a small grid, checked instant by instant.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % m) as i64
        };
        for _ in 0..200 {
            let iv: Vec<(i64, i64)> = (0..next(12))
                .map(|_| {
                    let s = next(40);
                    (s, s + next(15))
                })
                .collect();
            let (from, to) = (next(20), 20 + next(30));
            let brute = (from..to)
                .map(|t| iv.iter().filter(|(s, e)| *s <= t && t < *e).count() as i64)
                .max()
                .unwrap_or(0);
            let first = (from..to)
                .find(|t| iv.iter().filter(|(s, e)| s <= t && t < e).count() as i64 == brute)
                .filter(|_| brute > 0)
                .unwrap_or(from);
            assert_eq!(
                peak_and_when(iv.clone(), from, to),
                (brute, first),
                "{iv:?} in [{from}, {to})"
            );
        }
    }

    #[test]
    fn overlap_counts_only_time_inside() {
        assert_eq!(
            overlap_ms([(0, 10), (5, 30), (40, 50), (8, 3)], 5, 45),
            5 + 25 + 5
        );
        assert_eq!(hours(27 * H), 27.0);
        assert_eq!(hours(H / 2), 0.5);
        // 18 s is half of a hundredth of an hour: rounds up.
        assert_eq!(hours(18_000), 0.01);
        assert_eq!(hours(17_999), 0.0);
    }

    #[test]
    fn p95_takes_the_nearest_rank() {
        assert_eq!(p95(&[]), 0);
        assert_eq!(p95(&[(7, 1)]), 7);
        // 1..=100 once each: the 95th value.
        let h: Vec<(i64, i64)> = (1..=100).map(|v| (v, 1)).collect();
        assert_eq!(p95(&h), 95);
        // 19 quiet minutes and one busy one: 95 % of 20 is 19, so the quiet value.
        assert_eq!(p95(&[(9, 1), (2, 19)]), 2);
        // 18 quiet, 2 busy: rank 19 falls on the busy value.
        assert_eq!(p95(&[(2, 18), (9, 2)]), 9);
        assert_eq!(p95(&[(4, 1), (0, 1)]), 4);
    }

    #[test]
    fn proration_rounds_half_up() {
        let p = march();
        assert_eq!(prorate(3100, 29 * D, p.len_ms()), 2900);
        assert_eq!(prorate(3100, p.len_ms(), p.len_ms()), 3100);
        // 1000 × 9 / 31 = 290.32…
        assert_eq!(prorate(1000, 9 * D, p.len_ms()), 290);
        // Exactly half a cent rounds up; just below rounds down.
        assert_eq!(prorate(1, 1, 2), 1);
        assert_eq!(prorate(3, 1, 2), 2);
        assert_eq!(prorate(1, 49, 100), 0);
        assert_eq!(prorate(0, 5, 10), 0);
        // Never more than the month, never negative time.
        assert_eq!(prorate(100, 20, 10), 100);
        assert_eq!(prorate(100, -5, 10), 0);
        assert_eq!(prorate(i64::MAX, 10, 10), i64::MAX);
    }

    #[test]
    fn overage_only_on_allow_overage_plans() {
        assert_eq!(overage_sessions(5, 3, OverLimit::AllowOverage), 2);
        assert_eq!(overage_sessions(2, 3, OverLimit::AllowOverage), 0);
        assert_eq!(overage_sessions(5, 3, OverLimit::Reject), 0);
        assert_eq!(overage_sessions(5, 3, OverLimit::EvictDangling), 0);
    }

    fn span(plan_id: i64, limit: i64, from: Millis) -> PlanSpan {
        PlanSpan {
            plan_id,
            session_limit: limit,
            over_limit: OverLimit::Reject,
            effective_from: from,
        }
    }

    #[test]
    fn segments_follow_the_plan_history() {
        let p = march();
        // Created before the period, changed on the 10th.
        let s = segments(
            &[span(1, 5, p.start - 3 * D), span(2, 9, p.start + 9 * D)],
            &p,
        );
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].plan_id, s[0].from, s[0].to, s[0].billed_from),
            (1, p.start, p.start + 9 * D, p.start)
        );
        assert_eq!(
            (s[1].plan_id, s[1].session_limit, s[1].from, s[1].to),
            (2, 9, p.start + 9 * D, p.end)
        );
        // Created mid-period: counted from the period start, billed from creation.
        let s = segments(&[span(1, 5, p.start + 2 * D)], &p);
        assert_eq!(
            (s[0].from, s[0].billed_from, s[0].to),
            (p.start, p.start + 2 * D, p.end)
        );
        // Created after the period, or superseded before it: nothing, or only the later row.
        assert!(segments(&[span(1, 5, p.end)], &p).is_empty());
        let s = segments(&[span(1, 5, p.start - 9 * D), span(2, 5, p.start - D)], &p);
        assert_eq!((s.len(), s[0].plan_id), (1, 2));
        // Two rows at one instant: the later one is in force.
        let s = segments(&[span(1, 5, p.start + D), span(2, 6, p.start + D)], &p);
        assert_eq!((s.len(), s[0].plan_id, s[0].from), (1, 2, p.start));
        assert!(segments(&[], &p).is_empty());
    }

    #[test]
    fn segment_usage_counts_what_overlaps() {
        let user = |u: &str| Some(u.to_owned());
        let sessions = vec![
            SessionSpan {
                start: -2 * H,
                end: 2 * H,
                user: user("a"),
            },
            SessionSpan {
                start: 2 * H,
                end: 3 * H,
                user: user("b"),
            },
            SessionSpan {
                start: 5 * H,
                end: 5 * H,
                user: user("c"),
            },
            SessionSpan {
                start: -5 * H,
                end: -H,
                user: user("d"),
            },
        ];
        let u = segment_usage(&sessions, 0, 10 * H);
        assert_eq!(
            u,
            SegmentUsage {
                peak_active: 1,
                // Clipped to the segment, the first session is on from its start.
                peak_at: 0,
                sessions_started: 2,
                distinct_users: 2,
                session_ms: 3 * H,
            }
        );
    }

    #[test]
    fn charges_add_up() {
        let p = march();
        let seg = Segment {
            plan_id: 1,
            session_limit: 2,
            over_limit: OverLimit::AllowOverage,
            from: p.start + 9 * D,
            to: p.end,
            billed_from: p.start + 9 * D,
        };
        let prices = Prices {
            monthly_price_cents: 6200,
            overage_unit_price_cents: 150,
            currency: "EUR".into(),
        };
        assert_eq!(
            charges(&seg, 4, &prices, &p),
            Charges {
                overage_sessions: 2,
                base_cents: 4400,
                overage_cents: 300,
                total_cents: 4700
            }
        );
    }

    #[test]
    fn csv_quotes_per_rfc_4180() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        let row = BillingRow {
            tenant: "acme".into(),
            site: "www".into(),
            plan: "pro".into(),
            session_limit: 5,
            from: "2031-03-01T00:00:00.000Z".into(),
            to: "2031-04-01T00:00:00.000Z".into(),
            peak_active: 3,
            p95_active: 2,
            sessions_started: 10,
            distinct_users: 4,
            session_hours: 12.5,
            denied_admissions: 0,
            overage_sessions: 0,
            base_cents: 100,
            overage_cents: 0,
            total_cents: 100,
            currency: "EUR".into(),
            peak_at: "2031-03-04T10:00:00.000Z".into(),
        };
        let csv = to_csv(std::slice::from_ref(&row));
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(lines[0], column_names().join(","));
        // Every JSON field is a CSV column and the other way round.
        let json = serde_json::to_value(&row).unwrap();
        let fields: std::collections::BTreeSet<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(fields, column_names().into_iter().collect());
        assert_eq!(
            lines[1],
            "acme,www,pro,5,2031-03-01T00:00:00.000Z,2031-04-01T00:00:00.000Z,3,2,10,4,12.50,0,0,100,0,100,EUR,2031-03-04T10:00:00.000Z"
        );
        assert_eq!(lines[2], "");
    }
}
