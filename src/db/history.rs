//! Usage history: minute buckets from the per-minute samples, hour and day buckets
//! from the roll-ups, which outlive the minutes.

use diesel::prelude::*;

use super::DbConn;
use super::usage::{DAY_MS, HOUR_MS};
use super::visible::SiteKey;
use crate::clock::Millis;
use crate::db::Result;
use crate::domain::session::Span;
use crate::domain::{history, usage_runs};

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
/// without samples are absent. Days come from the day roll-ups the sampler keeps;
/// other steps from the samples themselves, except hours before the samples' coverage
/// began, which earlier releases kept as hour roll-ups only.
fn buckets(
    conn: &mut DbConn, site_id: i64, from: Millis, to: Millis, step_ms: i64,
) -> Result<Vec<Bucket>> {
    if step_ms == DAY_MS {
        return rollups_between(conn, site_id, step_ms, from, to);
    }
    let pieces = super::samples::pieces(conn, site_id, from, to)?;
    let mut out: Vec<Bucket> = usage_runs::buckets(&pieces, step_ms)
        .into_iter()
        .map(|b| Bucket {
            at: b.at,
            max_live: b.max_live,
            max_dangling: b.max_dangling,
            session_limit: b.session_limit,
        })
        .collect();
    if step_ms == HOUR_MS
        && let Some(floor) = super::samples::coverage_floor(conn)?
    {
        // The hour the coverage begins in, and those before it, as rolled up then.
        let old_to = to.min(floor - floor.rem_euclid(HOUR_MS) + HOUR_MS);
        if from < old_to {
            let old = rollups_between(conn, site_id, HOUR_MS, from, old_to)?;
            out.retain(|b| b.at >= old_to || !old.iter().any(|o| o.at == b.at));
            out.extend(old);
            out.sort_by_key(|b| b.at);
        }
    }
    Ok(out)
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
    conn: &mut DbConn, site: SiteKey, from: Millis, to: Millis, step_ms: i64, idle_ms: i64,
) -> Result<history::Inputs> {
    let site_id = site.id();
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
