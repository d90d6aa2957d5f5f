//! The admission decision at the limit, as a pure function of counts and config.

use serde::Serialize;
use utoipa::ToSchema;

use super::config::{OverLimit, PerUserOverLimit};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    WithinLimit,
    EvictedDangling,
    Overage,
    /// Admitted by ending sessions of the same user (`replace`, or `replace_oldest`).
    Replaced,
    LimitReached,
    UserLimitReached,
    PoolLimitReached,
    SessionEnded,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WithinLimit => "within_limit",
            Self::EvictedDangling => "evicted_dangling",
            Self::Overage => "overage",
            Self::Replaced => "replaced",
            Self::LimitReached => "limit_reached",
            Self::UserLimitReached => "user_limit_reached",
            Self::PoolLimitReached => "pool_limit_reached",
            Self::SessionEnded => "session_ended",
        }
    }

    pub fn admitted(self) -> bool {
        matches!(
            self,
            Self::WithinLimit | Self::EvictedDangling | Self::Overage | Self::Replaced
        )
    }
}

/// The most sessions `allow_overage` admits: `ceil(limit * (1 + percent / 100))`.
pub fn overage_ceiling(limit: i64, overage_percent: i64) -> i64 {
    let num = limit * (100 + overage_percent);
    (num + 99).div_euclid(100)
}

/// The requesting user's standing against `per_user_limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserCap {
    /// The user's sessions that count now (by the site's count mode).
    pub counted: i64,
    pub limit: i64,
    pub over: PerUserOverLimit,
    /// Whether the user has a counted session that `replace_oldest` could end.
    pub can_replace: bool,
}

/// Everything one admission decision looks at, as plain numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    /// Sessions that count against the site's limit now (by its count mode).
    pub counted: i64,
    pub limit: i64,
    /// Places this request may not use: the site's `reserved_slots`, or 0 when the
    /// request carries one of `reserved_roles`.
    pub reserve: i64,
    pub over_limit: OverLimit,
    pub overage_percent: i64,
    /// Whether a dangling session exists whose eviction frees a counted place.
    pub can_evict: bool,
    /// Counted places that the request's own `replace` frees (its sessions that count).
    pub replacing: i64,
    /// Whether the request names sessions to replace at all.
    pub replaces: bool,
    pub user: Option<UserCap>,
    /// The tenant pool: (counted over the tenant's sites, pooled_session_limit).
    pub pool: Option<(i64, i64)>,
}

/// What to do: the outcome, and which sessions to end for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    /// End the requesting user's most idle counted session (`replace_oldest`).
    pub replace_oldest: bool,
    /// End the site's most idle dangling session (`evict_dangling`).
    pub evict: bool,
}

impl Decision {
    fn refuse(outcome: Outcome) -> Self {
        Self {
            outcome,
            replace_oldest: false,
            evict: false,
        }
    }
}

/// The site's own rule for a new session: its limit, the places reserved for
/// others, and what `over_limit` does at the limit.
fn site_rule(counted: i64, a: &Ask) -> Outcome {
    let open = (a.limit - a.reserve).max(0);
    if counted < open {
        return Outcome::WithinLimit;
    }
    match a.over_limit {
        OverLimit::Reject => Outcome::LimitReached,
        // An eviction frees one place: it admits only at exactly the open places, not
        // on a site already over them (a lowered limit, a used reserved place).
        OverLimit::EvictDangling if a.can_evict && open > 0 && counted == open => {
            Outcome::EvictedDangling
        }
        OverLimit::EvictDangling => Outcome::LimitReached,
        OverLimit::AllowOverage
            if counted < overage_ceiling(a.limit, a.overage_percent) - a.reserve =>
        {
            Outcome::Overage
        }
        OverLimit::AllowOverage => Outcome::LimitReached,
    }
}

/// Decides a new session's admission: the user's cap first (a user's extra
/// sessions never take places from others), then the site's limit with its
/// reserved places and over-limit rule, then the tenant's pool. Sessions the request
/// replaces free their places before any of it is judged; nothing is ended unless
/// the session is admitted.
pub fn decide(a: &Ask) -> Decision {
    let mut counted = a.counted - a.replacing;
    let mut pool = a.pool.map(|(n, limit)| (n - a.replacing, limit));
    let mut replace_oldest = false;
    if let Some(u) = a.user {
        let user_counted = u.counted - a.replacing;
        if user_counted >= u.limit {
            if u.over == PerUserOverLimit::ReplaceOldest && u.can_replace && u.limit > 0 {
                replace_oldest = true;
                counted -= 1;
                pool = pool.map(|(n, limit)| (n - 1, limit));
            } else {
                return Decision::refuse(Outcome::UserLimitReached);
            }
        }
    }
    let site = site_rule(counted, a);
    if !site.admitted() {
        return Decision::refuse(site);
    }
    let evict = site == Outcome::EvictedDangling;
    if let Some((n, limit)) = pool {
        // An eviction on the same site frees a place in the pool as well.
        let after = n + 1 - i64::from(evict);
        if after > limit {
            return Decision::refuse(Outcome::PoolLimitReached);
        }
    }
    let outcome = if (replace_oldest || a.replaces) && site != Outcome::Overage {
        Outcome::Replaced
    } else {
        site
    };
    Decision {
        outcome,
        replace_oldest,
        evict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ordinary request on a site with `limit`, nothing else in play.
    fn ask(counted: i64, limit: i64, over_limit: OverLimit) -> Ask {
        Ask {
            counted,
            limit,
            reserve: 0,
            over_limit,
            overage_percent: 0,
            can_evict: false,
            replacing: 0,
            replaces: false,
            user: None,
            pool: None,
        }
    }

    fn outcome(a: Ask) -> Outcome {
        decide(&a).outcome
    }

    #[test]
    fn a_limit_of_n_admits_n() {
        assert_eq!(outcome(ask(2, 3, OverLimit::Reject)), Outcome::WithinLimit);
        assert_eq!(outcome(ask(3, 3, OverLimit::Reject)), Outcome::LimitReached);
    }

    #[test]
    fn zero_refuses_everything() {
        for mode in [
            OverLimit::Reject,
            OverLimit::EvictDangling,
            OverLimit::AllowOverage,
        ] {
            let a = Ask {
                can_evict: true,
                overage_percent: 50,
                ..ask(0, 0, mode)
            };
            assert_eq!(outcome(a), Outcome::LimitReached);
        }
    }

    #[test]
    fn eviction_needs_a_dangling_session() {
        let a = Ask {
            can_evict: true,
            ..ask(3, 3, OverLimit::EvictDangling)
        };
        assert_eq!(decide(&a).outcome, Outcome::EvictedDangling);
        assert!(decide(&a).evict);
        assert_eq!(
            outcome(ask(3, 3, OverLimit::EvictDangling)),
            Outcome::LimitReached
        );
    }

    #[test]
    fn overage_stops_at_the_ceiling() {
        assert_eq!(overage_ceiling(10, 25), 13);
        assert_eq!(overage_ceiling(10, 20), 12);
        assert_eq!(overage_ceiling(3, 10), 4);
        assert_eq!(overage_ceiling(10, 0), 10);
        let at = |n| Ask {
            overage_percent: 25,
            ..ask(n, 10, OverLimit::AllowOverage)
        };
        assert_eq!(outcome(at(12)), Outcome::Overage);
        assert_eq!(outcome(at(13)), Outcome::LimitReached);
    }

    #[test]
    fn the_decision_table_shared_with_the_agent_holds() {
        let table: serde_json::Value = serde_json::from_str(include_str!(
            "../../agents/django/tests/admission_cases.json"
        ))
        .expect("the shared admission table is JSON");
        let cases = table["cases"].as_array().expect("cases");
        assert!(cases.len() >= 20, "the table covers the combinations");
        for case in cases {
            let i = &case["ask"];
            let num = |k: &str| i[k].as_i64().unwrap_or(0);
            let a = Ask {
                counted: num("counted"),
                limit: num("limit"),
                reserve: if i["reserved_role"].as_bool().unwrap_or(false) {
                    0
                } else {
                    num("reserved_slots")
                },
                over_limit: OverLimit::parse(i["over_limit"].as_str().unwrap_or("reject")).unwrap(),
                overage_percent: num("overage_percent"),
                can_evict: i["can_evict"].as_bool().unwrap_or(false),
                replacing: num("replacing"),
                replaces: num("replacing") > 0 || i["replaces"].as_bool().unwrap_or(false),
                user: i
                    .get("user_limit")
                    .and_then(|v| v.as_i64())
                    .map(|limit| UserCap {
                        counted: num("user_counted"),
                        limit,
                        over: PerUserOverLimit::parse(
                            i["per_user_over_limit"].as_str().unwrap_or("reject"),
                        )
                        .unwrap(),
                        can_replace: num("user_counted") > 0,
                    }),
                pool: i
                    .get("pool_limit")
                    .and_then(|v| v.as_i64())
                    .map(|limit| (num("pool_counted"), limit)),
            };
            let want = case["outcome"].as_str().unwrap();
            assert_eq!(decide(&a).outcome.as_str(), want, "{}", case["name"]);
        }
    }
}
