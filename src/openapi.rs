//! The OpenAPI document, generated from the handlers and types. The committed
//! `openapi/openapi.json` must equal it (a test checks; `headcount openapi > openapi/openapi.json`
//! regenerates it).

use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::schema::{AdditionalProperties, ArrayItems};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::server::ServerBuilder;
use utoipa::openapi::{Ref, RefOr, Response, Schema};
use utoipa::{Modify, OpenApi};

use crate::api;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "headcount",
        description = "Control plane for hosting providers that sell web sites priced by a sessions limit. \
Errors are RFC 9457 `application/problem+json`. Tokens are HS256 JWTs sent as `Authorization: Bearer`. \
Another tenant's resources answer 404, provider-only actions 403. \
Every control-API POST takes an `Idempotency-Key`: a repeat within 24 h gets the first answer \
with `Idempotent-Replayed: true`, except that a secret or token the first answer showed once \
(`webhook_secret`, `notify_secret`, `token`) is not kept and not repeated: the replay has \
`withheld` instead, naming the request that gets a new one.",
        license(name = "AGPL-3.0-or-later", identifier = "AGPL-3.0-or-later")
    ),
    paths(
        api::ops::get_healthz, api::ops::get_readyz, api::ops::get_metrics, get_openapi,
        api::tokens::create_token, api::tokens::revoke_token,
        api::plans::create_plan, api::plans::list_plans, api::plans::get_plan,
        api::plans::update_plan, api::plans::delete_plan,
        api::tenants::create_tenant, api::tenants::list_tenants, api::tenants::get_tenant,
        api::tenants::update_tenant, api::tenants::delete_tenant,
        api::tenants::rotate_notify_secret,
        api::sites::create_site, api::sites::list_sites, api::sites::get_site,
        api::sites::update_site, api::sites::delete_site, api::sites::rotate_webhook_secret,
        api::sites::get_site_config,
        api::schedule::create_site_scheduled_change, api::schedule::list_site_scheduled_changes,
        api::schedule::cancel_site_scheduled_change, api::schedule::create_plan_scheduled_change,
        api::schedule::list_plan_scheduled_changes, api::schedule::cancel_plan_scheduled_change,
        api::boosts::create_boost, api::boosts::list_boosts, api::boosts::cancel_boost,
        api::events::ingest_events, api::events::put_snapshot, api::events::create_admission,
        api::sessions::list_sessions, api::sessions::list_users, api::sessions::kill_session,
        api::sessions::kill_sessions,
        api::usage::get_site_usage, api::usage::get_tenant_usage, api::usage::get_usage,
        api::denials::list_denials,
        api::history::get_usage_history, api::history::get_usage_chart,
        api::deliveries::list_deliveries, api::deliveries::retry_delivery,
        api::billing::export_billing, api::advice::get_advice,
        api::audit::list_audit,
        api::auth::login, api::auth::callback, api::auth::current, api::auth::logout,
    ),
    components(schemas(crate::error::Problem)),
    modifiers(&Bearer, &Flatten, &Describe),
    tags(
        (name = "operations", description = "Health, readiness, metrics and this document"),
        (name = "tokens", description = "Minting and revoking tokens"),
        (name = "plans", description = "What the provider sells"),
        (name = "tenants", description = "The provider's customers"),
        (name = "sites", description = "Hosted sites, their overrides and effective configuration"),
        (name = "schedule", description = "Limits over time: scheduled changes of sites and plans, temporary boosts"),
        (name = "agent", description = "What a site's agent sends: events, snapshots, admissions"),
        (name = "sessions", description = "The Sessions table, per-user view and kills"),
        (name = "usage", description = "Sessions counted now and over time"),
        (name = "deliveries", description = "The push log"),
        (name = "billing", description = "What each tenant owes"),
        (name = "audit", description = "Who changed what"),
        (name = "sign-in", description = "People signing in to the dashboard through the identity provider (OpenID Connect); machines use bearer tokens"),
    )
)]
pub struct ApiDoc;

/// A struct flattened into another (`#[serde(flatten)]`, `#[schema(inline)]`: the limits
/// in a body or view) comes out of the derive as `allOf` the parts; the document shows
/// one object instead, as the JSON is one: the parts' properties (the outer struct's
/// own win), required fields and, where every flattened part refuses unknown fields,
/// `additionalProperties: false` (serde refuses them for the whole body).
struct Flatten;

impl Modify for Flatten {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        for schema in components.schemas.values_mut() {
            let RefOr::T(Schema::AllOf(all)) = schema else {
                continue;
            };
            let mut parts = Vec::with_capacity(all.items.len());
            for item in &all.items {
                match item {
                    RefOr::T(Schema::Object(o)) => parts.push(o.clone()),
                    _ => break,
                }
            }
            // The derive puts the outer struct's own fields last.
            let Some(mut merged) = parts.pop().filter(|_| parts.len() == all.items.len() - 1)
            else {
                continue;
            };
            let closed = !parts.is_empty()
                && parts.iter().all(|p| {
                    matches!(
                        p.additional_properties.as_deref(),
                        Some(AdditionalProperties::FreeForm(false))
                    )
                });
            for part in parts {
                for (name, property) in part.properties {
                    merged.properties.entry(name).or_insert(property);
                }
                for name in part.required {
                    if !merged.required.contains(&name) {
                        merged.required.push(name);
                    }
                }
            }
            if closed {
                merged.additional_properties =
                    Some(Box::new(AdditionalProperties::FreeForm(false)));
            }
            merged.description = all.description.take().or(merged.description);
            *schema = RefOr::T(Schema::Object(merged));
        }
    }
}

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

/// What the handlers' attributes leave out and the tools want: a description for every
/// response (OpenAPI requires one), explicit security on every operation, a server, and
/// list items that name their schema. Runs after the derive, so a description written on
/// a handler's response wins over the one made here.
///
/// Declared here once rather than on each handler: every operation outside the
/// `operations` tag takes a bearer token, and so answers 401 (and, but for the site's
/// config, 403). The handlers' attributes name only the other problems they answer;
/// method, path, path parameters and operation id come from the actix route and the
/// function (utoipa's `actix_extras`).
struct Describe;

impl Modify for Describe {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        // Relative: the API is served from the root of whichever host served this document.
        openapi.servers = Some(vec![
            ServerBuilder::new()
                .url("/")
                .description(Some("The headcount that serves this document"))
                .build(),
        ]);
        for item in openapi.paths.paths.values_mut() {
            for op in operations(item) {
                describe_operation(op);
            }
        }
        // `Page<T>` inlines `T`; point the items at the named schema instead, so that
        // generated clients share one model per resource.
        if let Some(components) = openapi.components.as_mut() {
            let names: Vec<String> = components.schemas.keys().cloned().collect();
            for name in &names {
                let Some(item) = name.strip_prefix("Page_") else {
                    continue;
                };
                if !components.schemas.contains_key(item) {
                    continue;
                }
                if let Some(RefOr::T(Schema::Object(page))) = components.schemas.get_mut(name)
                    && let Some(RefOr::T(Schema::Array(items))) = page.properties.get_mut("items")
                {
                    items.items =
                        ArrayItems::RefOrSchema(Box::new(RefOr::Ref(Ref::from_schema_name(item))));
                }
            }
        }
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

fn describe_operation(op: &mut Operation) {
    let id = op.operation_id.clone().unwrap_or_default();
    let public = op.tags.iter().flatten().any(|t| t == "operations");
    if !public && op.security.is_none() {
        op.security = Some(vec![SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    if id == "get_metrics" {
        // Public by default; with `HEADCOUNT_METRICS_PUBLIC=false` it wants an admin token.
        op.security = Some(vec![
            SecurityRequirement::default(),
            SecurityRequirement::new("bearer", Vec::<String>::new()),
        ]);
        for status in ["401", "403"] {
            op.responses
                .responses
                .entry(status.to_owned())
                .or_insert_with(|| api::problems::response(""));
        }
    } else if secured {
        // Every operation that takes a token refuses a bad one, and every one but the
        // site's config (which takes all three roles) refuses some role.
        op.responses
            .responses
            .entry("401".to_owned())
            .or_insert_with(|| api::problems::response(""));
        if id != "get_site_config" {
            op.responses
                .responses
                .entry("403".to_owned())
                .or_insert_with(|| api::problems::response(""));
        }
    } else {
        // Anonymous, said explicitly.
        op.security = Some(Vec::new());
    }
    for (status, response) in op.responses.responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        if !response.description.is_empty() {
            continue;
        }
        let mut text = response_description(&id, status, response);
        if response.content.contains_key("application/problem+json") {
            text.push_str(" (problem+json)");
        }
        response.description = text;
    }
}

/// What a response means, from the operation and the status.
fn response_description(op: &str, status: &str, response: &Response) -> String {
    match operation_response(op, status) {
        Some(text) => text.to_owned(),
        None if matches!(status, "200" | "201") => success_description(status, response),
        None => status_description(op, status).to_owned(),
    }
}

/// The operations limited by `HEADCOUNT_EXPENSIVE_READS_PER_TENANT`.
const EXPENSIVE_READS: [&str; 4] = [
    "get_usage_history",
    "get_usage_chart",
    "get_advice",
    "export_billing",
];

/// Their 429: either limit a caller may meet there.
const TOO_MANY_READS: &str = "Too many requests: the caller's tenant (or the provider's \
     operators) already has `HEADCOUNT_EXPENSIVE_READS_PER_TENANT` expensive reads running \
     (type `too-many-concurrent-reads`), or the token is over its rate limit (`rate-limited`); \
     `Retry-After` says when to try again";

/// The responses whose meaning is the operation's own.
fn operation_response(op: &str, status: &str) -> Option<&'static str> {
    match (op, status) {
        ("list_audit", "200") => Some("OK: a page of the audit trail, newest first"),
        ("retry_delivery", "200") => {
            Some("OK: the push, pending again with a fresh retry schedule")
        }
        ("list_plans", "200") => Some("OK: a page of plans"),
        ("create_plan", "201") => Some("Created: the plan"),
        ("get_plan", "200") => Some("OK: the plan"),
        ("update_plan", "200") => Some("OK: the plan as changed"),
        ("list_sites", "200") => Some("OK: a page of sites (a tenant's own only)"),
        ("create_site", "201") => Some(
            "Created: the site, with its webhook secret (shown only here; a replay has `withheld` instead)",
        ),
        ("get_site", "200") => Some("OK: the site"),
        ("create_site_scheduled_change" | "create_plan_scheduled_change", "201") => {
            Some("Created: the change, pending until its time")
        }
        ("list_site_scheduled_changes" | "list_plan_scheduled_changes", "200") => {
            Some("OK: a page of scheduled changes with their status, newest first")
        }
        ("cancel_site_scheduled_change" | "cancel_plan_scheduled_change", "200") => {
            Some("OK: the change, cancelled")
        }
        ("cancel_site_scheduled_change" | "cancel_plan_scheduled_change", "409") => {
            Some("The change has already run or was cancelled")
        }
        ("create_boost", "201") => Some("Created: the boost, scheduled for its window"),
        ("list_boosts", "200") => Some("OK: a page of the site's boosts, newest first"),
        ("cancel_boost", "200") => Some("OK: the boost, cancelled"),
        ("cancel_boost", "409") => Some("The boost has already ended or was cancelled"),
        ("update_site", "200") => Some("OK: the site as changed"),
        ("get_site_config", "200") => {
            Some("OK: the site's effective configuration; the `ETag` names its version")
        }
        ("list_deliveries", "200") => Some("OK: a page of the site's pushes, newest first"),
        ("ingest_events", "200") => {
            Some("OK: committed; how many events were accepted, and each rejected one with why")
        }
        ("list_sessions", "200") => Some("OK: a page of sessions, newest activity first"),
        ("put_snapshot", "200") => {
            Some("OK: committed; sessions created, updated, and ended as `reconciled`")
        }
        ("kill_sessions", "200") => Some("OK: how many sessions were killed"),
        ("kill_session", "200") => Some("OK: how many sessions were killed (0 if it had ended)"),
        ("get_site_usage", "200") => {
            Some("OK: the site's active, live and dangling sessions against its limit")
        }
        ("get_tenant_usage", "200") => Some("OK: the tenant's totals and every site's"),
        ("get_usage", "200") => Some("OK: provider-wide totals and every tenant's"),
        ("get_usage_history", "200") => Some("OK: the series, one point per bucket"),
        ("get_usage_chart", "200") => Some("OK: an SVG chart of the series against the limit"),
        ("list_users", "200") => Some("OK: a page of users with their counts, most dangling first"),
        ("rotate_webhook_secret", "200") => Some(
            "OK: the new secret (shown only here; a replay has `withheld` instead) and until when the previous one signs too",
        ),
        ("rotate_notify_secret", "200") => {
            Some("OK: the new notify secret (shown only here; a replay has `withheld` instead)")
        }
        ("list_tenants", "200") => Some("OK: a page of tenants (a tenant sees itself)"),
        ("create_tenant", "201") => Some(
            "Created: the tenant, with its notify secret (shown only here; a replay has `withheld` instead)",
        ),
        ("get_tenant", "200") => Some("OK: the tenant"),
        ("update_tenant", "200") => Some("OK: the tenant as changed"),
        ("create_token", "201") => Some(
            "Created: the token (shown only here; a replay has `withheld` instead), its `jti` and when it expires",
        ),
        (op, "429") if EXPENSIVE_READS.contains(&op) => Some(TOO_MANY_READS),
        ("get_metrics", "401") => Some(
            "`HEADCOUNT_METRICS_PUBLIC` is off and the token is missing, invalid, expired or revoked",
        ),
        ("get_metrics", "403") => {
            Some("`HEADCOUNT_METRICS_PUBLIC` is off and the token is not an admin's")
        }
        _ => None,
    }
}

/// A success without a description of its own: the status and the body's schema.
fn success_description(status: &str, response: &Response) -> String {
    let schema = response.content.values().find_map(|c| match c {
        RefOr::T(c) => match &c.schema {
            Some(RefOr::Ref(r)) => r.ref_location.rsplit('/').next().map(str::to_owned),
            _ => None,
        },
        RefOr::Ref(_) => None,
    });
    let head = if status == "201" { "Created" } else { "OK" };
    match schema {
        Some(name) => format!("{head}: `{name}`"),
        None => head.to_owned(),
    }
}

/// What a status means for any operation, narrowed by the operation where it differs.
fn status_description(op: &str, status: &str) -> &'static str {
    match status {
        "204" => "Done; no body",
        "304" => "Not modified: `If-None-Match` names the current `ETag`",
        "400" => "The body or a parameter is malformed",
        "401" => "Missing, invalid, expired or revoked token, or one whose site or tenant is gone",
        "403" => match op {
            "ingest_events" | "put_snapshot" | "create_admission" => {
                "Only the site's own token may call this"
            }
            _ => "The token's role may not do this",
        },
        "404" => "Not found, or another tenant's",
        "408" => "The body was not received in time",
        "409" => match op {
            "delete_plan" => "A site is on this plan",
            "delete_tenant" => "The tenant still has sites",
            "retry_delivery" => {
                "The push was delivered or superseded: only failed or pending ones retry"
            }
            _ if op.starts_with("create_") => "Already exists: the code or slug is taken",
            _ => "Conflicts with the current state",
        },
        "413" => match op {
            "ingest_events" => "The body or the number of events is over the limit",
            "put_snapshot" => "The body or the number of sessions is over the limit",
            _ => "The body is over the size limit",
        },
        "415" => "The body is not `application/json`",
        "422" => "Validation failed; `errors` names each field",
        "429" => "Over this token's rate limit; `Retry-After` says when to try again",
        "503" => "Unavailable: the database does not answer or migrations are pending",
        _ => "See the problem's `detail`",
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

pub fn routes(cfg: &mut actix_web::web::ServiceConfig) {
    cfg.service(get_openapi);
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", operation_id = "get_openapi",
    responses((status = 200, description = "the OpenAPI document", body = Object)))]
#[actix_web::get("/openapi.json")]
pub async fn get_openapi() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type("application/json")
        .body(crate::openapi::json())
}
