//! Sessions: merge observations from events and snapshots, count, list, end.

use std::collections::{HashMap, HashSet};

use diesel::dsl::{case_when, not};
use diesel::expression::AsExpression;
use diesel::prelude::*;

use super::schema::sessions::dsl as x;
use super::site_full::Site;
use super::site_full::SiteFull;
use super::visible::{SiteKey, Visible};
use super::{DbConn, MultiBackend, outbox};
use crate::clock::Millis;
use crate::db::{Error, Result};
use crate::domain::session::{EndReason, IdleTimeout, Observation, SessionState, Times};

/// The storage form of [`IdleTimeout::is_dangling`], the one every query uses: an
/// open session last active at or before `cutoff` (from [`IdleTimeout::cutoff`]) is
/// dangling. `cutoff` is a bound value, or a column in a statement over several sites.
pub(crate) fn dangling<C>(cutoff: C) -> diesel::dsl::LtEq<x::last_activity_at, C>
where
    C: AsExpression<diesel::sql_types::BigInt>,
{
    x::last_activity_at.le(cutoff)
}

/// [`dangling`] by a column of the statement: a site's cutoff in one over several.
pub(crate) type DanglingBy = diesel::dsl::LtEq<
    x::last_activity_at,
    diesel::expression::SqlLiteral<diesel::sql_types::BigInt>,
>;

/// An open session that is not [`dangling`] is live: the same comparison turned
/// around, written as its own range so that both backends read it from the index by
/// last activity (SQLite does not rewrite a `NOT (a <= b)` into one).
pub(crate) fn live<C>(cutoff: C) -> diesel::dsl::Gt<x::last_activity_at, C>
where
    C: AsExpression<diesel::sql_types::BigInt>,
{
    x::last_activity_at.gt(cutoff)
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = super::schema::sessions)]
pub struct SessionRow {
    pub id: i64,
    pub site_id: i64,
    pub session: String,
    pub user_ref: Option<String>,
    pub started_at: Millis,
    pub last_activity_at: Millis,
    pub expires_at: Millis,
    pub ended_at: Option<Millis>,
    pub end_reason: Option<EndReason>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub overage: bool,
    /// Admitted with one of the site's `exempt_roles`: listed, never counted.
    pub exempt: bool,
}

impl SessionRow {
    pub fn times(&self) -> Times {
        Times {
            started_at: self.started_at,
            last_activity_at: self.last_activity_at,
            expires_at: self.expires_at,
            ended_at: self.ended_at,
        }
    }
}

use super::merge_stmt::NewSession;

/// Rows per statement: well under both backends' bind-parameter limits where a
/// statement binds each value, and a bound on the arrays where it binds columns.
const UPSERT_CHUNK: usize = 500;

/// Merges observations into the site's session rows with the monotone rule, in
/// multi-row upserts. The caller coalesces observations per session first (one row
/// per session per statement) and owns the transaction.
pub fn merge(
    conn: &mut DbConn, site_id: i64, observations: &[(String, Observation)], overage: bool,
) -> Result<usize> {
    let rows = observations
        .iter()
        .map(|(session, o)| new_row(site_id, session, o, (overage, false)))
        .collect();
    upsert_rows(conn, rows)
}

/// [`merge`] for several sites at once, in as few statements as the rows allow (the
/// event group commit writes every site of its batch this way).
pub fn merge_sites(
    conn: &mut DbConn, groups: &[(i64, Vec<(String, Observation)>)],
) -> Result<usize> {
    let rows = groups
        .iter()
        .flat_map(|(site_id, obs)| {
            obs.iter()
                .map(move |(session, o)| new_row(*site_id, session, o, (false, false)))
        })
        .collect();
    upsert_rows(conn, rows)
}

/// [`merge`] of rows of several sites, each with its own `overage` and `exempt`
/// flags (kept only when the row is inserted).
pub fn merge_rows<'a>(
    conn: &mut DbConn, rows: impl Iterator<Item = (i64, &'a str, &'a Observation, (bool, bool))>,
) -> Result<usize> {
    let rows = rows
        .map(|(site_id, session, o, flags)| new_row(site_id, session, o, flags))
        .collect();
    upsert_rows(conn, rows)
}

/// `flags`: (`overage`, `exempt`).
fn new_row<'a>(
    site_id: i64, session: &'a str, o: &'a Observation, flags: (bool, bool),
) -> NewSession<'a> {
    let (overage, exempt) = flags;
    NewSession {
        site_id,
        session,
        user_ref: o.user.as_deref(),
        started_at: o.started_at,
        last_activity_at: o.last_activity_at,
        expires_at: o.expires_at,
        ended_at: o.ended.map(|e| e.0),
        end_reason: o.ended.map(|e| e.1.as_str()),
        user_agent: o.user_agent.as_deref(),
        ip: o.ip.as_deref(),
        overage,
        exempt: exempt || o.exempt,
    }
}

fn upsert_rows(conn: &mut DbConn, mut rows: Vec<NewSession<'_>>) -> Result<usize> {
    // Rows in one order for every writer, so that concurrent batches touching the same
    // sessions lock them in the same order and cannot deadlock each other.
    rows.sort_unstable_by(|a, b| (a.site_id, a.session).cmp(&(b.site_id, b.session)));
    let mut n = 0;
    for chunk in rows.chunks(UPSERT_CHUNK) {
        n += match &mut *conn {
            DbConn::Pg(c) => super::merge_stmt::PgMerge::new(chunk).run(c)?,
            DbConn::Sqlite(c) => super::merge_stmt::sqlite_merge(c, chunk)?,
        };
    }
    Ok(n)
}

pub use crate::domain::session::Standing;

/// The standings of those of the named sessions that the site has. One site per
/// query: a prepared statement with both the sites and the sessions as arrays gets a
/// generic plan that scans the sites' rows instead of the unique index.
pub fn standings(
    conn: &mut DbConn, site_id: i64, sessions: &[&str],
) -> Result<Vec<(String, Standing)>> {
    let mut out = Vec::with_capacity(sessions.len());
    for chunk in sessions.chunks(UPSERT_CHUNK) {
        let rows: Vec<(String, Millis, Millis, Option<Millis>, bool)> = x::sessions
            .filter(x::site_id.eq(site_id))
            .filter(x::session.eq_any(chunk))
            .select((
                x::session,
                x::last_activity_at,
                x::expires_at,
                x::ended_at,
                x::exempt,
            ))
            .load(conn)?;
        out.extend(
            rows.into_iter()
                .map(|(session, last, expires, ended, exempt)| {
                    let s = Standing {
                        last_activity_at: last,
                        expires_at: expires,
                        ended_at: ended,
                        exempt,
                    };
                    (session, s)
                }),
        );
    }
    Ok(out)
}

pub fn get(conn: &mut DbConn, site_id: i64, session: &str) -> Result<Option<SessionRow>> {
    Ok(x::sessions
        .filter(x::site_id.eq(site_id))
        .filter(x::session.eq(session))
        .select(SessionRow::as_select())
        .first(conn)
        .optional()?)
}

/// Rows of one text column, for the PostgreSQL statements below.
#[derive(QueryableByName)]
struct SessionName {
    #[diesel(sql_type = diesel::sql_types::Text)]
    session: String,
}

/// Which of these sessions the site already has.
///
/// On PostgreSQL the ids are joined as an array: `session = ANY($2)` on a prepared
/// statement ends up on a generic plan (chosen while the site was small) that walks
/// the site's rows for every chunk, which made a big snapshot quadratic; the join
/// probes the unique index once per id whatever the plan.
pub fn existing(conn: &mut DbConn, site_id: i64, sessions: &[&str]) -> Result<HashSet<String>> {
    use diesel::sql_types::{Array, BigInt, Text};
    let mut out = HashSet::new();
    if let DbConn::Pg(c) = conn {
        for chunk in sessions.chunks(PG_ID_CHUNK) {
            let found: Vec<SessionName> = diesel::sql_query(
                "SELECT x.session FROM unnest($2::text[]) AS q(session) \
                 JOIN sessions x ON x.site_id = $1 AND x.session = q.session",
            )
            .bind::<BigInt, _>(site_id)
            .bind::<Array<Text>, _>(chunk)
            .load(c)?;
            out.extend(found.into_iter().map(|r| r.session));
        }
        return Ok(out);
    }
    for chunk in sessions.chunks(UPSERT_CHUNK) {
        let found: Vec<String> = x::sessions
            .filter(x::site_id.eq(site_id))
            .filter(x::session.eq_any(chunk))
            .select(x::session)
            .load(conn)?;
        out.extend(found);
    }
    Ok(out)
}

/// Active (not ended, not expired) session ids of a site with their last activity.
pub fn open_sessions(
    conn: &mut DbConn, site_id: i64, now: Millis,
) -> Result<Vec<(String, Millis)>> {
    Ok(x::sessions
        .filter(x::site_id.eq(site_id))
        .filter(x::ended_at.is_null())
        .filter(x::expires_at.gt(now))
        .select((x::session, x::last_activity_at))
        .load(conn)?)
}

/// Ids per statement where PostgreSQL takes them as one array parameter.
const PG_ID_CHUNK: usize = 10_000;

/// Ends the given open sessions of a site; returns how many it ended.
pub fn end_sessions(
    conn: &mut DbConn, site_id: i64, sessions: &[String], at: Millis, reason: EndReason,
) -> Result<usize> {
    end_open(conn, site_id, sessions, at, reason, Millis::MAX)
}

/// Ends the site's session as `killed` and queues its `session.kill` push; 0 when it
/// had ended already. Runs in a transaction that holds the site, so that admissions
/// deciding on the site see the kill before or after, never in the middle.
pub fn kill_session(
    conn: &mut DbConn, site: &Visible<SiteFull>, session: &str, now: Millis,
) -> Result<usize> {
    let site = &site.site;
    if get(conn, site.id, session)?.is_none() {
        return Err(Error::not_found(format!("session {session:?}")));
    }
    let one = [session.to_owned()];
    let n = end_sessions(conn, site.id, &one, now, EndReason::Killed)?;
    if n > 0 {
        queue_kill_push(conn, site, &one, now)?;
    }
    Ok(n)
}

/// Ends as `killed` the site's sessions that `filter` selects and queues their
/// `session.kill` pushes; returns how many it ended. Runs, like [`kill_session`],
/// in a transaction that holds the site.
pub fn kill_selected(
    conn: &mut DbConn, site: &Visible<SiteFull>, now: Millis, idle_timeout_seconds: i64,
    filter: &ListFilter,
) -> Result<usize> {
    let victims: Vec<String> = list(conn, site.key(), now, idle_timeout_seconds, filter)?
        .into_iter()
        .map(|r| r.session)
        .collect();
    let n = end_sessions(conn, site.site.id, &victims, now, EndReason::Killed)?;
    if !victims.is_empty() {
        queue_kill_push(conn, &site.site, &victims, now)?;
    }
    Ok(n)
}

fn queue_kill_push(conn: &mut DbConn, site: &Site, killed: &[String], now: Millis) -> Result<()> {
    outbox::enqueue_kill(
        conn,
        site.id,
        site.tenant_id,
        &site.slug,
        killed,
        "killed",
        now,
    )
}

/// Ends those of the given open sessions whose last activity is not after `at` (a
/// snapshot's reconciliation: a session active since then stays open).
pub fn end_idle_since(
    conn: &mut DbConn, site_id: i64, sessions: &[String], at: Millis, reason: EndReason,
) -> Result<usize> {
    end_open(conn, site_id, sessions, at, reason, at)
}

/// Ends those of the given open sessions last active at or before `active_by`.
fn end_open(
    conn: &mut DbConn, site_id: i64, sessions: &[String], at: Millis, reason: EndReason,
    active_by: Millis,
) -> Result<usize> {
    use diesel::sql_types::{Array, BigInt, Text};
    let mut n = 0;
    if let DbConn::Pg(c) = conn {
        // As in `existing`: joined, so that no cached plan walks the site's rows.
        for chunk in sessions.chunks(PG_ID_CHUNK) {
            n += diesel::sql_query(
                "UPDATE sessions x SET ended_at = $3, end_reason = $4 \
                 FROM unnest($2::text[]) AS q(session) \
                 WHERE x.site_id = $1 AND x.session = q.session AND x.ended_at IS NULL \
                 AND x.last_activity_at <= $5",
            )
            .bind::<BigInt, _>(site_id)
            .bind::<Array<Text>, _>(chunk)
            .bind::<BigInt, _>(at)
            .bind::<Text, _>(reason.as_str())
            .bind::<BigInt, _>(active_by)
            .execute(c)?;
        }
        return Ok(n);
    }
    for chunk in sessions.chunks(UPSERT_CHUNK) {
        n += diesel::update(
            x::sessions
                .filter(x::site_id.eq(site_id))
                .filter(x::session.eq_any(chunk))
                .filter(x::ended_at.is_null())
                .filter(x::last_activity_at.le(active_by)),
        )
        .set((
            x::ended_at.eq(Some(at)),
            x::end_reason.eq(Some(reason.as_str())),
        ))
        .execute(conn)?;
    }
    Ok(n)
}

/// Counts of a site's active and dangling sessions at `now`, in one query over the
/// partial index of sessions that have not ended.
pub fn count(
    conn: &mut DbConn, site_id: i64, now: Millis, idle_timeout_seconds: i64,
) -> Result<(i64, i64)> {
    use diesel::dsl::{count, count_star};
    let cutoff = IdleTimeout::seconds(idle_timeout_seconds).cutoff(now);
    // COUNT of a CASE without ELSE counts the dangling rows; unlike a SUM it is a
    // BIGINT on both backends, and the statement, with every value bound, is prepared
    // once per connection and reused (admissions run it each time). The CASE yields
    // an indexed column, so that PostgreSQL can answer from the partial index of open
    // sessions that count alone (an index-only scan) instead of reading every row;
    // `NOT exempt` is text, not a bound value, so that it matches the index.
    let (active, dangling): (i64, i64) = x::sessions
        .filter(x::site_id.eq(site_id))
        .filter(x::ended_at.is_null())
        .filter(not(x::exempt))
        .filter(x::expires_at.gt(now))
        .select((
            count_star(),
            count(case_when(dangling(cutoff), x::last_activity_at)),
        ))
        .first(conn)?;
    Ok((active, dangling))
}

/// The most idle dangling session of a site that counts, if any (an exempt session
/// holds no place and is never evicted).
pub fn most_idle_dangling(
    conn: &mut DbConn, site_id: i64, now: Millis, idle_timeout_seconds: i64,
) -> Result<Option<String>> {
    Ok(x::sessions
        .filter(x::site_id.eq(site_id))
        .filter(x::ended_at.is_null())
        .filter(not(x::exempt))
        .filter(dangling(
            IdleTimeout::seconds(idle_timeout_seconds).cutoff(now),
        ))
        .filter(x::expires_at.gt(now))
        .order((x::last_activity_at, x::id))
        .select(x::session)
        .first(conn)
        .optional()?)
}

/// One of a user's active sessions, as a refused user is shown it.
#[derive(Debug, Clone, Queryable)]
pub struct OwnSession {
    pub session: String,
    pub last_activity_at: Millis,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

/// A user's active (not ended, not expired) sessions on a site that count, most idle
/// first: exempt ones hold no place of the user's.
pub fn open_of_user(
    conn: &mut DbConn, site_id: i64, user: &str, now: Millis,
) -> Result<Vec<OwnSession>> {
    Ok(x::sessions
        .filter(x::site_id.eq(site_id))
        .filter(x::user_ref.eq(user))
        .filter(x::ended_at.is_null())
        .filter(not(x::exempt))
        .filter(x::expires_at.gt(now))
        .order((x::last_activity_at, x::id))
        .select((x::session, x::last_activity_at, x::user_agent, x::ip))
        .load(conn)?)
}

/// Up to `limit` of a site's sessions that count now, most idle first, with their
/// last activity: what a refusal saw. `live_after` set: only sessions active after it
/// count (count mode live).
pub fn counted_sample(
    conn: &mut DbConn, site_id: i64, now: Millis, live_after: Option<Millis>, limit: i64,
) -> Result<Vec<(String, Millis)>> {
    let mut q = x::sessions
        .filter(x::site_id.eq(site_id))
        .filter(x::ended_at.is_null())
        .filter(not(x::exempt))
        .filter(x::expires_at.gt(now))
        .into_boxed();
    if let Some(after) = live_after {
        q = q.filter(live(after));
    }
    Ok(q.order((x::last_activity_at, x::id))
        .select((x::session, x::last_activity_at))
        .limit(limit)
        .load(conn)?)
}

/// Filters for the Sessions table.
#[derive(Debug, Clone)]
pub struct ListFilter {
    pub states: HashSet<SessionState>,
    pub user: Option<String>,
    /// Older than this (last activity, id), for the next page.
    pub before: Option<(Millis, i64)>,
    pub limit: i64,
    pub idle_longer_than_ms: Option<i64>,
}

type Cond =
    Box<dyn BoxableExpression<x::sessions, MultiBackend, SqlType = diesel::sql_types::Bool>>;

fn state_cond(state: SessionState, now: Millis, cutoff: Millis) -> Cond {
    match state {
        SessionState::Ended => Box::new(x::ended_at.is_not_null()),
        SessionState::Expired => Box::new(x::ended_at.is_null().and(x::expires_at.le(now))),
        SessionState::Live => Box::new(
            x::ended_at
                .is_null()
                .and(x::expires_at.gt(now))
                .and(live(cutoff)),
        ),
        SessionState::Dangling => Box::new(
            x::ended_at
                .is_null()
                .and(x::expires_at.gt(now))
                .and(dangling(cutoff)),
        ),
    }
}

pub fn list(
    conn: &mut DbConn, site: SiteKey, now: Millis, idle_timeout_seconds: i64, f: &ListFilter,
) -> Result<Vec<SessionRow>> {
    let site_id = site.id();
    let cutoff = IdleTimeout::seconds(idle_timeout_seconds).cutoff(now);
    let mut q = x::sessions.filter(x::site_id.eq(site_id)).into_boxed();
    let mut states: Vec<SessionState> = f.states.iter().copied().collect();
    states.sort_by_key(|s| s.as_str());
    if states.len() < 4 {
        let mut cond: Option<Cond> = None;
        for s in states {
            let c = state_cond(s, now, cutoff);
            cond = Some(match cond {
                None => c,
                Some(prev) => Box::new(prev.or(c)),
            });
        }
        if let Some(c) = cond {
            q = q.filter(c);
        }
    }
    if let Some(ms) = f.idle_longer_than_ms {
        q = q.filter(x::last_activity_at.lt(now - ms));
    }
    newest_page(conn, q, f)
}

/// One page of a session listing: `f`'s user and cursor applied, the most recently
/// active first.
fn newest_page(
    conn: &mut DbConn, mut q: super::schema::sessions::BoxedQuery<'static, MultiBackend>,
    f: &ListFilter,
) -> Result<Vec<SessionRow>> {
    if let Some(u) = &f.user {
        q = q.filter(x::user_ref.eq(u.clone()));
    }
    if let Some((last, id)) = f.before {
        q = q.filter(
            x::last_activity_at
                .lt(last)
                .or(x::last_activity_at.eq(last).and(x::id.lt(id))),
        );
    }
    Ok(q.order((x::last_activity_at.desc(), x::id.desc()))
        .limit(f.limit)
        .select(SessionRow::as_select())
        .load(conn)?)
}

/// The Sessions table at a past or present instant: the sessions active at `at`
/// (`started_at <= at < min(ended_at, expires_at)`), with `f.states` judged then
/// (live or dangling by `idle_timeout_seconds`; no session is expired or ended while
/// active, so those states select nothing). Only the latest activity is stored, so a
/// session last active after `at` reads as live at `at`.
pub fn list_active_at(
    conn: &mut DbConn, site: SiteKey, at: Millis, idle_timeout_seconds: i64, f: &ListFilter,
) -> Result<Vec<SessionRow>> {
    let site_id = site.id();
    let cutoff = IdleTimeout::seconds(idle_timeout_seconds).cutoff(at);
    let want_live = f.states.contains(&SessionState::Live);
    let want_dangling = f.states.contains(&SessionState::Dangling);
    if !want_live && !want_dangling {
        return Ok(Vec::new());
    }
    let mut q = x::sessions
        .filter(x::site_id.eq(site_id))
        .filter(x::started_at.le(at))
        .filter(x::expires_at.gt(at))
        .filter(x::ended_at.is_null().or(x::ended_at.gt(at)))
        .into_boxed();
    if !want_dangling {
        q = q.filter(live(cutoff));
    } else if !want_live {
        q = q.filter(dangling(cutoff));
    }
    newest_page(conn, q, f)
}

/// Per user of a site: active, live and dangling counts.
pub fn per_user(
    conn: &mut DbConn, site: SiteKey, now: Millis, idle_timeout_seconds: i64,
) -> Result<Vec<(Option<String>, i64, i64)>> {
    let site_id = site.id();
    let idle = IdleTimeout::seconds(idle_timeout_seconds);
    let rows: Vec<(Option<String>, Millis)> = x::sessions
        .filter(x::site_id.eq(site_id))
        .filter(x::ended_at.is_null())
        .filter(not(x::exempt))
        .filter(x::expires_at.gt(now))
        .select((x::user_ref, x::last_activity_at))
        .load(conn)?;
    let mut by_user: HashMap<Option<String>, (i64, i64)> = HashMap::new();
    for (user, last) in rows {
        let e = by_user.entry(user).or_default();
        e.0 += 1;
        if idle.is_dangling(last, now) {
            e.1 += 1;
        }
    }
    Ok(by_user.into_iter().map(|(u, (a, d))| (u, a, d)).collect())
}

/// Ends sessions that expired more than `grace_ms` ago with reason `expired`, in small
/// batches, so that the index of open sessions holds only what can still be active.
/// Holds the sites' locks, in id order, like every other writer of their sessions:
/// ending a session can move its site's counts (see [`super::counts`]).
pub fn end_expired(conn: &mut DbConn, now: Millis, grace_ms: i64, batch: i64) -> Result<usize> {
    let due: Vec<(i64, i64)> = x::sessions
        .filter(x::ended_at.is_null())
        .filter(x::expires_at.le(now - grace_ms))
        .select((x::id, x::site_id))
        .limit(batch)
        .load(conn)?;
    if due.is_empty() {
        return Ok(0);
    }
    let ids: Vec<i64> = due.iter().map(|d| d.0).collect();
    let mut sites: Vec<i64> = due.iter().map(|d| d.1).collect();
    sites.sort_unstable();
    sites.dedup();
    conn.transaction(|c| {
        super::lock_sites(c, &sites)?;
        // Checked again under the locks: an event may have renewed a session since.
        let ended = (
            x::ended_at.eq(x::expires_at.nullable()),
            x::end_reason.eq(Some(EndReason::Expired.as_str())),
        );
        let due = x::id
            .eq_any(&ids)
            .and(x::ended_at.is_null())
            .and(x::expires_at.le(now - grace_ms));
        Ok(crate::per_backend!(c, |c, pg| if pg {
            diesel::update(x::sessions.filter(x::site_id.eq_any(&sites)).filter(due))
                .set(ended)
                .execute(c)?
        } else {
            diesel::update(x::sessions.filter(due))
                .set(ended)
                .execute(c)?
        }))
    })
}

/// Deletes sessions that ended before `before`, at most `batch` at a time.
///
/// Retention names a batch's rows by their key. On PostgreSQL that is (site_id, id):
/// with the ids alone each batch scans the table (under the sites' locks when ending
/// expired sessions, [`end_expired`]). On SQLite the id is the key, and naming the
/// sites there leads its planner to read every session of those sites instead.
pub fn delete_ended_before(conn: &mut DbConn, before: Millis, batch: i64) -> Result<usize> {
    let due: Vec<(i64, i64)> = x::sessions
        .filter(x::ended_at.lt(before))
        .select((x::id, x::site_id))
        .limit(batch)
        .load(conn)?;
    if due.is_empty() {
        return Ok(0);
    }
    let ids: Vec<i64> = due.iter().map(|d| d.0).collect();
    let mut sites: Vec<i64> = due.iter().map(|d| d.1).collect();
    sites.sort_unstable();
    sites.dedup();
    Ok(crate::per_backend!(conn, |c, pg| if pg {
        diesel::delete(
            x::sessions
                .filter(x::site_id.eq_any(&sites))
                .filter(x::id.eq_any(&ids)),
        )
        .execute(c)?
    } else {
        diesel::delete(x::sessions.filter(x::id.eq_any(&ids))).execute(c)?
    }))
}

/// `(started_at, expires_at, ended_at, last_activity_at)` of a session.
pub type SessionTimes = (Millis, Millis, Option<Millis>, Millis);

/// The times of a site's sessions that were active at some instant of `[from, to)`:
/// started before `to`, neither ended nor expired by `from`, and not exempt — the
/// sessions billing, advice and history judge a period by.
pub fn times_overlapping(
    conn: &mut DbConn, site_id: i64, from: Millis, to: Millis,
) -> Result<Vec<SessionTimes>> {
    Ok(x::sessions
        .filter(x::site_id.eq(site_id))
        .filter(not(x::exempt))
        .filter(x::started_at.lt(to))
        .filter(x::expires_at.gt(from))
        .filter(x::ended_at.is_null().or(x::ended_at.gt(from)))
        .select((
            x::started_at,
            x::expires_at,
            x::ended_at,
            x::last_activity_at,
        ))
        .load(conn)?)
}

/// Session intervals of a site overlapping `[from, to)`, for billing:
/// `(started_at, min(ended_at, expires_at), user)`; exempt sessions are never billed.
pub fn intervals(
    conn: &mut DbConn, site_id: i64, from: Millis, to: Millis,
) -> Result<Vec<(Millis, Millis, Option<String>)>> {
    let rows: Vec<(Millis, Millis, Option<Millis>, Option<String>)> = x::sessions
        .filter(x::site_id.eq(site_id))
        .filter(not(x::exempt))
        .filter(x::started_at.lt(to))
        .filter(x::expires_at.gt(from))
        .filter(x::ended_at.is_null().or(x::ended_at.gt(from)))
        .select((x::started_at, x::expires_at, x::ended_at, x::user_ref))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(s, e, end, u)| (s, end.map_or(e, |x| x.min(e)), u))
        .collect())
}
