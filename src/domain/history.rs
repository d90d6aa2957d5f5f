//! Usage history per minute, hour or day, exact from the session rows.
//!
//! The most active sessions of a bucket come from the stored session intervals, the
//! same `[started_at, min(ended_at, expires_at))` that billing's `peak_active` sweeps
//! (ends before starts at one instant, so a session ending as another starts does not
//! overlap it), so a site's first snapshot shows its past too and history agrees with
//! the bill. Live and dangling come from the minute samples (or their hour and day
//! roll-ups) where the sampler saw the bucket, and are derived from the rows
//! elsewhere. Refusals are counted from the recorded denials.

use super::session::Span;
use crate::domain::Millis;

/// The buckets of a request: `[from + i·step, from + (i+1)·step)`, the last one cut at
/// `to` so that nothing after the requested end (the future, by default) counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buckets {
    from: Millis,
    to: Millis,
    step: i64,
}

impl Buckets {
    /// `from` is expected at a bucket boundary; `step` is positive.
    pub fn new(from: Millis, to: Millis, step: i64) -> Self {
        Self {
            from,
            to: to.max(from),
            step: step.max(1),
        }
    }

    pub fn len(&self) -> usize {
        usize::try_from((self.to - self.from + self.step - 1) / self.step).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn start(&self, i: usize) -> Millis {
        self.from + self.step * i as i64
    }

    pub fn end(&self, i: usize) -> Millis {
        (self.start(i) + self.step).min(self.to)
    }

    /// The bucket holding the instant, if it lies in `[from, to)`.
    pub fn index(&self, at: Millis) -> Option<usize> {
        (self.from..self.to)
            .contains(&at)
            .then(|| ((at - self.from) / self.step) as usize)
    }
}

/// The most overlapping `[start, end)` intervals in each bucket, counting those
/// already open at the bucket's start: one sweep over all buckets, the same count at
/// every instant as billing's `peak` (ends before starts, empty intervals cover
/// nothing).
pub fn max_per_bucket<I>(intervals: I, b: &Buckets) -> Vec<i64>
where
    I: IntoIterator<Item = (Millis, Millis)>,
{
    let mut edges: Vec<(Millis, i8)> = Vec::new();
    for (s, e) in intervals {
        let (s, e) = (s.max(b.from), e.min(b.to));
        if s < e {
            edges.push((s, 1));
            edges.push((e, -1));
        }
    }
    edges.sort_unstable();
    let mut out = Vec::with_capacity(b.len());
    let (mut i, mut open) = (0, 0i64);
    for k in 0..b.len() {
        let (start, end) = (b.start(k), b.end(k));
        // Every edge up to and at the start: the count at the start instant itself,
        // not the one just before it (sessions ending at the start are gone).
        while i < edges.len() && edges[i].0 <= start {
            open += i64::from(edges[i].1);
            i += 1;
        }
        let mut max = open;
        // Within one instant the running count dips (ends first) and then climbs to
        // that instant's count, so the running maximum is the exact one.
        while i < edges.len() && edges[i].0 < end {
            open += i64::from(edges[i].1);
            max = max.max(open);
            i += 1;
        }
        out.push(max);
    }
    out
}

/// How many of the instants fall in each bucket.
pub fn count_per_bucket(times: &[Millis], b: &Buckets) -> Vec<i64> {
    let mut out = vec![0; b.len()];
    for &t in times {
        if let Some(k) = b.index(t) {
            out[k] += 1;
        }
    }
    out
}

/// The highest limit in force during each bucket, from the site's limit history
/// (`(effective_from, session_limit)` in order). Before the first entry the first
/// limit holds, as billing does for sessions reported from before the site existed.
pub fn limit_per_bucket(history: &[(Millis, i64)], b: &Buckets) -> Vec<i64> {
    (0..b.len())
        .map(|k| {
            let (start, end) = (b.start(k), b.end(k));
            let in_force = history.iter().enumerate().filter(|&(i, &(from, _))| {
                let until = history.get(i + 1).map_or(Millis::MAX, |n| n.0);
                let from = if i == 0 { Millis::MIN } else { from };
                from < end && until > start
            });
            in_force.map(|(_, &(_, limit))| limit).max().unwrap_or(0)
        })
        .collect()
}

/// What the sampler recorded for one bucket (a minute's sample, or an hour's or a
/// day's roll-up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sampled {
    pub at: Millis,
    pub max_live: i64,
    pub max_dangling: i64,
    pub session_limit: i64,
}

/// One bucket of history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    pub at: Millis,
    pub max_active: i64,
    pub max_live: i64,
    pub max_dangling: i64,
    pub denied: i64,
    pub session_limit: i64,
}

/// Everything one site's history is made of.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub spans: Vec<Span>,
    /// Instants of the recorded refusals.
    pub denials: Vec<Millis>,
    /// `(effective_from, session_limit)` in order.
    pub limits: Vec<(Millis, i64)>,
    pub sampled: Vec<Sampled>,
    /// The site's idle timeout, for live and dangling where no sample exists.
    pub idle_ms: i64,
}

/// The buckets in which a session was open, an admission was refused or the sampler
/// recorded something; buckets with none of these are left out.
///
/// A sampled bucket keeps the sampler's live and dangling counts and limit, capped at
/// the exact active count (an end reported late can lower that below what the
/// sampler saw then). Elsewhere they are derived from the rows, which cannot see idle
/// gaps before a session's last activity: such a session counts as live until then.
pub fn points(input: &Inputs, b: &Buckets) -> Vec<Point> {
    let active = max_per_bucket(input.spans.iter().map(Span::active), b);
    let live = max_per_bucket(input.spans.iter().map(|s| s.live(input.idle_ms)), b);
    let dangling = max_per_bucket(input.spans.iter().map(|s| s.dangling(input.idle_ms)), b);
    let denied = count_per_bucket(&input.denials, b);
    let limit = limit_per_bucket(&input.limits, b);
    let mut sampled: Vec<Option<&Sampled>> = vec![None; b.len()];
    for s in &input.sampled {
        if let Some(k) = b.index(s.at) {
            sampled[k] = Some(s);
        }
    }
    (0..b.len())
        .filter(|&k| active[k] > 0 || denied[k] > 0 || sampled[k].is_some())
        .map(|k| {
            let (max_live, max_dangling, session_limit) = match sampled[k] {
                Some(s) => (
                    s.max_live.min(active[k]),
                    s.max_dangling.min(active[k]),
                    s.session_limit,
                ),
                None => (live[k], dangling[k], limit[k]),
            };
            Point {
                at: b.start(k),
                max_active: active[k],
                max_live,
                max_dangling,
                denied: denied[k],
                session_limit,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::billing::peak;

    /// The most active sessions over `[from, to)` by billing's own sweep: what the
    /// buckets of any step must agree with.
    fn peak_between(spans: &[Span], from: Millis, to: Millis) -> i64 {
        peak(spans.iter().map(Span::active), from, to)
    }

    const M: i64 = 60_000;
    const H: i64 = 3_600_000;

    fn span(start: i64, end: i64) -> Span {
        Span {
            start,
            end,
            last_activity: start,
        }
    }

    #[test]
    fn buckets_cut_the_last_one_at_to() {
        let b = Buckets::new(0, 2 * H + 30 * M, H);
        assert_eq!(b.len(), 3);
        assert_eq!((b.start(2), b.end(2)), (2 * H, 2 * H + 30 * M));
        assert_eq!(b.index(2 * H + 29 * M), Some(2));
        assert_eq!(b.index(2 * H + 30 * M), None);
        assert_eq!(b.index(-1), None);
        assert!(Buckets::new(5, 5, M).is_empty());
    }

    #[test]
    fn rows_stop_being_active_at_the_earlier_of_end_and_expiry() {
        assert_eq!(Span::of_row(0, 10, None, 3).active(), (0, 10));
        assert_eq!(Span::of_row(0, 10, Some(4), 3).active(), (0, 4));
        assert_eq!(Span::of_row(0, 10, Some(12), 3).active(), (0, 10));
    }

    #[test]
    fn sessions_open_at_the_start_count_and_those_ended_there_do_not() {
        let b = Buckets::new(0, 4 * M, M);
        // One session from before the range into minute 2; one ending exactly at the
        // start of minute 1; two overlapping within minute 3.
        let spans = [
            (-H, 2 * M + 10),
            (0, M),
            (3 * M + 5, 3 * M + 20),
            (3 * M + 10, 4 * M + 50),
        ];
        assert_eq!(max_per_bucket(spans, &b), vec![2, 1, 1, 2]);
    }

    #[test]
    fn an_end_and_a_start_at_one_instant_do_not_overlap() {
        let b = Buckets::new(0, 2 * M, 2 * M);
        assert_eq!(max_per_bucket([(0, 30), (30, 60)], &b), vec![1]);
        // Empty intervals cover nothing, even where others start.
        assert_eq!(max_per_bucket([(30, 30), (30, 60)], &b), vec![1]);
    }

    /// Pseudo-random sessions: every bucket's maximum is billing's peak of that
    /// bucket, and an hour's is the largest of its minutes'.
    #[test]
    fn agrees_with_the_billing_peak_and_across_steps() {
        let mut seed = 0x2545_f491_u64;
        let mut next = |n: i64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            ((seed >> 33) as i64).rem_euclid(n)
        };
        let spans: Vec<Span> = (0..300)
            .map(|_| {
                let s = next(5 * H) - H;
                span(s, s + next(90 * M))
            })
            .collect();
        let minutes = Buckets::new(0, 3 * H + 17 * M, M);
        let hours = Buckets::new(0, 3 * H + 17 * M, H);
        let by_minute = max_per_bucket(spans.iter().map(Span::active), &minutes);
        let by_hour = max_per_bucket(spans.iter().map(Span::active), &hours);
        for (k, &v) in by_minute.iter().enumerate() {
            assert_eq!(v, peak_between(&spans, minutes.start(k), minutes.end(k)));
        }
        for (k, &v) in by_hour.iter().enumerate() {
            let from = k * 60;
            let to = (from + 60).min(by_minute.len());
            assert_eq!(v, *by_minute[from..to].iter().max().unwrap(), "hour {k}");
            assert_eq!(v, peak_between(&spans, hours.start(k), hours.end(k)));
        }
    }

    #[test]
    fn live_until_the_idle_timeout_then_dangling() {
        let s = Span {
            start: 0,
            end: 10 * M,
            last_activity: 2 * M,
        };
        assert_eq!(s.live(3 * M), (0, 5 * M));
        assert_eq!(s.dangling(3 * M), (5 * M, 10 * M));
        // Active past its end? Never: the timeout beyond the end leaves no dangling.
        assert_eq!(s.live(20 * M), (0, 10 * M));
        let (a, b) = s.dangling(20 * M);
        assert!(a >= b);
    }

    #[test]
    fn limits_in_force_during_each_bucket() {
        let b = Buckets::new(0, 4 * H, H);
        // Before the first entry the first limit holds; a change within hour 2 makes
        // that hour's the higher of the two.
        let history = [(H, 5), (2 * H + 30 * M, 8), (3 * H, 3)];
        assert_eq!(limit_per_bucket(&history, &b), vec![5, 5, 8, 3]);
        assert_eq!(limit_per_bucket(&[], &b), vec![0; 4]);
    }

    #[test]
    fn points_where_something_was_open_refused_or_sampled() {
        let b = Buckets::new(0, 5 * M, M);
        let input = Inputs {
            spans: vec![Span {
                start: 0,
                end: 2 * M,
                last_activity: 0,
            }],
            denials: vec![3 * M + 1],
            limits: vec![(0, 4)],
            sampled: vec![Sampled {
                at: 4 * M,
                max_live: 1,
                max_dangling: 2,
                session_limit: 6,
            }],
            idle_ms: M,
        };
        let p = points(&input, &b);
        let rows: Vec<_> = p
            .iter()
            .map(|p| {
                (
                    p.at,
                    p.max_active,
                    p.max_live,
                    p.max_dangling,
                    p.denied,
                    p.session_limit,
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                // Live for a minute after its last activity, then dangling.
                (0, 1, 1, 0, 0, 4),
                (M, 1, 0, 1, 0, 4),
                (3 * M, 0, 0, 0, 1, 4),
                // A sample of a minute the rows say was empty: capped at active.
                (4 * M, 0, 0, 0, 0, 6),
            ]
        );
    }
}
