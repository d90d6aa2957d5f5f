//! Tenants: the provider's customers. A tenant reads itself, may change its own
//! `billing_email` and `notify_url`, and may rotate its `notify_secret`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, delete, get, patch, post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::common::{Body, Checks, Page, PageQuery, delete_audited, id_page, path_slug, push_url};
use super::problems::{BadRequest, Conflict, NotFound, UnprocessableEntity};
use super::shown_once::{ShownOnce, Withheld, shown_once, take_secret};
use crate::auth::{Caller, Scope};
use crate::clock::{Millis, to_rfc3339};
use crate::db::{DbConn, tenants, tenants::Tenant};
use crate::domain::ids::{self, SessionLimit, Slug};
use crate::domain::nullable;
use crate::domain::targets::Origin;
use crate::error::{Error, Result};
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(create_tenant)
        .service(list_tenants)
        .service(get_tenant)
        .service(update_tenant)
        .service(delete_tenant)
        .service(rotate_notify_secret);
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    pub slug: String,
    pub name: String,
    #[schema(format = Email)]
    pub billing_email: Option<String>,
    #[schema(pattern = "^https?://")]
    pub notify_url: Option<String>,
    /// Counted sessions summed over the tenant's sites may not exceed it (provider only).
    #[schema(minimum = 0, maximum = 1000000)]
    pub pooled_session_limit: Option<i64>,
}

/// `null` clears `billing_email` or `notify_url`.
#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, format = Email)]
    pub billing_email: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, pattern = "^https?://")]
    pub notify_url: Option<Option<String>>,
    /// Provider only; `null` removes the pool.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 1000000)]
    pub pooled_session_limit: Option<Option<i64>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantView {
    pub slug: String,
    pub name: String,
    pub billing_email: Option<String>,
    pub notify_url: Option<String>,
    pub pooled_session_limit: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
}

/// A new tenant, with the secret that signs its alerts (shown only here).
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedTenant {
    #[serde(flatten)]
    pub tenant: TenantView,
    /// `whsec_…`: verifies the threshold alerts sent to `notify_url`. Shown once: not
    /// in a replay of the request's `Idempotency-Key` (see `withheld`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify_secret: Option<String>,
    /// Only in a replay: the secret is not repeated; rotate it for a new one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub withheld: Option<Withheld>,
}

/// The tenant's new alert secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedNotifySecret {
    /// The new `whsec_…` secret; alerts are signed with it from now on. Shown once: not
    /// in a replay of the request's `Idempotency-Key` (see `withheld`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify_secret: Option<String>,
    /// Only in a replay: the secret is not repeated; rotate again for a new one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub withheld: Option<Withheld>,
}

impl ShownOnce for CreatedTenant {
    fn withhold(&mut self, withheld: Withheld) -> bool {
        take_secret(&mut self.notify_secret, &mut self.withheld, withheld)
    }
}

impl ShownOnce for RotatedNotifySecret {
    fn withhold(&mut self, withheld: Withheld) -> bool {
        take_secret(&mut self.notify_secret, &mut self.withheld, withheld)
    }
}

/// What a replay says instead of a tenant's `notify_secret`.
fn notify_secret_withheld(slug: &str) -> Withheld {
    Withheld {
        field: "notify_secret",
        renew: format!("POST /v1/tenants/{slug}/notify-secret"),
        detail: "The secret is shown only in the first answer and is not kept for \
                 replays. Rotating it gives a new one, which signs the alerts from then on."
            .to_owned(),
    }
}

impl From<Tenant> for TenantView {
    fn from(t: Tenant) -> Self {
        Self {
            slug: t.slug,
            name: t.name,
            billing_email: t.billing_email,
            notify_url: t.notify_url,
            pooled_session_limit: t.pooled_session_limit,
            created_at: to_rfc3339(t.created_at),
            updated_at: to_rfc3339(t.updated_at),
        }
    }
}

pub fn new_whsec() -> String {
    use base64::Engine;
    let mut buf = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut buf);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(buf)
    )
}

impl CreateTenant {
    /// The new tenant's row with a fresh alert secret; every invalid field is reported.
    fn into_new_tenant(self, state: &AppState) -> Result<Tenant> {
        let mut c = Checks::default();
        let slug = c.check("slug", Slug::parse(&self.slug));
        let name = c.check("name", ids::parse_name(&self.name));
        let email = self
            .billing_email
            .as_deref()
            .and_then(|e| c.check("billing_email", ids::parse_email(e)));
        let notify = self
            .notify_url
            .as_deref()
            .and_then(|u| c.check("notify_url", push_url(state, u, Origin::Provider)));
        let pool = self
            .pooled_session_limit
            .and_then(|n| check_pool(&mut c, n));
        c.finish()?;
        let now = state.now();
        Ok(Tenant {
            id: 0,
            slug: slug.map(|s| s.as_str().to_owned()).unwrap_or_default(),
            name: name.unwrap_or_default(),
            billing_email: email,
            notify_url: notify,
            notify_secret: new_whsec(),
            created_at: now,
            updated_at: now,
            token_key: Some(crate::auth::new_subject_key()),
            pooled_session_limit: pool,
            // The provider sets a new tenant's URL.
            notify_url_by_tenant: false,
        })
    }
}

impl UpdateTenant {
    /// Refuses a tenant that asks to change more than its own `billing_email` and
    /// `notify_url`. Only a tenant that sees `slug` learns this; for any other the
    /// tenant is "not found" later, as if it did not exist.
    fn check_caller_may_send(&self, caller: &Caller, scope: &Scope, slug: &str) -> Result<()> {
        let provider_only = self.name.is_some() || self.pooled_session_limit.is_some();
        if !caller.is_admin() && provider_only && matches!(scope, Scope::Tenant(own) if own == slug)
        {
            return Err(Error::Forbidden(
                "a tenant may change only its billing_email and notify_url".to_owned(),
            ));
        }
        Ok(())
    }

    /// The checked changes, `checks` holding what the body's `null`s already broke. A
    /// `notify_url` is judged by who sets it, and remembers that.
    fn into_changes(
        self, mut c: Checks, state: &AppState, origin: Origin, now: Millis,
    ) -> Result<tenants::TenantChanges> {
        let changes = tenants::TenantChanges {
            name: self
                .name
                .as_deref()
                .and_then(|n| c.check("name", ids::parse_name(n))),
            billing_email: self
                .billing_email
                .map(|e| e.and_then(|e| c.check("billing_email", ids::parse_email(&e)))),
            notify_url_by_tenant: matches!(self.notify_url, Some(Some(_)))
                .then_some(origin == Origin::Tenant),
            pooled_session_limit: self
                .pooled_session_limit
                .map(|n| n.and_then(|n| check_pool(&mut c, n))),
            notify_url: self
                .notify_url
                .map(|u| u.and_then(|u| c.check("notify_url", push_url(state, &u, origin)))),
            updated_at: Some(now),
        };
        c.finish()?;
        Ok(changes)
    }
}

fn check_pool(c: &mut Checks, n: i64) -> Option<i64> {
    c.check("pooled_session_limit", SessionLimit::parse(n))
        .map(SessionLimit::get)
}

/// Create a tenant.
#[utoipa::path(tag = "tenants", request_body = CreateTenant,
    responses((status = 201, body = CreatedTenant), BadRequest, Conflict, UnprocessableEntity))]
#[post("/v1/tenants")]
pub async fn create_tenant(
    state: web::Data<AppState>, caller: Caller, body: Body,
) -> Result<HttpResponse> {
    caller.require_admin()?;
    let new = body.json::<CreateTenant>()?.into_new_tenant(&state)?;
    let secret = new.notify_secret.clone();
    let actor = caller.actor();
    let t = state
        .db
        .run(move |c| tenants::create(c, &new, &actor))
        .await?;
    let withheld = notify_secret_withheld(&t.slug);
    let created = CreatedTenant {
        tenant: t.into(),
        notify_secret: Some(secret),
        withheld: None,
    };
    shown_once(StatusCode::CREATED, created, withheld)
}

/// List tenants (a tenant sees itself).
#[utoipa::path(tag = "tenants", params(PageQuery),
    responses((status = 200, body = Page<TenantView>), BadRequest))]
#[get("/v1/tenants")]
pub async fn list_tenants(
    state: web::Data<AppState>, caller: Caller, q: web::Query<PageQuery>,
) -> Result<HttpResponse> {
    let scope = caller.scope()?;
    let read = move |c: &mut DbConn, after, n| tenants::list(c, &scope, after, n);
    let (limit, cursor) = (q.limit, q.cursor.as_deref());
    let page = id_page(&state, limit, cursor, read, |t| t.id, TenantView::from);
    Ok(HttpResponse::Ok().json(page.await?))
}

/// Get a tenant.
#[utoipa::path(tag = "tenants", responses((status = 200, body = TenantView), NotFound))]
#[get("/v1/tenants/{slug}")]
pub async fn get_tenant(
    state: web::Data<AppState>, caller: Caller, slug: web::Path<String>,
) -> Result<HttpResponse> {
    let t = visible_tenant(&state, &caller, &slug).await?;
    Ok(HttpResponse::Ok().json(TenantView::from(t)))
}

/// Shared with the usage endpoint: the tenant as the caller may see it (a tenant,
/// itself only).
pub async fn visible_tenant(state: &AppState, caller: &Caller, slug: &str) -> Result<Tenant> {
    let scope = caller.scope()?;
    let slug = path_slug("tenant", slug)?;
    Ok(state
        .db
        .run(move |c| tenants::get(c, &scope, &slug))
        .await?)
}

/// Change a tenant. A tenant may change its own `billing_email` and `notify_url`.
#[utoipa::path(tag = "tenants", request_body = UpdateTenant,
    responses((status = 200, body = TenantView), BadRequest, NotFound, UnprocessableEntity))]
#[patch("/v1/tenants/{slug}")]
pub async fn update_tenant(
    state: web::Data<AppState>, caller: Caller, slug: web::Path<String>, body: Body,
) -> Result<HttpResponse> {
    let scope = caller.scope()?;
    let slug = path_slug("tenant", &slug)?;
    let (b, checks): (UpdateTenant, _) =
        body.json_patch(&["billing_email", "notify_url", "pooled_session_limit"])?;
    b.check_caller_may_send(&caller, &scope, &slug)?;
    let origin = if caller.is_admin() {
        Origin::Provider
    } else {
        Origin::Tenant
    };
    let now = state.now();
    let changes = b.into_changes(checks, &state, origin, now);
    let t = state
        .db
        .run(move |c| tenants::get(c, &scope, &slug))
        .await?;
    // A tenant the caller cannot see is "not found" before its fields are judged.
    let changes = changes?;
    let actor = caller.actor();
    let t = state
        .db
        .run(move |c| tenants::change(c, &t, &changes, now, &actor))
        .await?;
    Ok(HttpResponse::Ok().json(TenantView::from(t)))
}

/// Delete a tenant; refused (409) while it has sites.
#[utoipa::path(tag = "tenants",
    responses((status = 204, description = "deleted"), NotFound, Conflict))]
#[delete("/v1/tenants/{slug}")]
pub async fn delete_tenant(
    state: web::Data<AppState>, caller: Caller, slug: web::Path<String>,
) -> Result<HttpResponse> {
    let gone = delete_audited(&state, &caller, "tenant", &slug, |c, slug| {
        let t = tenants::get(c, &Scope::Provider, slug)?;
        tenants::delete(c, &t)
    })
    .await?;
    // Its tokens stop working here at once (other processes within a second).
    state.tenant_keys.forget(gone.as_str());
    Ok(HttpResponse::NoContent().finish())
}

/// Rotate the tenant's notify secret: alerts are signed with the new one from now on,
/// and no longer with the previous one.
#[utoipa::path(tag = "tenants", responses((status = 200, body = RotatedNotifySecret), NotFound))]
#[post("/v1/tenants/{slug}/notify-secret")]
pub async fn rotate_notify_secret(
    state: web::Data<AppState>, caller: Caller, slug: web::Path<String>,
) -> Result<HttpResponse> {
    let scope = caller.scope()?;
    let slug = path_slug("tenant", &slug)?;
    let withheld = notify_secret_withheld(&slug);
    let (now, actor) = (state.now(), caller.actor());
    let secret = new_whsec();
    let fresh = secret.clone();
    state
        .db
        .run(move |c| tenants::rotate_notify_secret(c, &scope, &slug, &fresh, now, &actor))
        .await?;
    let rotated = RotatedNotifySecret {
        notify_secret: Some(secret),
        withheld: None,
    };
    shown_once(StatusCode::OK, rotated, withheld)
}
