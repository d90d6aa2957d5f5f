//! A site's effective configuration: its plan's values, overridden by the site's
//! non-null overrides.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ids::{SessionLimit, parse_currency, parse_timeout_seconds};
use super::patch::{NOT_NULL, Patch};
use super::plan_terms::{parse_limit_message, parse_overage_percent, parse_price_cents};

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

// The limits come in three shapes: `Limits` (every value set: what a plan sells and
// a site runs with), `Overrides` (each may be unset: a site's own) and `LimitsPatch`
// (each may be left out or cleared: a change). A new limit is added to all three and
// given its rule below (its check, whether a tenant may write it, how it applies);
// storage adds its column (`db/limits.rs`, the schema and a migration). The request
// bodies, views, checks and OpenAPI document follow from these types: the compiler
// points to every function here that must class the new field.

/// Values a plan sets and a site may override (`per_user_limit` `None`: no cap).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Limits {
    #[schema(minimum = 0, maximum = 1000000)]
    pub session_limit: i64,
    pub count_mode: CountMode,
    pub over_limit: OverLimit,
    #[schema(minimum = 60, maximum = 31536000)]
    pub idle_timeout_seconds: i64,
    #[schema(minimum = 60, maximum = 31536000)]
    pub session_ttl_seconds: i64,
    pub limit_message: String,
    /// Places kept for admissions carrying one of `reserved_roles`.
    #[schema(minimum = 0, maximum = 1000000)]
    pub reserved_slots: i64,
    /// Roles that may use the reserved places.
    #[schema(max_items = 16)]
    pub reserved_roles: Vec<String>,
    /// Most counted sessions one user may hold.
    #[schema(minimum = 1, maximum = 1000000)]
    pub per_user_limit: Option<i64>,
    pub per_user_over_limit: PerUserOverLimit,
    /// Roles whose sessions take no place: admitted and listed, never counted.
    #[schema(max_items = 16)]
    pub exempt_roles: Vec<String>,
}

/// The site's own overrides (`null`: the plan's value applies).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = OverridesView)]
pub struct Overrides {
    #[schema(minimum = 0, maximum = 1000000)]
    pub session_limit: Option<i64>,
    pub count_mode: Option<CountMode>,
    pub over_limit: Option<OverLimit>,
    #[schema(minimum = 60, maximum = 31536000)]
    pub idle_timeout_seconds: Option<i64>,
    #[schema(minimum = 60, maximum = 31536000)]
    pub session_ttl_seconds: Option<i64>,
    pub limit_message: Option<String>,
    /// Places kept for admissions carrying one of `reserved_roles`.
    #[schema(minimum = 0, maximum = 1000000)]
    pub reserved_slots: Option<i64>,
    /// Roles that may use the reserved places.
    #[schema(max_items = 16)]
    pub reserved_roles: Option<Vec<String>>,
    /// Most counted sessions one user may hold.
    #[schema(minimum = 1, maximum = 1000000)]
    pub per_user_limit: Option<i64>,
    pub per_user_over_limit: Option<PerUserOverLimit>,
    /// Roles whose sessions take no place: admitted and listed, never counted.
    #[schema(max_items = 16)]
    pub exempt_roles: Option<Vec<String>>,
}

/// A change of the limits: a field left out is unchanged, `null` clears it where it
/// may be cleared (each field's `serde(default)` reads "left out" as `Keep`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsPatch {
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 1000000)]
    pub session_limit: Patch<i64>,
    #[serde(default)]
    #[schema(value_type = Option<CountMode>)]
    pub count_mode: Patch<CountMode>,
    #[serde(default)]
    #[schema(value_type = Option<OverLimit>)]
    pub over_limit: Patch<OverLimit>,
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 60, maximum = 31536000)]
    pub idle_timeout_seconds: Patch<i64>,
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 60, maximum = 31536000)]
    pub session_ttl_seconds: Patch<i64>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub limit_message: Patch<String>,
    /// Places kept for admissions carrying one of `reserved_roles`.
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 1000000)]
    pub reserved_slots: Patch<i64>,
    /// Roles that may use the reserved places.
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>, max_items = 16)]
    pub reserved_roles: Patch<Vec<String>>,
    /// Most counted sessions one user may hold.
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1000000)]
    pub per_user_limit: Patch<i64>,
    #[serde(default)]
    #[schema(value_type = Option<PerUserOverLimit>)]
    pub per_user_over_limit: Patch<PerUserOverLimit>,
    /// Roles whose sessions take no place: admitted and listed, never counted.
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>, max_items = 16)]
    pub exempt_roles: Patch<Vec<String>>,
}

/// What a plan adds to its limits: the overage and the prices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PlanTerms {
    #[schema(minimum = 0, maximum = 1000)]
    pub overage_percent: i64,
    #[schema(minimum = 0)]
    pub monthly_price_cents: i64,
    #[schema(minimum = 0)]
    pub overage_unit_price_cents: i64,
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: String,
}

/// A change of a plan's terms (none of them may be cleared).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanTermsPatch {
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 1000)]
    pub overage_percent: Patch<i64>,
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 0)]
    pub monthly_price_cents: Patch<i64>,
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 0)]
    pub overage_unit_price_cents: Patch<i64>,
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^[A-Z]{3}$")]
    pub currency: Patch<String>,
}

/// The fields of a change that failed their checks: each field's name and why.
pub type Invalid = Vec<(&'static str, String)>;

/// What a change's `null` means for the value it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nulls {
    /// Clears the field (a site's overrides: the plan's value applies).
    Clear,
    /// Refused, except for a value that may itself be absent (a plan's
    /// `per_user_limit`: no cap).
    Refused,
    /// The field's default, as if it were left out (a new plan).
    Default,
}

/// A field of a change with its sent value checked by `check`; a value that fails, or
/// a `null` the change may not send, is reported in `bad` and left out.
fn checked<T>(
    bad: &mut Invalid, field: &'static str, p: Patch<T>, nulls: Nulls, may_be_absent: bool,
    check: impl FnOnce(T) -> Result<T, String>,
) -> Patch<T> {
    match p {
        Patch::Keep => Patch::Keep,
        Patch::Set(v) => match check(v) {
            Ok(v) => Patch::Set(v),
            Err(m) => {
                bad.push((field, m));
                Patch::Keep
            }
        },
        Patch::Clear => match nulls {
            Nulls::Clear => Patch::Clear,
            Nulls::Refused if may_be_absent => Patch::Clear,
            Nulls::Default => Patch::Keep,
            Nulls::Refused => {
                bad.push((field, NOT_NULL.to_owned()));
                Patch::Keep
            }
        },
    }
}

/// A value after a change: a value sent replaces it, anything else keeps it.
fn replaced<T: Clone>(current: &T, p: Patch<T>) -> T {
    match p {
        Patch::Set(v) => v,
        Patch::Keep | Patch::Clear => current.clone(),
    }
}

/// A value that may be absent after a change: a value sets, `null` clears.
fn overridden<T: Clone>(current: &Option<T>, p: Patch<T>) -> Option<T> {
    match p {
        Patch::Keep => current.clone(),
        Patch::Clear => None,
        Patch::Set(v) => Some(v),
    }
}

/// The modes need no check: serde accepts only their names.
fn any<T>(v: T) -> Result<T, String> {
    Ok(v)
}

// Each limit's rule, in one place: how a sent value is checked, whether `null` may
// clear it on a plan, how it is applied. Every function names every field (no `..`),
// so that a new limit does not compile until it has its rule here.
impl LimitsPatch {
    /// The change with every sent value checked; what fails is reported and left out.
    pub fn checked(self, nulls: Nulls, bad: &mut Invalid) -> Self {
        let Self {
            session_limit,
            count_mode,
            over_limit,
            idle_timeout_seconds,
            session_ttl_seconds,
            limit_message,
            reserved_slots,
            reserved_roles,
            per_user_limit,
            per_user_over_limit,
            exempt_roles,
        } = self;
        let roles = |r: Vec<String>| parse_roles(&r);
        Self {
            session_limit: checked(bad, "session_limit", session_limit, nulls, false, |n| {
                SessionLimit::parse(n).map(SessionLimit::get)
            }),
            count_mode: checked(bad, "count_mode", count_mode, nulls, false, any),
            over_limit: checked(bad, "over_limit", over_limit, nulls, false, any),
            idle_timeout_seconds: checked(
                bad,
                "idle_timeout_seconds",
                idle_timeout_seconds,
                nulls,
                false,
                parse_timeout_seconds,
            ),
            session_ttl_seconds: checked(
                bad,
                "session_ttl_seconds",
                session_ttl_seconds,
                nulls,
                false,
                parse_timeout_seconds,
            ),
            limit_message: checked(bad, "limit_message", limit_message, nulls, false, |m| {
                parse_limit_message(&m)
            }),
            reserved_slots: checked(
                bad,
                "reserved_slots",
                reserved_slots,
                nulls,
                false,
                parse_reserved_slots,
            ),
            reserved_roles: checked(bad, "reserved_roles", reserved_roles, nulls, false, roles),
            per_user_limit: checked(
                bad,
                "per_user_limit",
                per_user_limit,
                nulls,
                true,
                parse_per_user_limit,
            ),
            per_user_over_limit: checked(
                bad,
                "per_user_over_limit",
                per_user_over_limit,
                nulls,
                false,
                any,
            ),
            exempt_roles: checked(bad, "exempt_roles", exempt_roles, nulls, false, roles),
        }
    }

    /// A plan's limits after this (checked) change.
    pub fn applied_to_limits(self, l: &Limits) -> Limits {
        let Self {
            session_limit,
            count_mode,
            over_limit,
            idle_timeout_seconds,
            session_ttl_seconds,
            limit_message,
            reserved_slots,
            reserved_roles,
            per_user_limit,
            per_user_over_limit,
            exempt_roles,
        } = self;
        Limits {
            session_limit: replaced(&l.session_limit, session_limit),
            count_mode: replaced(&l.count_mode, count_mode),
            over_limit: replaced(&l.over_limit, over_limit),
            idle_timeout_seconds: replaced(&l.idle_timeout_seconds, idle_timeout_seconds),
            session_ttl_seconds: replaced(&l.session_ttl_seconds, session_ttl_seconds),
            limit_message: replaced(&l.limit_message, limit_message),
            reserved_slots: replaced(&l.reserved_slots, reserved_slots),
            reserved_roles: replaced(&l.reserved_roles, reserved_roles),
            per_user_limit: overridden(&l.per_user_limit, per_user_limit),
            per_user_over_limit: replaced(&l.per_user_over_limit, per_user_over_limit),
            exempt_roles: replaced(&l.exempt_roles, exempt_roles),
        }
    }

    /// A site's overrides after this (checked) change: a value sets, `null` clears.
    pub fn applied_to_overrides(self, o: &Overrides) -> Overrides {
        let Self {
            session_limit,
            count_mode,
            over_limit,
            idle_timeout_seconds,
            session_ttl_seconds,
            limit_message,
            reserved_slots,
            reserved_roles,
            per_user_limit,
            per_user_over_limit,
            exempt_roles,
        } = self;
        Overrides {
            session_limit: overridden(&o.session_limit, session_limit),
            count_mode: overridden(&o.count_mode, count_mode),
            over_limit: overridden(&o.over_limit, over_limit),
            idle_timeout_seconds: overridden(&o.idle_timeout_seconds, idle_timeout_seconds),
            session_ttl_seconds: overridden(&o.session_ttl_seconds, session_ttl_seconds),
            limit_message: overridden(&o.limit_message, limit_message),
            reserved_slots: overridden(&o.reserved_slots, reserved_slots),
            reserved_roles: overridden(&o.reserved_roles, reserved_roles),
            per_user_limit: overridden(&o.per_user_limit, per_user_limit),
            per_user_over_limit: overridden(&o.per_user_over_limit, per_user_over_limit),
            exempt_roles: overridden(&o.exempt_roles, exempt_roles),
        }
    }
}

/// A value given or not, as a change: given sets, not given keeps.
fn given<T>(v: Option<T>) -> Patch<T> {
    v.map_or(Patch::Keep, Patch::Set)
}

/// A new site's overrides, as a change of none: each one given is set.
impl From<Overrides> for LimitsPatch {
    fn from(o: Overrides) -> Self {
        let Overrides {
            session_limit,
            count_mode,
            over_limit,
            idle_timeout_seconds,
            session_ttl_seconds,
            limit_message,
            reserved_slots,
            reserved_roles,
            per_user_limit,
            per_user_over_limit,
            exempt_roles,
        } = o;
        Self {
            session_limit: given(session_limit),
            count_mode: given(count_mode),
            over_limit: given(over_limit),
            idle_timeout_seconds: given(idle_timeout_seconds),
            session_ttl_seconds: given(session_ttl_seconds),
            limit_message: given(limit_message),
            reserved_slots: given(reserved_slots),
            reserved_roles: given(reserved_roles),
            per_user_limit: given(per_user_limit),
            per_user_over_limit: given(per_user_over_limit),
            exempt_roles: given(exempt_roles),
        }
    }
}

impl Limits {
    /// A new plan's limits: its session limit, and every other value at its default
    /// (no `per_user_limit`: no cap).
    pub fn with_defaults(session_limit: i64) -> Self {
        Self {
            session_limit,
            count_mode: CountMode::default(),
            over_limit: OverLimit::default(),
            idle_timeout_seconds: DEFAULT_IDLE_TIMEOUT_SECONDS,
            session_ttl_seconds: DEFAULT_SESSION_TTL_SECONDS,
            limit_message: DEFAULT_LIMIT_MESSAGE.to_owned(),
            reserved_slots: 0,
            reserved_roles: default_reserved_roles(),
            per_user_limit: None,
            per_user_over_limit: PerUserOverLimit::default(),
            exempt_roles: Vec::new(),
        }
    }
}

impl Default for PlanTerms {
    /// A new plan's terms: no overage, free, in euros.
    fn default() -> Self {
        Self {
            overage_percent: 0,
            monthly_price_cents: 0,
            overage_unit_price_cents: 0,
            currency: "EUR".to_owned(),
        }
    }
}

impl PlanTermsPatch {
    /// The change with every sent value checked (none of them may be cleared).
    pub fn checked(self, nulls: Nulls, bad: &mut Invalid) -> Self {
        let Self {
            overage_percent,
            monthly_price_cents,
            overage_unit_price_cents,
            currency,
        } = self;
        Self {
            overage_percent: checked(
                bad,
                "overage_percent",
                overage_percent,
                nulls,
                false,
                parse_overage_percent,
            ),
            monthly_price_cents: checked(
                bad,
                "monthly_price_cents",
                monthly_price_cents,
                nulls,
                false,
                parse_price_cents,
            ),
            overage_unit_price_cents: checked(
                bad,
                "overage_unit_price_cents",
                overage_unit_price_cents,
                nulls,
                false,
                parse_price_cents,
            ),
            currency: checked(bad, "currency", currency, nulls, false, |c| {
                parse_currency(&c)
            }),
        }
    }

    /// A plan's terms after this (checked) change.
    pub fn applied_to(self, t: &PlanTerms) -> PlanTerms {
        let Self {
            overage_percent,
            monthly_price_cents,
            overage_unit_price_cents,
            currency,
        } = self;
        PlanTerms {
            overage_percent: replaced(&t.overage_percent, overage_percent),
            monthly_price_cents: replaced(&t.monthly_price_cents, monthly_price_cents),
            overage_unit_price_cents: replaced(
                &t.overage_unit_price_cents,
                overage_unit_price_cents,
            ),
            currency: replaced(&t.currency, currency),
        }
    }
}

/// A checked change of a plan: its name, limits and terms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanEdit {
    pub name: Option<String>,
    pub limits: LimitsPatch,
    pub terms: PlanTermsPatch,
}

/// The limits a tenant's change of its own site sent but may not write, by name.
/// What the provider sold is the provider's: a tenant may only lower its own
/// `session_limit` (checked against what was sold when the site is read) and word its
/// `limit_message`. Every limit is classed here, so that a new one does not compile
/// until it is.
pub fn provider_only_limits(p: &LimitsPatch) -> Vec<&'static str> {
    let LimitsPatch {
        // The tenant's.
        session_limit: _,
        limit_message: _,
        // The provider's.
        count_mode,
        over_limit,
        idle_timeout_seconds,
        session_ttl_seconds,
        reserved_slots,
        reserved_roles,
        per_user_limit,
        per_user_over_limit,
        exempt_roles,
    } = p;
    [
        ("count_mode", count_mode.is_sent()),
        ("over_limit", over_limit.is_sent()),
        ("idle_timeout_seconds", idle_timeout_seconds.is_sent()),
        ("session_ttl_seconds", session_ttl_seconds.is_sent()),
        ("reserved_slots", reserved_slots.is_sent()),
        ("reserved_roles", reserved_roles.is_sent()),
        ("per_user_limit", per_user_limit.is_sent()),
        ("per_user_over_limit", per_user_over_limit.is_sent()),
        ("exempt_roles", exempt_roles.is_sent()),
    ]
    .into_iter()
    .filter_map(|(f, sent)| sent.then_some(f))
    .collect()
}

/// What a site runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    pub values: Limits,
    pub overage_percent: i64,
}

/// What was sold to one site: the plan's values, with the provider's own limit for
/// the site where one is set (a per-site deal may raise the plan's limit as well as
/// lower it).
pub fn sold(plan: &Limits, provider_session_limit: Option<i64>) -> Limits {
    Limits {
        session_limit: provider_session_limit.unwrap_or(plan.session_limit),
        ..plan.clone()
    }
}

/// What a site runs with: what was `sold` to it (see [`sold`]) with the site's own
/// overrides.
pub fn effective(plan: &Limits, overage_percent: i64, o: &Overrides) -> Effective {
    Effective {
        values: Limits {
            // A site never holds more than was sold: the tenant's own override only
            // lowers the limit, also after the plan, its limit or the deal changes.
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
            exempt_roles: o
                .exempt_roles
                .clone()
                .unwrap_or_else(|| plan.exempt_roles.clone()),
        },
        overage_percent,
    }
}

/// The refusal text with `{limit}` filled in.
pub fn limit_message(template: &str, limit: i64) -> String {
    template.replace("{limit}", &limit.to_string())
}

/// A site's effective configuration: plan values merged with the site's overrides
/// (`per_user_limit` `null`: no cap).
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct SiteConfig {
    pub site: String,
    pub plan: String,
    /// Grows with every change of the effective configuration.
    pub config_version: i64,
    #[serde(flatten)]
    #[schema(inline)]
    pub limits: Limits,
    #[schema(minimum = 0, maximum = 1000)]
    pub overage_percent: i64,
}

/// The limits are read as the configuration's own fields (`cfg.session_limit`), as
/// they appear in its JSON.
impl std::ops::Deref for SiteConfig {
    type Target = Limits;

    fn deref(&self) -> &Limits {
        &self.limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Limits {
        Limits::with_defaults(10)
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
    fn the_providers_limit_for_a_site_raises_and_caps() {
        let deal = sold(&plan(), Some(25));
        assert_eq!(deal.session_limit, 25);
        assert_eq!(
            effective(&deal, 0, &Overrides::default())
                .values
                .session_limit,
            25
        );
        let own = Overrides {
            session_limit: Some(40),
            ..Overrides::default()
        };
        assert_eq!(effective(&deal, 0, &own).values.session_limit, 25);
        let lower = Overrides {
            session_limit: Some(12),
            ..Overrides::default()
        };
        assert_eq!(effective(&deal, 0, &lower).values.session_limit, 12);
        assert_eq!(sold(&plan(), Some(3)).session_limit, 3);
        assert_eq!(sold(&plan(), None), plan());
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
    fn a_tenant_may_write_only_its_limit_and_message() {
        let own = LimitsPatch {
            session_limit: Patch::Set(3),
            limit_message: Patch::Clear,
            ..LimitsPatch::default()
        };
        assert!(provider_only_limits(&own).is_empty());
        let sold = LimitsPatch {
            session_limit: Patch::Set(3),
            count_mode: Patch::Clear,
            exempt_roles: Patch::Set(vec!["staff".to_owned()]),
            ..LimitsPatch::default()
        };
        assert_eq!(provider_only_limits(&sold), ["count_mode", "exempt_roles"]);
    }

    #[test]
    fn a_change_is_checked_and_applied_by_each_fields_rule() {
        let change = LimitsPatch {
            session_limit: Patch::Set(-1),
            count_mode: Patch::Clear,
            per_user_limit: Patch::Clear,
            limit_message: Patch::Set("Full.".to_owned()),
            ..LimitsPatch::default()
        };
        // On a plan only `per_user_limit` may be cleared.
        let mut bad = Invalid::new();
        let on_plan = change.clone().checked(Nulls::Refused, &mut bad);
        let fields: Vec<&str> = bad.iter().map(|(f, _)| *f).collect();
        assert_eq!(fields, ["session_limit", "count_mode"]);
        let capped = Limits {
            per_user_limit: Some(3),
            ..plan()
        };
        let after = on_plan.applied_to_limits(&capped);
        assert_eq!(after.session_limit, 10);
        assert_eq!(after.count_mode, CountMode::Active);
        assert_eq!(after.per_user_limit, None);
        assert_eq!(after.limit_message, "Full.");
        // On a site every `null` clears an override.
        let mut bad = Invalid::new();
        let own = Overrides {
            count_mode: Some(CountMode::Live),
            ..Overrides::default()
        };
        let after = change
            .checked(Nulls::Clear, &mut bad)
            .applied_to_overrides(&own);
        assert_eq!(bad.len(), 1);
        assert_eq!(after.count_mode, None);
        assert_eq!(after.limit_message.as_deref(), Some("Full."));
        // A new plan reads `null` as the default.
        let mut bad = Invalid::new();
        let new = LimitsPatch {
            count_mode: Patch::Clear,
            ..LimitsPatch::default()
        }
        .checked(Nulls::Default, &mut bad)
        .applied_to_limits(&Limits::with_defaults(10));
        assert!(bad.is_empty());
        assert_eq!(new, plan());
    }

    #[test]
    fn message_fills_the_limit() {
        assert_eq!(
            limit_message(DEFAULT_LIMIT_MESSAGE, 5),
            "There are more than 5 active user sessions. Please try again later."
        );
    }
}
