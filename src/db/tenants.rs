//! Tenants: the provider's customers.

use diesel::prelude::*;
use serde_json::json;

use super::schema::{sites::dsl as s, tenants::dsl as t};
use super::{DbConn, audit};
use crate::clock::Millis;
use crate::db::{Error, Result};
use crate::domain::scope::Scope;

/// A tenant as stored, and as a new one is inserted.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = super::schema::tenants)]
pub struct Tenant {
    /// Given by the database: a new tenant's is not written (any value will do).
    #[diesel(skip_insertion)]
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub billing_email: Option<String>,
    pub notify_url: Option<String>,
    pub notify_secret: String,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// Named in the tenant's tokens: a token for a deleted tenant never fits a new one.
    pub token_key: Option<String>,
    /// The tenant itself chose `notify_url` (not the provider).
    pub notify_url_by_tenant: bool,
    /// Counted sessions summed over the tenant's sites may not exceed it.
    pub pooled_session_limit: Option<i64>,
}

#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = super::schema::tenants)]
pub struct TenantChanges {
    pub name: Option<String>,
    pub billing_email: Option<Option<String>>,
    pub notify_url: Option<Option<String>>,
    pub updated_at: Option<Millis>,
    pub notify_url_by_tenant: Option<bool>,
    pub pooled_session_limit: Option<Option<i64>>,
}

pub fn insert(conn: &mut DbConn, new: &Tenant) -> Result<Tenant> {
    diesel::insert_into(t::tenants).values(new).execute(conn)?;
    get(conn, &Scope::Provider, &new.slug)
}

/// Adds the tenant and its audit record in one transaction; a tenant of the same slug
/// is a conflict.
pub fn create(conn: &mut DbConn, new: &Tenant, actor: &str) -> Result<Tenant> {
    conn.transaction(|c| {
        if get(c, &Scope::Provider, &new.slug).is_ok() {
            return Err(Error::Conflict(format!(
                "tenant {:?} already exists",
                new.slug
            )));
        }
        let t = insert(c, new)?;
        audit::record(
            c,
            new.created_at,
            actor,
            "create",
            "tenant",
            &t.slug,
            &json!({}),
        )?;
        Ok(t)
    })
}

/// What the tenant now holding `slug` says about its tokens; `None` when there is none.
pub fn subject_key(
    conn: &mut DbConn, slug: &str,
) -> Result<Option<crate::domain::scope::SubjectKey>> {
    let row: Option<(Millis, Option<String>)> = t::tenants
        .filter(t::slug.eq(slug))
        .select((t::created_at, t::token_key))
        .first(conn)
        .optional()?;
    Ok(
        row.map(|(created_at, token_key)| crate::domain::scope::SubjectKey {
            created_at,
            token_key,
        }),
    )
}

/// A tenant as the scope sees it: another tenant is "not found".
pub fn get(conn: &mut DbConn, scope: &Scope, slug: &str) -> Result<Tenant> {
    if let Scope::Tenant(own) = scope
        && own != slug
    {
        return Err(Error::not_found(format!("tenant {slug:?}")));
    }
    t::tenants
        .filter(t::slug.eq(slug))
        .select(Tenant::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| Error::not_found(format!("tenant {slug:?}")))
}

pub fn get_by_id(conn: &mut DbConn, id: i64) -> Result<Tenant> {
    Ok(t::tenants
        .find(id)
        .select(Tenant::as_select())
        .first(conn)?)
}

pub fn list(
    conn: &mut DbConn, scope: &Scope, after_id: Option<i64>, limit: i64,
) -> Result<Vec<Tenant>> {
    let mut q = t::tenants
        .filter(t::id.gt(after_id.unwrap_or(0)))
        .into_boxed();
    if let Scope::Tenant(own) = scope {
        q = q.filter(t::slug.eq(own.clone()));
    }
    Ok(q.order(t::id)
        .limit(limit)
        .select(Tenant::as_select())
        .load(conn)?)
}

pub fn update(conn: &mut DbConn, id: i64, changes: &TenantChanges) -> Result<()> {
    diesel::update(t::tenants.find(id))
        .set(changes)
        .execute(conn)?;
    Ok(())
}

/// Changes the tenant and records it in one transaction; the tenant as it is now.
pub fn change(
    conn: &mut DbConn, tenant: &Tenant, changes: &TenantChanges, now: Millis, actor: &str,
) -> Result<Tenant> {
    conn.transaction(|c| {
        update(c, tenant.id, changes)?;
        audit::record(c, now, actor, "update", "tenant", &tenant.slug, &json!({}))?;
        get_by_id(c, tenant.id)
    })
}

/// Replaces the tenant's `notify_secret` (as `scope` may see the tenant) and records
/// it, in one transaction. Alerts are signed with the new one from then on.
pub fn rotate_notify_secret(
    conn: &mut DbConn, scope: &Scope, slug: &str, secret: &str, now: Millis, actor: &str,
) -> Result<()> {
    conn.transaction(|c| {
        let tenant = get(c, scope, slug)?;
        diesel::update(t::tenants.find(tenant.id))
            .set((t::notify_secret.eq(secret), t::updated_at.eq(now)))
            .execute(c)?;
        audit::record(c, now, actor, "rotate_secret", "tenant", slug, &json!({}))
    })
}

pub fn delete(conn: &mut DbConn, tenant: &Tenant) -> Result<()> {
    super::citus::sequential(conn)?;
    let n: i64 = s::sites
        .filter(s::tenant_id.eq(tenant.id))
        .count()
        .get_result(conn)?;
    if n > 0 {
        return Err(Error::Conflict(format!(
            "tenant {:?} still has {n} site(s); delete them first",
            tenant.slug
        )));
    }
    diesel::delete(t::tenants.find(tenant.id)).execute(conn)?;
    Ok(())
}
