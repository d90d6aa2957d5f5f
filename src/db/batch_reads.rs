//! What a batch of admissions reads before deciding: each site's counts and the
//! batch's sessions. On PostgreSQL each is one prepared statement for the whole batch,
//! with the sites and sessions as arrays, because every statement costs a round trip
//! to another process; SQLite runs in the process, so it reads site by site.

use std::collections::HashMap;

use diesel::dsl::sql;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text};
use diesel::{PgConnection, QueryResult, RunQueryDsl};

use super::DbConn;
use super::sessions::{self, Standing};
use crate::clock::Millis;
use crate::db::Result;
use crate::domain::session::IdleTimeout;

/// Active and dangling sessions of each site at `now`; `sites` pairs a site with its
/// idle timeout in seconds.
pub fn counts(
    conn: &mut DbConn, sites: &[(i64, i64)], now: Millis,
) -> Result<HashMap<i64, (i64, i64)>> {
    match conn {
        // Citus cannot push a lateral join over the sites down to their shards: there
        // each site is counted by a statement of its own, on its shard.
        DbConn::Pg(_) if super::distributed() => sites
            .iter()
            .map(|&(site, idle)| Ok((site, sessions::count(conn, site, now, idle)?)))
            .collect(),
        DbConn::Pg(c) => {
            let rows = PgCounts {
                site: sites.iter().map(|s| s.0).collect(),
                cutoff: sites
                    .iter()
                    .map(|s| IdleTimeout::seconds(s.1).cutoff(now))
                    .collect(),
                now,
                dangling: sessions::dangling(sql("q.cutoff")),
            }
            .load(c)?;
            Ok(rows
                .into_iter()
                .map(|(site, active, dangling)| (site, (active, dangling)))
                .collect())
        }
        DbConn::Sqlite(_) => sites
            .iter()
            .map(|&(site, idle)| Ok((site, sessions::count(conn, site, now, idle)?)))
            .collect(),
    }
}

/// The standings of those of the named sessions (site, session) that exist.
pub fn standings(
    conn: &mut DbConn, wanted: &[(i64, &str)],
) -> Result<HashMap<(i64, String), Standing>> {
    match conn {
        // On Citus the join with the pairs cannot be routed to one shard (Citus sends
        // it to every shard): there each site's sessions are read on their shard.
        DbConn::Pg(_) if super::distributed() => standings_by_site(conn, wanted),
        DbConn::Pg(c) => {
            let rows = PgStandings {
                site: wanted.iter().map(|w| w.0).collect(),
                session: wanted.iter().map(|w| w.1).collect(),
            }
            .load::<(i64, String, Millis, Millis, Option<Millis>, bool)>(c)?;
            Ok(rows
                .into_iter()
                .map(
                    |(site, session, last_activity_at, expires_at, ended_at, exempt)| {
                        let s = Standing {
                            last_activity_at,
                            expires_at,
                            ended_at,
                            exempt,
                        };
                        ((site, session), s)
                    },
                )
                .collect())
        }
        DbConn::Sqlite(_) => standings_by_site(conn, wanted),
    }
}

/// [`standings`] one site at a time.
fn standings_by_site(
    conn: &mut DbConn, wanted: &[(i64, &str)],
) -> Result<HashMap<(i64, String), Standing>> {
    let mut sites: Vec<i64> = wanted.iter().map(|w| w.0).collect();
    sites.sort_unstable();
    sites.dedup();
    let mut out = HashMap::with_capacity(wanted.len());
    for site in sites {
        let names: Vec<&str> = wanted.iter().filter(|w| w.0 == site).map(|w| w.1).collect();
        for (session, s) in sessions::standings(conn, site, &names)? {
            out.insert((site, session), s);
        }
    }
    Ok(out)
}

/// The admission count of [`sessions::count`] for several sites: one index scan per
/// site, as a lateral join over the sites.
struct PgCounts {
    site: Vec<i64>,
    cutoff: Vec<i64>,
    now: Millis,
    /// [`sessions::dangling`] by the site's cutoff.
    dangling: sessions::DanglingBy,
}

impl QueryId for PgCounts {
    type QueryId = PgCounts;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl Query for PgCounts {
    type SqlType = (BigInt, BigInt, BigInt);
}

impl RunQueryDsl<PgConnection> for PgCounts {}

impl QueryFragment<Pg> for PgCounts {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("SELECT q.site, c.active, c.dangling FROM unnest(");
        out.push_bind_param::<Array<BigInt>, _>(&self.site)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.cutoff)?;
        // As in sessions::count: the CASE yields an indexed column, so that the
        // partial index of open sessions answers alone.
        out.push_sql(
            ") AS q(site, cutoff) CROSS JOIN LATERAL (SELECT count(*) AS active, count(CASE WHEN ",
        );
        self.dangling.walk_ast(out.reborrow())?;
        out.push_sql(
            " THEN sessions.last_activity_at END) AS dangling FROM sessions \
             WHERE sessions.site_id = q.site AND sessions.ended_at IS NULL \
             AND NOT sessions.exempt AND sessions.expires_at > ",
        );
        out.push_bind_param::<BigInt, _>(&self.now)?;
        out.push_sql(") c");
        Ok(())
    }
}

/// Sessions by (site, session) pairs, joined on the unique key. A plain `site_id =
/// ANY(..) AND session = ANY(..)` gets a generic plan that scans the sites' rows.
/// Planned anew on every run (an unnamed statement): a plan cached while the table was
/// still nearly empty joins by hashing every row of it, for each batch, until
/// PostgreSQL next analyzes the table; planning costs less than one such scan.
struct PgStandings<'a> {
    site: Vec<i64>,
    session: Vec<&'a str>,
}

impl QueryId for PgStandings<'_> {
    type QueryId = PgStandings<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl Query for PgStandings<'_> {
    type SqlType = (BigInt, Text, BigInt, BigInt, Nullable<BigInt>, Bool);
}

impl RunQueryDsl<PgConnection> for PgStandings<'_> {}

impl QueryFragment<Pg> for PgStandings<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.unsafe_to_cache_prepared();
        out.push_sql(
            "SELECT s.site_id, s.session, s.last_activity_at, s.expires_at, s.ended_at, \
             s.exempt FROM unnest(",
        );
        out.push_bind_param::<Array<BigInt>, _>(&self.site)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.session)?;
        out.push_sql(
            ") AS q(site, session) JOIN sessions s \
             ON s.site_id = q.site AND s.session = q.session",
        );
        Ok(())
    }
}
