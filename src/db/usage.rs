//! Counts per site, per tenant and provider-wide; denials; usage samples.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable};

use super::DbConn;
use super::schema::denials::dsl as dn;
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
