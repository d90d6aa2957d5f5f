//! The OpenAPI document, generated from the handlers and types. The committed
//! `openapi/openapi.json` must equal it (a test checks; `headcount openapi > openapi/openapi.json`
//! regenerates it).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "headcount",
        description = "Control plane for hosting providers that sell web sites priced by a sessions limit. \
Errors are RFC 9457 `application/problem+json`. Tokens are HS256 JWTs sent as `Authorization: Bearer`. \
Another tenant's resources answer 404, provider-only actions 403.",
        license(name = "AGPL-3.0-or-later")
    ),
    paths(
        api::ops::get_healthz, api::ops::get_readyz, api::ops::get_metrics, api::ops::get_openapi,
        api::tokens::create_token, api::tokens::revoke_token,
        api::plans::create_plan, api::plans::list_plans, api::plans::get_plan,
        api::plans::update_plan, api::plans::delete_plan,
        api::tenants::create_tenant, api::tenants::list_tenants, api::tenants::get_tenant,
        api::tenants::update_tenant, api::tenants::delete_tenant,
        api::sites::create_site, api::sites::list_sites, api::sites::get_site,
        api::sites::update_site, api::sites::delete_site, api::sites::rotate_webhook_secret,
        api::sites::get_site_config,
        api::events::ingest_events, api::events::put_snapshot, api::events::create_admission,
        api::sessions::list_sessions, api::sessions::list_users, api::sessions::kill_session,
        api::sessions::kill_sessions,
        api::usage::get_site_usage, api::usage::get_tenant_usage, api::usage::get_usage,
        api::history::get_usage_history, api::history::get_usage_chart,
        api::deliveries::list_deliveries, api::deliveries::retry_delivery,
        api::billing::export_billing,
        api::audit::list_audit,
    ),
    modifiers(&Bearer),
    tags(
        (name = "operations", description = "Health, readiness, metrics and this document"),
        (name = "tokens", description = "Minting and revoking tokens"),
        (name = "plans", description = "What the provider sells"),
        (name = "tenants", description = "The provider's customers"),
        (name = "sites", description = "Hosted sites, their overrides and effective configuration"),
        (name = "agent", description = "What a site's agent sends: events, snapshots, admissions"),
        (name = "sessions", description = "The Sessions table, per-user view and kills"),
        (name = "usage", description = "Sessions counted now and over time"),
        (name = "deliveries", description = "The push log"),
        (name = "billing", description = "What each tenant owes"),
        (name = "audit", description = "Who changed what"),
    )
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The document as pretty JSON with a trailing newline (the committed file's form).
pub fn json() -> String {
    let mut s = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|_| "{}".to_owned());
    s.push('\n');
    s
}
