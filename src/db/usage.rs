//! Counts per site, per tenant and provider-wide; denials; usage samples.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable};

use super::DbConn;
use super::schema::{denials::dsl as dn, usage_samples::dsl as us};
use crate::clock::Millis;
use crate::db::Result;

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

#[derive(Debug, Clone, QueryableByName, PartialEq, Eq)]
pub struct SiteCounts {
    #[diesel(sql_type = BigInt)]
    pub site_id: i64,
    #[diesel(sql_type = BigInt)]
    pub active: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub dangling: Option<i64>,
}

/// Active and dangling sessions of every site in one grouped query, each site judged
/// by its own effective idle timeout. Narrowed to one site or one tenant when given.
pub fn counts(
    conn: &mut DbConn, now: Millis, site_id: Option<i64>, tenant_id: Option<i64>,
) -> Result<Vec<SiteCounts>> {
    let mut sql = String::from(
        "SELECT s.site_id AS site_id, COUNT(*) AS active, \
         SUM(CASE WHEN s.last_activity_at <= ? - 1000 * COALESCE(st.idle_timeout_seconds, p.idle_timeout_seconds) \
             THEN 1 ELSE 0 END) AS dangling \
         FROM sessions s JOIN sites st ON st.id = s.site_id JOIN plans p ON p.id = st.plan_id \
         WHERE s.ended_at IS NULL AND NOT s.exempt AND s.expires_at > ?",
    );
    if site_id.is_some() {
        sql.push_str(" AND s.site_id = ?");
    }
    if tenant_id.is_some() {
        sql.push_str(" AND st.tenant_id = ?");
    }
    sql.push_str(" GROUP BY s.site_id");
    let rows = crate::per_backend!(conn, |c, pg| {
        let text = if pg { numbered(&sql) } else { sql.clone() };
        let q = diesel::sql_query(text)
            .into_boxed()
            .bind::<BigInt, _>(now)
            .bind::<BigInt, _>(now);
        let q = match site_id {
            Some(id) => q.bind::<BigInt, _>(id),
            None => q,
        };
        let q = match tenant_id {
            Some(id) => q.bind::<BigInt, _>(id),
            None => q,
        };
        q.load::<SiteCounts>(c)?
    });
    Ok(rows)
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
    conn: &mut DbConn, site_id: i64, from: Millis, to: Millis, before: Option<(Millis, i64)>,
    limit: i64,
) -> Result<Vec<DenialRow>> {
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
pub fn record_site_refusal(conn: &mut DbConn, site_id: i64, r: &Refusal) -> Result<bool> {
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
    conn: &mut DbConn, site_ids: &[i64], from: Millis, to: Millis,
) -> Result<Vec<(i64, i64)>> {
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

/// Writes samples; a sample that exists for the (site, minute) keeps the larger
/// values, so several processes sampling the same minute agree.
pub fn write_samples(conn: &mut DbConn, samples: &[Sample]) -> Result<()> {
    use diesel::dsl::case_when;
    use diesel::upsert::excluded;
    for s in samples {
        crate::per_backend!(&mut *conn, |c| diesel::insert_into(us::usage_samples)
            .values(s)
            .on_conflict((us::site_id, us::minute))
            .do_update()
            .set((
                us::active.eq(
                    case_when(excluded(us::active).gt(us::active), excluded(us::active))
                        .otherwise(us::active)
                ),
                us::live.eq(
                    case_when(excluded(us::live).gt(us::live), excluded(us::live))
                        .otherwise(us::live)
                ),
                us::dangling.eq(case_when(
                    excluded(us::dangling).gt(us::dangling),
                    excluded(us::dangling),
                )
                .otherwise(us::dangling)),
                us::denied.eq(
                    case_when(excluded(us::denied).gt(us::denied), excluded(us::denied))
                        .otherwise(us::denied)
                ),
            ))
            .execute(c)?);
    }
    Ok(())
}

pub fn samples_between(
    conn: &mut DbConn, site_id: i64, from: Millis, to: Millis,
) -> Result<Vec<Sample>> {
    Ok(us::usage_samples
        .filter(us::site_id.eq(site_id))
        .filter(us::minute.ge(from))
        .filter(us::minute.lt(to))
        .order(us::minute)
        .select(Sample::as_select())
        .load(conn)?)
}

pub fn delete_samples_before(conn: &mut DbConn, before: Millis) -> Result<usize> {
    Ok(diesel::delete(us::usage_samples.filter(us::minute.lt(before))).execute(conn)?)
}

pub fn delete_denials_before(conn: &mut DbConn, before: Millis) -> Result<usize> {
    Ok(diesel::delete(dn::denials.filter(dn::at.lt(before))).execute(conn)?)
}

pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 86_400_000;

/// Keeps the larger of the stored and the new value of a roll-up column, so that
/// several processes rolling up the same bucket, each from what it could see, agree.
const KEEP_LARGER: &str = "ON CONFLICT (site_id, bucket_ms, at) DO UPDATE SET \
    max_active = CASE WHEN excluded.max_active > usage_rollups.max_active \
        THEN excluded.max_active ELSE usage_rollups.max_active END, \
    max_live = CASE WHEN excluded.max_live > usage_rollups.max_live \
        THEN excluded.max_live ELSE usage_rollups.max_live END, \
    max_dangling = CASE WHEN excluded.max_dangling > usage_rollups.max_dangling \
        THEN excluded.max_dangling ELSE usage_rollups.max_dangling END, \
    denied = CASE WHEN excluded.denied > usage_rollups.denied \
        THEN excluded.denied ELSE usage_rollups.denied END, \
    session_limit = CASE WHEN excluded.session_limit > usage_rollups.session_limit \
        THEN excluded.session_limit ELSE usage_rollups.session_limit END";

/// Recomputes the hour roll-ups of every site for the hours starting in
/// `[from, to)` from the minute samples, then the day roll-ups of the days starting
/// in `[from, to)` (widened to whole days) from the hour roll-ups. Every value only
/// grows as minutes are added, so recomputing a bucket is idempotent and safe to run
/// from several processes.
pub fn roll_up(conn: &mut DbConn, from: Millis, to: Millis) -> Result<()> {
    let hours = (from - from.rem_euclid(HOUR_MS), to);
    let days = (from - from.rem_euclid(DAY_MS), to);
    // Grouped by output position: PostgreSQL would not see two separately bound
    // bucket expressions as the same. SQLite needs the WHERE clause to parse an
    // upsert after a SELECT.
    let hourly = format!(
        "INSERT INTO usage_rollups (site_id, bucket_ms, at, max_active, max_live, \
         max_dangling, denied, session_limit) \
         SELECT site_id, {HOUR_MS}, (minute / {HOUR_MS}) * {HOUR_MS}, MAX(active), MAX(live), \
         MAX(dangling), CAST(SUM(denied) AS BIGINT), MAX(session_limit) \
         FROM usage_samples WHERE minute >= ? AND minute < ? GROUP BY 1, 3 {KEEP_LARGER}"
    );
    let daily = format!(
        "INSERT INTO usage_rollups (site_id, bucket_ms, at, max_active, max_live, \
         max_dangling, denied, session_limit) \
         SELECT site_id, {DAY_MS}, (at / {DAY_MS}) * {DAY_MS}, MAX(max_active), MAX(max_live), \
         MAX(max_dangling), CAST(SUM(denied) AS BIGINT), MAX(session_limit) \
         FROM usage_rollups WHERE bucket_ms = {HOUR_MS} AND at >= ? AND at < ? \
         GROUP BY 1, 3 {KEEP_LARGER}"
    );
    for (sql, (start, end)) in [(hourly, hours), (daily, days)] {
        crate::per_backend!(&mut *conn, |c, pg| {
            let text = if pg { numbered(&sql) } else { sql };
            diesel::sql_query(text)
                .bind::<BigInt, _>(start)
                .bind::<BigInt, _>(end)
                .execute(c)?
        });
    }
    Ok(())
}

/// Deletes the hours and days that ended at or before `before`; a day still partly
/// inside the window stays.
pub fn delete_rollups_before(conn: &mut DbConn, before: Millis) -> Result<usize> {
    use super::schema::usage_rollups::dsl as ur;
    let mut n = 0;
    for bucket in [HOUR_MS, DAY_MS] {
        n += diesel::delete(
            ur::usage_rollups
                .filter(ur::bucket_ms.eq(bucket))
                .filter(ur::at.le(before - bucket)),
        )
        .execute(conn)?;
    }
    Ok(n)
}
