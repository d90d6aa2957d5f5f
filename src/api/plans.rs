//! Plans: what the provider sells. Admins write; tenants may read.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use diesel::Connection as _;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::common::{Body, Checks, Page, PageQuery, decode_cursor, page, path_slug};
use crate::auth::Caller;
use crate::clock::to_rfc3339;
use crate::db::{audit, plans, plans::Plan, sites};
use crate::domain::config::{self, CountMode, OverLimit, PerUserOverLimit};
use crate::domain::ids::{self, SessionLimit, Slug};
use crate::error::{Problem, Result};
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(create_plan)
        .service(list_plans)
        .service(get_plan)
        .service(update_plan)
        .service(delete_plan);
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePlan {
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    pub code: String,
    pub name: String,
    #[schema(minimum = 0, maximum = 1000000)]
    pub session_limit: i64,
    pub count_mode: Option<CountMode>,
    pub over_limit: Option<OverLimit>,
    #[schema(minimum = 0, maximum = 1000)]
    pub overage_percent: Option<i64>,
    #[schema(minimum = 60, maximum = 31536000)]
    pub idle_timeout_seconds: Option<i64>,
    #[schema(minimum = 60, maximum = 31536000)]
    pub session_ttl_seconds: Option<i64>,
    pub limit_message: Option<String>,
    #[schema(minimum = 0)]
    pub monthly_price_cents: Option<i64>,
    #[schema(minimum = 0)]
    pub overage_unit_price_cents: Option<i64>,
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: Option<String>,
    /// Places kept for admissions carrying one of `reserved_roles` (default 0).
    #[schema(minimum = 0, maximum = 1000000)]
    pub reserved_slots: Option<i64>,
    /// Roles that may use the reserved places (default `["admin"]`).
    #[schema(max_items = 16)]
    pub reserved_roles: Option<Vec<String>>,
    /// Most counted sessions one user may hold (default: no cap).
    #[schema(minimum = 1, maximum = 1000000)]
    pub per_user_limit: Option<i64>,
    pub per_user_over_limit: Option<PerUserOverLimit>,
}

/// Any subset of a plan's writable fields (`code` is immutable).
#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct UpdatePlan {
    pub name: Option<String>,
    #[schema(minimum = 0, maximum = 1000000)]
    pub session_limit: Option<i64>,
    pub count_mode: Option<CountMode>,
    pub over_limit: Option<OverLimit>,
    #[schema(minimum = 0, maximum = 1000)]
    pub overage_percent: Option<i64>,
    #[schema(minimum = 60, maximum = 31536000)]
    pub idle_timeout_seconds: Option<i64>,
    #[schema(minimum = 60, maximum = 31536000)]
    pub session_ttl_seconds: Option<i64>,
    pub limit_message: Option<String>,
    #[schema(minimum = 0)]
    pub monthly_price_cents: Option<i64>,
    #[schema(minimum = 0)]
    pub overage_unit_price_cents: Option<i64>,
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: Option<String>,
    #[schema(minimum = 0, maximum = 1000000)]
    pub reserved_slots: Option<i64>,
    #[schema(max_items = 16)]
    pub reserved_roles: Option<Vec<String>>,
    /// `null` removes the cap.
    #[serde(default, deserialize_with = "super::common::nullable")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1000000)]
    pub per_user_limit: Option<Option<i64>>,
    pub per_user_over_limit: Option<PerUserOverLimit>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlanView {
    pub code: String,
    pub name: String,
    pub session_limit: i64,
    pub count_mode: CountMode,
    pub over_limit: OverLimit,
    pub overage_percent: i64,
    pub idle_timeout_seconds: i64,
    pub session_ttl_seconds: i64,
    pub limit_message: String,
    pub monthly_price_cents: i64,
    pub overage_unit_price_cents: i64,
    pub currency: String,
    pub reserved_slots: i64,
    pub reserved_roles: Vec<String>,
    pub per_user_limit: Option<i64>,
    pub per_user_over_limit: PerUserOverLimit,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Plan> for PlanView {
    fn from(p: Plan) -> Self {
        let v = p.limit_values();
        Self {
            code: p.code,
            name: p.name,
            session_limit: p.session_limit,
            count_mode: v.count_mode,
            over_limit: v.over_limit,
            overage_percent: p.overage_percent,
            idle_timeout_seconds: p.idle_timeout_seconds,
            session_ttl_seconds: p.session_ttl_seconds,
            limit_message: p.limit_message,
            monthly_price_cents: p.monthly_price_cents,
            overage_unit_price_cents: p.overage_unit_price_cents,
            currency: p.currency,
            reserved_slots: v.reserved_slots,
            reserved_roles: v.reserved_roles,
            per_user_limit: v.per_user_limit,
            per_user_over_limit: v.per_user_over_limit,
            created_at: to_rfc3339(p.created_at),
            updated_at: to_rfc3339(p.updated_at),
        }
    }
}

fn money(n: i64) -> std::result::Result<i64, String> {
    if (0..=1_000_000_000_000).contains(&n) {
        Ok(n)
    } else {
        Err("must be a whole number of cents between 0 and 10^12".to_owned())
    }
}

fn percent(n: i64) -> std::result::Result<i64, String> {
    if (0..=1000).contains(&n) {
        Ok(n)
    } else {
        Err("must be between 0 and 1000".to_owned())
    }
}

fn message(s: &str) -> std::result::Result<String, String> {
    if s.is_empty() || s.chars().count() > 1000 {
        Err("must be 1 to 1000 characters".to_owned())
    } else {
        Ok(s.to_owned())
    }
}

/// Create a plan.
#[utoipa::path(post, path = "/v1/plans", tag = "plans", operation_id = "create_plan",
    request_body = CreatePlan, security(("bearer" = [])),
    responses((status = 201, body = PlanView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
#[post("/v1/plans")]
pub async fn create_plan(
    state: web::Data<AppState>,
    caller: Caller,
    body: Body,
) -> Result<HttpResponse> {
    caller.require_admin()?;
    let b: CreatePlan = body.json()?;
    let mut c = Checks::default();
    let code = c.check("code", Slug::parse(&b.code));
    let name = c.check("name", ids::parse_name(&b.name));
    let limit = c.check("session_limit", SessionLimit::parse(b.session_limit));
    let overage_percent = c.check("overage_percent", percent(b.overage_percent.unwrap_or(0)));
    let idle = c.check(
        "idle_timeout_seconds",
        ids::parse_timeout_seconds(
            b.idle_timeout_seconds
                .unwrap_or(config::DEFAULT_IDLE_TIMEOUT_SECONDS),
        ),
    );
    let ttl = c.check(
        "session_ttl_seconds",
        ids::parse_timeout_seconds(
            b.session_ttl_seconds
                .unwrap_or(config::DEFAULT_SESSION_TTL_SECONDS),
        ),
    );
    let msg = c.check(
        "limit_message",
        message(
            b.limit_message
                .as_deref()
                .unwrap_or(config::DEFAULT_LIMIT_MESSAGE),
        ),
    );
    let monthly = c.check(
        "monthly_price_cents",
        money(b.monthly_price_cents.unwrap_or(0)),
    );
    let unit = c.check(
        "overage_unit_price_cents",
        money(b.overage_unit_price_cents.unwrap_or(0)),
    );
    let currency = c.check(
        "currency",
        ids::parse_currency(b.currency.as_deref().unwrap_or("EUR")),
    );
    let reserved_slots = c.check(
        "reserved_slots",
        config::parse_reserved_slots(b.reserved_slots.unwrap_or(0)),
    );
    let reserved_roles = c.check(
        "reserved_roles",
        config::parse_roles(
            &b.reserved_roles
                .clone()
                .unwrap_or_else(config::default_reserved_roles),
        ),
    );
    let per_user_limit = b
        .per_user_limit
        .and_then(|n| c.check("per_user_limit", config::parse_per_user_limit(n)));
    c.finish()?;
    let now = state.now();
    let new = plans::NewPlan {
        reserved_slots: reserved_slots.unwrap_or_default(),
        reserved_roles: config::roles_to_text(&reserved_roles.unwrap_or_default()),
        per_user_limit,
        per_user_over_limit: b
            .per_user_over_limit
            .unwrap_or_default()
            .as_str()
            .to_owned(),
        code: code.map(|s| s.as_str().to_owned()).unwrap_or_default(),
        name: name.unwrap_or_default(),
        session_limit: limit.map(SessionLimit::get).unwrap_or_default(),
        count_mode: b.count_mode.unwrap_or_default().as_str().to_owned(),
        over_limit: b.over_limit.unwrap_or_default().as_str().to_owned(),
        overage_percent: overage_percent.unwrap_or_default(),
        idle_timeout_seconds: idle.unwrap_or_default(),
        session_ttl_seconds: ttl.unwrap_or_default(),
        limit_message: msg.unwrap_or_default(),
        monthly_price_cents: monthly.unwrap_or_default(),
        overage_unit_price_cents: unit.unwrap_or_default(),
        currency: currency.unwrap_or_default(),
        created_at: now,
        updated_at: now,
    };
    let actor = caller.actor();
    let plan = state
        .db
        .run(move |c| {
            c.transaction(|c| {
                if plans::get(c, &new.code).is_ok() {
                    return Err(crate::error::Error::Conflict(format!(
                        "plan {:?} already exists",
                        new.code
                    )));
                }
                let p = plans::insert(c, &new)?;
                audit::record(
                    c,
                    now,
                    &actor,
                    "create",
                    "plan",
                    &p.code,
                    &json!({"session_limit": p.session_limit}),
                )?;
                Ok(p)
            })
        })
        .await?;
    Ok(HttpResponse::Created().json(PlanView::from(plan)))
}

/// List plans.
#[utoipa::path(get, path = "/v1/plans", tag = "plans", operation_id = "list_plans",
    params(PageQuery), security(("bearer" = [])),
    responses((status = 200, body = Page<PlanView>),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json")))]
#[get("/v1/plans")]
pub async fn list_plans(
    state: web::Data<AppState>,
    caller: Caller,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse> {
    caller.scope()?;
    let limit = q.limit()?;
    let after = decode_cursor(q.cursor.as_deref(), 1)?.map(|v| v[0]);
    let rows = state
        .db
        .run(move |c| plans::list(c, after, limit + 1))
        .await?;
    Ok(HttpResponse::Ok().json(page(rows, limit, |p| vec![p.id], PlanView::from)))
}

/// Get a plan.
#[utoipa::path(get, path = "/v1/plans/{code}", tag = "plans", operation_id = "get_plan",
    params(("code" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = PlanView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
#[get("/v1/plans/{code}")]
pub async fn get_plan(
    state: web::Data<AppState>,
    caller: Caller,
    code: web::Path<String>,
) -> Result<HttpResponse> {
    caller.scope()?;
    let code = path_slug("plan", &code)?;
    let plan = state.db.run(move |c| plans::get(c, &code)).await?;
    Ok(HttpResponse::Ok().json(PlanView::from(plan)))
}

/// Change a plan. A change of its limits bumps `config_version` of every site on
/// it and queues their config pushes, in the same transaction.
#[utoipa::path(patch, path = "/v1/plans/{code}", tag = "plans", operation_id = "update_plan",
    params(("code" = String, Path)), request_body = UpdatePlan, security(("bearer" = [])),
    responses((status = 200, body = PlanView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
#[patch("/v1/plans/{code}")]
pub async fn update_plan(
    state: web::Data<AppState>,
    caller: Caller,
    code: web::Path<String>,
    body: Body,
) -> Result<HttpResponse> {
    caller.require_admin()?;
    let code = path_slug("plan", &code)?;
    let (b, mut c): (UpdatePlan, _) = body.json_patch(&["per_user_limit"])?;
    let now = state.now();
    let changes = plans::PlanChanges {
        reserved_slots: b
            .reserved_slots
            .and_then(|n| c.check("reserved_slots", config::parse_reserved_slots(n))),
        reserved_roles: b.reserved_roles.as_deref().and_then(|r| {
            c.check("reserved_roles", config::parse_roles(r))
                .map(|r| config::roles_to_text(&r))
        }),
        per_user_limit: b
            .per_user_limit
            .map(|n| n.and_then(|n| c.check("per_user_limit", config::parse_per_user_limit(n)))),
        per_user_over_limit: b.per_user_over_limit.map(|m| m.as_str().to_owned()),
        name: b
            .name
            .as_deref()
            .and_then(|n| c.check("name", ids::parse_name(n))),
        session_limit: b
            .session_limit
            .and_then(|n| c.check("session_limit", SessionLimit::parse(n)))
            .map(SessionLimit::get),
        count_mode: b.count_mode.map(|m| m.as_str().to_owned()),
        over_limit: b.over_limit.map(|m| m.as_str().to_owned()),
        overage_percent: b
            .overage_percent
            .and_then(|n| c.check("overage_percent", percent(n))),
        idle_timeout_seconds: b
            .idle_timeout_seconds
            .and_then(|n| c.check("idle_timeout_seconds", ids::parse_timeout_seconds(n))),
        session_ttl_seconds: b
            .session_ttl_seconds
            .and_then(|n| c.check("session_ttl_seconds", ids::parse_timeout_seconds(n))),
        limit_message: b
            .limit_message
            .as_deref()
            .and_then(|m| c.check("limit_message", message(m))),
        monthly_price_cents: b
            .monthly_price_cents
            .and_then(|n| c.check("monthly_price_cents", money(n))),
        overage_unit_price_cents: b
            .overage_unit_price_cents
            .and_then(|n| c.check("overage_unit_price_cents", money(n))),
        currency: b
            .currency
            .as_deref()
            .and_then(|s| c.check("currency", ids::parse_currency(s))),
        updated_at: Some(now),
    };
    c.finish()?;
    let actor = caller.actor();
    let plan = state
        .db
        .run(move |c| {
            c.transaction(|c| {
                let before = plans::get(c, &code)?;
                let after = plans::update(c, &before, &changes)?;
                if after.limit_values() != before.limit_values()
                    || after.overage_percent != before.overage_percent
                {
                    let ids = plans::sites_using(c, before.id)?;
                    sites::bump_config(c, &ids, now)?;
                }
                audit::record(
                    c,
                    now,
                    &actor,
                    "update",
                    "plan",
                    &code,
                    &json!({"session_limit": [before.session_limit, after.session_limit]}),
                )?;
                Ok::<_, crate::error::Error>(after)
            })
        })
        .await?;
    state.outbox_wakeup.notify_one();
    Ok(HttpResponse::Ok().json(PlanView::from(plan)))
}

/// Delete a plan; refused (409) while a site uses it.
#[utoipa::path(delete, path = "/v1/plans/{code}", tag = "plans", operation_id = "delete_plan",
    params(("code" = String, Path)), security(("bearer" = [])),
    responses((status = 204, description = "deleted"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json")))]
#[delete("/v1/plans/{code}")]
pub async fn delete_plan(
    state: web::Data<AppState>,
    caller: Caller,
    code: web::Path<String>,
) -> Result<HttpResponse> {
    caller.require_admin()?;
    let code = path_slug("plan", &code)?;
    let now = state.now();
    let actor = caller.actor();
    state
        .db
        .run(move |c| {
            c.transaction(|c| {
                let p = plans::get(c, &code)?;
                plans::delete(c, p.id, &code)?;
                audit::record(c, now, &actor, "delete", "plan", &code, &json!({}))
            })
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
