//! Each site's count of active and dangling sessions, kept as a row (`site_counts`)
//! instead of counted from the sessions at every admission, so that deciding an
//! admission costs the same in a site of ten sessions as in one of fifty thousand.
//!
//! The row holds the counts at one instant, `as_of`. Every change to a session row
//! moves them in the same statement (triggers in the migration `site_counts`), judged
//! at `as_of`. Time alone also moves sessions: one expires, another goes idle and
//! turns dangling. [`at`] applies those moves from `as_of` to the caller's instant
//! through the index of open sessions by expiry and the one by last activity, so its
//! cost grows with the sessions that changed state in between, not with the site.
//! It must run while the caller holds the site's lock (as every writer of a site's
//! sessions does), so that `as_of` cannot move under a running statement.

use std::collections::HashMap;

use diesel::dsl::not;
use diesel::prelude::*;

use super::schema::site_counts::dsl as k;
use super::{DbConn, sessions};
use crate::clock::Millis;
use crate::db::Result;
use crate::domain::session::IdleTimeout;

/// A site's counts at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = super::schema::site_counts)]
struct Row {
    site_id: i64,
    as_of: Millis,
    idle_ms: i64,
    active: i64,
    dangling: i64,
}

/// Sessions whose state changes between two instants (see [`moved`]).
struct Moves {
    /// Expired in between: active at the earlier instant, not at the later.
    expired: i64,
    /// Of those, the ones already dangling at the earlier instant.
    expired_dangling: i64,
    /// Went idle in between and are still active at the later instant.
    went_idle: i64,
}

/// Active and dangling sessions of each site at `now`; `sites` pairs a site with its
/// idle timeout in seconds. Leaves every site's row at `now`. The caller holds the
/// sites' locks.
pub fn at(
    conn: &mut DbConn, sites: &[(i64, i64)], now: Millis,
) -> Result<HashMap<i64, (i64, i64)>> {
    let ids: Vec<i64> = sites.iter().map(|s| s.0).collect();
    let stored: HashMap<i64, Row> = k::site_counts
        .filter(k::site_id.eq_any(&ids))
        .select(Row::as_select())
        .load(conn)?
        .into_iter()
        .map(|r| (r.site_id, r))
        .collect();
    let mut rows = Vec::with_capacity(sites.len());
    for &(site_id, idle_seconds) in sites {
        let idle_ms = IdleTimeout::seconds(idle_seconds).ms();
        let row = match stored.get(&site_id) {
            Some(r) if r.idle_ms == idle_ms && r.as_of == now => *r,
            Some(r) if r.idle_ms == idle_ms => advance(conn, r, now)?,
            // No row yet, or counted with another idle timeout: count once in full.
            _ => {
                let (active, dangling) = sessions::count(conn, site_id, now, idle_seconds)?;
                Row {
                    site_id,
                    as_of: now,
                    idle_ms,
                    active,
                    dangling,
                }
            }
        };
        if stored.get(&site_id) != Some(&row) {
            rows.push(row);
        }
    }
    save(conn, &rows)?;
    Ok(sites
        .iter()
        .filter_map(|s| {
            let r = rows
                .iter()
                .find(|r| r.site_id == s.0)
                .or_else(|| stored.get(&s.0))?;
            Some((s.0, (r.active, r.dangling)))
        })
        .collect())
}

/// The row moved from its `as_of` to `now`, either way: the injected clock, or
/// another process's, may be behind the instant the row was left at.
fn advance(conn: &mut DbConn, r: &Row, now: Millis) -> Result<Row> {
    let (lo, hi, sign) = if now > r.as_of {
        (r.as_of, now, 1)
    } else {
        (now, r.as_of, -1)
    };
    let m = moved(conn, r.site_id, lo, hi, IdleTimeout::from_ms(r.idle_ms))?;
    Ok(Row {
        as_of: now,
        active: r.active - sign * m.expired,
        dangling: r.dangling + sign * (m.went_idle - m.expired_dangling),
        ..*r
    })
}

/// The open sessions of a site whose state differs between `lo` and `hi` (`lo <
/// hi`), in one statement of three counts. Active at t: expires_at > t; dangling at t:
/// also [`sessions::dangling`] at t. Each count is a range of one index, so it reads
/// only those sessions. Exempt sessions are never counted.
fn moved(
    conn: &mut DbConn, site_id: i64, lo: Millis, hi: Millis, idle: IdleTimeout,
) -> Result<Moves> {
    use super::schema::sessions::dsl as x;
    let open = || {
        x::sessions
            .filter(x::site_id.eq(site_id))
            .filter(x::ended_at.is_null())
            .filter(not(x::exempt))
    };
    let expired = || {
        open()
            .filter(x::expires_at.gt(lo))
            .filter(x::expires_at.le(hi))
    };
    let went_idle = open()
        .filter(sessions::live(idle.cutoff(lo)))
        .filter(sessions::dangling(idle.cutoff(hi)))
        .filter(x::expires_at.gt(hi));
    let (expired, expired_dangling, went_idle): (Option<i64>, Option<i64>, Option<i64>) =
        diesel::select((
            expired().count().single_value(),
            expired()
                .filter(sessions::dangling(idle.cutoff(lo)))
                .count()
                .single_value(),
            went_idle.count().single_value(),
        ))
        .get_result(conn)?;
    Ok(Moves {
        expired: expired.unwrap_or(0),
        expired_dangling: expired_dangling.unwrap_or(0),
        went_idle: went_idle.unwrap_or(0),
    })
}

/// Writes the rows in one statement, inserting those of sites counted for the first
/// time.
fn save(conn: &mut DbConn, rows: &[Row]) -> Result<()> {
    use diesel::upsert::excluded;
    if rows.is_empty() {
        return Ok(());
    }
    let set = (
        k::as_of.eq(excluded(k::as_of)),
        k::idle_ms.eq(excluded(k::idle_ms)),
        k::active.eq(excluded(k::active)),
        k::dangling.eq(excluded(k::dangling)),
    );
    match conn {
        DbConn::Pg(c) => {
            diesel::insert_into(k::site_counts)
                .values(rows)
                .on_conflict(k::site_id)
                .do_update()
                .set(set)
                .execute(c)?;
        }
        // Diesel builds no multi-row upsert for SQLite; in the process, a row each
        // costs little.
        DbConn::Sqlite(c) => {
            for row in rows {
                diesel::insert_into(k::site_counts)
                    .values(row)
                    .on_conflict(k::site_id)
                    .do_update()
                    .set(set)
                    .execute(c)?;
            }
        }
    }
    Ok(())
}
