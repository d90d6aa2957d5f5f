//! Plan advice: the period's admissions replayed against other limits, count modes,
//! idle timeouts and plans, from the stored session intervals and the recorded
//! refusals. Plain values in, numbers out.
//!
//! The replay walks every admission attempt of the period in time order: each session
//! that started in the period (with its real interval) and each recorded refusal. An
//! attempt is admitted when the sessions counted at that instant leave a place under
//! the option's rule; an admitted refusal becomes a session lasting the site's median
//! session length in the period (the one assumption: it never existed, so its length
//! is unknown) and takes its place from then on; a refused real session takes none.
//! Sessions open at the period start are there already. Only the latest activity of a
//! session is stored, so a session counts as live from its start until its last
//! activity plus the idle timeout. Per-user caps, reserved places and tenant pools
//! are not replayed: refusals they made stay refusals in every option.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use super::admission::overage_ceiling;
use super::billing::{Period, overage_sessions, peak, prorate};
use super::config::{CountMode, OverLimit};
use super::session::Span;
use crate::domain::Millis;

/// The idle timeouts (seconds) whose effect `dangling.avoided_by_idle_timeout` reports.
pub const IDLE_TIMEOUTS: [i64; 4] = [3600, 14_400, 86_400, 259_200];

// The replay's view of a stored session: is it counted, or dangling, at `t`.
impl Span {
    /// Whether it counts at `t` (it is active then) under a count mode.
    fn counts(&self, t: Millis, mode: CountMode, idle_ms: i64) -> bool {
        self.start <= t
            && t < self.end
            && (mode == CountMode::Active || t < self.last_activity.saturating_add(idle_ms))
    }

    fn dangling_at(&self, t: Millis, idle_ms: i64) -> bool {
        self.start <= t && t < self.end && t >= self.last_activity.saturating_add(idle_ms)
    }
}

/// A recorded refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub at: Millis,
    /// Whether a counted session was dangling then, as the refusal recorded it; `None`
    /// when it recorded none (site-side refusals): then judged from the sessions.
    pub dangling: Option<bool>,
    /// `false` for refusals of rules the replay does not model (a user's cap, the
    /// tenant's pool): they stay refusals in every option.
    pub replayable: bool,
}

/// The rule an option admits by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub session_limit: i64,
    pub count_mode: CountMode,
    pub over_limit: OverLimit,
    pub overage_percent: i64,
    pub idle_timeout_seconds: i64,
}

/// What a plan costs, and what it sold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub plan: String,
    /// The plan's own limit; an option above it pays each extra place at the overage
    /// unit price.
    pub plan_limit: i64,
    pub rule: Rule,
    pub monthly_price_cents: i64,
    pub overage_unit_price_cents: i64,
}

/// Everything the advice is computed from.
#[derive(Debug, Clone)]
pub struct Input {
    pub period: Period,
    /// The part of the period the site existed in, for the prorated base price.
    pub billed_ms: i64,
    pub sessions: Vec<Span>,
    pub refusals: Vec<Refusal>,
    /// The site's plan with its effective rule.
    pub current: Offer,
    /// Every plan, the site's included (with the site's overrides applied).
    pub plans: Vec<Offer>,
    /// The currency of the amounts in the recommendation's text.
    pub currency: String,
}

/// What one replay gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    /// Attempts refused (real sessions and recorded refusals).
    pub refusals: i64,
    /// Recorded refusals this rule would have admitted.
    pub admitted_refusals: i64,
    pub peak_active: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AdviceCurrent {
    pub plan: String,
    pub session_limit: i64,
    pub count_mode: CountMode,
    /// Recorded refusals in the period, site-side ones included.
    pub refusals: i64,
    /// Exact peak of simultaneous sessions in the period.
    pub peak_active: i64,
    pub total_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AdviceOption {
    pub plan: String,
    pub session_limit: i64,
    pub count_mode: CountMode,
    /// Refusals the replay made.
    pub refusals: i64,
    pub peak_active: i64,
    pub overage_sessions: i64,
    pub total_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AdviceDangling {
    /// Recorded refusals made while at least one counted session was dangling.
    pub refusals_while_dangling: i64,
    /// Recorded refusals that `count_mode: live` (with the site's idle timeout)
    /// would have admitted.
    pub avoided_by_live: i64,
    /// The same with each idle timeout, keyed by seconds: 3600, 14400, 86400, 259200.
    pub avoided_by_idle_timeout: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AdviceRecommendation {
    pub plan: String,
    pub session_limit: i64,
    pub count_mode: CountMode,
    /// One plain sentence.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Advice {
    /// `YYYY-MM`.
    pub period: String,
    pub current: AdviceCurrent,
    pub options: Vec<AdviceOption>,
    pub dangling: AdviceDangling,
    pub recommendation: AdviceRecommendation,
}

/// The median length of the sessions that started in the period and ended in it
/// (all that started in it when none ended; `fallback` when none started).
pub fn median_length(sessions: &[Span], period: &Period, fallback: i64) -> i64 {
    let started = |s: &&Span| (period.start..period.end).contains(&s.start);
    let mut ended: Vec<i64> = sessions
        .iter()
        .filter(started)
        .filter(|s| s.end <= period.end)
        .map(|s| s.end - s.start)
        .collect();
    if ended.is_empty() {
        ended = sessions
            .iter()
            .filter(started)
            .map(|s| s.end - s.start)
            .collect();
    }
    if ended.is_empty() {
        return fallback;
    }
    ended.sort_unstable();
    let n = ended.len();
    if n % 2 == 1 {
        ended[n / 2]
    } else {
        (ended[n / 2 - 1] + ended[n / 2]) / 2
    }
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
pub fn replay(input: &Input, rule: &Rule, median_ms: i64) -> Replayed {
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
            .filter(|s| s.counts(t, rule.count_mode, idle_ms))
            .count() as i64;
        let admit = if counted < ceiling {
            true
        } else if rule.over_limit == OverLimit::EvictDangling
            && rule.count_mode == CountMode::Active
            && rule.session_limit > 0
        {
            // The most idle dangling session ends now and frees its place.
            let victim = (0..open.len())
                .filter(|&i| open[i].dangling_at(t, idle_ms))
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

/// What an option costs: the prorated monthly price, each place above the plan's
/// own limit at the overage unit price, and overage at the peak on
/// `allow_overage` plans.
fn cost(input: &Input, offer: &Offer, limit: i64, peak_active: i64) -> (i64, i64) {
    let base = prorate(
        offer.monthly_price_cents,
        input.billed_ms,
        input.period.len_ms(),
    );
    let extra_places = (limit - offer.plan_limit).max(0);
    let overage = overage_sessions(peak_active, limit, offer.rule.over_limit);
    let total = base
        .saturating_add(extra_places.saturating_mul(offer.overage_unit_price_cents))
        .saturating_add(overage.saturating_mul(offer.overage_unit_price_cents));
    (overage, total)
}

/// Whether a counted session was dangling at a refusal: as recorded, else judged
/// from the sessions with the site's idle timeout.
fn while_dangling(input: &Input, r: &Refusal) -> bool {
    r.dangling.unwrap_or_else(|| {
        let idle_ms = input.current.rule.idle_timeout_seconds.saturating_mul(1000);
        input.sessions.iter().any(|s| s.dangling_at(r.at, idle_ms))
    })
}

/// The advice of a period.
pub fn advise(input: &Input) -> Advice {
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

impl Rule {
    fn with_limit(self, session_limit: i64) -> Rule {
        Rule {
            session_limit,
            ..self
        }
    }

    fn counting_live(self, idle_timeout_seconds: i64) -> Rule {
        Rule {
            count_mode: CountMode::Live,
            idle_timeout_seconds,
            ..self
        }
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

/// Refusals of rules the replay does not model: every option keeps them.
fn unreplayable(input: &Input) -> i64 {
    input.refusals.iter().filter(|r| !r.replayable).count() as i64
}

/// The site as it was: its real peak, not a replayed one.
fn current_of(input: &Input, actual_peak: i64) -> AdviceCurrent {
    let cur = &input.current;
    AdviceCurrent {
        plan: cur.plan.clone(),
        session_limit: cur.rule.session_limit,
        count_mode: cur.rule.count_mode,
        refusals: input.refusals.len() as i64,
        peak_active: actual_peak,
        total_cents: cost(input, cur, cur.rule.session_limit, actual_peak).1,
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

/// The options found so far; each plan, limit and count mode once, the first kept.
struct Options<'a> {
    input: &'a Input,
    list: Vec<AdviceOption>,
}

impl Options<'_> {
    fn add(&mut self, offer: &Offer, r: Rule, replayed: Replayed) {
        if self.list.iter().any(|o| {
            o.plan == offer.plan
                && o.session_limit == r.session_limit
                && o.count_mode == r.count_mode
        }) {
            return;
        }
        let (overage, total) = cost(self.input, offer, r.session_limit, replayed.peak_active);
        self.list.push(AdviceOption {
            plan: offer.plan.clone(),
            session_limit: r.session_limit,
            count_mode: r.count_mode,
            refusals: replayed.refusals,
            peak_active: replayed.peak_active,
            overage_sessions: overage,
            total_cents: total,
        });
    }
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

/// The cheapest option that refuses nothing it could (the fewest refusals when none
/// does); at one price the smallest change: the current plan, then its limit, then
/// its count mode.
fn recommend(
    current: &AdviceCurrent, options: &[AdviceOption], dangling: &AdviceDangling, input: &Input,
) -> AdviceRecommendation {
    let best = best_option(current, options);
    let text = recommendation_text(current, &best, dangling, input);
    AdviceRecommendation {
        plan: best.plan,
        session_limit: best.session_limit,
        count_mode: best.count_mode,
        text,
    }
}

fn best_option(current: &AdviceCurrent, options: &[AdviceOption]) -> AdviceOption {
    options
        .iter()
        .min_by_key(|o| {
            (
                o.refusals,
                o.total_cents,
                o.plan != current.plan,
                (o.session_limit - current.session_limit).abs(),
                o.count_mode != current.count_mode,
            )
        })
        .cloned()
        .unwrap_or(AdviceOption {
            plan: current.plan.clone(),
            session_limit: current.session_limit,
            count_mode: current.count_mode,
            refusals: current.refusals,
            peak_active: current.peak_active,
            overage_sessions: 0,
            total_cents: current.total_cents,
        })
}

/// One plain sentence: what was refused, what `best` changes and what it costs.
fn recommendation_text(
    current: &AdviceCurrent, best: &AdviceOption, dangling: &AdviceDangling, input: &Input,
) -> String {
    let period = &input.period;
    let unchanged = best.plan == current.plan
        && best.session_limit == current.session_limit
        && best.count_mode == current.count_mode;
    let r = current.refusals;
    if r == 0 && unchanged {
        return format!("No refusals in {period}; the current plan fits.");
    }
    let what = change_words(current, best);
    let price = price_words(best.total_cents - current.total_cents, &input.currency);
    if r == 0 {
        format!("No refusals in {period}; {what} would have refused none either, {price}.")
    } else if unchanged && best.refusals == 0 {
        format!(
            "{r} refusals were recorded in {period}, yet the current plan, replayed on the sessions headcount knows of, refuses none; no other option does better."
        )
    } else if unchanged {
        format!(
            "No option refuses fewer than the current plan's {} (of {r} recorded in {period}); per-user caps and pools are not replayed.",
            best.refusals
        )
    } else {
        let cause = match dangling.refusals_while_dangling {
            0 => format!("{r} refusals in {period}, none while a session was dangling"),
            d => format!("{d} of {r} refusals were caused by dangling sessions"),
        };
        let outcome = if best.refusals == 0 {
            "would have avoided them".to_owned()
        } else {
            format!("would have left {} of them", best.refusals)
        };
        format!("{cause}; {what} {outcome} {price}.")
    }
}

/// What `best` changes, in words.
fn change_words(current: &AdviceCurrent, best: &AdviceOption) -> String {
    if best.plan == current.plan && best.session_limit == current.session_limit {
        "counting live sessions only".to_owned()
    } else if best.plan == current.plan {
        format!("a limit of {}", best.session_limit)
    } else {
        format!(
            "plan {} (limit {}, counting {} sessions)",
            best.plan,
            best.session_limit,
            best.count_mode_word()
        )
    }
}

/// A difference in cents, in words.
fn price_words(difference: i64, currency: &str) -> String {
    let cents = |c: i64| format!("{}.{:02} {}", c / 100, c % 100, currency);
    match difference {
        0 => "at no extra cost".to_owned(),
        d if d > 0 => format!("for {} more", cents(d)),
        d => format!("for {} less", cents(-d)),
    }
}

impl AdviceOption {
    fn count_mode_word(&self) -> &'static str {
        match self.count_mode {
            CountMode::Active => "active",
            CountMode::Live => "live",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: i64 = 60_000;
    const H: i64 = 60 * M;
    const D: i64 = 24 * H;

    fn march() -> Period {
        Period::parse("2031-03").unwrap()
    }

    fn rule(limit: i64, over_limit: OverLimit) -> Rule {
        Rule {
            session_limit: limit,
            count_mode: CountMode::Active,
            over_limit,
            overage_percent: 0,
            idle_timeout_seconds: 3600,
        }
    }

    fn offer(plan: &str, rule: Rule, monthly: i64, overage_unit: i64) -> Offer {
        Offer {
            plan: plan.into(),
            plan_limit: rule.session_limit,
            rule,
            monthly_price_cents: monthly,
            overage_unit_price_cents: overage_unit,
        }
    }

    /// A session of `[start, end)` from the period start, last active at `last`.
    fn span(start: i64, end: i64, last: i64) -> Span {
        let p = march().start;
        Span {
            start: p + start,
            end: p + end,
            last_activity: p + last,
        }
    }

    fn refusal(at: i64, dangling: bool) -> Refusal {
        Refusal {
            at: march().start + at,
            dangling: Some(dangling),
            replayable: true,
        }
    }

    fn input(
        sessions: Vec<Span>, refusals: Vec<Refusal>, current: Offer, plans: Vec<Offer>,
    ) -> Input {
        let period = march();
        Input {
            billed_ms: period.len_ms(),
            period,
            sessions,
            refusals,
            current,
            plans,
            currency: "EUR".into(),
        }
    }

    fn option(o: &Advice, plan: &str, limit: i64, mode: CountMode) -> AdviceOption {
        o.options
            .iter()
            .find(|x| x.plan == plan && x.session_limit == limit && x.count_mode == mode)
            .unwrap_or_else(|| panic!("no option {plan} {limit} {mode:?} in {:#?}", o.options))
            .clone()
    }

    /// Two sessions left open on the first night hold both places of a limit of 2 for
    /// two weeks; three sign-ins on the next days are refused while nobody works.
    /// Three short sessions later set the median length to an hour.
    #[test]
    fn a_month_where_dangling_sessions_caused_every_refusal() {
        let small = rule(2, OverLimit::Reject);
        let big = rule(5, OverLimit::Reject);
        let sessions = vec![
            span(0, 14 * D, 10 * M),
            span(5 * M, 14 * D, 20 * M),
            span(20 * D, 20 * D + H, 20 * D + H),
            span(20 * D + 2 * H, 20 * D + 3 * H, 20 * D + 3 * H),
            span(20 * D + 4 * H, 20 * D + 5 * H, 20 * D + 5 * H),
        ];
        let refusals = vec![
            refusal(D + 9 * H, true),
            refusal(2 * D + 10 * H, true),
            refusal(3 * D + 11 * H, true),
        ];
        let i = input(
            sessions,
            refusals,
            offer("small", small, 1000, 300),
            vec![offer("small", small, 1000, 300), offer("big", big, 2500, 0)],
        );
        assert_eq!(median_length(&i.sessions, &i.period, 0), H);
        // The current rule, replayed, refuses exactly what was refused.
        assert_eq!(
            replay(&i, &small, H),
            Replayed {
                refusals: 3,
                admitted_refusals: 0,
                peak_active: 2
            }
        );
        let a = advise(&i);
        assert_eq!(
            a.current,
            AdviceCurrent {
                plan: "small".into(),
                session_limit: 2,
                count_mode: CountMode::Active,
                refusals: 3,
                peak_active: 2,
                total_cents: 1000,
            }
        );
        assert_eq!(
            a.dangling,
            AdviceDangling {
                refusals_while_dangling: 3,
                avoided_by_live: 3,
                // With 3 days the two stay live until 72 h 10 min: the refusals at
                // 33 h and 58 h still happen, the one at 83 h does not.
                avoided_by_idle_timeout: [("3600", 3), ("14400", 3), ("86400", 3), ("259200", 1)]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect(),
            }
        );
        // One more place would do too, at the overage unit price; live counting frees
        // the places at no cost.
        let three = option(&a, "small", 3, CountMode::Active);
        assert_eq!(
            (three.refusals, three.peak_active, three.total_cents),
            (0, 3, 1300)
        );
        assert_eq!(option(&a, "small", 2, CountMode::Active).refusals, 3);
        let live = option(&a, "small", 2, CountMode::Live);
        assert_eq!(
            (live.refusals, live.peak_active, live.total_cents),
            (0, 3, 1000)
        );
        assert_eq!(option(&a, "big", 5, CountMode::Active).total_cents, 2500);
        assert_eq!(a.options.len(), 4, "{:#?}", a.options);
        assert_eq!(
            a.recommendation,
            AdviceRecommendation {
                plan: "small".into(),
                session_limit: 2,
                count_mode: CountMode::Live,
                text: "3 of 3 refusals were caused by dangling sessions; counting live sessions only would have avoided them at no extra cost.".into(),
            }
        );
    }

    /// Two people really at work all along on a limit of 2: neither live counting nor
    /// any idle timeout admits the third; a third place on the plan costs more than
    /// the plan with three.
    #[test]
    fn a_month_where_only_a_bigger_plan_helps() {
        let small = rule(2, OverLimit::Reject);
        let medium = rule(3, OverLimit::Reject);
        let large = rule(10, OverLimit::Reject);
        let sessions = vec![
            span(0, 10 * D, 10 * D),
            span(H, 10 * D, 10 * D),
            span(20 * D, 20 * D + 30 * M, 20 * D + 30 * M),
            span(21 * D, 21 * D + 30 * M, 21 * D + 30 * M),
            span(22 * D, 22 * D + 30 * M, 22 * D + 30 * M),
        ];
        let i = input(
            sessions,
            vec![refusal(2 * D, false), refusal(3 * D, false)],
            offer("small", small, 1000, 2000),
            vec![
                offer("small", small, 1000, 2000),
                offer("medium", medium, 2000, 0),
                offer("large", large, 5000, 0),
            ],
        );
        let a = advise(&i);
        assert_eq!(a.dangling.refusals_while_dangling, 0);
        assert_eq!(a.dangling.avoided_by_live, 0);
        assert!(a.dangling.avoided_by_idle_timeout.values().all(|n| *n == 0));
        assert_eq!(option(&a, "small", 2, CountMode::Live).refusals, 2);
        let three = option(&a, "small", 3, CountMode::Active);
        assert_eq!((three.refusals, three.total_cents), (0, 3000));
        let m = option(&a, "medium", 3, CountMode::Active);
        assert_eq!((m.refusals, m.peak_active, m.total_cents), (0, 3, 2000));
        assert_eq!(option(&a, "large", 10, CountMode::Active).total_cents, 5000);
        assert_eq!(
            (
                a.recommendation.plan.as_str(),
                a.recommendation.session_limit,
                a.recommendation.text.as_str()
            ),
            (
                "medium",
                3,
                "2 refusals in 2031-03, none while a session was dangling; plan medium (limit 3, counting active sessions) would have avoided them for 10.00 EUR more."
            )
        );
    }

    /// An `allow_overage` plan of 2 (+50 %: up to 3) at 31.00 a month and 1.50 per
    /// overage session, on a site that existed 29 of the 31 days.
    #[test]
    fn plan_prices_and_overage() {
        let flex = Rule {
            overage_percent: 50,
            ..rule(2, OverLimit::AllowOverage)
        };
        let sessions = vec![
            span(D, 2 * D, 2 * D),
            span(D, 2 * D, 2 * D),
            span(D, 2 * D, 2 * D),
            span(5 * D, 5 * D + H, 5 * D + H),
        ];
        let mut i = input(
            sessions,
            // The fourth at once passes the ceiling of 3.
            vec![refusal(D + H, false)],
            offer("flex", flex, 3100, 150),
            vec![],
        );
        i.billed_ms = 29 * D;
        let a = advise(&i);
        // 3100 × 29/31 = 2900, and one overage session at the peak of 3.
        assert_eq!((a.current.peak_active, a.current.total_cents), (3, 3050));
        let two = option(&a, "flex", 2, CountMode::Active);
        assert_eq!(
            (
                two.refusals,
                two.peak_active,
                two.overage_sessions,
                two.total_cents
            ),
            (1, 3, 1, 3050)
        );
        // A limit of 3 (ceiling 5) admits the fourth: one place above the plan at
        // 1.50, and the peak of 4 is one over the limit.
        let three = option(&a, "flex", 3, CountMode::Active);
        assert_eq!(
            (
                three.refusals,
                three.peak_active,
                three.overage_sessions,
                three.total_cents
            ),
            (0, 4, 1, 3200)
        );
        assert_eq!(a.recommendation.session_limit, 3);
        assert_eq!(
            a.recommendation.text,
            "1 refusals in 2031-03, none while a session was dangling; a limit of 3 would have avoided them for 1.50 EUR more."
        );
    }

    #[test]
    fn evict_dangling_frees_the_most_idle_place() {
        let evict = rule(1, OverLimit::EvictDangling);
        let i = input(
            vec![span(0, 10 * D, 0)],
            vec![refusal(2 * H, false)],
            offer("e", evict, 0, 0),
            vec![],
        );
        // The session idle for an hour is ended at the refusal, which takes its place.
        assert_eq!(
            replay(&i, &evict, H),
            Replayed {
                refusals: 0,
                admitted_refusals: 1,
                peak_active: 1
            }
        );
        // Not while it is live; never when only live sessions count.
        let busy = input(
            vec![span(0, 10 * D, 10 * D)],
            vec![refusal(2 * H, false)],
            offer("e", evict, 0, 0),
            vec![],
        );
        assert_eq!(replay(&busy, &evict, H).refusals, 1);
        let live = Rule {
            count_mode: CountMode::Live,
            ..evict
        };
        assert_eq!(
            replay(&i, &live, H).refusals,
            0,
            "the idle one does not count"
        );
    }

    #[test]
    fn refusals_the_replay_does_not_model_stay() {
        let small = rule(1, OverLimit::Reject);
        let mut r = refusal(H, false);
        r.replayable = false;
        let i = input(vec![], vec![r], offer("s", small, 0, 0), vec![]);
        let a = advise(&i);
        assert_eq!(a.options[0].refusals, 1);
        assert_eq!(a.options.len(), 2, "{:#?}", a.options);
    }

    #[test]
    fn median_of_ended_sessions() {
        let p = march();
        assert_eq!(median_length(&[], &p, 7), 7);
        let s = [span(0, H, H), span(0, 3 * H, 0), span(-D, D, D)];
        // The one from before the period is left out; two left: their mean.
        assert_eq!(median_length(&s, &p, 7), 2 * H);
        // Still open after the period: used only when nothing ended.
        let open = [span(0, 40 * D, 0)];
        assert_eq!(median_length(&open, &p, 7), 40 * D);
    }
}
