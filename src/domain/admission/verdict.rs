//! One admission as three steps: [`reads`] says what storage must read besides the
//! site's count and the session's standing, [`judge`] decides on what was read and
//! returns everything to write as a [`Verdict`], and storage applies it. Nothing here
//! reads or writes.

use super::{
    Ask, Counting, Decision, Known, Outcome, Own, decide, exempt, known, may_evict, needs_own,
    reserve, user_places, wants_eviction,
};
use crate::domain::Millis;
use crate::domain::config::SiteConfig;
use crate::domain::session::{EndReason, Observation, Standing};

/// What an admission request asks, as the rules see it.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    pub session: &'a str,
    pub has_user: bool,
    pub roles: &'a [String],
    /// Sessions of the same user to end for this one.
    pub replace: &'a [String],
    /// The session as the request describes it, its expiry set.
    pub obs: &'a Observation,
}

/// What storage reads for a decision beyond the count and the standing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reads {
    /// The requesting user's open sessions (a per-user cap, or `replace`).
    pub own: bool,
    /// The site's most idle dangling session (`evict_dangling` at the open places).
    pub victim: bool,
    /// The tenant's pool over its sites (held until the end of the transaction).
    pub pool: bool,
}

/// Everything a decision is made on.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub cfg: &'a SiteConfig,
    pub now: Millis,
    /// The session as stored (with this batch's earlier decisions); none: new.
    pub before: Option<&'a Standing>,
    /// Sessions counted on the site, with this batch's earlier decisions.
    pub counted: i64,
    /// The user's open sessions, most idle first (read when [`Reads::own`]).
    pub own: &'a [Own<'a>],
    /// The site's most idle dangling session (read when [`Reads::victim`]).
    pub victim: Option<&'a str>,
    /// (counted over the tenant's sites, its pooled limit), read when [`Reads::pool`].
    pub pool: Option<(i64, i64)>,
}

/// What to read for a request on a site that holds `counted` sessions; `pooled`: the
/// site's tenant has a pooled limit. Reading more than the decision turns out to use
/// is harmless (a victim is looked for when the site is at its open places, whatever
/// the request replaces); reading less is not.
pub fn reads(
    cfg: &SiteConfig, asked: &Asked<'_>, before: Option<&Standing>, counted: i64, now: Millis,
    pooled: bool,
) -> Reads {
    if known(before, now, !asked.replace.is_empty()).is_some() {
        return Reads::default();
    }
    let takes_place = !exempt_mark(cfg, asked, before);
    Reads {
        own: needs_own(cfg, asked.has_user, !asked.replace.is_empty()),
        victim: takes_place && wants_eviction(cfg, counted, 0, reserve(cfg, asked.roles)),
        pool: takes_place && pooled,
    }
}

/// A known session keeps its mark: only a new one is judged by its roles.
fn exempt_mark(cfg: &SiteConfig, asked: &Asked<'_>, before: Option<&Standing>) -> bool {
    before.map_or_else(|| exempt(cfg, asked.roles), |b| b.exempt)
}

/// A decision and everything it writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// `replace` names a session that is not one of the user's active sessions on the
    /// site: the request is invalid and nothing is done.
    Invalid(InvalidRequest),
    Decided(Decided),
}

/// A request found invalid while deciding (a 422): nothing was done for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRequest {
    pub field: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    pub outcome: Outcome,
    /// Sessions counted on the site once the verdict is applied, as the answer says.
    pub counted: i64,
    /// Sessions to end first, each with whether it held a counted place, and why.
    pub end: Vec<(String, bool, EndReason)>,
    /// The session is written, with its (`overage`, `exempt`) flags.
    pub write: Option<(bool, bool)>,
    /// A refusal to record (with a sample of the counted sessions) and alert on.
    pub refused: bool,
    /// A judged admission: its new count is checked against the utilization alert
    /// (a session asked again changes no place).
    pub judged: bool,
}

impl Decided {
    fn settled(outcome: Outcome, counted: i64, write: Option<(bool, bool)>) -> Self {
        Self {
            outcome,
            counted,
            end: Vec::new(),
            write,
            refused: false,
            judged: false,
        }
    }

    /// Sessions the verdict ends for this reason.
    pub fn ended(&self, reason: EndReason) -> Vec<String> {
        self.end
            .iter()
            .filter(|(_, _, r)| *r == reason)
            .map(|(s, _, _)| s.clone())
            .collect()
    }
}

/// Decides one admission on its facts: the stored standing first (an ended session
/// stays ended; an active one asked again is admitted and counted once), then the
/// user's places, the site's limit and the tenant's pool ([`decide`]).
pub fn judge(asked: &Asked<'_>, f: &Facts<'_>) -> Verdict {
    let counting = Counting::of(f.cfg, f.now);
    if let Some(settled) = by_standing(asked, f, &counting) {
        return Verdict::Decided(settled);
    }
    let reserve = reserve(f.cfg, asked.roles);
    let exempt = exempt_mark(f.cfg, asked, f.before);
    let request = (asked.session, f.before, asked.has_user);
    let places = match user_places(f.cfg, &counting, request, asked.replace, f.own) {
        Ok(p) => p,
        Err(name) => {
            return Verdict::Invalid(InvalidRequest {
                field: "replace",
                message: format!("{name:?} is not an active session of this user on this site"),
            });
        }
    };
    // An exempt session takes no place, so nothing is evicted for it.
    let victim = f
        .victim
        .filter(|_| !exempt && wants_eviction(f.cfg, f.counted, places.replacing, reserve))
        .filter(|v| may_evict(v, asked.session, asked.replace, places.oldest.as_deref()));
    let decision: Decision = decide(&Ask {
        counted: f.counted,
        limit: f.cfg.session_limit,
        reserve,
        over_limit: f.cfg.over_limit,
        overage_percent: f.cfg.overage_percent,
        can_evict: victim.is_some(),
        replacing: places.replacing,
        replaces: !asked.replace.is_empty(),
        user: places.cap,
        pool: if exempt { None } else { f.pool },
        exempt,
    });
    if !decision.outcome.admitted() {
        return Verdict::Decided(Decided {
            outcome: decision.outcome,
            counted: f.counted,
            end: Vec::new(),
            write: None,
            refused: true,
            judged: true,
        });
    }
    let end = ending(
        asked,
        f,
        &counting,
        &decision,
        places.oldest.as_deref(),
        victim,
    );
    // The count follows the decision: the places it frees and the one it takes,
    // unless the session takes none, as the site will see it once the session is on.
    let takes = !exempt && !places.already_counted;
    let freed = end.iter().filter(|(_, held, _)| *held).count() as i64;
    let overage = decision.outcome == Outcome::Overage;
    Verdict::Decided(Decided {
        outcome: decision.outcome,
        counted: f.counted + i64::from(takes) - freed,
        end,
        write: Some((overage, exempt)),
        refused: false,
        judged: true,
    })
}

/// The verdict the stored standing settles alone: an ended session stays ended; an
/// active one asked again (without `replace`) is admitted and counted once.
fn by_standing(asked: &Asked<'_>, f: &Facts<'_>, counting: &Counting) -> Option<Decided> {
    match known(f.before, f.now, !asked.replace.is_empty())? {
        Known::Ended => Some(Decided::settled(Outcome::SessionEnded, f.counted, None)),
        Known::Again => {
            let after = Standing::after(f.before, asked.obs);
            let counted = f.counted + i64::from(counting.counts(&after))
                - i64::from(f.before.is_some_and(|b| counting.counts(b)));
            Some(Decided::settled(
                Outcome::WithinLimit,
                counted,
                Some((false, false)),
            ))
        }
    }
}

/// The sessions an admission ends: those the request replaces (but itself), the
/// user's most idle one for `replace_oldest`, and the evicted one; each with whether
/// it held a counted place.
fn ending(
    asked: &Asked<'_>, f: &Facts<'_>, counting: &Counting, decision: &Decision,
    oldest: Option<&str>, victim: Option<&str>,
) -> Vec<(String, bool, EndReason)> {
    let held = |s: &str| {
        f.own
            .iter()
            .find(|o| o.session == s)
            .is_some_and(|o| counting.counts_open(o.last_activity_at))
    };
    let mut end: Vec<(String, bool, EndReason)> = asked
        .replace
        .iter()
        .filter(|s| *s != asked.session)
        .map(|s| (s.clone(), held(s), EndReason::Replaced))
        .collect();
    if decision.replace_oldest
        && let Some(o) = oldest
    {
        end.push((o.to_owned(), held(o), EndReason::Replaced));
    }
    if decision.evict
        && let Some(v) = victim
    {
        end.push((v.to_owned(), true, EndReason::Evicted));
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::config::{Limits, OverLimit, SiteConfig};

    fn site(limit: i64, over_limit: OverLimit) -> SiteConfig {
        SiteConfig {
            site: "www".to_owned(),
            plan: "basic".to_owned(),
            config_version: 1,
            limits: Limits {
                over_limit,
                ..Limits::with_defaults(limit)
            },
            overage_percent: 0,
        }
    }

    fn obs(user: Option<&str>) -> Observation {
        Observation {
            started_at: 1_000,
            last_activity_at: 1_000,
            expires_at: 10_000_000,
            ended: None,
            user: user.map(str::to_owned),
            user_agent: None,
            ip: None,
            exempt: false,
        }
    }

    fn facts<'a>(cfg: &'a SiteConfig, counted: i64, victim: Option<&'a str>) -> Facts<'a> {
        Facts {
            cfg,
            now: 2_000,
            before: None,
            counted,
            own: &[],
            victim,
            pool: None,
        }
    }

    #[test]
    fn at_the_limit_eviction_is_read_for_and_ends_the_victim() {
        let cfg = site(2, OverLimit::EvictDangling);
        let o = obs(None);
        let asked = Asked {
            session: "new",
            has_user: false,
            roles: &[],
            replace: &[],
            obs: &o,
        };
        assert!(reads(&cfg, &asked, None, 2, 2_000, false).victim);
        assert!(!reads(&cfg, &asked, None, 1, 2_000, false).victim);
        let Verdict::Decided(d) = judge(&asked, &facts(&cfg, 2, Some("idle"))) else {
            panic!("decided");
        };
        assert_eq!(d.outcome, Outcome::EvictedDangling);
        assert_eq!(d.end, [("idle".to_owned(), true, EndReason::Evicted)]);
        assert_eq!(
            (d.counted, d.write, d.refused),
            (2, Some((false, false)), false)
        );
        // Without a session to evict it is refused, and nothing is written.
        let Verdict::Decided(d) = judge(&asked, &facts(&cfg, 2, None)) else {
            panic!("decided");
        };
        assert_eq!(
            (d.outcome, d.write, d.refused),
            (Outcome::LimitReached, None, true)
        );
    }

    #[test]
    fn a_session_asked_again_needs_no_read_and_a_stranger_to_replace_is_invalid() {
        let cfg = site(1, OverLimit::Reject);
        let o = obs(Some("ann"));
        let stored = Standing::after(None, &o);
        let asked = Asked {
            session: "s1",
            has_user: true,
            roles: &[],
            replace: &[],
            obs: &o,
        };
        assert_eq!(
            reads(&cfg, &asked, Some(&stored), 1, 2_000, true),
            Reads::default()
        );
        let again = Facts {
            before: Some(&stored),
            ..facts(&cfg, 1, None)
        };
        let Verdict::Decided(d) = judge(&asked, &again) else {
            panic!("decided");
        };
        assert_eq!(
            (d.outcome, d.counted, d.judged),
            (Outcome::WithinLimit, 1, false)
        );
        let replace = ["not-hers".to_owned()];
        let replacing = Asked {
            replace: &replace,
            session: "s2",
            ..asked
        };
        assert!(reads(&cfg, &replacing, None, 1, 2_000, false).own);
        assert!(matches!(
            judge(&replacing, &facts(&cfg, 1, None)),
            Verdict::Invalid(InvalidRequest {
                field: "replace",
                ..
            })
        ));
    }
}
