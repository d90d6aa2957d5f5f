//! The advice of hand-made months, checked figure by figure.

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

fn input(sessions: Vec<Span>, refusals: Vec<Refusal>, current: Offer, plans: Vec<Offer>) -> Input {
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
    let (small, big) = (rule(2, OverLimit::Reject), rule(5, OverLimit::Reject));
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
