//! A site's effective configuration: its plan's values, overridden by the site's
//! non-null overrides.

use serde::Serialize;
use utoipa::ToSchema;

pub const DEFAULT_IDLE_TIMEOUT_SECONDS: i64 = 86_400;
pub const DEFAULT_SESSION_TTL_SECONDS: i64 = 1_209_600;
pub const DEFAULT_LIMIT_MESSAGE: &str =
    "There are more than {limit} active user sessions. Please try again later.";

// The fields a plan sets and a site may override are listed once, in `plan_fields!`.
// Twelve structs carry them: the values and overrides here, the API's bodies and
// views, and the rows storage reads and writes. They differ in which fields they
// take, whether a field may be unset or cleared, and what rides along (bounds for the
// OpenAPI document, role lists kept as JSON text); the macro declares each of them
// from the one list. A new field is declared there once; the code that merges, checks
// or copies it (`effective`, the API's conversions, `SiteFull::config`) builds these
// structs field by field, so the compiler points to each place.

/// `plan_fields! { <attributes> pub struct Name { leading fields } <set> as <side>
/// <shape> { trailing fields } }` declares `Name` with the list's fields, all `pub`,
/// between its own, in the list's order (the order of the JSON it serializes to).
///
/// - set: `limits` (what a site may override), `config` (those and `overage_percent`:
///   what a site runs with) or `plan` (those and the prices: what a plan sells).
/// - side: `view` (domain values and API views), `request` (API bodies: the bounds and
///   the "absent or `null`" reading of a field that may be cleared) or `stored` (rows:
///   a role list is its JSON text).
/// - shape: `values` (every field set; `per_user_limit` may be `None`: no cap),
///   `overrides` (each may be unset), `new` (a plan's `session_limit` must be given,
///   the rest may be unset), `changes` (each may be unset, `per_user_limit` also
///   cleared) or `clears` (each may be unset or cleared).
///
/// A stored `values` row also gets `limit_values()`, and a stored `overrides` row
/// `overrides()`: the domain value the row holds.
//
// How it works. `@shape` turns the shape into the forms (`bare`, `opt`, `optopt`) of a
// `required`, a `plain` (or `roles`) and a `nullable` field, and `@list` appends the
// list. `@munch` then takes one field at a time, passing over those outside the set;
// `@pick` finds the field's form and type, `@emit` its attributes (or, for `@read`,
// its copy from the row), `@wrap` its type, and `@next` goes on with the rest. The
// state travels as groups: `[mode forms header head tail]` and the fields so far.
// Types and bounds are `tt` groups, because a fragment captured as `ty` or `literal`
// can only be matched again as an opaque `tt`, and reaches the derives wrapped in an
// invisible group.
macro_rules! plan_fields {
    (
        $(#[$meta:meta])* $vis:vis struct $name:ident { $($head:tt)* }
        $set:ident as $side:ident $shape:ident $({ $($tail:tt)* })?
    ) => {
        $crate::domain::config::plan_fields! { @shape $shape [struct $side $set]
            [$(#[$meta])* $vis struct $name] [$($head)*] [$($($tail)*)?] }
        $crate::domain::config::plan_fields! { @read $side $shape $name }
    };

    (@read stored values $name:ident) => {
        impl $name {
            pub fn limit_values(&self) -> $crate::domain::config::LimitValues {
                $crate::domain::config::plan_fields! { @shape values [read self limits]
                    [$crate::domain::config::LimitValues] [] [] }
            }
        }
    };
    (@read stored overrides $name:ident) => {
        impl $name {
            pub fn overrides(&self) -> $crate::domain::config::Overrides {
                $crate::domain::config::plan_fields! { @shape overrides [read self limits]
                    [$crate::domain::config::Overrides] [] [] }
            }
        }
    };
    (@read $side:ident $shape:ident $name:ident) => {};

    (@shape values $m:tt $($s:tt)*) => {
        $crate::domain::config::plan_fields! { @list [$m [bare bare opt] $($s)*] }
    };
    (@shape overrides $m:tt $($s:tt)*) => {
        $crate::domain::config::plan_fields! { @list [$m [opt opt opt] $($s)*] }
    };
    (@shape new $m:tt $($s:tt)*) => {
        $crate::domain::config::plan_fields! { @list [$m [bare opt opt] $($s)*] }
    };
    (@shape changes $m:tt $($s:tt)*) => {
        $crate::domain::config::plan_fields! { @list [$m [opt opt optopt] $($s)*] }
    };
    (@shape clears $m:tt $($s:tt)*) => {
        $crate::domain::config::plan_fields! { @list [$m [optopt optopt optopt] $($s)*] }
    };

    // `<set> <kind> name: [type] (bounds)`, the set being the smallest that has it.
    (@list $st:tt) => {
        $crate::domain::config::plan_fields! { @munch $st []
            limits required session_limit: [i64] (minimum = 0, maximum = 1000000),
            limits plain count_mode: [crate::domain::config::CountMode],
            limits plain over_limit: [crate::domain::config::OverLimit],
            config plain overage_percent: [i64] (minimum = 0, maximum = 1000),
            limits plain idle_timeout_seconds: [i64] (minimum = 60, maximum = 31536000),
            limits plain session_ttl_seconds: [i64] (minimum = 60, maximum = 31536000),
            limits plain limit_message: [String],
            plan plain monthly_price_cents: [i64] (minimum = 0),
            plan plain overage_unit_price_cents: [i64] (minimum = 0),
            plan plain currency: [String] (pattern = "^[A-Z]{3}$"),
            /// Places kept for admissions carrying one of `reserved_roles`.
            limits plain reserved_slots: [i64] (minimum = 0, maximum = 1000000),
            /// Roles that may use the reserved places.
            limits roles reserved_roles: [String] (max_items = 16),
            /// Most counted sessions one user may hold.
            limits nullable per_user_limit: [i64] (minimum = 1, maximum = 1000000),
            limits plain per_user_over_limit: [crate::domain::config::PerUserOverLimit],
            /// Roles whose sessions take no place: admitted and listed, never counted.
            limits roles exempt_roles: [String] (max_items = 16),
        }
    };

    (@munch [$m:tt $w:tt [$($h:tt)*] [$($hd:tt)*] [$($t:tt)*]] [$($acc:tt)*]) => {
        $($h)* { $($hd)* $($acc)* $($t)* }
    };
    // A field outside the set is passed over.
    (@munch [[$e:ident $s:ident limits] $($st:tt)*] $acc:tt
        $(#$d:tt)* config $k:ident $f:ident: $ty:tt $(($($b:tt)*))?, $($rest:tt)*) => {
        $crate::domain::config::plan_fields! { @munch [[$e $s limits] $($st)*] $acc $($rest)* }
    };
    (@munch [[$e:ident $s:ident limits] $($st:tt)*] $acc:tt
        $(#$d:tt)* plan $k:ident $f:ident: $ty:tt $(($($b:tt)*))?, $($rest:tt)*) => {
        $crate::domain::config::plan_fields! { @munch [[$e $s limits] $($st)*] $acc $($rest)* }
    };
    (@munch [[$e:ident $s:ident config] $($st:tt)*] $acc:tt
        $(#$d:tt)* plan $k:ident $f:ident: $ty:tt $(($($b:tt)*))?, $($rest:tt)*) => {
        $crate::domain::config::plan_fields! { @munch [[$e $s config] $($st)*] $acc $($rest)* }
    };
    (@munch [$m:tt $w:tt $($st:tt)*] $acc:tt
        $(#$d:tt)* $set:ident $k:ident $f:ident: $ty:tt $(($($b:tt)*))?, $($rest:tt)*) => {
        $crate::domain::config::plan_fields! { @pick $k $w $m
            [[$m $w $($st)*] $acc] [$(#$d)*] $f $ty [$(($($b)*))?] $($rest)* }
    };

    // The form by the field's kind; a role list's type by the side.
    (@pick roles [$r:ident $w:ident $n:ident] [$e:ident stored $s:ident]
        $c:tt [$($d:tt)*] $f:ident $ty:tt $($x:tt)*) => {
        $crate::domain::config::plan_fields! { @emit $w roles [$e stored $s]
            $c [$($d)* #[doc = " Kept as the list's JSON text."]] $f [String] $($x)* }
    };
    (@pick roles [$r:ident $w:ident $n:ident] $m:tt $c:tt $d:tt $f:ident $ty:tt $($x:tt)*) => {
        $crate::domain::config::plan_fields! { @emit $w roles $m $c $d $f [Vec<String>] $($x)* }
    };
    (@pick required [$w:ident $p:ident $n:ident] $($x:tt)*) => {
        $crate::domain::config::plan_fields! { @emit $w value $($x)* }
    };
    (@pick plain [$r:ident $w:ident $n:ident] $($x:tt)*) => {
        $crate::domain::config::plan_fields! { @emit $w value $($x)* }
    };
    (@pick nullable [$r:ident $p:ident $w:ident] $($x:tt)*) => {
        $crate::domain::config::plan_fields! { @emit $w value $($x)* }
    };

    // Reading a row: each field copied, a role list parsed from its text.
    (@emit bare roles [read $me:tt $s:ident] [$st:tt [$($acc:tt)*]]
        $d:tt $f:ident $ty:tt $b:tt $($rest:tt)*) => {
        $crate::domain::config::plan_fields! { @munch $st
            [$($acc)* $f: $crate::domain::config::roles_from_text(&$me.$f),] $($rest)* }
    };
    (@emit opt roles [read $me:tt $s:ident] [$st:tt [$($acc:tt)*]]
        $d:tt $f:ident $ty:tt $b:tt $($rest:tt)*) => {
        $crate::domain::config::plan_fields! { @munch $st
            [$($acc)* $f: $me.$f.as_deref().map($crate::domain::config::roles_from_text),]
            $($rest)* }
    };
    (@emit $form:ident value [read $me:tt $s:ident] [$st:tt [$($acc:tt)*]]
        $d:tt $f:ident $ty:tt $b:tt $($rest:tt)*) => {
        $crate::domain::config::plan_fields! { @munch $st
            [$($acc)* $f: ::core::clone::Clone::clone(&$me.$f),] $($rest)* }
    };
    // A struct's field: a request's carries its bounds.
    (@emit $form:ident $k:ident [struct request $s:ident] $c:tt
        [$($d:tt)*] $f:ident $ty:tt [$(($($b:tt)*))?] $($rest:tt)*) => {
        $crate::domain::config::plan_fields! { @wrap $form request $c
            [$($d)* $(#[schema($($b)*)])?] $f $ty $($rest)* }
    };
    (@emit $form:ident $k:ident [struct $side:ident $s:ident] $c:tt
        $d:tt $f:ident $ty:tt $b:tt $($rest:tt)*) => {
        $crate::domain::config::plan_fields! { @wrap $form $side $c $d $f $ty $($rest)* }
    };

    (@wrap bare $side:ident $c:tt $a:tt $f:ident [$($ty:tt)*] $($rest:tt)*) => {
        $crate::domain::config::plan_fields! { @next $c $a [$f: $($ty)*] $($rest)* }
    };
    (@wrap opt $side:ident $c:tt $a:tt $f:ident [$($ty:tt)*] $($rest:tt)*) => {
        $crate::domain::config::plan_fields! { @next $c $a [$f: Option<$($ty)*>] $($rest)* }
    };
    // Absent: unchanged; `null`: cleared.
    (@wrap optopt request $c:tt [$($a:tt)*] $f:ident [$($ty:tt)*] $($rest:tt)*) => {
        $crate::domain::config::plan_fields! { @next $c [$($a)*
            #[serde(default, deserialize_with = "crate::domain::nullable")]
            #[schema(value_type = Option<$($ty)*>)]
        ] [$f: Option<Option<$($ty)*>>] $($rest)* }
    };
    (@wrap optopt $side:ident $c:tt $a:tt $f:ident [$($ty:tt)*] $($rest:tt)*) => {
        $crate::domain::config::plan_fields! { @next $c $a [$f: Option<Option<$($ty)*>>] $($rest)* }
    };

    (@next [$st:tt [$($acc:tt)*]] [$($a:tt)*] [$($field:tt)*] $($rest:tt)*) => {
        $crate::domain::config::plan_fields! { @munch $st
            [$($acc)* $($a)* pub $($field)*,] $($rest)* }
    };
}

pub(crate) use plan_fields;

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

plan_fields! {
    /// Values a plan sets and a site may override (`per_user_limit` `None`: no cap).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct LimitValues {}
    limits as view values
}

plan_fields! {
    /// The site's own overrides (`null`: the plan's value applies).
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
    #[schema(as = OverridesView)]
    pub struct Overrides {}
    limits as view overrides
}

/// What a site runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    pub values: LimitValues,
    pub overage_percent: i64,
}

/// What was sold to one site: the plan's values, with the provider's own limit for
/// the site where one is set (a per-site deal may raise the plan's limit as well as
/// lower it).
pub fn sold(plan: &LimitValues, provider_session_limit: Option<i64>) -> LimitValues {
    LimitValues {
        session_limit: provider_session_limit.unwrap_or(plan.session_limit),
        ..plan.clone()
    }
}

/// What a site runs with: what was `sold` to it (see [`sold`]) with the site's own
/// overrides.
pub fn effective(plan: &LimitValues, overage_percent: i64, o: &Overrides) -> Effective {
    Effective {
        values: LimitValues {
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

plan_fields! {
    /// A site's effective configuration: plan values merged with the site's overrides
    /// (`per_user_limit` `null`: no cap).
    #[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
    pub struct SiteConfig {
        pub site: String,
        pub plan: String,
        /// Grows with every change of the effective configuration.
        pub config_version: i64,
    }
    config as view values
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
            exempt_roles: Vec::new(),
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
    fn message_fills_the_limit() {
        assert_eq!(
            limit_message(DEFAULT_LIMIT_MESSAGE, 5),
            "There are more than 5 active user sessions. Please try again later."
        );
    }
}
