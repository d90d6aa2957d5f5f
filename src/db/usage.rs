//! Counts per site, per tenant and provider-wide; denials; usage samples.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable};

use super::DbConn;
use super::schema::{denials::dsl as dn, usage_samples::dsl as us};
use crate::clock::Millis;
use crate::error::Result;

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
    conn: &mut DbConn,
    now: Millis,
    site_id: Option<i64>,
    tenant_id: Option<i64>,
) -> Result<Vec<SiteCounts>> {
    let mut sql = String::from(
        "SELECT s.site_id AS site_id, COUNT(*) AS active, \
         SUM(CASE WHEN s.last_activity_at <= ? - 1000 * COALESCE(st.idle_timeout_seconds, p.idle_timeout_seconds) \
             THEN 1 ELSE 0 END) AS dangling \
         FROM sessions s JOIN sites st ON st.id = s.site_id JOIN plans p ON p.id = st.plan_id \
         WHERE s.ended_at IS NULL AND s.expires_at > ?",
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

pub fn record_denial(conn: &mut DbConn, site_id: i64, at: Millis, outcome: &str) -> Result<()> {
    diesel::insert_into(dn::denials)
        .values((
            dn::site_id.eq(site_id),
            dn::at.eq(at),
            dn::outcome.eq(outcome),
        ))
        .execute(conn)?;
    Ok(())
}

/// Denials per site in `[from, to)`.
pub fn denials_between(
    conn: &mut DbConn,
    site_ids: &[i64],
    from: Millis,
    to: Millis,
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
    conn: &mut DbConn,
    site_id: i64,
    from: Millis,
    to: Millis,
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
    conn: &mut DbConn,
    site_id: i64,
    from: Millis,
    to: Millis,
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
