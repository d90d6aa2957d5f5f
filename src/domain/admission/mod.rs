//! The admission decision at the limit, as pure functions of counts and config: what
//! counts, the pre-checks, the user's places, eviction, the overage ceiling, the
//! decision itself and the alert thresholds.

mod verdict;

pub use verdict::{Asked, Decided, Facts, InvalidRequest, Reads, Verdict, judge, reads};

use super::Millis;
use super::config::{CountMode, OverLimit, PerUserOverLimit, SiteConfig, limit_message};
use super::session::{IdleTimeout, SessionState, Standing};

names! {
    // What an admission came to (a comment: the schema has never had a description).
    pub enum Outcome {
        WithinLimit = "within_limit",
        EvictedDangling = "evicted_dangling",
        Overage = "overage",
        /// Admitted by ending sessions of the same user (`replace`, or `replace_oldest`).
        Replaced = "replaced",
        LimitReached = "limit_reached",
        UserLimitReached = "user_limit_reached",
        PoolLimitReached = "pool_limit_reached",
        SessionEnded = "session_ended",
    }
    else |_| "not an admission outcome"
}

impl Outcome {
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
    /// The request carries one of `exempt_roles`: its session takes no place.
    pub exempt: bool,
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
/// the session is admitted. A session that takes no place (`exempt`) is admitted
/// whatever the counts, and frees none: nothing is evicted or ended for it but what
/// it replaces itself.
pub fn decide(a: &Ask) -> Decision {
    if a.exempt {
        let outcome = if a.replaces {
            Outcome::Replaced
        } else {
            Outcome::WithinLimit
        };
        return Decision {
            outcome,
            replace_oldest: false,
            evict: false,
        };
    }
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

/// What counts against a site's limit at one instant, by its count mode: sessions
/// not ended and not expired and, with `live`, active within the idle timeout. The
/// one home of that rule: the admission batch, the usage figures and the counts kept
/// in storage all ask here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counting {
    pub mode: CountMode,
    pub idle_timeout_seconds: i64,
    pub now: Millis,
}

impl Counting {
    pub fn of(cfg: &SiteConfig, now: Millis) -> Self {
        Self {
            mode: cfg.count_mode,
            idle_timeout_seconds: cfg.idle_timeout_seconds,
            now,
        }
    }

    pub fn idle(&self) -> IdleTimeout {
        IdleTimeout::seconds(self.idle_timeout_seconds)
    }

    /// Last activity after this instant is live; at or before it, dangling.
    pub fn live_after(&self) -> Millis {
        self.idle().cutoff(self.now)
    }

    pub fn is_live(&self, last_activity_at: Millis) -> bool {
        !self.idle().is_dangling(last_activity_at, self.now)
    }

    /// `live` or `dangling`, for an open, unexpired session.
    pub fn state(&self, last_activity_at: Millis) -> SessionState {
        if self.is_live(last_activity_at) {
            SessionState::Live
        } else {
            SessionState::Dangling
        }
    }

    /// Whether an open, unexpired session with this last activity counts.
    pub fn counts_open(&self, last_activity_at: Millis) -> bool {
        self.mode == CountMode::Active || self.is_live(last_activity_at)
    }

    /// Whether a session in this standing counts (an exempt one never does).
    pub fn counts(&self, s: &Standing) -> bool {
        !s.exempt
            && s.ended_at.is_none()
            && s.expires_at > self.now
            && self.counts_open(s.last_activity_at)
    }

    /// The counted figure from a site's active and dangling sessions.
    pub fn counted(&self, active: i64, dangling: i64) -> i64 {
        self.mode.counted(active, dangling)
    }
}

/// What a session the site already has needs before anything is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// Ended sessions stay ended: refused with `session_ended`.
    Ended,
    /// An active session asked again (without `replace`): admitted, counted once.
    Again,
}

/// The pre-check on the session's stored standing (none: a new session).
pub fn known(before: Option<&Standing>, now: Millis, replaces: bool) -> Option<Known> {
    let b = before?;
    if b.ended_at.is_some() {
        Some(Known::Ended)
    } else if b.expires_at > now && !replaces {
        Some(Known::Again)
    } else {
        None
    }
}

/// The places a request may not use: the site's reserved places, unless the request
/// carries one of the roles they are kept for.
pub fn reserve(cfg: &SiteConfig, roles: &[String]) -> i64 {
    if roles.iter().any(|r| cfg.reserved_roles.contains(r)) {
        0
    } else {
        cfg.reserved_slots
    }
}

/// Whether a request takes no place: it carries one of the site's `exempt_roles`.
pub fn exempt(cfg: &SiteConfig, roles: &[String]) -> bool {
    roles.iter().any(|r| cfg.exempt_roles.contains(r))
}

/// Whether the decision needs the requesting user's own sessions.
pub fn needs_own(cfg: &SiteConfig, has_user: bool, replaces: bool) -> bool {
    has_user && (cfg.per_user_limit.is_some() || replaces)
}

/// One of the requesting user's open sessions, as the rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Own<'a> {
    pub session: &'a str,
    pub last_activity_at: Millis,
}

/// The request's view of its user's sessions: what `replace` frees, which session
/// `replace_oldest` would end, and the user's cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPlaces {
    /// Counted places freed by the request: the sessions in `replace` that count,
    /// and the session itself when it is already counted (so it is not counted twice).
    pub replacing: i64,
    pub already_counted: bool,
    /// The user's most idle counted session not named in the request.
    pub oldest: Option<String>,
    pub cap: Option<UserCap>,
}

/// Works out [`UserPlaces`]; `Err` names a session in `replace` that is not one of
/// the user's active sessions on the site (the request is invalid).
pub fn user_places(
    cfg: &SiteConfig, counting: &Counting, request: (&str, Option<&Standing>, bool),
    replace: &[String], own: &[Own<'_>],
) -> Result<UserPlaces, String> {
    let (session, before, has_user) = request;
    let already_counted = before.is_some_and(|b| counting.counts(b));
    let mut replacing = i64::from(already_counted);
    for r in replace {
        match own.iter().find(|o| o.session == r) {
            Some(o) => replacing += i64::from(counting.counts_open(o.last_activity_at)),
            None if r == session => {}
            None => return Err(r.clone()),
        }
    }
    let oldest = own
        .iter()
        .find(|o| {
            o.session != session
                && counting.counts_open(o.last_activity_at)
                && !replace.iter().any(|r| r == o.session)
        })
        .map(|o| o.session.to_owned());
    let cap = match (has_user, cfg.per_user_limit) {
        (true, Some(limit)) => Some(UserCap {
            counted: own
                .iter()
                .filter(|o| counting.counts_open(o.last_activity_at))
                .count() as i64,
            limit,
            over: cfg.per_user_over_limit,
            can_replace: oldest.is_some(),
        }),
        _ => None,
    };
    Ok(UserPlaces {
        replacing,
        already_counted,
        oldest,
        cap,
    })
}

/// Whether a dangling session should be looked for to evict: `evict_dangling` at the
/// open places. With `count_mode: live` a dangling session holds no counted place, so
/// evicting one frees nothing and the rule acts as `reject`.
pub fn wants_eviction(cfg: &SiteConfig, counted: i64, replacing: i64, reserve: i64) -> bool {
    cfg.over_limit == OverLimit::EvictDangling
        && cfg.count_mode == CountMode::Active
        && counted - replacing >= cfg.session_limit - reserve
}

/// Whether the most idle dangling session may be the one evicted: never the
/// requesting session, one it replaces, or the one `replace_oldest` would end.
pub fn may_evict(victim: &str, session: &str, replace: &[String], oldest: Option<&str>) -> bool {
    victim != session && !replace.iter().any(|r| r == victim) && oldest != Some(victim)
}

/// `site.utilization_high` fires when counted sessions first reach this share of the
/// limit, and re-arms when they fall below the lower one.
const HIGH_PERCENT: i64 = 80;
const REARM_PERCENT: i64 = 70;
/// At most one `site.limit_reached` per site per hour.
const LIMIT_ALERT_EVERY_MS: i64 = 3_600_000;

/// What a new count does to the site's utilization alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UtilizationAlert {
    Fire,
    Rearm,
}

pub fn utilization_alert(armed: bool, counted: i64, limit: i64) -> Option<UtilizationAlert> {
    if limit <= 0 {
        None
    } else if armed && counted * 100 >= limit * HIGH_PERCENT {
        Some(UtilizationAlert::Fire)
    } else if !armed && counted * 100 < limit * REARM_PERCENT {
        Some(UtilizationAlert::Rearm)
    } else {
        None
    }
}

/// Whether a refusal sends `site.limit_reached`, given when the last one was sent.
pub fn limit_alert_due(last: Option<Millis>, now: Millis) -> bool {
    last.is_none_or(|at| at <= now - LIMIT_ALERT_EVERY_MS)
}

/// One of the refused user's open sessions, so that the site can offer to end it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnSession {
    pub session: String,
    pub live: bool,
    pub last_activity_at: Millis,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

/// Shown to a user refused by their own cap (`per_user_limit`).
pub const USER_LIMIT_MESSAGE: &str = "You are signed in on this site as often as one user may be ({per_user_limit} at a time). Please sign out elsewhere first.";
/// Shown when only the places kept for `reserved_roles` are left.
pub const RESERVED_MESSAGE: &str =
    "The free places on this site are kept for its administrators. Please try again later.";
/// Shown when the tenant's pool over its sites is full.
pub const POOL_MESSAGE: &str =
    "All the sessions your organisation may have on its sites are in use. Please try again later.";

/// The text for a refused user, naming what refused them: the site's `limit_message` only
/// when the site's limit did. Below the most the site admits, only its reserved places can
/// refuse (a request that may use them is refused at that most, not below it).
pub fn refusal_message(cfg: &SiteConfig, outcome: Outcome, counted: i64) -> String {
    let most = match cfg.over_limit {
        OverLimit::AllowOverage => overage_ceiling(cfg.session_limit, cfg.overage_percent),
        OverLimit::Reject | OverLimit::EvictDangling => cfg.session_limit,
    };
    match outcome {
        Outcome::UserLimitReached => USER_LIMIT_MESSAGE.replace(
            "{per_user_limit}",
            &cfg.per_user_limit.unwrap_or_default().to_string(),
        ),
        Outcome::PoolLimitReached => POOL_MESSAGE.to_owned(),
        Outcome::LimitReached if cfg.reserved_slots > 0 && counted < most => {
            RESERVED_MESSAGE.to_owned()
        }
        _ => limit_message(&cfg.limit_message, cfg.session_limit),
    }
}

/// The answer to one admission request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub outcome: Outcome,
    /// Sessions counted against the limit after the decision.
    pub counted: i64,
    pub session_limit: i64,
    /// The text to show a refused user.
    pub message: Option<String>,
    pub evicted: Vec<String>,
    pub replaced: Vec<String>,
    /// On a refusal that names a user: that user's open sessions.
    pub own_sessions: Option<Vec<OwnSession>>,
    pub config_version: i64,
}

impl Answer {
    pub fn new(cfg: &SiteConfig, outcome: Outcome, counted: i64) -> Self {
        Self {
            outcome,
            counted,
            session_limit: cfg.session_limit,
            message: (!outcome.admitted()).then(|| refusal_message(cfg, outcome, counted)),
            evicted: Vec::new(),
            replaced: Vec::new(),
            own_sessions: None,
            config_version: cfg.config_version,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::config::Limits;

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
            exempt: false,
        }
    }

    fn outcome(a: Ask) -> Outcome {
        decide(&a).outcome
    }

    fn site(limit: i64, over_limit: OverLimit, reserved_slots: i64) -> SiteConfig {
        SiteConfig {
            site: "www".to_owned(),
            plan: "basic".to_owned(),
            config_version: 1,
            limits: Limits {
                session_limit: limit,
                count_mode: CountMode::Active,
                over_limit,
                idle_timeout_seconds: 86_400,
                session_ttl_seconds: 1_209_600,
                limit_message: "Only {limit} at a time.".to_owned(),
                reserved_slots,
                reserved_roles: vec!["admin".to_owned()],
                per_user_limit: Some(2),
                per_user_over_limit: PerUserOverLimit::Reject,
                exempt_roles: Vec::new(),
            },
            overage_percent: 50,
        }
    }

    #[test]
    fn each_refusal_names_its_reason() {
        let cfg = site(20, OverLimit::Reject, 0);
        assert_eq!(
            refusal_message(&cfg, Outcome::LimitReached, 20),
            "Only 20 at a time."
        );
        // a user at their own cap on a site at 5 of 20 is not told about the site's limit
        assert_eq!(
            refusal_message(&cfg, Outcome::UserLimitReached, 5),
            "You are signed in on this site as often as one user may be (2 at a time). Please sign out elsewhere first."
        );
        assert_eq!(
            refusal_message(&cfg, Outcome::PoolLimitReached, 5),
            POOL_MESSAGE
        );
        let reserved = site(20, OverLimit::Reject, 2);
        assert_eq!(
            refusal_message(&reserved, Outcome::LimitReached, 18),
            RESERVED_MESSAGE
        );
        assert_eq!(
            refusal_message(&reserved, Outcome::LimitReached, 20),
            "Only 20 at a time."
        );
        // with overage the site admits up to its ceiling (30): below it, the reserve refused
        let overage = site(20, OverLimit::AllowOverage, 2);
        assert_eq!(
            refusal_message(&overage, Outcome::LimitReached, 28),
            RESERVED_MESSAGE
        );
        assert_eq!(
            refusal_message(&overage, Outcome::LimitReached, 30),
            "Only 20 at a time."
        );
        assert_eq!(
            Answer::new(&cfg, Outcome::UserLimitReached, 5).message,
            Some(refusal_message(&cfg, Outcome::UserLimitReached, 5))
        );
        assert_eq!(Answer::new(&cfg, Outcome::WithinLimit, 5).message, None);
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
            "../../../agents/django/tests/admission_cases.json"
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
                exempt: i["exempt_role"].as_bool().unwrap_or(false),
            };
            let want = case["outcome"].as_str().unwrap();
            assert_eq!(decide(&a).outcome.as_str(), want, "{}", case["name"]);
        }
    }
}
