//! Scheduled changes and boosts as stored, and the conditional updates that let one
//! process, and only one, claim each step.

use diesel::prelude::*;

use super::schema::{scheduled_changes::dsl as sc, site_boosts::dsl as sb};
use super::{DbConn, Error, Result};
use crate::clock::Millis;
use crate::domain::schedule::{BoostStatus, ChangeStatus, PendingBoost, Window};

/// A change to apply once at `at`, to a site (`site_id`) or to a plan (`plan_id`).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = super::schema::scheduled_changes)]
pub struct ScheduledChange {
    pub id: i64,
    pub site_id: Option<i64>,
    pub plan_id: Option<i64>,
    pub at: Millis,
    /// JSON: for a site `{plan?, …overrides}` as a PATCH of the site takes them, for a
    /// plan the plan's changes.
    pub body: String,
    pub status: ChangeStatus,
    /// Scheduled by the provider (else by the site's tenant): the rights it runs with.
    pub by_provider: bool,
    pub actor: String,
    pub created_at: Millis,
    pub finished_at: Option<Millis>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = super::schema::scheduled_changes)]
pub struct NewChange {
    pub site_id: Option<i64>,
    pub plan_id: Option<i64>,
    pub at: Millis,
    pub body: String,
    pub status: ChangeStatus,
    pub by_provider: bool,
    pub actor: String,
    pub created_at: Millis,
}

/// A site's limit raised for `[starts_at, ends_at)`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = super::schema::site_boosts)]
pub struct Boost {
    pub id: i64,
    pub site_id: i64,
    pub session_limit: i64,
    pub starts_at: Millis,
    pub ends_at: Millis,
    pub note: Option<String>,
    pub status: BoostStatus,
    pub actor: String,
    pub created_at: Millis,
    pub cancelled_at: Option<Millis>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = super::schema::site_boosts)]
pub struct NewBoost {
    pub site_id: i64,
    pub session_limit: i64,
    pub starts_at: Millis,
    pub ends_at: Millis,
    pub note: Option<String>,
    pub status: BoostStatus,
    pub actor: String,
    pub created_at: Millis,
}

impl Boost {
    pub fn window(&self) -> Window {
        Window {
            from: self.starts_at,
            until: self.ends_at,
        }
    }
}

pub fn insert_change(conn: &mut DbConn, new: &NewChange) -> Result<ScheduledChange> {
    Ok(crate::per_backend!(conn, |c| diesel::insert_into(
        sc::scheduled_changes
    )
    .values(new)
    .returning(ScheduledChange::as_returning())
    .get_result(c)?))
}

/// The changes of a site (`Some(site)`) or of a plan, newest first.
pub fn list_changes(
    conn: &mut DbConn, site_id: Option<i64>, plan_id: Option<i64>, after_id: Option<i64>,
    limit: i64,
) -> Result<Vec<ScheduledChange>> {
    let mut q = sc::scheduled_changes
        .select(ScheduledChange::as_select())
        .order(sc::id.desc())
        .limit(limit)
        .into_boxed();
    q = match (site_id, plan_id) {
        (Some(s), _) => q.filter(sc::site_id.eq(s)),
        (None, Some(p)) => q.filter(sc::plan_id.eq(p)),
        (None, None) => return Ok(Vec::new()),
    };
    if let Some(after) = after_id {
        q = q.filter(sc::id.lt(after));
    }
    Ok(q.load(conn)?)
}

pub fn get_change(conn: &mut DbConn, id: i64) -> Result<ScheduledChange> {
    sc::scheduled_changes
        .find(id)
        .select(ScheduledChange::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| Error::not_found(format!("scheduled change {id}")))
}

/// Moves a pending change to `to`; false when it is not pending any more (it ran, or
/// another process claimed or cancelled it first). On PostgreSQL a second process's
/// update waits for the first to commit and then finds the status changed.
pub fn claim_change(
    conn: &mut DbConn, id: i64, to: ChangeStatus, now: Millis, error: Option<&str>,
) -> Result<bool> {
    let n = diesel::update(
        sc::scheduled_changes
            .find(id)
            .filter(sc::status.eq(ChangeStatus::Pending)),
    )
    .set((
        sc::status.eq(to),
        sc::finished_at.eq(Some(now)),
        sc::error.eq(error),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// Pending changes whose time has come, `(id, at)`.
pub fn due_changes(conn: &mut DbConn, now: Millis) -> Result<Vec<(i64, Millis)>> {
    Ok(sc::scheduled_changes
        .filter(sc::status.eq(ChangeStatus::Pending))
        .filter(sc::at.le(now))
        .order((sc::at, sc::id))
        .select((sc::id, sc::at))
        .limit(1000)
        .load(conn)?)
}

pub fn insert_boost(conn: &mut DbConn, new: &NewBoost) -> Result<Boost> {
    Ok(crate::per_backend!(conn, |c| diesel::insert_into(
        sb::site_boosts
    )
    .values(new)
    .returning(Boost::as_returning())
    .get_result(c)?))
}

pub fn list_boosts(
    conn: &mut DbConn, site_id: i64, after_id: Option<i64>, limit: i64,
) -> Result<Vec<Boost>> {
    let mut q = sb::site_boosts
        .filter(sb::site_id.eq(site_id))
        .select(Boost::as_select())
        .order(sb::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(after) = after_id {
        q = q.filter(sb::id.lt(after));
    }
    Ok(q.load(conn)?)
}

/// The site's boosts that are still to come or running: what a new one may not
/// overlap.
pub fn open_boosts(conn: &mut DbConn, site_id: i64) -> Result<Vec<Boost>> {
    Ok(sb::site_boosts
        .filter(sb::site_id.eq(site_id))
        .filter(sb::status.eq_any([BoostStatus::Scheduled, BoostStatus::Active]))
        .select(Boost::as_select())
        .load(conn)?)
}

pub fn get_boost(conn: &mut DbConn, id: i64) -> Result<Boost> {
    sb::site_boosts
        .find(id)
        .select(Boost::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| Error::not_found(format!("boost {id}")))
}

/// Moves a boost from `from` to `to`; false when another process did it first.
pub fn claim_boost(
    conn: &mut DbConn, id: i64, from: BoostStatus, to: BoostStatus, cancelled_at: Option<Millis>,
) -> Result<bool> {
    let q = sb::site_boosts.find(id).filter(sb::status.eq(from));
    let n = match cancelled_at {
        Some(at) => diesel::update(q)
            .set((sb::status.eq(to), sb::cancelled_at.eq(Some(at))))
            .execute(conn)?,
        None => diesel::update(q).set(sb::status.eq(to)).execute(conn)?,
    };
    Ok(n == 1)
}

/// Boosts with an edge at or before `now`: scheduled ones that should have opened,
/// active ones that should have closed.
pub fn due_boosts(conn: &mut DbConn, now: Millis) -> Result<Vec<PendingBoost>> {
    let rows: Vec<(i64, Millis, Millis, BoostStatus)> = sb::site_boosts
        .filter(
            sb::status
                .eq(BoostStatus::Scheduled)
                .and(sb::starts_at.le(now))
                .or(sb::status.eq(BoostStatus::Active).and(sb::ends_at.le(now))),
        )
        .select((sb::id, sb::starts_at, sb::ends_at, sb::status))
        .limit(1000)
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(id, from, until, status)| PendingBoost {
            id,
            window: Window { from, until },
            active: status == BoostStatus::Active,
        })
        .collect())
}

/// The limit of each given site's active boost (the highest, should two touch at an
/// instant), for the sites that have one.
pub fn active_boost_limits(
    conn: &mut DbConn, site_ids: &[i64],
) -> Result<std::collections::HashMap<i64, i64>> {
    let rows: Vec<(i64, i64)> = sb::site_boosts
        .filter(sb::status.eq(BoostStatus::Active))
        .filter(sb::site_id.eq_any(site_ids))
        .select((sb::site_id, sb::session_limit))
        .load(conn)?;
    let mut out = std::collections::HashMap::new();
    for (site, limit) in rows {
        let e = out.entry(site).or_insert(limit);
        *e = (*e).max(limit);
    }
    Ok(out)
}
