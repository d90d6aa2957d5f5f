//! Stored answers to control-API POSTs sent with an `Idempotency-Key`: one row per
//! caller scope and key, claimed by the first request before it runs and completed
//! with its answer, so that every process on the database sees the same one.

use diesel::prelude::*;

use crate::clock::Millis;
use crate::db::DbConn;
use crate::db::Result;
use crate::db::schema::idempotency_keys::dsl as k;

/// How long an answer is kept and replayed.
pub const KEEP_MS: Millis = 24 * 3600 * 1000;
/// A claim whose request has not finished after this long is taken to be abandoned
/// (its process died): a new request with the key may run. Requests end far sooner
/// (bodies within 10 s, database waits within seconds).
pub const ABANDONED_MS: Millis = 60_000;

/// A stored answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// What a request with a key finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is this request's: run it, then [`complete`] or [`release`].
    Claimed,
    /// An earlier request with the same key and body answered this.
    Answered(Answer),
    /// An earlier request with the same key and body is still running.
    Running,
    /// The key was used for another request (another body or path).
    Mismatch,
}

#[derive(Queryable)]
struct Row {
    fingerprint: String,
    status_code: Option<i64>,
    content_type: Option<String>,
    body: Option<Vec<u8>>,
    created_at: i64,
}

/// Claims `key` for a request of `scope` whose method, path and body hash to
/// `fingerprint`, or says what an earlier request with the key left.
pub fn claim(
    c: &mut DbConn, scope: &str, key: &str, fingerprint: &str, now: Millis,
) -> Result<Claim> {
    for _ in 0..3 {
        let inserted = diesel::insert_into(k::idempotency_keys)
            .values((
                k::scope.eq(scope),
                k::idem_key.eq(key),
                k::fingerprint.eq(fingerprint),
                k::created_at.eq(now),
            ))
            .execute(c);
        match inserted {
            Ok(_) => return Ok(Claim::Claimed),
            Err(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            )) => {}
            Err(e) => return Err(e.into()),
        }
        let row: Option<Row> = k::idempotency_keys
            .filter(key_of(scope, key))
            .select((
                k::fingerprint,
                k::status_code,
                k::content_type,
                k::body,
                k::created_at,
            ))
            .first(c)
            .optional()?;
        // Gone meanwhile (released after a failure): try the insert again.
        let Some(row) = row else { continue };
        let expired = row.created_at <= now - KEEP_MS;
        let abandoned = row.status_code.is_none() && row.created_at <= now - ABANDONED_MS;
        if expired || abandoned {
            // Only the row seen here: if another request replaced it meanwhile, its
            // claim stands and the next round reads it.
            diesel::delete(
                k::idempotency_keys
                    .filter(key_of(scope, key).and(k::created_at.eq(row.created_at))),
            )
            .execute(c)?;
            continue;
        }
        if row.fingerprint != fingerprint {
            return Ok(Claim::Mismatch);
        }
        return Ok(match row.status_code {
            Some(status) => Claim::Answered(Answer {
                status: u16::try_from(status).unwrap_or(500),
                content_type: row.content_type,
                body: row.body.unwrap_or_default(),
            }),
            None => Claim::Running,
        });
    }
    Ok(Claim::Running)
}

/// The row of one key in one scope.
#[diesel::dsl::auto_type(no_type_alias)]
fn key_of<'a>(scope: &'a str, key: &'a str) -> _ {
    k::scope.eq(scope).and(k::idem_key.eq(key))
}

/// Stores the answer of a claimed request.
pub fn complete(c: &mut DbConn, scope: &str, key: &str, answer: &Answer) -> Result<()> {
    diesel::update(k::idempotency_keys.filter(key_of(scope, key).and(k::status_code.is_null())))
        .set((
            k::status_code.eq(i64::from(answer.status)),
            k::content_type.eq(answer.content_type.as_deref()),
            k::body.eq(&answer.body),
        ))
        .execute(c)?;
    Ok(())
}

/// Gives up a claim whose request left no answer to keep (a 5xx, a timeout), so that
/// the client may try again with the same key.
pub fn release(c: &mut DbConn, scope: &str, key: &str) -> Result<()> {
    diesel::delete(k::idempotency_keys.filter(key_of(scope, key).and(k::status_code.is_null())))
        .execute(c)?;
    Ok(())
}

/// Deletes answers older than 24 h (retention); returns how many.
pub fn purge(c: &mut DbConn, now: Millis) -> Result<usize> {
    Ok(diesel::delete(k::idempotency_keys.filter(k::created_at.le(now - KEEP_MS))).execute(c)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_answer_mismatch_and_expiry() {
        let (_dir, db) = crate::db::test_db_with_sites(&[]);
        db.run_sync(|c| {
            assert_eq!(claim(c, "admin::x", "k1", "f1", 1_000)?, Claim::Claimed);
            assert_eq!(claim(c, "admin::x", "k1", "f1", 1_001)?, Claim::Running);
            // Another caller's key of the same name is another key.
            assert_eq!(claim(c, "admin::y", "k1", "f1", 1_001)?, Claim::Claimed);
            let answer = Answer {
                status: 201,
                content_type: Some("application/json".into()),
                body: b"{}".to_vec(),
            };
            complete(c, "admin::x", "k1", &answer)?;
            assert_eq!(
                claim(c, "admin::x", "k1", "f1", 2_000)?,
                Claim::Answered(answer.clone())
            );
            assert_eq!(claim(c, "admin::x", "k1", "f2", 2_000)?, Claim::Mismatch);
            // After 24 h the key is free again.
            assert_eq!(
                claim(c, "admin::x", "k1", "f2", 1_000 + KEEP_MS)?,
                Claim::Claimed
            );
            // A claim left by a dead process is taken over after a minute.
            assert_eq!(
                claim(c, "admin::y", "k1", "f1", 1_001 + ABANDONED_MS)?,
                Claim::Claimed
            );
            release(c, "admin::y", "k1")?;
            assert_eq!(
                claim(c, "admin::y", "k1", "f9", 1_002 + ABANDONED_MS)?,
                Claim::Claimed
            );
            Ok::<_, crate::db::Error>(())
        })
        .unwrap();
    }
}
