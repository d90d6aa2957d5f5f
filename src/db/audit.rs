//! Who changed which plan, tenant, site or limit, and when.

use diesel::prelude::*;
use serde::Serialize;
use utoipa::ToSchema;

use super::DbConn;
use super::schema::audit_log::dsl as a;
use crate::clock::Millis;
use crate::db::Result;

pub fn record(
    conn: &mut DbConn, at: Millis, actor: &str, action: &str, entity: &str, key: &str,
    detail: &serde_json::Value,
) -> Result<()> {
    diesel::insert_into(a::audit_log)
        .values((
            a::at.eq(at),
            a::actor.eq(actor),
            a::action.eq(action),
            a::entity.eq(entity),
            a::entity_key.eq(key),
            a::detail.eq(detail.to_string()),
        ))
        .execute(conn)?;
    Ok(())
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = super::schema::audit_log)]
pub struct AuditRow {
    pub id: i64,
    pub at: Millis,
    pub actor: String,
    pub action: String,
    pub entity: String,
    pub entity_key: String,
    pub detail: String,
}

/// One entry of the audit trail.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    /// Role, tenant or site, and token id of whoever made the change; for a person
    /// signed in through the identity provider, `…:person:<email>:<subject>`.
    pub actor: String,
    pub action: String,
    pub entity: String,
    pub key: String,
    pub detail: serde_json::Value,
}

pub fn list(conn: &mut DbConn, before_id: Option<i64>, limit: i64) -> Result<Vec<AuditRow>> {
    let mut q = a::audit_log.into_boxed();
    if let Some(b) = before_id {
        q = q.filter(a::id.lt(b));
    }
    Ok(q.order(a::id.desc())
        .limit(limit)
        .select(AuditRow::as_select())
        .load(conn)?)
}
