//! The replay as it was first written: every option and every bisection step a full
//! replay, each attempt re-scanning the open sessions. Slow but plain; the sweep in
//! [`super::sweep`] must give exactly its answers (checked on random months below).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

// The replay's view of a stored session: is it counted, or dangling, at `t`; from
// the session's intervals, so that the oracle shares the one definition of dangling.
fn counts(s: &Span, t: Millis, mode: CountMode, idle_ms: i64) -> bool {
    let (from, to) = match mode {
        CountMode::Active => s.active(),
        CountMode::Live => s.live(idle_ms),
    };
    from <= t && t < to
}

fn dangling_at(s: &Span, t: Millis, idle_ms: i64) -> bool {
    let (from, to) = s.dangling(idle_ms);
    from <= t && t < to
}

/// One admission attempt: a real session that started in the period, or a refusal.
#[derive(Debug, Clone, Copy)]
enum Attempt {
    Session(Span),
    Refusal,
}

/// The attempts of a period in time order; at one instant sessions before refusals
/// (as they were decided), each group in its given order.
fn attempts(input: &Input) -> Vec<(Millis, Attempt)> {
    let p = &input.period;
    let mut out: Vec<(Millis, u8, Attempt)> = input
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
    out.sort_by_key(|(t, k, _)| (*t, *k));
    out.into_iter().map(|(t, _, a)| (t, a)).collect()
}

/// Replays the period's attempts under `rule`; `median_ms` is the length of a
/// session a refusal would have been.
fn replay(input: &Input, rule: &Rule, median_ms: i64) -> Replayed {
    replay_attempts(input, &attempts(input), rule, median_ms)
}

fn replay_attempts(
    input: &Input, attempts: &[(Millis, Attempt)], rule: &Rule, median_ms: i64,
) -> Replayed {
    let p = &input.period;
    let idle_ms = rule.idle_timeout_seconds.saturating_mul(1000);
    let ceiling = match rule.over_limit {
        OverLimit::AllowOverage => overage_ceiling(rule.session_limit, rule.overage_percent),
        OverLimit::Reject | OverLimit::EvictDangling => rule.session_limit,
    };
    // Sessions admitted so far that may still be open, and all admitted, for the peak.
    let mut open: Vec<Span> = input
        .sessions
        .iter()
        .filter(|s| s.start < p.start && s.end > p.start)
        .copied()
        .collect();
    let mut admitted: Vec<Span> = open.clone();
    let mut out = Replayed {
        refusals: unreplayable(input),
        admitted_refusals: 0,
        peak_active: 0,
    };
    for &(t, attempt) in attempts {
        open.retain(|s| s.end > t);
        let counted = open
            .iter()
            .filter(|s| counts(s, t, rule.count_mode, idle_ms))
            .count() as i64;
        let admit = if counted < ceiling {
            true
        } else if rule.over_limit == OverLimit::EvictDangling
            && rule.count_mode == CountMode::Active
            && rule.session_limit > 0
        {
            // The most idle dangling session ends now and frees its place.
            let victim = (0..open.len())
                .filter(|&i| dangling_at(&open[i], t, idle_ms))
                .min_by_key(|&i| open[i].last_activity);
            match victim {
                Some(i) => {
                    let v = open.swap_remove(i);
                    if let Some(a) = admitted.iter_mut().find(|a| **a == v) {
                        a.end = t;
                    }
                    true
                }
                None => false,
            }
        } else {
            false
        };
        if !admit {
            out.refusals += 1;
            continue;
        }
        let span = match attempt {
            Attempt::Session(s) => s,
            Attempt::Refusal => {
                out.admitted_refusals += 1;
                // Live throughout: in use until it ends.
                let end = t.saturating_add(median_ms.max(1));
                Span {
                    start: t,
                    end,
                    last_activity: end,
                }
            }
        };
        open.push(span);
        admitted.push(span);
    }
    out.peak_active = peak(admitted.iter().map(|s| (s.start, s.end)), p.start, p.end);
    out
}

/// Whether a counted session was dangling at a refusal: as recorded, else judged
/// from the sessions with the site's idle timeout.
fn while_dangling(input: &Input, r: &Refusal) -> bool {
    r.dangling.unwrap_or_else(|| {
        let idle_ms = input.current.rule.idle_timeout_seconds.saturating_mul(1000);
        input.sessions.iter().any(|s| dangling_at(s, r.at, idle_ms))
    })
}

/// The advice of a period.
pub(super) fn advise(input: &Input) -> Advice {
    let replays = Replays::new(input);
    let actual_peak = peak(
        input.sessions.iter().map(|s| (s.start, s.end)),
        input.period.start,
        input.period.end,
    );
    let current = current_of(input, actual_peak);
    let rule = input.current.rule;
    let live_run = replays.run(&rule.counting_live(rule.idle_timeout_seconds));
    let options = options(&replays, actual_peak, live_run);
    let dangling = dangling_of(&replays, live_run);
    let recommendation = recommend(&current, &options, &dangling, input);
    Advice {
        period: input.period.to_string(),
        current,
        options,
        dangling,
        recommendation,
    }
}

/// The period's attempts and median session length, worked out once for the many
/// replays an advice makes.
struct Replays<'a> {
    input: &'a Input,
    attempts: Vec<(Millis, Attempt)>,
    median_ms: i64,
}

impl<'a> Replays<'a> {
    fn new(input: &'a Input) -> Self {
        let median_ms = median_length(
            &input.sessions,
            &input.period,
            input.current.rule.idle_timeout_seconds.saturating_mul(1000),
        );
        Replays {
            input,
            attempts: attempts(input),
            median_ms,
        }
    }

    fn run(&self, rule: &Rule) -> Replayed {
        replay_attempts(self.input, &self.attempts, rule, self.median_ms)
    }
}

/// The options in the order they are offered: the current plan's limits, the current
/// plan counting live sessions, then every plan with its own rule.
fn options(replays: &Replays<'_>, actual_peak: i64, live_run: Replayed) -> Vec<AdviceOption> {
    let input = replays.input;
    let cur = &input.current;
    let rule = cur.rule;
    let mut options = Options {
        input,
        list: Vec::new(),
    };
    let base = replays.run(&rule);
    let top = first_limit_refusing_nothing(replays, base, actual_peak);
    // The limits below the first that refuses nothing are listed when there are few.
    const LISTED: i64 = 24;
    let step = ((top - rule.session_limit) / LISTED).max(1);
    let mut n = rule.session_limit;
    while n < top {
        let r = if n == rule.session_limit {
            base
        } else {
            replays.run(&rule.with_limit(n))
        };
        options.add(cur, rule.with_limit(n), r);
        n += step;
    }
    options.add(
        cur,
        rule.with_limit(top),
        replays.run(&rule.with_limit(top)),
    );
    options.add(cur, rule.counting_live(rule.idle_timeout_seconds), live_run);
    for offer in &input.plans {
        options.add(offer, offer.rule, replays.run(&offer.rule));
    }
    options.list
}

/// The current plan's first limit, from its own up, that refuses nothing it can. Each
/// place admits at least one more attempt, so the count of attempts bounds it; found
/// by bisection. `base` is the replay at the current limit.
fn first_limit_refusing_nothing(replays: &Replays<'_>, base: Replayed, actual_peak: i64) -> i64 {
    let rule = replays.input.current.rule;
    let fixed = unreplayable(replays.input);
    let (mut lo, mut hi) = (
        rule.session_limit,
        rule.session_limit.max(0) + replays.attempts.len() as i64 + actual_peak,
    );
    if base.refusals <= fixed {
        hi = lo;
    }
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if replays.run(&rule.with_limit(mid)).refusals <= fixed {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    hi
}

/// What dangling sessions cost the period; `live_run` is the current plan replayed
/// counting live sessions with its own idle timeout.
fn dangling_of(replays: &Replays<'_>, live_run: Replayed) -> AdviceDangling {
    let input = replays.input;
    let rule = input.current.rule;
    AdviceDangling {
        refusals_while_dangling: input
            .refusals
            .iter()
            .filter(|r| while_dangling(input, r))
            .count() as i64,
        avoided_by_live: live_run.admitted_refusals,
        avoided_by_idle_timeout: IDLE_TIMEOUTS
            .iter()
            .map(|&s| {
                (
                    s.to_string(),
                    replays.run(&rule.counting_live(s)).admitted_refusals,
                )
            })
            .collect(),
    }
}

/// Refusals of rules the replay does not model: every option keeps them.
fn unreplayable(input: &Input) -> i64 {
    input.refusals.iter().filter(|r| !r.replayable).count() as i64
}

const H: i64 = 3_600_000;

/// A rule as sites have them, on small limits so that months fill them.
fn random_rule(rng: &mut StdRng) -> Rule {
    Rule {
        session_limit: rng.random_range(0..6),
        count_mode: if rng.random_bool(0.5) {
            CountMode::Active
        } else {
            CountMode::Live
        },
        over_limit: match rng.random_range(0..3) {
            0 => OverLimit::Reject,
            1 => OverLimit::AllowOverage,
            _ => OverLimit::EvictDangling,
        },
        overage_percent: [0, 20, 50, 100][rng.random_range(0..4)],
        idle_timeout_seconds: [0, 1800, 3600, 7200, 86_400][rng.random_range(0..5)],
    }
}

fn random_offer(rng: &mut StdRng, plan: &str) -> Offer {
    let rule = random_rule(rng);
    Offer {
        plan: plan.into(),
        plan_limit: (rule.session_limit + rng.random_range(-1..2)).max(0),
        rule,
        monthly_price_cents: rng.random_range(0..5000),
        overage_unit_price_cents: rng.random_range(0..500),
    }
}

/// A small month: a few to a few dozen sessions and refusals on a grid of whole hours
/// (so that instants tie), in a window that makes them crowd or spread, some from
/// before the period or reaching past it.
fn random_month(seed: u64) -> Input {
    let rng = &mut StdRng::seed_from_u64(seed);
    let period = Period::parse("2031-03").unwrap();
    let window = [12, 48, 200, 800][rng.random_range(0..4)];
    let at = |rng: &mut StdRng| period.start + rng.random_range(-24..window) * H;
    let sessions = (0..rng.random_range(0..40))
        .map(|_| {
            let start = at(rng);
            let end = start + rng.random_range(-1..window / 2 + 2) * H;
            let last_activity = start + rng.random_range(-1..window / 2 + 2) * H;
            Span {
                start,
                end,
                last_activity,
            }
        })
        .collect();
    let refusals = (0..rng.random_range(0..30))
        .map(|_| Refusal {
            at: at(rng),
            dangling: match rng.random_range(0..3) {
                0 => None,
                1 => Some(false),
                _ => Some(true),
            },
            replayable: rng.random_bool(0.85),
        })
        .collect();
    let current = random_offer(rng, "current");
    let mut plans: Vec<Offer> = (0..rng.random_range(0..4))
        .map(|i| random_offer(rng, &format!("p{i}")))
        .collect();
    if rng.random_bool(0.5) {
        plans.push(current.clone());
    }
    Input {
        period,
        billed_ms: rng.random_range(0..=period.len_ms()),
        sessions,
        refusals,
        current,
        plans,
        currency: "EUR".into(),
    }
}

/// The sweep gives the first replay's whole advice, and its replay of any rule, on
/// thousands of random months.
#[test]
fn the_sweep_answers_as_the_first_replay_on_random_months() {
    for seed in 0..3000 {
        let input = random_month(seed);
        let expected = advise(&input);
        let got = super::advise(&input);
        assert_eq!(got, expected, "seed {seed}: {input:#?}");
        let rng = &mut StdRng::seed_from_u64(seed ^ 0x5eed);
        let median = median_length(&input.sessions, &input.period, H);
        for _ in 0..4 {
            let rule = random_rule(rng);
            assert_eq!(
                super::replay(&input, &rule, median),
                replay(&input, &rule, median),
                "seed {seed}, {rule:?}: {input:#?}"
            );
        }
    }
}

/// A stop asked for is a stop: the advice is given up, not finished.
#[test]
fn a_stop_gives_the_advice_up() {
    let input = random_month(7);
    assert_eq!(super::advise_within(&input, &|| true), Err(Stopped));
}
