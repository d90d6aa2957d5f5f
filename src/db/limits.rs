//! The columns of the limits and the terms, and their one conversion each way: the
//! plan's and the site's rows embed them, so that a new limit is stored by adding its
//! column here (beside the schema and a migration) and nowhere else in storage.

use diesel::prelude::*;

use super::schema::{plans, sites};
use crate::domain::config::{
    self, CountMode, Limits, OverLimit, Overrides, PerUserOverLimit, PlanTerms,
};

/// A plan's limits as stored; role lists as JSON text.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = plans)]
pub struct PlanLimitColumns {
    pub session_limit: i64,
    pub count_mode: CountMode,
    pub over_limit: OverLimit,
    pub idle_timeout_seconds: i64,
    pub session_ttl_seconds: i64,
    pub limit_message: String,
    pub reserved_slots: i64,
    pub reserved_roles: String,
    pub per_user_limit: Option<i64>,
    pub per_user_over_limit: PerUserOverLimit,
    pub exempt_roles: String,
}

impl From<PlanLimitColumns> for Limits {
    fn from(c: PlanLimitColumns) -> Self {
        Self {
            session_limit: c.session_limit,
            count_mode: c.count_mode,
            over_limit: c.over_limit,
            idle_timeout_seconds: c.idle_timeout_seconds,
            session_ttl_seconds: c.session_ttl_seconds,
            limit_message: c.limit_message,
            reserved_slots: c.reserved_slots,
            reserved_roles: config::roles_from_text(&c.reserved_roles),
            per_user_limit: c.per_user_limit,
            per_user_over_limit: c.per_user_over_limit,
            exempt_roles: config::roles_from_text(&c.exempt_roles),
        }
    }
}

impl From<&Limits> for PlanLimitColumns {
    fn from(l: &Limits) -> Self {
        Self {
            session_limit: l.session_limit,
            count_mode: l.count_mode,
            over_limit: l.over_limit,
            idle_timeout_seconds: l.idle_timeout_seconds,
            session_ttl_seconds: l.session_ttl_seconds,
            limit_message: l.limit_message.clone(),
            reserved_slots: l.reserved_slots,
            reserved_roles: config::roles_to_text(&l.reserved_roles),
            per_user_limit: l.per_user_limit,
            per_user_over_limit: l.per_user_over_limit,
            exempt_roles: config::roles_to_text(&l.exempt_roles),
        }
    }
}

/// A plan's terms as stored.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = plans)]
pub struct PlanTermColumns {
    pub overage_percent: i64,
    pub monthly_price_cents: i64,
    pub overage_unit_price_cents: i64,
    pub currency: String,
}

impl From<PlanTermColumns> for PlanTerms {
    fn from(c: PlanTermColumns) -> Self {
        Self {
            overage_percent: c.overage_percent,
            monthly_price_cents: c.monthly_price_cents,
            overage_unit_price_cents: c.overage_unit_price_cents,
            currency: c.currency,
        }
    }
}

impl From<&PlanTerms> for PlanTermColumns {
    fn from(t: &PlanTerms) -> Self {
        Self {
            overage_percent: t.overage_percent,
            monthly_price_cents: t.monthly_price_cents,
            overage_unit_price_cents: t.overage_unit_price_cents,
            currency: t.currency.clone(),
        }
    }
}

/// A site's own overrides as stored (`NULL`: the plan's value); written whole, so a
/// cleared override is written as `NULL`.
#[derive(Debug, Clone, Default, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = sites, treat_none_as_null = true)]
pub struct OverrideColumns {
    pub session_limit: Option<i64>,
    pub count_mode: Option<CountMode>,
    pub over_limit: Option<OverLimit>,
    pub idle_timeout_seconds: Option<i64>,
    pub session_ttl_seconds: Option<i64>,
    pub limit_message: Option<String>,
    pub reserved_slots: Option<i64>,
    pub reserved_roles: Option<String>,
    pub per_user_limit: Option<i64>,
    pub per_user_over_limit: Option<PerUserOverLimit>,
    pub exempt_roles: Option<String>,
}

impl From<&OverrideColumns> for Overrides {
    fn from(c: &OverrideColumns) -> Self {
        Self {
            session_limit: c.session_limit,
            count_mode: c.count_mode,
            over_limit: c.over_limit,
            idle_timeout_seconds: c.idle_timeout_seconds,
            session_ttl_seconds: c.session_ttl_seconds,
            limit_message: c.limit_message.clone(),
            reserved_slots: c.reserved_slots,
            reserved_roles: c.reserved_roles.as_deref().map(config::roles_from_text),
            per_user_limit: c.per_user_limit,
            per_user_over_limit: c.per_user_over_limit,
            exempt_roles: c.exempt_roles.as_deref().map(config::roles_from_text),
        }
    }
}

impl From<&Overrides> for OverrideColumns {
    fn from(o: &Overrides) -> Self {
        Self {
            session_limit: o.session_limit,
            count_mode: o.count_mode,
            over_limit: o.over_limit,
            idle_timeout_seconds: o.idle_timeout_seconds,
            session_ttl_seconds: o.session_ttl_seconds,
            limit_message: o.limit_message.clone(),
            reserved_slots: o.reserved_slots,
            reserved_roles: o.reserved_roles.as_deref().map(config::roles_to_text),
            per_user_limit: o.per_user_limit,
            per_user_over_limit: o.per_user_over_limit,
            exempt_roles: o.exempt_roles.as_deref().map(config::roles_to_text),
        }
    }
}
