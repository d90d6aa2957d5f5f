//! Key-value settings shared by every process (the JWT key lives here).

use diesel::prelude::*;

use super::DbConn;
use super::schema::settings::dsl as s;
use crate::db::Result;

pub fn get(conn: &mut DbConn, key: &str) -> Result<Option<String>> {
    Ok(s::settings
        .filter(s::key.eq(key))
        .select(s::value)
        .first(conn)
        .optional()?)
}

/// Stores `value` unless the key exists; returns the value in force and whether this
/// call stored it (several processes starting at once agree on one value).
pub fn get_or_insert(conn: &mut DbConn, key: &str, value: &str) -> Result<(String, bool)> {
    let inserted = crate::per_backend!(conn, |c| diesel::insert_into(s::settings)
        .values((s::key.eq(key), s::value.eq(value)))
        .on_conflict_do_nothing()
        .execute(c)?);
    let current = get(conn, key)?.unwrap_or_else(|| value.to_owned());
    Ok((current, inserted == 1))
}

/// Stores `value` under `key`, replacing what was there.
pub fn set(conn: &mut DbConn, key: &str, value: &str) -> Result<()> {
    crate::per_backend!(conn, |c| diesel::insert_into(s::settings)
        .values((s::key.eq(key), s::value.eq(value)))
        .on_conflict(s::key)
        .do_update()
        .set(s::value.eq(value))
        .execute(c)?);
    Ok(())
}
