//! The durable outbox: pushes are recorded in the transaction of the change that
//! causes them; the sender in `push` claims and delivers them.

use diesel::prelude::*;
use serde::Serialize;
use serde_json::json;

use super::DbConn;
use super::schema::{delivery_attempts::dsl as d, outbox::dsl as o};
use super::site_full::SiteFull;
use super::visible::SiteKey;
use crate::clock::{Millis, to_rfc3339};
use crate::db::{Error, Result};
use crate::domain::scope::Scope;

pub const KIND_CONFIG: &str = "site.config_changed";
pub const KIND_KILL: &str = "session.kill";
pub const KIND_UTILIZATION_HIGH: &str = "site.utilization_high";
pub const KIND_LIMIT_REACHED: &str = "site.limit_reached";

pub const STATUS_PENDING: &str = "pending";
pub const STATUS_DELIVERED: &str = "delivered";
pub const STATUS_FAILED: &str = "failed";
pub const STATUS_SUPERSEDED: &str = "superseded";

/// Where a push goes.
pub const TARGET_SITE: &str = "site";
pub const TARGET_TENANT: &str = "tenant";
pub const TARGET_PROVIDER: &str = "provider";

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = super::schema::outbox)]
pub struct OutboxRow {
    /// Given by the database: a new push's is not written (any value will do).
    #[diesel(skip_insertion)]
    pub id: i64,
    pub webhook_id: String,
    pub site_id: i64,
    pub tenant_id: Option<i64>,
    pub target: String,
    pub kind: String,
    pub payload: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: Millis,
    pub locked_until: Option<Millis>,
    pub created_at: Millis,
    pub finished_at: Option<Millis>,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = super::schema::delivery_attempts)]
pub struct AttemptRow {
    pub id: i64,
    pub outbox_id: i64,
    pub attempted_at: Millis,
    pub status_code: Option<i64>,
    pub duration_ms: i64,
    pub error: Option<String>,
}

/// Pending pushes by kind, each with its oldest row's creation time (for `/metrics`).
pub fn pending_by_kind(c: &mut DbConn) -> Result<Vec<(String, i64, Option<Millis>)>> {
    use diesel::dsl::{count_star, min};
    Ok(o::outbox
        .filter(o::status.eq(STATUS_PENDING))
        .group_by(o::kind)
        .select((o::kind, count_star(), min(o::created_at)))
        .load(c)?)
}

fn body(kind: &str, now: Millis, data: serde_json::Value) -> String {
    json!({ "type": kind, "timestamp": to_rfc3339(now), "data": data }).to_string()
}

impl OutboxRow {
    /// A push about a site as it is queued: pending, never tried, due now.
    fn queued(site: (i64, i64), target: &str, kind: &str, payload: String, now: Millis) -> Self {
        let (site_id, tenant_id) = site;
        Self {
            id: 0,
            webhook_id: format!("msg_{}", uuid::Uuid::now_v7().simple()),
            site_id,
            tenant_id: Some(tenant_id),
            target: target.to_owned(),
            kind: kind.to_owned(),
            payload,
            status: STATUS_PENDING.to_owned(),
            attempts: 0,
            next_attempt_at: now,
            locked_until: None,
            created_at: now,
            finished_at: None,
        }
    }

    /// The site's current effective configuration, for its agent.
    fn config(full: &SiteFull, now: Millis) -> Self {
        let data = serde_json::to_value(full.config()).unwrap_or_default();
        let payload = body(KIND_CONFIG, now, data);
        let site = (full.site.id, full.site.tenant_id);
        Self::queued(site, TARGET_SITE, KIND_CONFIG, payload, now)
    }
}

fn insert(conn: &mut DbConn, row: &OutboxRow) -> Result<()> {
    diesel::insert_into(o::outbox).values(row).execute(conn)?;
    Ok(())
}

/// Queues the site's current effective config; older undelivered config pushes of the
/// same site are superseded, since agents only want the newest.
pub fn enqueue_config(conn: &mut DbConn, full: &SiteFull, now: Millis) -> Result<()> {
    enqueue_configs(conn, std::slice::from_ref(full), now)
}

/// [`enqueue_config`] for many sites at once (a plan edit touches every site on the
/// plan): one statement supersedes their pending config pushes, one inserts the new
/// ones, per chunk of sites, instead of two statements a site.
pub fn enqueue_configs(conn: &mut DbConn, fulls: &[SiteFull], now: Millis) -> Result<()> {
    for chunk in fulls.chunks(500) {
        let ids: Vec<i64> = chunk.iter().map(|f| f.site.id).collect();
        diesel::update(
            o::outbox
                .filter(o::site_id.eq_any(&ids))
                .filter(o::kind.eq(KIND_CONFIG))
                .filter(o::status.eq(STATUS_PENDING)),
        )
        .set((
            o::status.eq(STATUS_SUPERSEDED),
            o::finished_at.eq(Some(now)),
        ))
        .execute(conn)?;
        let rows: Vec<_> = chunk.iter().map(|f| OutboxRow::config(f, now)).collect();
        crate::per_backend!(conn, |c| diesel::insert_into(o::outbox)
            .values(&rows)
            .execute(c)?);
    }
    Ok(())
}

/// Queues a `session.kill` push for the given sessions (in pushes of at most 1000).
pub fn enqueue_kill(
    conn: &mut DbConn, site_id: i64, tenant_id: i64, site_slug: &str, sessions: &[String],
    reason: &str, now: Millis,
) -> Result<()> {
    for chunk in sessions.chunks(1000) {
        let data = json!({ "site": site_slug, "sessions": chunk, "reason": reason });
        let payload = body(KIND_KILL, now, data);
        let row = OutboxRow::queued((site_id, tenant_id), TARGET_SITE, KIND_KILL, payload, now);
        insert(conn, &row)?;
    }
    Ok(())
}

/// Queues a threshold alert for each recipient: `TARGET_TENANT` (the tenant's
/// `notify_url`) and/or `TARGET_PROVIDER` (the provider-wide URL).
pub fn enqueue_alert(
    conn: &mut DbConn, site_id: i64, tenant_id: i64, kind: &str, data: serde_json::Value,
    recipients: &[&str], now: Millis,
) -> Result<()> {
    enqueue_alert_about(conn, (site_id, tenant_id), kind, data, recipients, now, now)
}

/// [`enqueue_alert`] about something that happened at `at` (as a site reported it):
/// the payload's `timestamp` says `at`, but the rows are queued and due at headcount's
/// own `now`, which a site cannot move.
pub fn enqueue_alert_about(
    conn: &mut DbConn, site: (i64, i64), kind: &str, data: serde_json::Value, recipients: &[&str],
    at: Millis, now: Millis,
) -> Result<()> {
    let payload = body(kind, at, data);
    for target in recipients {
        let row = OutboxRow::queued(site, target, kind, payload.clone(), now);
        insert(conn, &row)?;
    }
    Ok(())
}

/// Claims up to `limit` due rows for `lease_ms`: a row claimed by a process that died
/// becomes due again when its lease runs out. The due rows are read without a lock,
/// then leased by one conditional update that takes only those still unleased: of
/// several senders that read the same rows, each row goes to one. No `FOR UPDATE`
/// over many sites, which Citus cannot run on a distributed table.
pub fn claim_due(
    conn: &mut DbConn, now: Millis, lease_ms: i64, limit: i64,
) -> Result<Vec<OutboxRow>> {
    let due: Vec<(i64, i64)> = o::outbox
        .filter(o::status.eq(STATUS_PENDING))
        .filter(o::next_attempt_at.le(now))
        .filter(o::locked_until.is_null().or(o::locked_until.le(now)))
        .order(o::next_attempt_at)
        .limit(limit)
        .select((o::site_id, o::id))
        .load(conn)?;
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let (mut sites, ids): (Vec<i64>, Vec<i64>) = due.into_iter().unzip();
    sites.sort_unstable();
    sites.dedup();
    let claim = o::outbox
        .filter(o::site_id.eq_any(&sites))
        .filter(o::id.eq_any(&ids))
        .filter(o::status.eq(STATUS_PENDING))
        .filter(o::locked_until.is_null().or(o::locked_until.le(now)));
    let mut rows: Vec<OutboxRow> = crate::per_backend!(conn, |c| diesel::update(claim)
        .set(o::locked_until.eq(Some(now + lease_ms)))
        .returning(OutboxRow::as_returning())
        .get_results(c)?);
    rows.sort_by_key(|r| r.id);
    Ok(rows)
}

/// Which of these rows (site, id) are still pending: a row claimed for sending may
/// have been superseded by a newer config push meanwhile, and must not be sent after
/// all.
pub fn still_pending(
    conn: &mut DbConn, keys: &[(i64, i64)],
) -> Result<std::collections::HashSet<i64>> {
    let (sites, ids): (Vec<i64>, Vec<i64>) = keys.iter().copied().unzip();
    Ok(o::outbox
        .filter(o::site_id.eq_any(&sites))
        .filter(o::id.eq_any(&ids))
        .filter(o::status.eq(STATUS_PENDING))
        .select(o::id)
        .load::<i64>(conn)?
        .into_iter()
        .collect())
}

pub struct AttemptResult {
    pub at: Millis,
    pub status_code: Option<i64>,
    pub duration_ms: i64,
    pub error: Option<String>,
}

/// The key of a push: its site and its id.
pub type Key = (i64, i64);

/// Records a batch of attempts and each row's next state in one transaction: one
/// commit for the batch instead of one a push, which bounds how fast a fleet's
/// pushes drain.
pub fn finish_attempts(conn: &mut DbConn, done: &[(Key, AttemptResult, Next)]) -> Result<()> {
    conn.transaction(|conn| {
        for (key, attempt, next) in done {
            record_attempt(conn, *key, attempt, *next)?;
        }
        Ok(())
    })
}

fn record_attempt(conn: &mut DbConn, key: Key, attempt: &AttemptResult, next: Next) -> Result<()> {
    let (site_id, row_id) = key;
    {
        diesel::insert_into(d::delivery_attempts)
            .values((
                d::site_id.eq(site_id),
                d::outbox_id.eq(row_id),
                d::attempted_at.eq(attempt.at),
                d::status_code.eq(attempt.status_code),
                d::duration_ms.eq(attempt.duration_ms),
                d::error.eq(attempt.error.as_deref()),
            ))
            .execute(conn)?;
        let q = diesel::update(o::outbox.find((site_id, row_id)));
        let finished = |status: &'static str| {
            (
                o::status.eq(status),
                o::attempts.eq(o::attempts + 1),
                o::locked_until.eq(None::<i64>),
                o::finished_at.eq(Some(attempt.at)),
            )
        };
        match next {
            Next::Delivered => q.set(finished(STATUS_DELIVERED)).execute(conn)?,
            Next::Failed => q.set(finished(STATUS_FAILED)).execute(conn)?,
            Next::RetryAt(at) => q
                .set((
                    o::attempts.eq(o::attempts + 1),
                    o::next_attempt_at.eq(at),
                    o::locked_until.eq(None::<i64>),
                ))
                .execute(conn)?,
        };
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Next {
    Delivered,
    RetryAt(Millis),
    Failed,
}

/// A site's pushes, newest first, with their attempts, read from one snapshot so
/// that a row's state agrees with its attempts.
pub fn list_for_site(
    conn: &mut DbConn, site: SiteKey, status: Option<&str>, before_id: Option<i64>, limit: i64,
) -> Result<Vec<(OutboxRow, Vec<AttemptRow>)>> {
    let site_id = site.id();
    super::read_snapshot(conn, |c| list_in(c, site_id, status, before_id, limit))
}

fn list_in(
    conn: &mut DbConn, site_id: i64, status: Option<&str>, before_id: Option<i64>, limit: i64,
) -> Result<Vec<(OutboxRow, Vec<AttemptRow>)>> {
    let mut q = o::outbox
        .filter(o::site_id.eq(site_id))
        .filter(o::target.eq(TARGET_SITE))
        .into_boxed();
    if let Some(st) = status {
        q = q.filter(o::status.eq(st.to_owned()));
    }
    if let Some(b) = before_id {
        q = q.filter(o::id.lt(b));
    }
    let rows: Vec<OutboxRow> = q
        .order(o::id.desc())
        .limit(limit)
        .select(OutboxRow::as_select())
        .load(conn)?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let attempts: Vec<AttemptRow> = d::delivery_attempts
        .filter(d::site_id.eq(site_id))
        .filter(d::outbox_id.eq_any(&ids))
        .order(d::id)
        .select(AttemptRow::as_select())
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let a = attempts
                .iter()
                .filter(|a| a.outbox_id == r.id)
                .cloned()
                .collect();
            (r, a)
        })
        .collect())
}

/// A push by its id alone, as `/v1/deliveries/{id}` names it: the one lookup of a push
/// that does not know its site (on Citus it asks every shard).
/// Sends a failed or pending push again, with a fresh retry schedule: the delivery
/// as the scope sees it (another tenant's does not exist for the caller), with its
/// attempts. One that was delivered or superseded is a conflict.
pub fn retry_visible(
    conn: &mut DbConn, scope: &Scope, id: i64, now: Millis,
) -> Result<(OutboxRow, Vec<AttemptRow>)> {
    let not_found = || Error::not_found("delivery");
    let row = get(conn, id)?.ok_or_else(not_found)?;
    use super::schema::{sites, tenants};
    let tenant: String = sites::table
        .inner_join(tenants::table)
        .filter(sites::id.eq(row.site_id))
        .select(tenants::slug)
        .first(conn)?;
    if !scope.sees(&tenant) {
        return Err(not_found());
    }
    if row.status == STATUS_DELIVERED || row.status == STATUS_SUPERSEDED {
        return Err(Error::Conflict(format!(
            "delivery {id} is {}; only failed or pending pushes can be retried",
            row.status
        )));
    }
    let key = (row.site_id, id);
    retry(conn, key, now)?;
    let row = get(conn, id)?.ok_or_else(not_found)?;
    Ok((row, attempts(conn, key)?))
}

fn get(conn: &mut DbConn, id: i64) -> Result<Option<OutboxRow>> {
    Ok(o::outbox
        .filter(o::id.eq(id))
        .select(OutboxRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn attempts(conn: &mut DbConn, key: Key) -> Result<Vec<AttemptRow>> {
    let (site_id, id) = key;
    Ok(d::delivery_attempts
        .filter(d::site_id.eq(site_id))
        .filter(d::outbox_id.eq(id))
        .order(d::id)
        .select(AttemptRow::as_select())
        .load(conn)?)
}

/// Makes a failed (or pending) row due now again, with a fresh attempt budget.
pub fn retry(conn: &mut DbConn, key: Key, now: Millis) -> Result<()> {
    diesel::update(o::outbox.find(key))
        .set((
            o::status.eq(STATUS_PENDING),
            o::attempts.eq(0),
            o::next_attempt_at.eq(now),
            o::locked_until.eq(None::<i64>),
            o::finished_at.eq(None::<i64>),
        ))
        .execute(conn)?;
    Ok(())
}

/// The earliest instant at which a pending row falls due (for the sender's sleep).
pub fn next_due(conn: &mut DbConn) -> Result<Option<Millis>> {
    Ok(o::outbox
        .filter(o::status.eq(STATUS_PENDING))
        .select(diesel::dsl::min(o::next_attempt_at))
        .first::<Option<i64>>(conn)?)
}
