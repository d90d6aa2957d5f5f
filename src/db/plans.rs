//! Plans: what the provider sells.

use diesel::prelude::*;
use serde_json::json;

use super::limits::{PlanLimitColumns, PlanTermColumns};
use super::schema::{plan_prices::dsl as pp, plans::dsl as p, sites::dsl as s};
use super::{DbConn, audit};
use crate::clock::Millis;
use crate::db::{Error, Result};
use crate::domain::config::{Limits, PlanEdit, PlanTerms};

/// A plan as stored, and as a new one is inserted.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = super::schema::plans)]
pub struct Plan {
    /// Given by the database: a new plan's is not written (any value will do).
    #[diesel(skip_insertion)]
    pub id: i64,
    pub code: String,
    pub name: String,
    /// Its limits (`config::Limits`).
    #[diesel(embed)]
    pub limit_columns: PlanLimitColumns,
    /// Its terms (`config::PlanTerms`).
    #[diesel(embed)]
    pub term_columns: PlanTermColumns,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl Plan {
    /// The limits the plan sells.
    pub fn limits(&self) -> Limits {
        self.limit_columns.clone().into()
    }

    /// The overage and the prices.
    pub fn terms(&self) -> PlanTerms {
        self.term_columns.clone().into()
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
            &json!({"session_limit": p.limit_columns.session_limit}),
        )?;
        Ok(p)
    })
}

/// Keeps the plan's prices from `at` on, for the billing of later months.
fn record_prices(conn: &mut DbConn, plan: &Plan, at: Millis) -> Result<()> {
    diesel::insert_into(pp::plan_prices)
        .values((
            pp::plan_id.eq(plan.id),
            pp::monthly_price_cents.eq(plan.term_columns.monthly_price_cents),
            pp::overage_unit_price_cents.eq(plan.term_columns.overage_unit_price_cents),
            pp::currency.eq(&plan.term_columns.currency),
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

/// Writes the plan read as `before` with `edit` applied, and returns it as it is
/// now; a change of price is kept with its time (`now`).
fn update(conn: &mut DbConn, before: &Plan, edit: &PlanEdit, now: Millis) -> Result<Plan> {
    let limits = edit.limits.clone().applied_to_limits(&before.limits());
    let terms = edit.terms.clone().applied_to(&before.terms());
    let name = edit.name.as_deref().unwrap_or(&before.name);
    diesel::update(p::plans.find(before.id))
        .set((
            PlanLimitColumns::from(&limits),
            PlanTermColumns::from(&terms),
            p::name.eq(name),
            p::updated_at.eq(now),
        ))
        .execute(conn)?;
    let after = get_by_id(conn, before.id)?;
    let prices = |t: PlanTerms| {
        (
            t.monthly_price_cents,
            t.overage_unit_price_cents,
            t.currency,
        )
    };
    if prices(after.terms()) != prices(before.terms()) {
        record_prices(conn, &after, now)?;
    }
    Ok(after)
}

/// Changes the plan, held against concurrent changes (PostgreSQL; SQLite's writer
/// holds everything), and records it: the plan as it was and as it is now, for
/// [`super::sites::change_plan_and_reconfigure_sites`] to reconfigure the sites on it
/// in the same transaction.
pub fn change(
    conn: &mut DbConn, code: &str, edit: &PlanEdit, now: Millis, actor: &str,
) -> Result<(Plan, Plan)> {
    if let DbConn::Pg(c) = conn {
        p::plans
            .filter(p::code.eq(code))
            .select(p::id)
            .for_no_key_update()
            .load::<i64>(c)?;
    }
    let before = get(conn, code)?;
    let after = update(conn, &before, edit, now)?;
    audit::record(
        conn,
        now,
        actor,
        "update",
        "plan",
        code,
        &json!({"session_limit": [before.limit_columns.session_limit, after.limit_columns.session_limit]}),
    )?;
    Ok((before, after))
}

/// The sites to reconfigure after a change from `before` to `after`: all on the plan
/// when what they run with changed, none otherwise.
pub fn sites_to_reconfigure(conn: &mut DbConn, before: &Plan, after: &Plan) -> Result<Vec<i64>> {
    let overage = |p: &Plan| p.term_columns.overage_percent;
    if after.limits() != before.limits() || overage(after) != overage(before) {
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
