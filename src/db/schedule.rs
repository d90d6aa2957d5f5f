//! Scheduled changes and boosts as stored, and the conditional updates that let one
//! process, and only one, claim each step.

use diesel::prelude::*;

use super::schema::{
    plan_scheduled_changes::dsl as pc, scheduled_changes::dsl as sc, site_boosts::dsl as sb,
};
use super::visible::SiteKey;
use super::{DbConn, Error, Result};
use crate::clock::Millis;
use crate::domain::schedule::{
    BoostStatus, ChangeStatus, Due, PendingBoost, PendingChange, Step, Window,
};

/// A change to apply once at `at`, to a site or to a plan (each kept in a table of its
/// own: a site's changes live with the site's other rows).
#[derive(Debug, Clone)]
pub struct ScheduledChange {
    pub id: i64,
    pub target: Target,
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

/// What a scheduled change changes: a site or a plan, by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Made from a visible site ([`SiteKey::target`]) or by the runner.
    Site(SiteKey),
    Plan(i64),
}

impl SiteKey {
    /// The site as the target of scheduled changes.
    pub fn target(self) -> Target {
        Target::Site(self)
    }
}

impl Target {
    /// What a due step changes: the runner acts for the provider, on every site.
    pub fn of_due(d: &Due) -> Self {
        match d.step {
            Step::PlanChange => Self::Plan(d.owner),
            Step::SiteChange | Step::StartBoost | Step::EndBoost => {
                Self::Site(SiteKey::of(d.owner))
            }
        }
    }
}

/// A new scheduled change, pending.
#[derive(Debug, Clone)]
pub struct NewChange {
    pub target: Target,
    pub at: Millis,
    pub body: String,
    pub by_provider: bool,
    pub actor: String,
    pub created_at: Millis,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = super::schema::scheduled_changes)]
struct SiteChangeRow {
    id: i64,
    site_id: i64,
    at: Millis,
    body: String,
    status: ChangeStatus,
    by_provider: bool,
    actor: String,
    created_at: Millis,
    finished_at: Option<Millis>,
    error: Option<String>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = super::schema::plan_scheduled_changes)]
struct PlanChangeRow {
    id: i64,
    plan_id: i64,
    at: Millis,
    body: String,
    status: ChangeStatus,
    actor: String,
    created_at: Millis,
    finished_at: Option<Millis>,
    error: Option<String>,
}

impl From<SiteChangeRow> for ScheduledChange {
    fn from(r: SiteChangeRow) -> Self {
        Self {
            id: r.id,
            target: Target::Site(SiteKey::of(r.site_id)),
            at: r.at,
            body: r.body,
            status: r.status,
            by_provider: r.by_provider,
            actor: r.actor,
            created_at: r.created_at,
            finished_at: r.finished_at,
            error: r.error,
        }
    }
}

impl From<PlanChangeRow> for ScheduledChange {
    fn from(r: PlanChangeRow) -> Self {
        Self {
            id: r.id,
            target: Target::Plan(r.plan_id),
            at: r.at,
            body: r.body,
            status: r.status,
            // Only the provider changes plans.
            by_provider: true,
            actor: r.actor,
            created_at: r.created_at,
            finished_at: r.finished_at,
            error: r.error,
        }
    }
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

/// A new boost; [`insert_boost`] gives it its site.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = super::schema::site_boosts)]
pub struct NewBoost {
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
    let pending = ChangeStatus::Pending;
    Ok(match new.target {
        Target::Site(site) => {
            let values = (
                sc::site_id.eq(site.id()),
                sc::at.eq(new.at),
                sc::body.eq(&new.body),
                sc::status.eq(pending),
                sc::by_provider.eq(new.by_provider),
                sc::actor.eq(&new.actor),
                sc::created_at.eq(new.created_at),
            );
            let row: SiteChangeRow =
                crate::per_backend!(conn, |c| diesel::insert_into(sc::scheduled_changes)
                    .values(values)
                    .returning(SiteChangeRow::as_returning())
                    .get_result(c)?);
            row.into()
        }
        Target::Plan(plan) => {
            let values = (
                pc::plan_id.eq(plan),
                pc::at.eq(new.at),
                pc::body.eq(&new.body),
                pc::status.eq(pending),
                pc::actor.eq(&new.actor),
                pc::created_at.eq(new.created_at),
            );
            let row: PlanChangeRow =
                crate::per_backend!(conn, |c| diesel::insert_into(pc::plan_scheduled_changes)
                    .values(values)
                    .returning(PlanChangeRow::as_returning())
                    .get_result(c)?);
            row.into()
        }
    })
}

/// The changes of a site or a plan, newest first.
pub fn list_changes(
    conn: &mut DbConn, target: Target, after_id: Option<i64>, limit: i64,
) -> Result<Vec<ScheduledChange>> {
    let before = after_id.unwrap_or(i64::MAX);
    Ok(match target {
        Target::Site(site) => sc::scheduled_changes
            .filter(sc::site_id.eq(site.id()).and(sc::id.lt(before)))
            .select(SiteChangeRow::as_select())
            .order(sc::id.desc())
            .limit(limit)
            .load::<SiteChangeRow>(conn)?
            .into_iter()
            .map(Into::into)
            .collect(),
        Target::Plan(plan) => pc::plan_scheduled_changes
            .filter(pc::plan_id.eq(plan).and(pc::id.lt(before)))
            .select(PlanChangeRow::as_select())
            .order(pc::id.desc())
            .limit(limit)
            .load::<PlanChangeRow>(conn)?
            .into_iter()
            .map(Into::into)
            .collect(),
    })
}

/// A change of the site or plan by its id; another's is not found.
pub fn get_change(conn: &mut DbConn, target: Target, id: i64) -> Result<ScheduledChange> {
    let found: Option<ScheduledChange> = match target {
        Target::Site(site) => sc::scheduled_changes
            .filter(sc::site_id.eq(site.id()).and(sc::id.eq(id)))
            .select(SiteChangeRow::as_select())
            .first::<SiteChangeRow>(conn)
            .optional()?
            .map(Into::into),
        Target::Plan(plan) => pc::plan_scheduled_changes
            .filter(pc::plan_id.eq(plan).and(pc::id.eq(id)))
            .select(PlanChangeRow::as_select())
            .first::<PlanChangeRow>(conn)
            .optional()?
            .map(Into::into),
    };
    found.ok_or_else(|| Error::not_found(format!("scheduled change {id}")))
}

/// Moves a pending change to `to`; false when it is not pending any more (it ran, or
/// another process claimed or cancelled it first). On PostgreSQL a second process's
/// update waits for the first to commit and then finds the status changed.
pub fn claim_change(
    conn: &mut DbConn, target: Target, id: i64, to: ChangeStatus, now: Millis, error: Option<&str>,
) -> Result<bool> {
    let pending = ChangeStatus::Pending;
    let n = match target {
        Target::Site(site) => diesel::update(
            sc::scheduled_changes
                .filter(sc::site_id.eq(site.id()).and(sc::id.eq(id)))
                .filter(sc::status.eq(pending)),
        )
        .set((
            sc::status.eq(to),
            sc::finished_at.eq(Some(now)),
            sc::error.eq(error),
        ))
        .execute(conn)?,
        Target::Plan(plan) => diesel::update(
            pc::plan_scheduled_changes
                .filter(pc::plan_id.eq(plan).and(pc::id.eq(id)))
                .filter(pc::status.eq(pending)),
        )
        .set((
            pc::status.eq(to),
            pc::finished_at.eq(Some(now)),
            pc::error.eq(error),
        ))
        .execute(conn)?,
    };
    Ok(n == 1)
}

/// Pending changes whose time has come, of every site and plan (the runner's look
/// over the fleet).
pub fn due_changes(conn: &mut DbConn, now: Millis) -> Result<Vec<PendingChange>> {
    let pending = ChangeStatus::Pending;
    let sites: Vec<(i64, i64, Millis)> = sc::scheduled_changes
        .filter(sc::status.eq(pending).and(sc::at.le(now)))
        .order((sc::at, sc::id))
        .select((sc::id, sc::site_id, sc::at))
        .limit(1000)
        .load(conn)?;
    let plans: Vec<(i64, i64, Millis)> = pc::plan_scheduled_changes
        .filter(pc::status.eq(pending).and(pc::at.le(now)))
        .order((pc::at, pc::id))
        .select((pc::id, pc::plan_id, pc::at))
        .limit(1000)
        .load(conn)?;
    let site = |(id, owner, at)| PendingChange {
        id,
        owner,
        at,
        of_plan: false,
    };
    let plan = |(id, owner, at)| PendingChange {
        id,
        owner,
        at,
        of_plan: true,
    };
    Ok(sites
        .into_iter()
        .map(site)
        .chain(plans.into_iter().map(plan))
        .collect())
}

pub fn insert_boost(conn: &mut DbConn, site: SiteKey, new: &NewBoost) -> Result<Boost> {
    Ok(crate::per_backend!(conn, |c| diesel::insert_into(
        sb::site_boosts
    )
    .values((sb::site_id.eq(site.id()), new))
    .returning(Boost::as_returning())
    .get_result(c)?))
}

pub fn list_boosts(
    conn: &mut DbConn, site: SiteKey, after_id: Option<i64>, limit: i64,
) -> Result<Vec<Boost>> {
    let site_id = site.id();
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
/// overlap. The site's row is held until the caller's transaction ends, so that two
/// boosts added at once on PostgreSQL are judged one after the other (SQLite's
/// writer holds everything).
pub fn open_boosts(conn: &mut DbConn, site: SiteKey) -> Result<Vec<Boost>> {
    let site_id = site.id();
    if let DbConn::Pg(c) = conn {
        use super::schema::sites::dsl as s;
        s::sites
            .filter(s::id.eq(site_id))
            .select(s::id)
            .for_no_key_update()
            .load::<i64>(c)?;
    }
    Ok(sb::site_boosts
        .filter(sb::site_id.eq(site_id))
        .filter(sb::status.eq_any([BoostStatus::Scheduled, BoostStatus::Active]))
        .select(Boost::as_select())
        .load(conn)?)
}

/// A boost of the site by its id; another site's is not found.
pub fn get_boost(conn: &mut DbConn, site: SiteKey, id: i64) -> Result<Boost> {
    let site_id = site.id();
    sb::site_boosts
        .filter(sb::site_id.eq(site_id).and(sb::id.eq(id)))
        .select(Boost::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| Error::not_found(format!("boost {id}")))
}

/// Moves a boost from `from` to `to`; false when another process did it first.
pub fn claim_boost(
    conn: &mut DbConn, b: &Boost, from: BoostStatus, to: BoostStatus, cancelled_at: Option<Millis>,
) -> Result<bool> {
    let q = sb::site_boosts
        .filter(sb::site_id.eq(b.site_id).and(sb::id.eq(b.id)))
        .filter(sb::status.eq(from));
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
    let rows: Vec<(i64, i64, Millis, Millis, BoostStatus)> = sb::site_boosts
        .filter(
            sb::status
                .eq(BoostStatus::Scheduled)
                .and(sb::starts_at.le(now))
                .or(sb::status.eq(BoostStatus::Active).and(sb::ends_at.le(now))),
        )
        .select((sb::id, sb::site_id, sb::starts_at, sb::ends_at, sb::status))
        .limit(1000)
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(id, site_id, from, until, status)| PendingBoost {
            id,
            site_id,
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
