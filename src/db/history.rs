//! Usage history: per-minute samples rolled up into minute, hour or day buckets.

use diesel::prelude::*;
use diesel::sql_types::BigInt;

use super::DbConn;
use super::usage::numbered;
use crate::clock::Millis;
use crate::error::Result;

/// One bucket of samples.
#[derive(Debug, Clone, QueryableByName, PartialEq, Eq)]
pub struct Bucket {
    /// Start of the bucket.
    #[diesel(sql_type = BigInt)]
    pub at: Millis,
    #[diesel(sql_type = BigInt)]
    pub max_active: i64,
    #[diesel(sql_type = BigInt)]
    pub max_live: i64,
    #[diesel(sql_type = BigInt)]
    pub max_dangling: i64,
    #[diesel(sql_type = BigInt)]
    pub denied: i64,
    #[diesel(sql_type = BigInt)]
    pub session_limit: i64,
}

/// Buckets of `step_ms` (aligned to the epoch, so hours and days are UTC hours and
/// days) over the samples of `[from, to)`, in order. Buckets without samples are
/// absent. Grouped in the database, which holds up to a minute per bucket row.
pub fn buckets(
    conn: &mut DbConn,
    site_id: i64,
    from: Millis,
    to: Millis,
    step_ms: i64,
) -> Result<Vec<Bucket>> {
    // Denials are counted per minute, so their sum is the bucket's count; the
    // limit is the highest one in force during the bucket. SUM is cast because
    // PostgreSQL widens a sum of BIGINT to NUMERIC; grouping by the output position
    // keeps PostgreSQL from seeing two differently bound bucket expressions.
    let sql = "SELECT (minute / ?) * ? AS at, MAX(active) AS max_active, \
               MAX(live) AS max_live, MAX(dangling) AS max_dangling, \
               CAST(SUM(denied) AS BIGINT) AS denied, MAX(session_limit) AS session_limit \
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
