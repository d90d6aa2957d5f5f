//! Sites, their overrides, webhook secret and effective configuration.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use diesel::Connection as _;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::common::{Body, Checks, Page, delete_audited, flattened, id_page, path_slug, push_url};
use super::problems::{BadRequest, Conflict, NotFound, UnprocessableEntity};
use super::shown_once::{ShownOnce, Withheld, shown_once, take_secret};
use crate::auth::{Caller, Scope};
use crate::clock::{Millis, to_rfc3339};
use crate::db::sites::{SiteChanges, SiteConfig, SiteFull};
use crate::db::visible::Visible;
use crate::db::{DbConn, audit, outbox, plans, sites, tenants};
use crate::domain::config::{self, Invalid, LimitsPatch, Nulls, Overrides};
use crate::domain::ids::{self, Slug};
use crate::domain::patch::Patch;
use crate::domain::targets::Origin;
use crate::error::{Error, Result};
use crate::push::signing;
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(create_site)
        .service(list_sites)
        .service(get_site)
        .service(update_site)
        .service(delete_site)
        .service(rotate_webhook_secret)
        .service(get_site_config);
}

/// How long the previous webhook secret keeps signing after a rotation.
const ROTATION_OVERLAP_MS: i64 = 24 * 3_600_000;

/// A new site; an override left out or `null` leaves the plan's value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSite {
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    pub slug: String,
    /// The owning tenant's slug.
    pub tenant: String,
    pub name: String,
    /// The plan's code.
    pub plan: String,
    #[schema(pattern = "^https?://")]
    pub webhook_url: Option<String>,
    #[serde(flatten, deserialize_with = "flattened")]
    #[schema(inline)]
    pub overrides: Overrides,
    /// `v1` (default): HMAC with a shared `whsec_` secret; `v1a`: ed25519, the site
    /// keeps only the `whpk_` public key.
    #[schema(pattern = "^v1a?$")]
    pub signature_scheme: Option<String>,
}

/// Any subset of the writable fields; `null` clears an override (the plan's value
/// applies again) or the webhook URL.
#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct UpdateSite {
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub name: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub plan: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^https?://")]
    pub webhook_url: Patch<String>,
    #[serde(flatten, deserialize_with = "flattened")]
    #[schema(inline)]
    pub limits: LimitsPatch,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SiteView {
    pub slug: String,
    pub tenant: String,
    pub name: String,
    pub plan: String,
    pub webhook_url: Option<String>,
    /// Set when the site answered a push with 410 Gone; setting `webhook_url` again
    /// re-enables pushes.
    pub webhook_disabled_at: Option<String>,
    /// The tenant's own overrides (`session_limit` here is the tenant's, capped at
    /// `provider_session_limit` or else the plan's limit).
    pub overrides: Overrides,
    /// The provider's own session limit for this site, set by an admin's
    /// `session_limit` (on create or change): it replaces the plan's limit, upwards
    /// too. `null`: the plan's limit applies.
    pub provider_session_limit: Option<i64>,
    pub config_version: i64,
    /// How pushes are signed: `v1` (HMAC, shared secret) or `v1a` (ed25519).
    pub signature_scheme: String,
    /// For `v1a`: the public key that verifies the pushes.
    pub webhook_public_key: Option<String>,
    /// What the site runs with: plan values merged with the overrides.
    pub effective: SiteConfig,
    pub created_at: String,
    pub updated_at: String,
}

impl From<SiteFull> for SiteView {
    fn from(f: SiteFull) -> Self {
        let effective = f.config();
        let overrides = f.site.overrides();
        Self {
            slug: f.site.slug,
            tenant: f.tenant_slug,
            name: f.site.name,
            plan: f.plan.code,
            webhook_url: f.site.webhook_url,
            webhook_disabled_at: f.site.webhook_disabled_at.map(to_rfc3339),
            overrides,
            provider_session_limit: f.site.provider_session_limit,
            config_version: f.site.config_version,
            signature_scheme: signing::scheme_of(&f.site.webhook_secret).to_owned(),
            webhook_public_key: signing::public_key_of(&f.site.webhook_secret),
            effective,
            created_at: to_rfc3339(f.site.created_at),
            updated_at: to_rfc3339(f.site.updated_at),
        }
    }
}

/// A new site, with what verifies its pushes (the secret is shown only here).
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedSite {
    #[serde(flatten)]
    pub site: SiteView,
    /// `whsec_…` (scheme `v1`): verifies the pushes sent to `webhook_url`. Shown once:
    /// not in a replay of the request's `Idempotency-Key` (see `withheld`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
    /// `whpk_…` (scheme `v1a`): the ed25519 public key that verifies the pushes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_public_key: Option<String>,
    /// Only in a replay: the secret is not repeated; rotate it for a new one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub withheld: Option<Withheld>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedSecret {
    /// The new `whsec_…` secret (scheme `v1`). Shown once: not in a replay of the
    /// request's `Idempotency-Key` (see `withheld`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
    /// The new `whpk_…` public key (scheme `v1a`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_public_key: Option<String>,
    /// Until then pushes carry a signature by the previous secret as well.
    pub previous_valid_until: String,
    /// Only in a replay: the secret is not repeated; rotate again for a new one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub withheld: Option<Withheld>,
}

impl ShownOnce for CreatedSite {
    fn withhold(&mut self, withheld: Withheld) -> bool {
        take_secret(&mut self.webhook_secret, &mut self.withheld, withheld)
    }
}

impl ShownOnce for RotatedSecret {
    fn withhold(&mut self, withheld: Withheld) -> bool {
        take_secret(&mut self.webhook_secret, &mut self.withheld, withheld)
    }
}

/// What a replay says instead of a site's `webhook_secret`.
fn webhook_secret_withheld(slug: &str) -> Withheld {
    Withheld {
        field: "webhook_secret",
        renew: format!("POST /v1/sites/{slug}/webhook-secret"),
        detail: "The secret is shown only in the first answer and is not kept for \
                 replays. Rotating it gives a new one; the current one keeps signing \
                 alongside for 24 hours."
            .to_owned(),
    }
}

/// Create a site.
#[utoipa::path(tag = "sites", request_body = CreateSite,
    responses((status = 201, body = CreatedSite), BadRequest, Conflict, UnprocessableEntity))]
#[post("/v1/sites")]
pub async fn create_site(
    state: web::Data<AppState>, caller: Caller, body: Body,
) -> Result<HttpResponse> {
    caller.require_admin()?;
    let b: CreateSite = body.json()?;
    let now = state.now();
    let (draft, public_key) = b.into_draft(&state, now)?;
    let secret = draft.row.webhook_secret.clone();
    let actor = caller.actor();
    let full = state
        .db
        .run(move |c| c.transaction(|c| insert_site(c, &draft, &actor, now)))
        .await?;
    state.outbox_wakeup.notify_one();
    let withheld = webhook_secret_withheld(&full.site.slug);
    let created = CreatedSite {
        site: full.into(),
        webhook_secret: public_key.is_none().then_some(secret),
        webhook_public_key: public_key,
        withheld: None,
    };
    shown_once(StatusCode::CREATED, created, withheld)
}

/// A checked new site whose tenant and plan are still to be looked up.
struct SiteDraft {
    tenant: Slug,
    plan: Slug,
    row: sites::Site,
}

impl CreateSite {
    /// The checked site with a new signing secret, and for `v1a` its public key. Every
    /// invalid field is reported; the signature scheme after the others.
    fn into_draft(self, state: &AppState, now: Millis) -> Result<(SiteDraft, Option<String>)> {
        let mut c = Checks::default();
        let slug = c.check("slug", Slug::parse(&self.slug));
        let tenant = c.check("tenant", Slug::parse(&self.tenant));
        let name = c.check("name", ids::parse_name(&self.name));
        let plan = c.check("plan", Slug::parse(&self.plan));
        let webhook_url = self
            .webhook_url
            .as_deref()
            .and_then(|u| c.check("webhook_url", push_url(state, u, Origin::Provider)));
        // The provider's own limit for the site is checked as the limits are.
        let mut bad = Invalid::new();
        let own = LimitsPatch::from(self.overrides.clone())
            .checked(Nulls::Clear, &mut bad)
            .applied_to_overrides(&Overrides::default());
        c.extend(bad);
        c.finish()?;
        let (Some(slug), Some(tenant), Some(plan)) = (slug, tenant, plan) else {
            return Err(Error::bad_request("incomplete site"));
        };
        let (webhook_secret, public_key) = new_signing_secret(self.scheme()?);
        let row = sites::Site {
            id: 0,
            slug: slug.as_str().to_owned(),
            tenant_id: 0,
            plan_id: 0,
            name: name.unwrap_or_default(),
            webhook_url,
            webhook_secret,
            // Sites are created by the provider: its limit is the site's deal.
            provider_session_limit: own.session_limit,
            override_columns: (&Overrides {
                session_limit: None,
                ..own
            })
                .into(),
            config_version: 1,
            created_at: now,
            updated_at: now,
            token_key: Some(crate::auth::new_subject_key()),
            // New: no push has failed, no secret is rotated out, alerts are armed.
            webhook_disabled_at: None,
            previous_webhook_secret: None,
            previous_secret_expires_at: None,
            utilization_alert_armed: true,
            last_limit_alert_at: None,
            webhook_url_by_tenant: false,
        };
        Ok((SiteDraft { tenant, plan, row }, public_key))
    }

    fn scheme(&self) -> Result<&'static str> {
        match self.signature_scheme.as_deref() {
            None | Some("v1") => Ok("v1"),
            Some("v1a") => Ok("v1a"),
            Some(_) => Err(Error::invalid_field(
                "signature_scheme",
                "must be \"v1\" or \"v1a\"",
            )),
        }
    }
}

/// Adds the drafted site on its tenant and plan, queues its first configuration push
/// when it has a webhook, and records it; a site of the same slug is a conflict.
fn insert_site(c: &mut DbConn, draft: &SiteDraft, actor: &str, now: Millis) -> Result<SiteFull> {
    let (tenant, plan) = (&draft.tenant, &draft.plan);
    let t = tenants::get(c, &Scope::Provider, tenant.as_str())
        .map_err(|_| Error::invalid_field("tenant", format!("no tenant {tenant}")))?;
    let p = plans::get(c, plan.as_str())
        .map_err(|_| Error::invalid_field("plan", format!("no plan {plan}")))?;
    if sites::get(c, &Scope::Provider, &draft.row.slug).is_ok() {
        return Err(Error::Conflict(format!(
            "site {} already exists",
            draft.row.slug
        )));
    }
    let new = sites::Site {
        tenant_id: t.id,
        plan_id: p.id,
        ..draft.row.clone()
    };
    let full = sites::insert(c, &new, now)?;
    if full.site.webhook_url.is_some() {
        outbox::enqueue_config(c, &full, now)?;
    }
    let details = json!({"tenant": t.slug, "plan": p.code,
        "provider_session_limit": new.provider_session_limit});
    audit::record(c, now, actor, "create", "site", &full.site.slug, &details)?;
    Ok(full)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SiteListQuery {
    /// Only this tenant's sites.
    pub tenant: Option<String>,
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// List sites (a tenant sees its own).
#[utoipa::path(tag = "sites", params(SiteListQuery),
    responses((status = 200, body = Page<SiteView>), BadRequest))]
#[get("/v1/sites")]
pub async fn list_sites(
    state: web::Data<AppState>, caller: Caller, q: web::Query<SiteListQuery>,
) -> Result<HttpResponse> {
    let scope = caller.scope()?;
    let tenant = q.tenant.clone();
    let read = move |c: &mut DbConn, after, n| sites::list(c, &scope, tenant.as_deref(), after, n);
    let (limit, cursor) = (q.limit, q.cursor.as_deref());
    let page = id_page(
        &state,
        limit,
        cursor,
        read,
        |s| s.site.id,
        |s| SiteView::from(s.into_inner()),
    );
    Ok(HttpResponse::Ok().json(page.await?))
}

/// Get a site.
#[utoipa::path(tag = "sites", responses((status = 200, body = SiteView), NotFound))]
#[get("/v1/sites/{slug}")]
pub async fn get_site(
    state: web::Data<AppState>, caller: Caller, slug: web::Path<String>,
) -> Result<HttpResponse> {
    let scope = caller.scope()?;
    let slug = path_slug("site", &slug)?;
    let f = state.db.run(move |c| sites::get(c, &scope, &slug)).await?;
    Ok(HttpResponse::Ok().json(SiteView::from(f.into_inner())))
}

/// Change a site. An admin's `session_limit` is the provider's own limit for the site
/// (`provider_session_limit`): it replaces the plan's, upwards too (`null` removes
/// it). A tenant may change `webhook_url`, `limit_message` and its own
/// `session_limit` of its own sites, which is capped at what was sold (the provider's
/// limit for the site, or else the plan's), also after the plan or its limit
/// changes; every other field is the provider's (403).
#[utoipa::path(tag = "sites", request_body = UpdateSite,
    responses((status = 200, body = SiteView), BadRequest, NotFound, UnprocessableEntity))]
#[patch("/v1/sites/{slug}")]
pub async fn update_site(
    state: web::Data<AppState>, caller: Caller, slug: web::Path<String>, body: Body,
) -> Result<HttpResponse> {
    let scope = caller.scope()?;
    let slug = path_slug("site", &slug)?;
    let b: UpdateSite = body.json()?;
    let edit = b.into_edit(&state, Checks::default(), caller.is_admin(), state.now());
    let actor = caller.actor();
    let full = state
        .db
        .run(move |c| c.transaction(|c| apply_edit(c, &scope, &slug, &edit, &actor)))
        .await?;
    state.outbox_wakeup.notify_one();
    Ok(HttpResponse::Ok().json(SiteView::from(full)))
}

/// A checked change, judged against the site once it is read: who asks, the fields
/// only the provider may change, and what did not pass the checks.
struct SiteEdit {
    is_admin: bool,
    provider_only: Vec<&'static str>,
    checks: Checks,
    plan_code: Option<Slug>,
    changes: SiteChanges,
    /// The checked change of the site's own overrides.
    limits: LimitsPatch,
    now: Millis,
}

impl UpdateSite {
    fn into_edit(
        self, state: &AppState, mut checks: Checks, is_admin: bool, now: Millis,
    ) -> SiteEdit {
        let origin = if is_admin {
            Origin::Provider
        } else {
            Origin::Tenant
        };
        let provider_only = self.provider_only();
        let url_by_tenant = self.webhook_url.is_set().then_some(!is_admin);
        let UpdateSite {
            name,
            plan,
            webhook_url,
            limits,
        } = self;
        let plan_code = checks.not_null("plan", plan, |p| Slug::parse(&p));
        let mut bad = Invalid::new();
        let limits = limits.checked(Nulls::Clear, &mut bad);
        checks.extend(bad);
        let changes = SiteChanges {
            name: checks.not_null("name", name, |n| ids::parse_name(&n)),
            webhook_url: checks
                .clearable("webhook_url", webhook_url, |u| push_url(state, &u, origin)),
            webhook_url_by_tenant: url_by_tenant,
            updated_at: Some(now),
            ..SiteChanges::default()
        };
        SiteEdit {
            is_admin,
            provider_only,
            checks,
            plan_code,
            changes,
            limits,
            now,
        }
    }

    /// The fields sent that only the provider may change. Every field is classed here
    /// (the limits by [`config::provider_only_limits`]), so that a new one does not
    /// compile until it is.
    fn provider_only(&self) -> Vec<&'static str> {
        let UpdateSite {
            name,
            plan,
            // A tenant may point its site's webhook.
            webhook_url: _,
            limits,
        } = self;
        let mut fields = config::provider_only_limits(limits);
        // A `null` name or plan is refused as invalid, whoever sends it.
        fields.extend(
            [("plan", plan.is_set()), ("name", name.is_set())]
                .into_iter()
                .filter_map(|(f, sent)| sent.then_some(f)),
        );
        fields
    }
}

/// Judges the edit against the site as it is (rights first, then validity, then the
/// plan and the tenant's ceiling) and applies it.
fn apply_edit(
    c: &mut DbConn, scope: &Scope, slug: &str, edit: &SiteEdit, actor: &str,
) -> Result<SiteFull> {
    let before = sites::get_for_change(c, scope, slug)?;
    if !edit.is_admin && !edit.provider_only.is_empty() {
        return Err(Error::Forbidden(format!(
            "a tenant may change only webhook_url, session_limit (up to what was sold) \
             and limit_message of its sites, not {}",
            edit.provider_only.join(", ")
        )));
    }
    // Validation comes after the right and the existence checks.
    if !edit.checks.0.is_empty() {
        return Err(Error::invalid(edit.checks.0.clone()));
    }
    let (mut changes, mut limits) = (edit.changes.clone(), edit.limits.clone());
    if edit.is_admin {
        // The provider's `session_limit` is its deal for this site, not an override
        // of the tenant's: it may raise the plan's limit, and caps the tenant's.
        changes.provider_session_limit = std::mem::take(&mut limits.session_limit).into_change();
    }
    if let Some(code) = &edit.plan_code {
        let p = plans::get(c, code.as_str())
            .map_err(|_| Error::invalid_field("plan", format!("no plan {code}")))?;
        changes.plan_id = Some(p.id);
    }
    let sold = before.sold().session_limit;
    if !edit.is_admin
        && let Patch::Set(n) = limits.session_limit
        && n > sold
    {
        return Err(Error::invalid_field(
            "session_limit",
            format!("a tenant may lower the limit but not raise it above the {sold} sold"),
        ));
    }
    Ok(sites::change(c, &before, changes, limits, edit.now, actor)?)
}

/// A scheduled change of a site (`{plan?, …overrides}`, the fields of a change of the
/// site but its name and webhook), applied through the same path as a change, dated
/// `at`, with the rights of who scheduled it; a tenant may also move its site to
/// another plan this way. Run in the caller's transaction, once when it is scheduled
/// (to judge it, then rolled back) and once at its time.
pub fn apply_scheduled(
    c: &mut DbConn, state: &AppState, scope: &Scope, slug: &str, s: &ScheduledEdit<'_>,
) -> Result<SiteFull> {
    let b: UpdateSite = serde_json::from_value(s.body.clone())
        .map_err(|e| Error::invalid_field("overrides", super::common::without_position(&e)))?;
    if b.name.is_sent() || b.webhook_url.is_sent() {
        return Err(Error::invalid_field(
            "overrides",
            "a scheduled change takes a plan and the limits, not name or webhook_url",
        ));
    }
    let mut edit = b.into_edit(state, Checks::default(), s.by_provider, s.at);
    edit.provider_only.retain(|f| *f != "plan");
    apply_edit(c, scope, slug, &edit, s.actor)
}

/// A scheduled change of a site as stored: the change, whose rights, when, and who
/// scheduled it.
pub struct ScheduledEdit<'a> {
    pub body: &'a serde_json::Value,
    pub by_provider: bool,
    pub at: Millis,
    pub actor: &'a str,
}

/// Delete a site with its sessions and history.
#[utoipa::path(tag = "sites", responses((status = 204, description = "deleted"), NotFound))]
#[delete("/v1/sites/{slug}")]
pub async fn delete_site(
    state: web::Data<AppState>, caller: Caller, slug: web::Path<String>,
) -> Result<HttpResponse> {
    let gone = delete_audited(&state, &caller, "site", &slug, |c, slug| {
        let f = sites::get(c, &Scope::Provider, slug)?;
        sites::delete(c, f.key())
    })
    .await?;
    // Its tokens stop working here at once (other processes within a second).
    state.agent_sites().forget(gone.as_str());
    Ok(HttpResponse::NoContent().finish())
}

/// A new signing secret for `scheme`, and for `v1a` its public key.
fn new_signing_secret(scheme: &str) -> (String, Option<String>) {
    if scheme == "v1a" {
        let (secret, public) = signing::new_v1a_keys();
        (secret, Some(public))
    } else {
        (super::tenants::new_whsec(), None)
    }
}

/// Rotate the webhook secret. The previous secret keeps signing alongside for 24 h.
#[utoipa::path(tag = "sites", responses((status = 200, body = RotatedSecret), NotFound))]
#[post("/v1/sites/{slug}/webhook-secret")]
pub async fn rotate_webhook_secret(
    state: web::Data<AppState>, caller: Caller, slug: web::Path<String>,
) -> Result<HttpResponse> {
    let scope = caller.scope()?;
    let slug = path_slug("site", &slug)?;
    let now = state.now();
    let actor = caller.actor();
    let until = now + ROTATION_OVERLAP_MS;
    let withheld = webhook_secret_withheld(&slug);
    // The new secret keeps the site's scheme.
    let (secret, public_key) = state
        .db
        .run(move |c| {
            c.transaction(|c| {
                let f = sites::get(c, &scope, &slug)?;
                let fresh = new_signing_secret(signing::scheme_of(&f.site.webhook_secret));
                sites::set_webhook_secret(c, f.key(), &fresh.0, &f.site.webhook_secret, until)?;
                audit::record(c, now, &actor, "rotate_secret", "site", &slug, &json!({}))?;
                Ok::<_, Error>(fresh)
            })
        })
        .await?;
    let rotated = RotatedSecret {
        webhook_secret: public_key.is_none().then_some(secret),
        webhook_public_key: public_key,
        previous_valid_until: to_rfc3339(until),
        withheld: None,
    };
    shown_once(StatusCode::OK, rotated, withheld)
}

/// The site's effective configuration, with an `ETag`; `If-None-Match` answers 304.
#[utoipa::path(tag = "sites",
    responses((status = 200, body = SiteConfig), (status = 304, description = "not modified"),
        NotFound))]
#[get("/v1/sites/{slug}/config")]
pub async fn get_site_config(
    state: web::Data<AppState>, caller: Caller, slug: web::Path<String>, req: HttpRequest,
) -> Result<HttpResponse> {
    let slug = path_slug("site", &slug)?;
    let scope = match &caller {
        Caller::Site { .. } => {
            caller.require_site(&slug)?;
            Scope::Provider
        }
        _ => caller.scope()?,
    };
    let f = state.db.run(move |c| sites::get(c, &scope, &slug)).await?;
    let cfg = f.config();
    let etag = format!("\"{}\"", cfg.config_version);
    let matches = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == etag || t == "*")
        });
    if matches {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, etag))
            .finish());
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .json(cfg))
}

/// Shared by the session endpoints: the site as the caller may see it.
pub async fn visible_site(
    state: &AppState, caller: &Caller, slug: &str,
) -> Result<Visible<SiteFull>> {
    let scope = caller.scope()?;
    let slug = path_slug("site", slug)?;
    Ok(state.db.run(move |c| sites::get(c, &scope, &slug)).await?)
}

/// Shared by the agent endpoints: the site, when the caller is its own site token.
pub async fn agent_site(
    state: &AppState, caller: &Caller, slug: &str,
) -> Result<Visible<SiteFull>> {
    let slug = path_slug("site", slug)?;
    caller.require_site(&slug)?;
    if let Some(f) = state.agent_sites().get(&slug) {
        return Ok(f);
    }
    let f = state
        .db
        .run(move |c| sites::get_for_agent(c, &slug))
        .await?;
    state.agent_sites().put(&f);
    Ok(f)
}
