//! Plans: what the provider sells.

use diesel::prelude::*;
use serde_json::json;

use super::schema::{plan_prices::dsl as pp, plans::dsl as p, sites::dsl as s};
use super::{DbConn, audit};
use crate::clock::Millis;
use crate::db::{Error, Result};
use crate::domain::config::{self, CountMode, Limits, OverLimit, PerUserOverLimit, PlanTerms};

/// A plan as stored, and as a new one is inserted.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = super::schema::plans)]
pub struct Plan {
    /// Given by the database: a new plan's is not written (any value will do).
    #[diesel(skip_insertion)]
    pub id: i64,
    pub code: String,
    pub name: String,
    // Its limits (`config::Limits`); role lists as JSON text.
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
    // Its terms (`config::PlanTerms`).
    pub overage_percent: i64,
    pub monthly_price_cents: i64,
    pub overage_unit_price_cents: i64,
    pub currency: String,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl Plan {
    /// The limits the plan sells.
    pub fn limits(&self) -> Limits {
        Limits {
            session_limit: self.session_limit,
            count_mode: self.count_mode,
            over_limit: self.over_limit,
            idle_timeout_seconds: self.idle_timeout_seconds,
            session_ttl_seconds: self.session_ttl_seconds,
            limit_message: self.limit_message.clone(),
            reserved_slots: self.reserved_slots,
            reserved_roles: config::roles_from_text(&self.reserved_roles),
            per_user_limit: self.per_user_limit,
            per_user_over_limit: self.per_user_over_limit,
            exempt_roles: config::roles_from_text(&self.exempt_roles),
        }
    }

    /// The overage and the prices.
    pub fn terms(&self) -> PlanTerms {
        PlanTerms {
            overage_percent: self.overage_percent,
            monthly_price_cents: self.monthly_price_cents,
            overage_unit_price_cents: self.overage_unit_price_cents,
            currency: self.currency.clone(),
        }
    }
}

/// A partial update of a plan; `per_user_limit` `Some(None)` removes the cap.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = super::schema::plans)]
pub struct PlanChanges {
    pub name: Option<String>,
    pub session_limit: Option<i64>,
    pub count_mode: Option<CountMode>,
    pub over_limit: Option<OverLimit>,
    pub idle_timeout_seconds: Option<i64>,
    pub session_ttl_seconds: Option<i64>,
    pub limit_message: Option<String>,
    pub reserved_slots: Option<i64>,
    pub reserved_roles: Option<String>,
    pub per_user_limit: Option<Option<i64>>,
    pub per_user_over_limit: Option<PerUserOverLimit>,
    pub exempt_roles: Option<String>,
    pub overage_percent: Option<i64>,
    pub monthly_price_cents: Option<i64>,
    pub overage_unit_price_cents: Option<i64>,
    pub currency: Option<String>,
    pub updated_at: Option<Millis>,
}

impl PlanChanges {
    /// Whether the change alters what sites on the plan run with. Every field is
    /// named (no `..`), so a new one does not compile until it is classed here.
    pub fn touches_config(&self) -> bool {
        let Self {
            name: _,
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
            overage_percent,
            monthly_price_cents: _,
            overage_unit_price_cents: _,
            currency: _,
            updated_at: _,
        } = self;
        session_limit.is_some()
            || count_mode.is_some()
            || over_limit.is_some()
            || overage_percent.is_some()
            || idle_timeout_seconds.is_some()
            || session_ttl_seconds.is_some()
            || limit_message.is_some()
            || reserved_slots.is_some()
            || reserved_roles.is_some()
            || per_user_limit.is_some()
            || per_user_over_limit.is_some()
            || exempt_roles.is_some()
    }
}

pub fn insert(conn: &mut DbConn, new: &Plan) -> Result<Plan> {
    diesel::insert_into(p::plans).values(new).execute(conn)?;
    let plan = get(conn, &new.code)?;
    record_prices(conn, &plan, plan.created_at)?;
    Ok(plan)
}

/// Adds the plan and its audit record in one transaction; a plan of the same code is
/// a conflict.
pub fn create(conn: &mut DbConn, new: &Plan, actor: &str) -> Result<Plan> {
    conn.transaction(|c| {
        if get(c, &new.code).is_ok() {
            return Err(Error::Conflict(format!(
                "plan {:?} already exists",
                new.code
            )));
        }
        let p = insert(c, new)?;
        audit::record(
            c,
            new.created_at,
            actor,
            "create",
            "plan",
            &p.code,
            &json!({"session_limit": p.session_limit}),
        )?;
        Ok(p)
    })
}

/// Keeps the plan's prices from `at` on, for the billing of later months.
fn record_prices(conn: &mut DbConn, plan: &Plan, at: Millis) -> Result<()> {
    diesel::insert_into(pp::plan_prices)
        .values((
            pp::plan_id.eq(plan.id),
            pp::monthly_price_cents.eq(plan.monthly_price_cents),
            pp::overage_unit_price_cents.eq(plan.overage_unit_price_cents),
            pp::currency.eq(&plan.currency),
            pp::effective_from.eq(at),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn get(conn: &mut DbConn, code: &str) -> Result<Plan> {
    p::plans
        .filter(p::code.eq(code))
        .select(Plan::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| Error::not_found(format!("plan {code:?}")))
}

pub fn get_by_id(conn: &mut DbConn, id: i64) -> Result<Plan> {
    Ok(p::plans.find(id).select(Plan::as_select()).first(conn)?)
}

pub fn list(conn: &mut DbConn, after_id: Option<i64>, limit: i64) -> Result<Vec<Plan>> {
    Ok(p::plans
        .filter(p::id.gt(after_id.unwrap_or(0)))
        .order(p::id)
        .limit(limit)
        .select(Plan::as_select())
        .load(conn)?)
}

/// Applies the changes to the plan read as `before` and returns it as it is now; a
/// change of price is kept with its time (`updated_at`).
pub fn update(conn: &mut DbConn, before: &Plan, changes: &PlanChanges) -> Result<Plan> {
    diesel::update(p::plans.find(before.id))
        .set(changes)
        .execute(conn)?;
    let after = get_by_id(conn, before.id)?;
    if (
        after.monthly_price_cents,
        after.overage_unit_price_cents,
        &after.currency,
    ) != (
        before.monthly_price_cents,
        before.overage_unit_price_cents,
        &before.currency,
    ) {
        record_prices(conn, &after, after.updated_at)?;
    }
    Ok(after)
}

/// Changes the plan and records it: the plan as it was and as it is now, for
/// [`super::sites::change_plan_and_reconfigure_sites`] to reconfigure the sites on it
/// in the same transaction.
pub fn change(
    conn: &mut DbConn, code: &str, changes: &PlanChanges, now: Millis, actor: &str,
) -> Result<(Plan, Plan)> {
    let before = get(conn, code)?;
    let after = update(conn, &before, changes)?;
    audit::record(
        conn,
        now,
        actor,
        "update",
        "plan",
        code,
        &json!({"session_limit": [before.session_limit, after.session_limit]}),
    )?;
    Ok((before, after))
}

/// The sites to reconfigure after a change from `before` to `after`: all on the plan
/// when what they run with changed, none otherwise.
pub fn sites_to_reconfigure(conn: &mut DbConn, before: &Plan, after: &Plan) -> Result<Vec<i64>> {
    if after.limits() != before.limits() || after.overage_percent != before.overage_percent {
        sites_using(conn, before.id)
    } else {
        Ok(Vec::new())
    }
}

pub fn sites_using(conn: &mut DbConn, plan_id: i64) -> Result<Vec<i64>> {
    Ok(s::sites
        .filter(s::plan_id.eq(plan_id))
        .select(s::id)
        .order(s::id)
        .load(conn)?)
}

pub fn delete(conn: &mut DbConn, id: i64, code: &str) -> Result<()> {
    super::citus::sequential(conn)?;
    if !sites_using(conn, id)?.is_empty() {
        return Err(Error::Conflict(format!(
            "plan {code:?} is used by sites; move them to another plan first"
        )));
    }
    diesel::delete(p::plans.find(id)).execute(conn)?;
    Ok(())
}
