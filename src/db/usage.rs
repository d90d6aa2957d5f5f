//! Counts per site, per tenant and provider-wide; denials; usage samples.

use std::collections::HashMap;

use diesel::dsl::sql;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt};
use diesel::sqlite::Sqlite;

use super::schema::denials::dsl as dn;
use super::visible::SiteKey;
use super::{DbConn, sessions};
use crate::clock::Millis;
use crate::db::Result;
use crate::domain::session::IdleTimeout;

/// Rewrites `?` placeholders as `$1, $2, …` for PostgreSQL, so that one SQL text
/// serves both backends where the query builder cannot express a statement.
pub fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for ch in sql.chars() {
        if ch == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(ch);
        }
    }
    out
}

/// Active and dangling sessions of the given sites at `now`, each judged by its own
/// idle timeout (`sites` pairs a site with it, in seconds), in one grouped statement
/// per chunk of sites: a site's cutoff travels with it, so that the statement asks
/// [`sessions::dangling`] like every other. A site without open sessions is left out.
pub fn counts(
    conn: &mut DbConn, sites: &[(SiteKey, i64)], now: Millis,
) -> Result<HashMap<i64, (i64, i64)>> {
    let mut out = HashMap::with_capacity(sites.len());
    for chunk in sites.chunks(COUNT_CHUNK) {
        let rows: Vec<(i64, i64, i64)> = SiteCountsQuery {
            site: chunk.iter().map(|s| s.0.id()).collect(),
            cutoff: chunk
                .iter()
                .map(|s| IdleTimeout::seconds(s.1).cutoff(now))
                .collect(),
            now,
            dangling: sessions::dangling(sql("q.cutoff")),
        }
        .load_on(conn)?;
        out.extend(rows.into_iter().map(|(site, a, d)| (site, (a, d))));
    }
    Ok(out)
}

/// Sites per counting statement: SQLite binds each site and cutoff as a value.
const COUNT_CHUNK: usize = 2000;

/// The grouped count of [`counts`]: the sites and their cutoffs as a table (`q`)
/// joined to their open sessions. PostgreSQL (and Citus, which runs the join on each
/// shard) takes them as two arrays, one statement text for any number of sites;
/// SQLite as a `VALUES` list.
struct SiteCountsQuery {
    site: Vec<i64>,
    cutoff: Vec<i64>,
    now: Millis,
    /// [`sessions::dangling`] by the site's cutoff.
    dangling: sessions::DanglingBy,
}

impl SiteCountsQuery {
    fn load_on(self, conn: &mut DbConn) -> Result<Vec<(i64, i64, i64)>> {
        Ok(match conn {
            DbConn::Pg(c) => self.load(c)?,
            DbConn::Sqlite(c) => self.load(c)?,
        })
    }

    /// The statement after the sites' table, the same on both backends.
    fn walk_counts<'b, DB>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()>
    where
        DB: diesel::backend::Backend + diesel::sql_types::HasSqlType<BigInt>,
        i64: diesel::serialize::ToSql<BigInt, DB>,
        sessions::DanglingBy: QueryFragment<DB>,
    {
        // As in sessions::count: the CASE yields an indexed column, so that the
        // partial index of open sessions can answer alone.
        out.push_sql(") SELECT sessions.site_id, count(*), count(CASE WHEN ");
        self.dangling.walk_ast(out.reborrow())?;
        out.push_sql(
            " THEN sessions.last_activity_at END) FROM q JOIN sessions ON sessions.site_id = q.site \
             WHERE sessions.ended_at IS NULL AND NOT sessions.exempt AND sessions.expires_at > ",
        );
        out.push_bind_param::<BigInt, _>(&self.now)?;
        out.push_sql(" GROUP BY sessions.site_id");
        Ok(())
    }
}

impl QueryId for SiteCountsQuery {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for SiteCountsQuery {
    type SqlType = (BigInt, BigInt, BigInt);
}

impl RunQueryDsl<PgConnection> for SiteCountsQuery {}
impl RunQueryDsl<SqliteConnection> for SiteCountsQuery {}

impl QueryFragment<Pg> for SiteCountsQuery {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("WITH q(site, cutoff) AS (SELECT * FROM unnest(");
        out.push_bind_param::<Array<BigInt>, _>(&self.site)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.cutoff)?;
        out.push_sql(")");
        self.walk_counts(out)
    }
}

impl QueryFragment<Sqlite> for SiteCountsQuery {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        out.push_sql("WITH q(site, cutoff) AS (VALUES ");
        for (i, (site, cutoff)) in self.site.iter().zip(&self.cutoff).enumerate() {
            out.push_sql(if i == 0 { "(" } else { ", (" });
            out.push_bind_param::<BigInt, _>(site)?;
            out.push_sql(", ");
            out.push_bind_param::<BigInt, _>(cutoff)?;
            out.push_sql(")");
        }
        self.walk_counts(out)
    }
}

/// What a refused admission saw, kept with its denial.
#[derive(Debug, Clone)]
pub struct DenialDetail<'a> {
    pub at: Millis,
    pub outcome: &'a str,
    pub session: &'a str,
    pub user: Option<&'a str>,
    pub counted: i64,
    pub session_limit: i64,
    pub count_mode: &'a str,
    /// `[{session, state, idle_seconds}]`, at most 50, as JSON.
    pub counted_sessions: String,
}

pub fn record_denial(conn: &mut DbConn, site_id: i64, d: &DenialDetail<'_>) -> Result<()> {
    diesel::insert_into(dn::denials)
        .values((
            dn::site_id.eq(site_id),
            dn::at.eq(d.at),
            dn::outcome.eq(d.outcome),
            dn::session.eq(Some(d.session)),
            dn::user_ref.eq(d.user),
            dn::counted.eq(Some(d.counted)),
            dn::session_limit.eq(Some(d.session_limit)),
            dn::count_mode.eq(Some(d.count_mode)),
            dn::counted_sessions.eq(Some(&d.counted_sessions)),
        ))
        .execute(conn)?;
    Ok(())
}

/// A denial as `GET /v1/sites/{slug}/denials` lists it.
#[derive(Debug, Clone, Queryable)]
pub struct DenialRow {
    pub id: i64,
    pub at: Millis,
    pub outcome: String,
    pub session: Option<String>,
    pub user_ref: Option<String>,
    pub counted: Option<i64>,
    pub session_limit: Option<i64>,
    pub count_mode: Option<String>,
    pub counted_sessions: Option<String>,
}

/// A site's denials in `[from, to)`, newest first, before the cursor `(at, id)`.
pub fn list_denials(
    conn: &mut DbConn, site: SiteKey, from: Millis, to: Millis, before: Option<(Millis, i64)>,
    limit: i64,
) -> Result<Vec<DenialRow>> {
    let site_id = site.id();
    let mut q = dn::denials
        .filter(dn::site_id.eq(site_id))
        .filter(dn::at.ge(from))
        .filter(dn::at.lt(to))
        .into_boxed();
    if let Some((at, id)) = before {
        q = q.filter(dn::at.lt(at).or(dn::at.eq(at).and(dn::id.lt(id))));
    }
    Ok(q.order((dn::at.desc(), dn::id.desc()))
        .select((
            dn::id,
            dn::at,
            dn::outcome,
            dn::session,
            dn::user_ref,
            dn::counted,
            dn::session_limit,
            dn::count_mode,
            dn::counted_sessions,
        ))
        .limit(limit)
        .load(conn)?)
}

/// A sign-in refused by the site itself (a `session.refused` event).
#[derive(Debug, Clone)]
pub struct Refusal {
    pub at: Millis,
    /// The agent's event id: a refusal sent again with the same id counts once.
    pub event_id: Option<String>,
    pub session: Option<String>,
    pub user: Option<String>,
}

/// Outcome recorded for refusals the site made itself.
pub const SITE_REFUSED: &str = "site_refused";

/// Records a site's own refusal as a denial; false when its event id was seen before.
/// Records the refusals a site made itself as denials, each once, and raises the
/// `site.limit_reached` alert as a refused admission would: paced by headcount's clock
/// (`now`), whatever instants the site gave them. How many were new. The caller holds
/// the site.
pub fn record_site_refusals(
    conn: &mut DbConn, site: SiteKey, refusals: &[Refusal], now: Millis, provider_alerts: bool,
) -> Result<usize> {
    let mut new = 0;
    let mut latest = None;
    for r in refusals {
        if record_site_refusal(conn, site.id(), r)? {
            new += 1;
            latest = latest.max(Some(r.at));
        }
    }
    if let Some(at) = latest {
        let mut full = super::sites::get_by_id(conn, site.id())?;
        super::alerts::on_refusal(conn, &mut full, at, now, provider_alerts)?;
    }
    Ok(new)
}

fn record_site_refusal(conn: &mut DbConn, site_id: i64, r: &Refusal) -> Result<bool> {
    let n = crate::per_backend!(conn, |c| diesel::insert_into(dn::denials)
        .values((
            dn::site_id.eq(site_id),
            dn::at.eq(r.at),
            dn::outcome.eq(SITE_REFUSED),
            dn::event_id.eq(&r.event_id),
            dn::session.eq(&r.session),
            dn::user_ref.eq(&r.user),
        ))
        .on_conflict_do_nothing()
        .execute(c)?);
    Ok(n > 0)
}

/// Denials per site in `[from, to)`.
pub fn denials_between(
    conn: &mut DbConn, sites: &[SiteKey], from: Millis, to: Millis,
) -> Result<Vec<(i64, i64)>> {
    let site_ids: Vec<i64> = sites.iter().map(|s| s.id()).collect();
    Ok(dn::denials
        .filter(dn::site_id.eq_any(site_ids))
        .filter(dn::at.ge(from))
        .filter(dn::at.lt(to))
        .group_by(dn::site_id)
        .select((dn::site_id, diesel::dsl::count_star()))
        .load(conn)?)
}

pub fn denial_times(
    conn: &mut DbConn, site_id: i64, from: Millis, to: Millis,
) -> Result<Vec<Millis>> {
    Ok(dn::denials
        .filter(dn::site_id.eq(site_id))
        .filter(dn::at.ge(from))
        .filter(dn::at.lt(to))
        .select(dn::at)
        .order(dn::at)
        .load(conn)?)
}

/// Deletes the refusals of these sites recorded before `before`.
pub fn delete_denials_before(conn: &mut DbConn, site_ids: &[i64], before: Millis) -> Result<usize> {
    Ok(diesel::delete(
        dn::denials
            .filter(dn::site_id.eq_any(site_ids))
            .filter(dn::at.lt(before)),
    )
    .execute(conn)?)
}

pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 86_400_000;

/// Deletes these sites' hours and days that ended at or before `before`; a day still
/// partly inside the window stays.
pub fn delete_rollups_before(conn: &mut DbConn, site_ids: &[i64], before: Millis) -> Result<usize> {
    use super::schema::usage_rollups::dsl as ur;
    let mut n = 0;
    for bucket in [HOUR_MS, DAY_MS] {
        n += diesel::delete(
            ur::usage_rollups
                .filter(ur::site_id.eq_any(site_ids))
                .filter(ur::bucket_ms.eq(bucket))
                .filter(ur::at.le(before - bucket)),
        )
        .execute(conn)?;
    }
    Ok(n)
}
