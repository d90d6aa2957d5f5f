//! Usage history: minute buckets from the per-minute samples, hour and day buckets
//! from the roll-ups, which outlive the minutes.

use diesel::prelude::*;
use diesel::sql_types::BigInt;

use super::DbConn;
use super::usage::{DAY_MS, HOUR_MS, numbered};
use crate::clock::Millis;
use crate::db::Result;
use crate::domain::history;
use crate::domain::session::Span;

/// What history takes of one bucket of a site's samples: an hour or day as rolled up,
/// or minute samples as grouped by the query below (which names its columns as the
/// roll-up table does). Active sessions and refusals it counts from the sessions and
/// denials themselves.
#[derive(Debug, Clone, Queryable, Selectable, QueryableByName, PartialEq, Eq)]
#[diesel(table_name = super::schema::usage_rollups)]
struct Bucket {
    /// Start of the bucket.
    at: Millis,
    max_live: i64,
    max_dangling: i64,
    session_limit: i64,
}

impl From<Bucket> for history::Sampled {
    fn from(b: Bucket) -> Self {
        Self {
            at: b.at,
            max_live: b.max_live,
            max_dangling: b.max_dangling,
            session_limit: b.session_limit,
        }
    }
}

/// Buckets of `step_ms` (a minute, an hour or a day, aligned to the epoch, so hours
/// and days are UTC hours and days) starting in `[from, to)`, in order. Buckets
/// without samples are absent.
fn buckets(
    conn: &mut DbConn, site_id: i64, from: Millis, to: Millis, step_ms: i64,
) -> Result<Vec<Bucket>> {
    if step_ms == HOUR_MS || step_ms == DAY_MS {
        return rollups_between(conn, site_id, step_ms, from, to);
    }
    // The limit is the highest one in force during the bucket; grouping by the
    // output position keeps PostgreSQL from seeing two differently bound bucket
    // expressions.
    let sql = "SELECT (minute / ?) * ? AS at, \
               MAX(live) AS max_live, MAX(dangling) AS max_dangling, \
               MAX(session_limit) AS session_limit \
               FROM usage_samples WHERE site_id = ? AND minute >= ? AND minute < ? \
               GROUP BY 1 ORDER BY 1";
    let rows = crate::per_backend!(conn, |c, pg| {
        let text = if pg { numbered(sql) } else { sql.to_owned() };
        diesel::sql_query(text)
            .bind::<BigInt, _>(step_ms)
            .bind::<BigInt, _>(step_ms)
            .bind::<BigInt, _>(site_id)
            .bind::<BigInt, _>(from)
            .bind::<BigInt, _>(to)
            .load::<Bucket>(c)?
    });
    Ok(rows)
}

/// Roll-up buckets of one site and size (`HOUR_MS` or `DAY_MS`) starting in
/// `[from, to)`, in order.
fn rollups_between(
    conn: &mut DbConn, site_id: i64, bucket_ms: i64, from: Millis, to: Millis,
) -> Result<Vec<Bucket>> {
    use super::schema::usage_rollups::dsl as ur;
    Ok(ur::usage_rollups
        .filter(ur::site_id.eq(site_id))
        .filter(ur::bucket_ms.eq(bucket_ms))
        .filter(ur::at.ge(from))
        .filter(ur::at.lt(to))
        .order(ur::at)
        .select(Bucket::as_select())
        .load(conn)?)
}

/// The rows a site's usage history in `[from, to)` is computed from, read in one
/// snapshot so that sessions, refusals and samples agree: the sessions active at some
/// instant of the range (those open at `from` included), the refusals, the site's
/// limit history and what the sampler recorded per bucket of `step_ms`.
pub fn history_inputs(
    conn: &mut DbConn, site_id: i64, from: Millis, to: Millis, step_ms: i64, idle_ms: i64,
) -> Result<history::Inputs> {
    super::read_snapshot(conn, |c| {
        let rows = super::sessions::times_overlapping(c, site_id, from, to)?;
        let limits = super::sites::plan_history(c, site_id)?
            .into_iter()
            .map(|h| (h.effective_from, h.session_limit))
            .collect();
        let sampled = buckets(c, site_id, from, to, step_ms)?
            .into_iter()
            .map(history::Sampled::from)
            .collect();
        Ok(history::Inputs {
            spans: rows
                .into_iter()
                .map(|(s, e, end, last)| Span::of_row(s, e, end, last))
                .collect(),
            denials: super::usage::denial_times(c, site_id, from, to)?,
            limits,
            sampled,
            idle_ms,
        })
    })
}
