//! Revoked token ids.

use diesel::prelude::*;

use super::DbConn;
use super::schema::revoked_tokens::dsl as r;
use crate::clock::Millis;
use crate::db::Result;

pub fn revoke(conn: &mut DbConn, jti: &str, now: Millis, expires_at: Millis) -> Result<()> {
    crate::per_backend!(conn, |c| diesel::insert_into(r::revoked_tokens)
        .values((
            r::jti.eq(jti),
            r::revoked_at.eq(now),
            r::expires_at.eq(expires_at),
        ))
        .on_conflict_do_nothing()
        .execute(c)?);
    Ok(())
}

/// Revocations of tokens that could still be valid at `now`.
pub fn revoked_since(conn: &mut DbConn, now: Millis) -> Result<Vec<String>> {
    Ok(r::revoked_tokens
        .filter(r::expires_at.gt(now - 60_000))
        .select(r::jti)
        .load(conn)?)
}
