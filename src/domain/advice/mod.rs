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
//!
//! Each replay is one sweep of the period ([`sweep`]); the first limit refusing
//! nothing comes from one more sweep admitting everything, not a replay per guess.

use std::cell::RefCell;
use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use super::admission::overage_ceiling;
use super::billing::{Period, overage_sessions, peak, prorate};
use super::config::{CountMode, OverLimit};
use super::session::Span;
use crate::domain::Millis;

mod model;
#[cfg(test)]
mod oracle;
mod sweep;

pub use model::{Input, Offer, Refusal, Replayed, Rule, Stopped};
#[cfg(test)]
mod tests;

/// The idle timeouts (seconds) whose effect `dangling.avoided_by_idle_timeout` reports.
pub const IDLE_TIMEOUTS: [i64; 4] = [3600, 14_400, 86_400, 259_200];

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

/// Replays the period's attempts under `rule`; `median_ms` is the length of a
/// session a refusal would have been.
pub fn replay(input: &Input, rule: &Rule, median_ms: i64) -> Replayed {
    let never = || false;
    sweep::Month::new(input, median_ms)
        .replay(rule, &never)
        .expect("never stopped")
}

/// The advice of a period.
pub fn advise(input: &Input) -> Advice {
    advise_within(input, &|| false).expect("never stopped")
}

/// The advice of a period, given up as soon as `stop` says so (it is asked every few
/// thousand attempts of each replay).
pub fn advise_within(input: &Input, stop: &dyn Fn() -> bool) -> Result<Advice, Stopped> {
    let replays = Replays::new(input, stop);
    let actual_peak = peak(
        input.sessions.iter().map(|s| (s.start, s.end)),
        input.period.start,
        input.period.end,
    );
    let current = current_of(input, actual_peak);
    let rule = input.current.rule;
    let live_run = replays.run(&rule.counting_live(rule.idle_timeout_seconds))?;
    let options = options(&replays, actual_peak, live_run)?;
    let dangling = dangling_of(&replays, live_run)?;
    let recommendation = recommend(&current, &options, &dangling, input);
    Ok(Advice {
        period: input.period.to_string(),
        current,
        options,
        dangling,
        recommendation,
    })
}

/// The period's attempts and median session length, worked out once for the many
/// replays an advice makes; each rule replayed once.
struct Replays<'a> {
    input: &'a Input,
    month: sweep::Month,
    stop: &'a dyn Fn() -> bool,
    done: RefCell<Vec<(Rule, Replayed)>>,
}

impl<'a> Replays<'a> {
    fn new(input: &'a Input, stop: &'a dyn Fn() -> bool) -> Self {
        let median_ms = median_length(
            &input.sessions,
            &input.period,
            input.current.rule.idle_timeout_seconds.saturating_mul(1000),
        );
        Replays {
            input,
            month: sweep::Month::new(input, median_ms),
            stop,
            done: RefCell::default(),
        }
    }

    fn run(&self, rule: &Rule) -> Result<Replayed, Stopped> {
        if let Some((_, r)) = self.done.borrow().iter().find(|(x, _)| x == rule) {
            return Ok(*r);
        }
        if (self.stop)() {
            return Err(Stopped);
        }
        let r = self.month.replay(rule, self.stop)?;
        self.done.borrow_mut().push((*rule, r));
        Ok(r)
    }
}

/// The options in the order they are offered: the current plan's limits, the current
/// plan counting live sessions, then every plan with its own rule.
fn options(
    replays: &Replays<'_>, actual_peak: i64, live_run: Replayed,
) -> Result<Vec<AdviceOption>, Stopped> {
    let input = replays.input;
    let cur = &input.current;
    let rule = cur.rule;
    let mut options = Options {
        input,
        list: Vec::new(),
    };
    let base = replays.run(&rule)?;
    let top = first_limit_refusing_nothing(replays, base, actual_peak)?;
    // The limits below the first that refuses nothing are listed when there are few.
    const LISTED: i64 = 24;
    let step = ((top - rule.session_limit) / LISTED).max(1);
    let mut n = rule.session_limit;
    while n < top {
        options.add(cur, rule.with_limit(n), replays.run(&rule.with_limit(n))?);
        n += step;
    }
    options.add(
        cur,
        rule.with_limit(top),
        replays.run(&rule.with_limit(top))?,
    );
    options.add(cur, rule.counting_live(rule.idle_timeout_seconds), live_run);
    for offer in &input.plans {
        options.add(offer, offer.rule, replays.run(&offer.rule)?);
    }
    Ok(options.list)
}

/// The current plan's first limit, from its own up, that refuses nothing it can. Each
/// place admits at least one more attempt, so the count of attempts bounds it; found
/// by bisection. `base` is the replay at the current limit.
///
/// A rule that never evicts refuses nothing exactly when its ceiling stays above the
/// sessions counted at every attempt with all of them admitted (until the first
/// refusal the replay is that one), so one sweep admitting everything answers every
/// step of the bisection. Evicting changes which sessions stay, so there each step
/// is a replay.
fn first_limit_refusing_nothing(
    replays: &Replays<'_>, base: Replayed, actual_peak: i64,
) -> Result<i64, Stopped> {
    let rule = replays.input.current.rule;
    let fixed = replays.month.unreplayable;
    let (mut lo, mut hi) = (
        rule.session_limit,
        rule.session_limit.max(0) + replays.month.attempts() as i64 + actual_peak,
    );
    if base.refusals <= fixed {
        hi = lo;
    }
    let evicts =
        rule.over_limit == OverLimit::EvictDangling && rule.count_mode == CountMode::Active;
    let most = if lo < hi && !evicts {
        Some(
            replays
                .month
                .most_counted_admitting_all(&rule, replays.stop)?,
        )
    } else {
        None
    };
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let refuses_nothing = match most {
            Some(most) => {
                let ceiling = match rule.over_limit {
                    OverLimit::AllowOverage => overage_ceiling(mid, rule.overage_percent),
                    OverLimit::Reject | OverLimit::EvictDangling => mid,
                };
                ceiling > most
            }
            None => replays.run(&rule.with_limit(mid))?.refusals <= fixed,
        };
        if refuses_nothing {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(hi)
}

/// What dangling sessions cost the period; `live_run` is the current plan replayed
/// counting live sessions with its own idle timeout.
fn dangling_of(replays: &Replays<'_>, live_run: Replayed) -> Result<AdviceDangling, Stopped> {
    let input = replays.input;
    let rule = input.current.rule;
    // Refusals that recorded no counted sessions are judged from the sessions, with
    // the site's idle timeout.
    let unrecorded: Vec<Millis> = input
        .refusals
        .iter()
        .filter(|r| r.dangling.is_none())
        .map(|r| r.at)
        .collect();
    let judged = sweep::while_dangling(
        &input.sessions,
        rule.idle_timeout_seconds.saturating_mul(1000),
        &unrecorded,
    );
    let recorded = input.refusals.iter().filter(|r| r.dangling == Some(true));
    let mut avoided_by_idle_timeout = BTreeMap::new();
    for s in IDLE_TIMEOUTS {
        let run = replays.run(&rule.counting_live(s))?;
        avoided_by_idle_timeout.insert(s.to_string(), run.admitted_refusals);
    }
    Ok(AdviceDangling {
        refusals_while_dangling: (recorded.count() + judged.iter().filter(|d| **d).count()) as i64,
        avoided_by_live: live_run.admitted_refusals,
        avoided_by_idle_timeout,
    })
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
