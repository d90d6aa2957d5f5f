//! One replay as a sweep: the period's attempts in time order against heaps of the
//! instants where admitted sessions stop counting, so that an attempt costs a few heap
//! operations instead of a scan of every open session. O((sessions + refusals) · log)
//! per rule.
//!
//! The rule of the replay (see the module above): an attempt at `t` is admitted when
//! fewer sessions than the ceiling count at `t`. An open session counts at `t` while
//! `t` lies in its active interval (`count_mode: active`) or its live one (`live`), as
//! [`Span`] defines them; since attempts come in time order, a session that has stopped
//! counting never counts again, so a min-heap of those end instants is the counted set.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use super::model::{Input, Replayed, Rule, Stopped};
use crate::domain::Millis;
use crate::domain::admission::overage_ceiling;
use crate::domain::billing::Period;
use crate::domain::config::{CountMode, OverLimit};
use crate::domain::session::Span;

/// Attempts between two looks at the budget: a look costs a clock read.
const CHECK_EVERY: usize = 4096;

/// One admission attempt: a real session that started in the period, or a refusal.
#[derive(Debug, Clone, Copy)]
enum Attempt {
    Session(Span),
    Refusal,
}

/// What every replay of one input shares, worked out once.
pub(super) struct Month {
    period: Period,
    /// In time order; at one instant sessions before refusals (as they were decided),
    /// each group in its given order.
    attempts: Vec<(Millis, Attempt)>,
    /// Sessions open at the period start, in their given order.
    open_at_start: Vec<Span>,
    pub(super) unreplayable: i64,
    pub(super) median_ms: i64,
}

impl Month {
    pub(super) fn new(input: &Input, median_ms: i64) -> Self {
        let p = &input.period;
        let mut attempts: Vec<(Millis, u8, Attempt)> = input
            .sessions
            .iter()
            .filter(|s| (p.start..p.end).contains(&s.start))
            .map(|s| (s.start, 0, Attempt::Session(*s)))
            .chain(
                input
                    .refusals
                    .iter()
                    .filter(|r| r.replayable)
                    .map(|r| (r.at, 1, Attempt::Refusal)),
            )
            .collect();
        // Stable: each group keeps its given order.
        attempts.sort_by_key(|(t, k, _)| (*t, *k));
        Month {
            period: *p,
            attempts: attempts.into_iter().map(|(t, _, a)| (t, a)).collect(),
            open_at_start: input
                .sessions
                .iter()
                .filter(|s| s.start < p.start && s.end > p.start)
                .copied()
                .collect(),
            unreplayable: input.refusals.iter().filter(|r| !r.replayable).count() as i64,
            median_ms,
        }
    }

    pub(super) fn attempts(&self) -> usize {
        self.attempts.len()
    }

    /// The session an admitted attempt becomes: a refusal lasts the median length and
    /// is live throughout.
    fn span(&self, t: Millis, a: Attempt) -> Span {
        match a {
            Attempt::Session(s) => s,
            Attempt::Refusal => {
                let end = t.saturating_add(self.median_ms.max(1));
                Span {
                    start: t,
                    end,
                    last_activity: end,
                }
            }
        }
    }

    /// Replays the attempts under `rule`.
    pub(super) fn replay(&self, rule: &Rule, stop: &dyn Fn() -> bool) -> Result<Replayed, Stopped> {
        if rule.over_limit == OverLimit::EvictDangling
            && rule.count_mode == CountMode::Active
            && rule.session_limit > 0
        {
            return self.replay_evicting(rule, stop);
        }
        let ceiling = match rule.over_limit {
            OverLimit::AllowOverage => overage_ceiling(rule.session_limit, rule.overage_percent),
            OverLimit::Reject | OverLimit::EvictDangling => rule.session_limit,
        };
        let run = self.admit_while(rule, Some(ceiling), stop)?;
        Ok(Replayed {
            refusals: self.unreplayable + run.refused,
            admitted_refusals: run.admitted_refusals,
            peak_active: run.peak,
        })
    }

    /// The most sessions counted at any attempt when every attempt is admitted: a
    /// ceiling above it refuses nothing, one at or below it refuses the attempt where
    /// it is reached (and the replay is the same up to there). Not for rules that
    /// evict.
    pub(super) fn most_counted_admitting_all(
        &self, rule: &Rule, stop: &dyn Fn() -> bool,
    ) -> Result<i64, Stopped> {
        Ok(self.admit_while(rule, None, stop)?.most_counted)
    }

    /// The sweep without evictions: admitted while fewer than `ceiling` count (every
    /// attempt when `None`).
    fn admit_while(
        &self, rule: &Rule, ceiling: Option<i64>, stop: &dyn Fn() -> bool,
    ) -> Result<Run, Stopped> {
        let idle_ms = rule.idle_timeout_seconds.saturating_mul(1000);
        let counts_until = |s: &Span| match rule.count_mode {
            CountMode::Active => s.active().1,
            CountMode::Live => s.live(idle_ms).1,
        };
        let live = rule.count_mode == CountMode::Live;
        let mut counted: BinaryHeap<Reverse<Millis>> = BinaryHeap::new();
        // Only when counting live sessions does a session count for less time than it
        // is active; otherwise the counted heap is the active one too.
        let mut active: BinaryHeap<Reverse<Millis>> = BinaryHeap::new();
        for s in &self.open_at_start {
            if live {
                active.push(Reverse(s.end));
            }
        }
        // Sessions open at the period start count from their start: an attempt dated
        // before the period may come before some of them.
        let mut waiting = self.open_at_start.clone();
        waiting.sort_by_key(|s| s.start);
        let mut waiting = waiting.into_iter().peekable();
        let mut peak = Peak::new(&self.period);
        let mut run = Run::default();
        for (i, &(t, a)) in self.attempts.iter().enumerate() {
            if i % CHECK_EVERY == 0 && stop() {
                return Err(Stopped);
            }
            while let Some(s) = waiting.next_if(|s| s.start <= t) {
                counted.push(Reverse(counts_until(&s)));
            }
            peak.before(t, if live { &mut active } else { &mut counted });
            pop_until(&mut counted, t);
            let n = counted.len() as i64;
            run.most_counted = run.most_counted.max(n);
            if ceiling.is_some_and(|c| n >= c) {
                run.refused += 1;
            } else {
                if matches!(a, Attempt::Refusal) {
                    run.admitted_refusals += 1;
                }
                let s = self.span(t, a);
                counted.push(Reverse(counts_until(&s)));
                if live {
                    active.push(Reverse(s.end));
                }
            }
            let last_at_t = self.attempts.get(i + 1).is_none_or(|n| n.0 != t);
            if last_at_t {
                peak.after(t, if live { &mut active } else { &mut counted });
            }
        }
        // The peak counts every session open at the period start.
        for s in waiting {
            counted.push(Reverse(counts_until(&s)));
        }
        run.peak = peak.finish(if live { &mut active } else { &mut counted });
        Ok(run)
    }

    /// The sweep of `evict_dangling` counting active sessions: at the ceiling, the most
    /// idle dangling session ends and the attempt takes its place. Which one is "most
    /// idle" among equally idle ones follows the order the first replay kept its open
    /// sessions in (a vector: kept in order when some end, the last moved into the
    /// place of an evicted one, new ones appended), emulated by order keys.
    fn replay_evicting(&self, rule: &Rule, stop: &dyn Fn() -> bool) -> Result<Replayed, Stopped> {
        let idle_ms = rule.idle_timeout_seconds.saturating_mul(1000);
        let mut e = Evicting::default();
        for s in &self.open_at_start {
            e.push(*s, idle_ms);
        }
        // Sessions open at the period start count from their start (see `admit_while`).
        let mut starts: Vec<Millis> = self.open_at_start.iter().map(|s| s.start).collect();
        starts.sort_unstable();
        let not_started = |t: Millis| (starts.len() - starts.partition_point(|s| *s <= t)) as i64;
        let mut peak = Peak::new(&self.period);
        let mut out = Replayed {
            refusals: self.unreplayable,
            admitted_refusals: 0,
            peak_active: 0,
        };
        for (i, &(t, a)) in self.attempts.iter().enumerate() {
            if i % CHECK_EVERY == 0 && stop() {
                return Err(Stopped);
            }
            if !peak.evaluated_from && t > peak.from {
                e.settle(peak.from);
                peak.record(peak.from, e.open.len());
            }
            e.settle(t);
            let counted = e.open.len() as i64 - not_started(t);
            let admit = counted < rule.session_limit || e.evict_one();
            if admit {
                if matches!(a, Attempt::Refusal) {
                    out.admitted_refusals += 1;
                }
                e.push(self.span(t, a), idle_ms);
            } else {
                out.refusals += 1;
            }
            if self.attempts.get(i + 1).is_none_or(|n| n.0 != t) {
                e.settle(t);
                peak.record(t, e.open.len());
            }
        }
        if !peak.evaluated_from {
            e.settle(peak.from);
            peak.record(peak.from, e.open.len());
        }
        out.peak_active = peak.max;
        Ok(out)
    }
}

/// What one sweep without evictions gave.
#[derive(Debug, Default)]
struct Run {
    refused: i64,
    admitted_refusals: i64,
    peak: i64,
    most_counted: i64,
}

fn pop_until(heap: &mut BinaryHeap<Reverse<Millis>>, t: Millis) {
    while heap.peek().is_some_and(|Reverse(e)| *e <= t) {
        heap.pop();
    }
}

/// The peak of the admitted sessions over the period, as `billing::peak` counts it:
/// the most active at one instant of `[from, to)`. It is reached at the period start or
/// at an instant where sessions start, so the sweep looks there: at the start, and
/// after the last attempt of each instant.
struct Peak {
    from: Millis,
    to: Millis,
    max: i64,
    evaluated_from: bool,
}

impl Peak {
    fn new(p: &Period) -> Self {
        Peak {
            from: p.start,
            to: p.end,
            max: 0,
            evaluated_from: false,
        }
    }

    fn record(&mut self, t: Millis, active: usize) {
        if t == self.from {
            self.evaluated_from = true;
        }
        if (self.from..self.to).contains(&t) {
            self.max = self.max.max(active as i64);
        }
    }

    /// Before the attempts at `t`: the period start, if it lies before them.
    fn before(&mut self, t: Millis, active: &mut BinaryHeap<Reverse<Millis>>) {
        if !self.evaluated_from && t > self.from {
            pop_until(active, self.from);
            self.record(self.from, active.len());
        }
    }

    fn after(&mut self, t: Millis, active: &mut BinaryHeap<Reverse<Millis>>) {
        pop_until(active, t);
        self.record(t, active.len());
    }

    fn finish(mut self, active: &mut BinaryHeap<Reverse<Millis>>) -> i64 {
        if !self.evaluated_from {
            pop_until(active, self.from);
            self.record(self.from, active.len());
        }
        self.max
    }
}

/// The open sessions of an evicting replay.
#[derive(Default)]
struct Evicting {
    spans: Vec<Span>,
    /// Each session's place in the first replay's vector of open sessions.
    order: Vec<u64>,
    next_order: u64,
    /// Open sessions by place.
    open: BTreeMap<u64, usize>,
    gone: Vec<bool>,
    /// Open sessions by end, and by the instant they turn dangling (lazily: entries of
    /// sessions gone are skipped).
    ends: BinaryHeap<Reverse<(Millis, usize)>>,
    turning: BinaryHeap<Reverse<(Millis, usize)>>,
    /// Open dangling sessions, the most idle first, then by place.
    dangling: BTreeSet<(Millis, u64, usize)>,
    is_dangling: Vec<bool>,
}

impl Evicting {
    fn push(&mut self, s: Span, idle_ms: i64) {
        let id = self.spans.len();
        self.spans.push(s);
        self.order.push(self.next_order);
        self.open.insert(self.next_order, id);
        self.next_order += 1;
        self.gone.push(false);
        self.is_dangling.push(false);
        self.ends.push(Reverse((s.end, id)));
        self.turning.push(Reverse((s.dangling(idle_ms).0, id)));
    }

    /// Ends the sessions that ended by `t` and marks those dangling at `t`.
    fn settle(&mut self, t: Millis) {
        while let Some(&Reverse((end, id))) = self.ends.peek() {
            if end > t {
                break;
            }
            self.ends.pop();
            if !self.gone[id] {
                self.remove(id);
            }
        }
        while let Some(&Reverse((from, id))) = self.turning.peek() {
            if from > t {
                break;
            }
            self.turning.pop();
            if !self.gone[id] {
                self.is_dangling[id] = true;
                self.dangling
                    .insert((self.spans[id].last_activity, self.order[id], id));
            }
        }
    }

    fn remove(&mut self, id: usize) {
        self.gone[id] = true;
        self.open.remove(&self.order[id]);
        if self.is_dangling[id] {
            self.dangling
                .remove(&(self.spans[id].last_activity, self.order[id], id));
        }
    }

    /// Evicts the most idle dangling session, if any; the last open one takes its place
    /// in the order.
    fn evict_one(&mut self) -> bool {
        let Some(&(_, place, victim)) = self.dangling.first() else {
            return false;
        };
        self.remove(victim);
        if let Some((&last_place, &last)) = self.open.last_key_value()
            && last_place > place
        {
            let dangling = self.is_dangling[last];
            if dangling {
                self.dangling
                    .remove(&(self.spans[last].last_activity, last_place, last));
            }
            self.open.remove(&last_place);
            self.open.insert(place, last);
            self.order[last] = place;
            if dangling {
                self.dangling
                    .insert((self.spans[last].last_activity, place, last));
            }
        }
        true
    }
}

/// How many of `instants` (any order) fall while at least one of the sessions is
/// dangling, judged with `idle_ms`: one sweep over the dangling intervals' edges.
pub(super) fn while_dangling(sessions: &[Span], idle_ms: i64, instants: &[Millis]) -> Vec<bool> {
    let mut edges: Vec<(Millis, i64)> = Vec::with_capacity(sessions.len() * 2);
    for s in sessions {
        let (from, to) = s.dangling(idle_ms);
        if from < to {
            edges.push((from, 1));
            edges.push((to, -1));
        }
    }
    edges.sort_unstable();
    let mut order: Vec<usize> = (0..instants.len()).collect();
    order.sort_by_key(|&i| instants[i]);
    let mut out = vec![false; instants.len()];
    let (mut k, mut open) = (0, 0i64);
    for i in order {
        // Dangling over `[from, to)`: every edge at or before the instant applies.
        while k < edges.len() && edges[k].0 <= instants[i] {
            open += edges[k].1;
            k += 1;
        }
        out[i] = open > 0;
    }
    out
}
