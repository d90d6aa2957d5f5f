//! Usage samples stored by change (see `domain::usage_runs`): the sampler's pass,
//! claimed once a minute for the fleet, and what readers get back as pieces of a
//! site's per-minute series.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel::sql_types::BigInt;

use super::DbConn;
use super::schema::{
    sampler_coverage::dsl as cv, sampler_passes::dsl as sp, usage_current::dsl as cur,
    usage_samples::dsl as us,
};
use super::usage::{DAY_MS, numbered};
use crate::clock::Millis;
use crate::db::Result;
use crate::domain::usage_runs::{self, MINUTE_MS, Piece, Run};

/// One site's figures at one minute, as the sampler takes them.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = super::schema::usage_samples)]
pub struct Sample {
    pub site_id: i64,
    pub minute: Millis,
    pub active: i64,
    pub live: i64,
    pub dangling: i64,
    pub denied: i64,
    pub session_limit: i64,
}

impl Sample {
    pub fn run(&self) -> Run {
        Run {
            minute: self.minute,
            active: self.active,
            live: self.live,
            dangling: self.dangling,
            denied: self.denied,
            session_limit: self.session_limit,
        }
    }
}

/// Claims the pass of `minute` for `holder`: true when this process is to take it.
/// The first claim wins; a claim not finished within `stale_ms` (its holder died or
/// hangs) is taken over.
pub fn claim_pass(
    conn: &mut DbConn, minute: Millis, holder: &str, now: Millis, stale_ms: i64,
) -> Result<bool> {
    let row = (
        sp::minute.eq(minute),
        sp::holder.eq(holder),
        sp::claimed_at.eq(now),
        sp::done.eq(false),
    );
    let inserted = crate::per_backend!(&mut *conn, |c| diesel::insert_into(sp::sampler_passes)
        .values(row)
        .on_conflict_do_nothing()
        .execute(c)?);
    if inserted == 1 {
        return Ok(true);
    }
    let taken = diesel::update(
        sp::sampler_passes
            .filter(sp::minute.eq(minute))
            .filter(sp::done.eq(false))
            .filter(sp::claimed_at.lt(now - stale_ms)),
    )
    .set((sp::holder.eq(holder), sp::claimed_at.eq(now)))
    .execute(conn)?;
    Ok(taken == 1)
}

/// Every site's latest figures (its latest row, without refusals).
fn current(conn: &mut DbConn) -> Result<HashMap<i64, Run>> {
    let rows: Vec<(i64, Millis, i64, i64, i64, i64)> = cur::usage_current
        .select((
            cur::site_id,
            cur::minute,
            cur::active,
            cur::live,
            cur::dangling,
            cur::session_limit,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(site, minute, active, live, dangling, session_limit)| {
            let run = Run {
                minute,
                active,
                live,
                dangling,
                denied: 0,
                session_limit,
            };
            (site, run)
        })
        .collect())
}

/// What a pass wrote.
#[derive(Debug, Default)]
pub struct Written {
    /// Rows written to `usage_samples`: one per site whose figures changed or that
    /// had refusals.
    pub rows: usize,
    /// Those sites, whose day roll-ups (and so daily peaks) may have moved.
    pub changed: Vec<i64>,
    /// The day's first pass: every site's day roll-up was written.
    pub first_of_day: bool,
}

/// Writes the claimed pass of `minute`, in one transaction: the rows of the sites whose
/// figures changed or that had refusals, their latest figures, the day roll-ups (of
/// every site on the day's first pass, then of the sites that changed), the coverage,
/// and the pass as done.
pub fn write_pass(conn: &mut DbConn, minute: Millis, samples: &[Sample]) -> Result<Written> {
    conn.transaction(|c| {
        // A write first: SQLite takes its write lock here rather than failing to
        // upgrade a read lock later.
        let covered_before = extend_coverage(c, minute)?;
        let first_of_day = covered_before <= minute - minute.rem_euclid(DAY_MS);
        let current = current(c)?;
        let mut changed: Vec<&Sample> = Vec::new();
        let mut moved: Vec<&Sample> = Vec::new();
        for s in samples {
            let run = s.run();
            match current.get(&s.site_id) {
                Some(prev) if !prev.differs(&run) => {}
                Some(prev) if !prev.differs(&Run { denied: 0, ..run }) => changed.push(s),
                _ => {
                    changed.push(s);
                    moved.push(s);
                }
            }
        }
        for chunk in changed.chunks(500) {
            insert_samples(c, chunk)?;
        }
        for chunk in moved.chunks(500) {
            set_current(c, chunk)?;
        }
        let days: Vec<&Sample> = if first_of_day {
            samples.iter().collect()
        } else {
            changed.clone()
        };
        for chunk in days.chunks(500) {
            day_rollups(c, chunk)?;
        }
        diesel::update(sp::sampler_passes.filter(sp::minute.eq(minute)))
            .set(sp::done.eq(true))
            .execute(c)?;
        Ok(Written {
            rows: changed.len(),
            changed: changed.iter().map(|s| s.site_id).collect(),
            first_of_day,
        })
    })
}

/// Adds `minute` to the coverage (extending the stretch it follows) and returns where
/// the coverage ended before (0 when nothing was covered).
fn extend_coverage(conn: &mut DbConn, minute: Millis) -> Result<Millis> {
    let before: Option<Millis> = cv::sampler_coverage
        .select(diesel::dsl::max(cv::end_minute))
        .first(conn)?;
    let extended = diesel::update(cv::sampler_coverage.filter(cv::end_minute.eq(minute)))
        .set(cv::end_minute.eq(minute + MINUTE_MS))
        .execute(conn)?;
    if extended == 0 {
        crate::per_backend!(&mut *conn, |c| diesel::insert_into(cv::sampler_coverage)
            .values((
                cv::start_minute.eq(minute),
                cv::end_minute.eq(minute + MINUTE_MS)
            ))
            .on_conflict_do_nothing()
            .execute(c)?);
    }
    Ok(before.unwrap_or(0))
}

/// Rows of a pass; a row already there for the (site, minute) keeps the larger values
/// (the previous release, during a rolling upgrade, writes every minute).
fn insert_samples(conn: &mut DbConn, rows: &[&Sample]) -> Result<()> {
    let sql = format!(
        "INSERT INTO usage_samples (site_id, minute, active, live, dangling, denied, \
         session_limit) VALUES {} ON CONFLICT (site_id, minute) DO UPDATE SET \
         active = CASE WHEN excluded.active > usage_samples.active THEN excluded.active \
             ELSE usage_samples.active END, \
         live = CASE WHEN excluded.live > usage_samples.live THEN excluded.live \
             ELSE usage_samples.live END, \
         dangling = CASE WHEN excluded.dangling > usage_samples.dangling \
             THEN excluded.dangling ELSE usage_samples.dangling END, \
         denied = CASE WHEN excluded.denied > usage_samples.denied THEN excluded.denied \
             ELSE usage_samples.denied END",
        values(rows, |s| {
            [
                s.site_id,
                s.minute,
                s.active,
                s.live,
                s.dangling,
                s.denied,
                s.session_limit,
            ]
        })
    );
    execute(conn, &sql)
}

/// The latest figures of sites whose counts or limit moved.
fn set_current(conn: &mut DbConn, rows: &[&Sample]) -> Result<()> {
    let sql = format!(
        "INSERT INTO usage_current (site_id, minute, active, live, dangling, session_limit) \
         VALUES {} ON CONFLICT (site_id) DO UPDATE SET minute = excluded.minute, \
         active = excluded.active, live = excluded.live, dangling = excluded.dangling, \
         session_limit = excluded.session_limit",
        values(rows, |s| {
            [
                s.site_id,
                s.minute,
                s.active,
                s.live,
                s.dangling,
                s.session_limit,
            ]
        })
    );
    execute(conn, &sql)
}

/// A site's day roll-up takes the pass's figures into its maxima and adds its
/// refusals: each pass is written once, so the sum counts each minute once.
fn day_rollups(conn: &mut DbConn, rows: &[&Sample]) -> Result<()> {
    let sql = format!(
        "INSERT INTO usage_rollups (site_id, bucket_ms, at, max_active, max_live, \
         max_dangling, denied, session_limit) VALUES {} \
         ON CONFLICT (site_id, bucket_ms, at) DO UPDATE SET \
         max_active = CASE WHEN excluded.max_active > usage_rollups.max_active \
             THEN excluded.max_active ELSE usage_rollups.max_active END, \
         max_live = CASE WHEN excluded.max_live > usage_rollups.max_live \
             THEN excluded.max_live ELSE usage_rollups.max_live END, \
         max_dangling = CASE WHEN excluded.max_dangling > usage_rollups.max_dangling \
             THEN excluded.max_dangling ELSE usage_rollups.max_dangling END, \
         denied = usage_rollups.denied + excluded.denied, \
         session_limit = CASE WHEN excluded.session_limit > usage_rollups.session_limit \
             THEN excluded.session_limit ELSE usage_rollups.session_limit END",
        values(rows, |s| {
            [
                s.site_id,
                DAY_MS,
                s.minute - s.minute.rem_euclid(DAY_MS),
                s.active,
                s.live,
                s.dangling,
                s.denied,
                s.session_limit,
            ]
        })
    );
    execute(conn, &sql)
}

/// `(…), (…)` of integer columns: only numbers are written into the statement.
fn values<const N: usize>(rows: &[&Sample], cols: impl Fn(&Sample) -> [i64; N]) -> String {
    rows.iter()
        .map(|s| {
            let v: Vec<String> = cols(s).iter().map(i64::to_string).collect();
            format!("({})", v.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn execute(conn: &mut DbConn, sql: &str) -> Result<()> {
    crate::per_backend!(&mut *conn, |c| diesel::sql_query(sql).execute(c)?);
    Ok(())
}

/// The covered stretches overlapping `[from, to)`, in order.
pub fn coverage(conn: &mut DbConn, from: Millis, to: Millis) -> Result<Vec<(Millis, Millis)>> {
    Ok(cv::sampler_coverage
        .filter(cv::end_minute.gt(from))
        .filter(cv::start_minute.lt(to))
        .order(cv::start_minute)
        .select((cv::start_minute, cv::end_minute))
        .load(conn)?)
}

/// Where the coverage begins: minutes before it were sampled, if at all, by releases
/// that kept hour roll-ups instead.
pub fn coverage_floor(conn: &mut DbConn) -> Result<Option<Millis>> {
    Ok(cv::sampler_coverage
        .select(diesel::dsl::min(cv::start_minute))
        .first(conn)?)
}

/// A site's rows in `[from, to)`, with the one in force at `from` first.
fn runs(conn: &mut DbConn, site_id: i64, from: Millis, to: Millis) -> Result<Vec<Run>> {
    let carried: Option<Sample> = us::usage_samples
        .filter(us::site_id.eq(site_id))
        .filter(us::minute.lt(from))
        .order(us::minute.desc())
        .select(Sample::as_select())
        .first(conn)
        .optional()?;
    let rows: Vec<Sample> = us::usage_samples
        .filter(us::site_id.eq(site_id))
        .filter(us::minute.ge(from))
        .filter(us::minute.lt(to))
        .order(us::minute)
        .select(Sample::as_select())
        .load(conn)?;
    Ok(carried.iter().chain(&rows).map(Sample::run).collect())
}

/// A site's per-minute series in `[from, to)` as pieces (`domain::usage_runs`).
pub fn pieces(conn: &mut DbConn, site_id: i64, from: Millis, to: Millis) -> Result<Vec<Piece>> {
    let runs = runs(conn, site_id, from, to)?;
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    let coverage = coverage(conn, from, to)?;
    Ok(usage_runs::pieces(&runs, &coverage, from, to))
}

/// Retention for some sites: deletes their rows superseded at or before `cutoff` (the
/// row in force at the cutoff stays; the coverage before it goes, so it no longer
/// counts there).
pub fn delete_superseded(conn: &mut DbConn, site_ids: &[i64], cutoff: Millis) -> Result<usize> {
    if site_ids.is_empty() {
        return Ok(0);
    }
    let ids: Vec<String> = site_ids.iter().map(i64::to_string).collect();
    let sql = format!(
        "DELETE FROM usage_samples WHERE site_id IN ({}) AND minute < ? AND EXISTS \
         (SELECT 1 FROM usage_samples n WHERE n.site_id = usage_samples.site_id \
          AND n.minute > usage_samples.minute AND n.minute <= ?)",
        ids.join(", ")
    );
    Ok(crate::per_backend!(conn, |c, pg| {
        let text = if pg { numbered(&sql) } else { sql };
        diesel::sql_query(text)
            .bind::<BigInt, _>(cutoff)
            .bind::<BigInt, _>(cutoff)
            .execute(c)?
    }))
}

/// Retention of the fleet-wide records: coverage before `cutoff` and claims of passes
/// older than a day.
pub fn trim(conn: &mut DbConn, cutoff: Millis, now: Millis) -> Result<usize> {
    let mut n =
        diesel::delete(cv::sampler_coverage.filter(cv::end_minute.le(cutoff))).execute(conn)?;
    n += diesel::update(
        cv::sampler_coverage
            .filter(cv::start_minute.lt(cutoff))
            .filter(cv::end_minute.gt(cutoff)),
    )
    .set(cv::start_minute.eq(cutoff + (MINUTE_MS - cutoff.rem_euclid(MINUTE_MS)) % MINUTE_MS))
    .execute(conn)?;
    n += diesel::delete(sp::sampler_passes.filter(sp::minute.lt(now - DAY_MS))).execute(conn)?;
    Ok(n)
}
