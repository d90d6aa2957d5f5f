//! A site's effective configuration: its plan's values, overridden by the site's
//! non-null overrides.

use serde::Serialize;
use utoipa::ToSchema;

pub const DEFAULT_IDLE_TIMEOUT_SECONDS: i64 = 86_400;
pub const DEFAULT_SESSION_TTL_SECONDS: i64 = 1_209_600;
pub const DEFAULT_LIMIT_MESSAGE: &str =
    "There are more than {limit} active user sessions. Please try again later.";

names! {
    /// Which sessions count against the limit.
    #[derive(Default)]
    pub enum CountMode {
        /// Every active session counts (what Lino does).
        #[default]
        Active = "active",
        /// Dangling sessions do not count.
        Live = "live",
    }
    else |_| "must be \"active\" or \"live\""
}

names! {
    /// What happens when a new session would pass the limit.
    #[derive(Default)]
    pub enum OverLimit {
        #[default]
        Reject = "reject",
        EvictDangling = "evict_dangling",
        AllowOverage = "allow_overage",
    }
    else |_| "must be \"reject\", \"evict_dangling\" or \"allow_overage\""
}

names! {
    /// What happens when a user already holds `per_user_limit` counted sessions.
    #[derive(Default)]
    pub enum PerUserOverLimit {
        /// Refuse (outcome `user_limit_reached`).
        #[default]
        Reject = "reject",
        /// End that user's most idle active session (reason `replaced`) and admit.
        ReplaceOldest = "replace_oldest",
    }
    else |_| "must be \"reject\" or \"replace_oldest\""
}

/// The roles that may use reserved places unless a plan says otherwise.
pub fn default_reserved_roles() -> Vec<String> {
    vec!["admin".to_owned()]
}

/// A role list as admissions carry it and plans name it: at most 16 roles of 1–64
/// printable characters.
pub fn parse_roles(roles: &[String]) -> Result<Vec<String>, String> {
    if roles.len() > 16 {
        return Err("at most 16 roles".to_owned());
    }
    for r in roles {
        if r.is_empty() || r.chars().count() > 64 || r.chars().any(char::is_control) {
            return Err("each role is 1 to 64 characters without control characters".to_owned());
        }
    }
    Ok(roles.to_vec())
}

/// `reserved_slots`: 0 to 1,000,000 places.
pub fn parse_reserved_slots(n: i64) -> Result<i64, String> {
    if (0..=1_000_000).contains(&n) {
        Ok(n)
    } else {
        Err("must be between 0 and 1000000".to_owned())
    }
}

/// `per_user_limit`: 1 to 1,000,000 sessions.
pub fn parse_per_user_limit(n: i64) -> Result<i64, String> {
    if (1..=1_000_000).contains(&n) {
        Ok(n)
    } else {
        Err("must be between 1 and 1000000".to_owned())
    }
}

/// Stored form of a role list (a JSON array); an unreadable one reads as the default.
pub fn roles_from_text(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_else(|_| default_reserved_roles())
}

pub fn roles_to_text(roles: &[String]) -> String {
    serde_json::to_string(roles).unwrap_or_else(|_| "[]".to_owned())
}

impl CountMode {
    /// The counted figure from a site's active and dangling sessions.
    pub fn counted(self, active: i64, dangling: i64) -> i64 {
        match self {
            Self::Active => active,
            Self::Live => active - dangling,
        }
    }
}

/// Values a plan sets and a site may override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitValues {
    pub session_limit: i64,
    pub count_mode: CountMode,
    pub over_limit: OverLimit,
    pub idle_timeout_seconds: i64,
    pub session_ttl_seconds: i64,
    pub limit_message: String,
    /// Places kept for admissions carrying one of `reserved_roles`.
    pub reserved_slots: i64,
    pub reserved_roles: Vec<String>,
    /// Most counted sessions one user may hold; `None`: no cap.
    pub per_user_limit: Option<i64>,
    pub per_user_over_limit: PerUserOverLimit,
}

/// The site's own overrides (`null`: the plan's value applies).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = OverridesView)]
pub struct Overrides {
    pub session_limit: Option<i64>,
    pub count_mode: Option<CountMode>,
    pub over_limit: Option<OverLimit>,
    pub idle_timeout_seconds: Option<i64>,
    pub session_ttl_seconds: Option<i64>,
    pub limit_message: Option<String>,
    pub reserved_slots: Option<i64>,
    pub reserved_roles: Option<Vec<String>>,
    pub per_user_limit: Option<i64>,
    pub per_user_over_limit: Option<PerUserOverLimit>,
}

/// What a site runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    pub values: LimitValues,
    pub overage_percent: i64,
}

pub fn effective(plan: &LimitValues, overage_percent: i64, o: &Overrides) -> Effective {
    Effective {
        values: LimitValues {
            // A site never holds more than its plan sold: an override only lowers
            // the limit, also after the plan or its limit changes.
            session_limit: o
                .session_limit
                .map_or(plan.session_limit, |n| n.min(plan.session_limit)),
            count_mode: o.count_mode.unwrap_or(plan.count_mode),
            over_limit: o.over_limit.unwrap_or(plan.over_limit),
            idle_timeout_seconds: o.idle_timeout_seconds.unwrap_or(plan.idle_timeout_seconds),
            session_ttl_seconds: o.session_ttl_seconds.unwrap_or(plan.session_ttl_seconds),
            limit_message: o
                .limit_message
                .clone()
                .unwrap_or_else(|| plan.limit_message.clone()),
            reserved_slots: o.reserved_slots.unwrap_or(plan.reserved_slots),
            reserved_roles: o
                .reserved_roles
                .clone()
                .unwrap_or_else(|| plan.reserved_roles.clone()),
            per_user_limit: o.per_user_limit.or(plan.per_user_limit),
            per_user_over_limit: o.per_user_over_limit.unwrap_or(plan.per_user_over_limit),
        },
        overage_percent,
    }
}

/// The refusal text with `{limit}` filled in.
pub fn limit_message(template: &str, limit: i64) -> String {
    template.replace("{limit}", &limit.to_string())
}

/// A site's effective configuration: plan values merged with the site's overrides.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct SiteConfig {
    pub site: String,
    pub plan: String,
    /// Grows with every change of the effective configuration.
    pub config_version: i64,
    pub session_limit: i64,
    pub count_mode: CountMode,
    pub over_limit: OverLimit,
    pub overage_percent: i64,
    pub idle_timeout_seconds: i64,
    pub session_ttl_seconds: i64,
    pub limit_message: String,
    /// Places kept for admissions carrying one of `reserved_roles`.
    pub reserved_slots: i64,
    pub reserved_roles: Vec<String>,
    /// Most counted sessions one user may hold (`null`: no cap).
    pub per_user_limit: Option<i64>,
    pub per_user_over_limit: PerUserOverLimit,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> LimitValues {
        LimitValues {
            session_limit: 10,
            count_mode: CountMode::Active,
            over_limit: OverLimit::Reject,
            idle_timeout_seconds: DEFAULT_IDLE_TIMEOUT_SECONDS,
            session_ttl_seconds: DEFAULT_SESSION_TTL_SECONDS,
            limit_message: DEFAULT_LIMIT_MESSAGE.to_owned(),
            reserved_slots: 0,
            reserved_roles: default_reserved_roles(),
            per_user_limit: None,
            per_user_over_limit: PerUserOverLimit::Reject,
        }
    }

    #[test]
    fn a_limit_override_never_lifts_the_plans_limit() {
        let o = Overrides {
            session_limit: Some(25),
            ..Overrides::default()
        };
        assert_eq!(effective(&plan(), 0, &o).values.session_limit, 10);
        let lower = Overrides {
            session_limit: Some(4),
            ..Overrides::default()
        };
        assert_eq!(effective(&plan(), 0, &lower).values.session_limit, 4);
    }

    #[test]
    fn overrides_win_where_set() {
        let e = effective(
            &plan(),
            0,
            &Overrides {
                session_limit: Some(3),
                count_mode: Some(CountMode::Live),
                ..Overrides::default()
            },
        );
        assert_eq!(e.values.session_limit, 3);
        assert_eq!(e.values.count_mode, CountMode::Live);
        assert_eq!(e.values.over_limit, OverLimit::Reject);
        assert_eq!(e.values.idle_timeout_seconds, DEFAULT_IDLE_TIMEOUT_SECONDS);
    }

    #[test]
    fn message_fills_the_limit() {
        assert_eq!(
            limit_message(DEFAULT_LIMIT_MESSAGE, 5),
            "There are more than 5 active user sessions. Please try again later."
        );
    }
}
