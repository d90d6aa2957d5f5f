//! Usage samples stored by change: what a site's per-minute figures were, from the
//! rows that record a change and the minutes the sampler covered.
//!
//! The sampler takes one pass a minute over the fleet. A site's figures are written
//! only when they differ from what the site's previous row says, or when the minute
//! had refusals; a row holds its active, live and dangling counts and limit for every
//! later covered minute until the site's next row, and its refusals for its own minute
//! only. The minutes the sampler covered are kept as intervals for the whole fleet. So
//! the per-minute series of the old representation (one row per site and sampled
//! minute) is exactly: at each covered minute from the site's first row on, the latest
//! row at or before it, with `denied` where that row is of this very minute and 0
//! elsewhere. Every reader goes through [`pieces`].

use crate::domain::Millis;

pub const MINUTE_MS: i64 = 60_000;

/// One stored row: the figures from `minute` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub minute: Millis,
    pub active: i64,
    pub live: i64,
    pub dangling: i64,
    pub denied: i64,
    pub session_limit: i64,
}

impl Run {
    /// Whether a sample with these figures needs a row after this one: it carries
    /// other counts or limit, or has refusals of its own.
    pub fn differs(&self, next: &Run) -> bool {
        next.denied != 0
            || (self.active, self.live, self.dangling, self.session_limit)
                != (next.active, next.live, next.dangling, next.session_limit)
    }
}

/// A stretch of covered minutes `[start, end)` over which a site's figures are those
/// of `run` (its `denied` counts only when `start` is the run's own minute).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub start: Millis,
    pub end: Millis,
    pub run: Run,
}

impl Piece {
    /// Covered minutes in the piece.
    pub fn minutes(&self) -> i64 {
        (self.end - self.start) / MINUTE_MS
    }

    /// Refusals in the piece: the run's, when the piece begins at the run's minute.
    pub fn denied(&self) -> i64 {
        if self.start == self.run.minute {
            self.run.denied
        } else {
            0
        }
    }
}

/// The pieces of a site's series in `[from, to)`: `runs` in minute order, the first
/// one at or before `from` when there is one (the figures carried into the range);
/// `coverage` sorted, disjoint `[start, end)` minute intervals. Minute-aligned
/// bounds are expected; a piece never crosses a gap in coverage or a later run.
pub fn pieces(runs: &[Run], coverage: &[(Millis, Millis)], from: Millis, to: Millis) -> Vec<Piece> {
    let mut out = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let run_end = runs.get(i + 1).map_or(Millis::MAX, |r| r.minute);
        let (a, z) = (run.minute.max(from), run_end.min(to));
        if a >= z {
            continue;
        }
        let first = coverage.partition_point(|&(_, end)| end <= a);
        for &(cs, ce) in &coverage[first..] {
            if cs >= z {
                break;
            }
            let (s, e) = (cs.max(a), ce.min(z));
            if s < e {
                out.push(Piece {
                    start: s,
                    end: e,
                    run: *run,
                });
            }
        }
    }
    out
}

/// The highest live, dangling and limit of one bucket, and its refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BucketMax {
    pub at: Millis,
    pub max_active: i64,
    pub max_live: i64,
    pub max_dangling: i64,
    pub denied: i64,
    pub session_limit: i64,
}

/// Buckets of `step` (aligned to the epoch) starting in `[from, to)` that hold at least
/// one covered minute of the site, in order, as the old `GROUP BY minute / step` over
/// per-minute rows gave them.
pub fn buckets(pieces: &[Piece], step: i64) -> Vec<BucketMax> {
    let mut out: Vec<BucketMax> = Vec::new();
    for p in pieces {
        let mut start = p.start;
        let mut first = true;
        while start < p.end {
            let at = start - start.rem_euclid(step);
            let denied = if first { p.denied() } else { 0 };
            first = false;
            match out.last_mut() {
                Some(b) if b.at == at => {
                    b.max_active = b.max_active.max(p.run.active);
                    b.max_live = b.max_live.max(p.run.live);
                    b.max_dangling = b.max_dangling.max(p.run.dangling);
                    b.session_limit = b.session_limit.max(p.run.session_limit);
                    b.denied += denied;
                }
                _ => out.push(BucketMax {
                    at,
                    max_active: p.run.active,
                    max_live: p.run.live,
                    max_dangling: p.run.dangling,
                    denied,
                    session_limit: p.run.session_limit,
                }),
            }
            start = at + step;
        }
    }
    out
}

/// How many covered minutes saw each active count, as `(active, minutes)`.
pub fn active_histogram(pieces: &[Piece]) -> Vec<(i64, i64)> {
    let mut h: std::collections::BTreeMap<i64, i64> = std::collections::BTreeMap::new();
    for p in pieces {
        *h.entry(p.run.active).or_default() += p.minutes();
    }
    h.into_iter().collect()
}

/// Adds a covered minute to sorted, disjoint intervals (extending the one it follows).
pub fn cover(coverage: &mut Vec<(Millis, Millis)>, minute: Millis) {
    let i = coverage.partition_point(|&(s, _)| s <= minute);
    if i > 0 && coverage[i - 1].1 > minute {
        return;
    }
    if i > 0 && coverage[i - 1].1 == minute {
        coverage[i - 1].1 = minute + MINUTE_MS;
        if i < coverage.len() && coverage[i].0 == minute + MINUTE_MS {
            coverage[i - 1].1 = coverage[i].1;
            coverage.remove(i);
        }
        return;
    }
    if i < coverage.len() && coverage[i].0 == minute + MINUTE_MS {
        coverage[i].0 = minute;
        return;
    }
    coverage.insert(i, (minute, minute + MINUTE_MS));
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: i64 = MINUTE_MS;

    fn run(minute: i64, active: i64, denied: i64) -> Run {
        Run {
            minute: minute * M,
            active,
            live: active,
            dangling: 0,
            denied,
            session_limit: 10,
        }
    }

    /// The per-minute rows of the old representation, for a site's runs.
    fn expand(runs: &[Run], coverage: &[(i64, i64)], from: i64, to: i64) -> Vec<Run> {
        let mut out = Vec::new();
        let mut m = from;
        while m < to {
            let covered = coverage.iter().any(|&(s, e)| s <= m && m < e);
            if let Some(r) = runs.iter().rev().find(|r| r.minute <= m)
                && covered
            {
                let mut x = *r;
                x.minute = m;
                if r.minute != m {
                    x.denied = 0;
                }
                out.push(x);
            }
            m += M;
        }
        out
    }

    #[test]
    fn pieces_follow_runs_and_gaps() {
        let runs = [run(0, 1, 0), run(5, 2, 3), run(9, 0, 0)];
        let coverage = [(0, 3 * M), (4 * M, 12 * M)];
        let p = pieces(&runs, &coverage, M, 11 * M);
        let spans: Vec<(i64, i64, i64)> = p
            .iter()
            .map(|p| (p.start / M, p.end / M, p.run.active))
            .collect();
        assert_eq!(spans, [(1, 3, 1), (4, 5, 1), (5, 9, 2), (9, 11, 0)]);
        assert_eq!(p[2].denied(), 3);
        assert_eq!(active_histogram(&p), [(0, 2), (1, 3), (2, 4)]);
    }

    #[test]
    fn buckets_agree_with_the_per_minute_rows() {
        // A pseudo-random history: runs of random length and values, gaps in coverage.
        let mut seed: u64 = 7;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) % n) as i64
        };
        for _ in 0..200 {
            let mut runs = Vec::new();
            let mut m = next(5);
            while m < 300 {
                runs.push(run(m, next(4), if next(5) == 0 { next(3) + 1 } else { 0 }));
                m += 1 + next(40);
            }
            let mut coverage = Vec::new();
            for minute in 0..300 {
                if next(10) != 0 {
                    cover(&mut coverage, minute * M);
                }
            }
            let (from, to) = (next(50) * M, (200 + next(100)) * M);
            let rows = expand(&runs, &coverage, from, to);
            let p = pieces(&runs, &coverage, from, to);
            for step in [M, 5 * M, 60 * M] {
                let mut want: Vec<BucketMax> = Vec::new();
                for r in &rows {
                    let at = r.minute - r.minute.rem_euclid(step);
                    match want.last_mut() {
                        Some(b) if b.at == at => {
                            b.max_active = b.max_active.max(r.active);
                            b.max_live = b.max_live.max(r.live);
                            b.max_dangling = b.max_dangling.max(r.dangling);
                            b.session_limit = b.session_limit.max(r.session_limit);
                            b.denied += r.denied;
                        }
                        _ => want.push(BucketMax {
                            at,
                            max_active: r.active,
                            max_live: r.live,
                            max_dangling: r.dangling,
                            denied: r.denied,
                            session_limit: r.session_limit,
                        }),
                    }
                }
                assert_eq!(buckets(&p, step), want, "step {step}");
            }
            let mut hist: std::collections::BTreeMap<i64, i64> = Default::default();
            for r in &rows {
                *hist.entry(r.active).or_default() += 1;
            }
            assert_eq!(active_histogram(&p), hist.into_iter().collect::<Vec<_>>());
        }
    }

    #[test]
    fn cover_merges_neighbours() {
        let mut c = Vec::new();
        for m in [3, 1, 2, 7, 5, 6, 6] {
            cover(&mut c, m * M);
        }
        assert_eq!(c, [(M, 4 * M), (5 * M, 8 * M)]);
    }
}
