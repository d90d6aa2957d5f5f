//! Plans: what the provider sells. Admins write; tenants may read.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::common::{Body, Checks, Page, PageQuery, delete_audited, id_page, path_slug};
use super::problems::{BadRequest, Conflict, NotFound, UnprocessableEntity};
use crate::auth::Caller;
use crate::clock::{Millis, to_rfc3339};
use crate::db::{plans, plans::Plan, sites};
use crate::domain::config::{self, plan_fields};
use crate::domain::ids::{self, SessionLimit, Slug};
use crate::domain::plan_terms;
use crate::error::{Error, Result};
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(create_plan)
        .service(list_plans)
        .service(get_plan)
        .service(update_plan)
        .service(delete_plan);
}

plan_fields! {
    /// A new plan. A field left out takes its default; among them `reserved_slots` 0,
    /// `reserved_roles` `["admin"]`, no `per_user_limit` (no cap) and `exempt_roles`
    /// `[]`.
    #[derive(Debug, Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct CreatePlan {
        #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
        pub code: String,
        pub name: String,
    }
    plan as request new
}

plan_fields! {
    /// Any subset of a plan's writable fields (`code` is immutable); `per_user_limit`
    /// `null` removes the cap.
    #[derive(Debug, Deserialize, ToSchema, Default)]
    #[serde(deny_unknown_fields)]
    pub struct UpdatePlan {
        pub name: Option<String>,
    }
    plan as request changes
}

plan_fields! {
    /// A plan (`per_user_limit` `null`: no cap).
    #[derive(Debug, Serialize, ToSchema)]
    pub struct PlanView {
        pub code: String,
        pub name: String,
    }
    plan as view values {
        pub created_at: String,
        pub updated_at: String,
    }
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
            exempt_roles: v.exempt_roles,
            created_at: to_rfc3339(p.created_at),
            updated_at: to_rfc3339(p.updated_at),
        }
    }
}

impl CreatePlan {
    /// The new plan's row, the fields not sent at their defaults. Every invalid field
    /// is reported, `code` first.
    fn into_new_plan(self, now: Millis) -> Result<Plan> {
        let mut c = Checks::default();
        let code = c.check("code", Slug::parse(&self.code));
        let fields = self.with_defaults();
        let mut v = plans::PlanChanges::default();
        fields.check_name_and_limit(&mut c, &mut v);
        fields.check_terms(&mut c, &mut v);
        fields.check_reservations(&mut c, &mut v);
        fields.copy_modes(&mut v);
        c.finish()?;
        Ok(Plan {
            id: 0,
            code: code.map(|s| s.as_str().to_owned()).unwrap_or_default(),
            name: v.name.unwrap_or_default(),
            session_limit: v.session_limit.unwrap_or_default(),
            count_mode: v.count_mode.unwrap_or_default(),
            over_limit: v.over_limit.unwrap_or_default(),
            overage_percent: v.overage_percent.unwrap_or_default(),
            idle_timeout_seconds: v.idle_timeout_seconds.unwrap_or_default(),
            session_ttl_seconds: v.session_ttl_seconds.unwrap_or_default(),
            limit_message: v.limit_message.unwrap_or_default(),
            monthly_price_cents: v.monthly_price_cents.unwrap_or_default(),
            overage_unit_price_cents: v.overage_unit_price_cents.unwrap_or_default(),
            currency: v.currency.unwrap_or_default(),
            created_at: now,
            updated_at: now,
            reserved_slots: v.reserved_slots.unwrap_or_default(),
            reserved_roles: v.reserved_roles.unwrap_or_default(),
            per_user_limit: v.per_user_limit.flatten(),
            per_user_over_limit: v.per_user_over_limit.unwrap_or_default(),
            exempt_roles: v.exempt_roles.unwrap_or_else(|| config::roles_to_text(&[])),
        })
    }

    /// A new plan is a change of every writable field, so that both are judged by the
    /// same rules.
    fn with_defaults(self) -> UpdatePlan {
        UpdatePlan {
            name: Some(self.name),
            session_limit: Some(self.session_limit),
            count_mode: Some(self.count_mode.unwrap_or_default()),
            over_limit: Some(self.over_limit.unwrap_or_default()),
            overage_percent: Some(self.overage_percent.unwrap_or(0)),
            idle_timeout_seconds: Some(
                self.idle_timeout_seconds
                    .unwrap_or(config::DEFAULT_IDLE_TIMEOUT_SECONDS),
            ),
            session_ttl_seconds: Some(
                self.session_ttl_seconds
                    .unwrap_or(config::DEFAULT_SESSION_TTL_SECONDS),
            ),
            limit_message: Some(
                self.limit_message
                    .unwrap_or_else(|| config::DEFAULT_LIMIT_MESSAGE.to_owned()),
            ),
            monthly_price_cents: Some(self.monthly_price_cents.unwrap_or(0)),
            overage_unit_price_cents: Some(self.overage_unit_price_cents.unwrap_or(0)),
            currency: Some(self.currency.unwrap_or_else(|| "EUR".to_owned())),
            reserved_slots: Some(self.reserved_slots.unwrap_or(0)),
            reserved_roles: Some(
                self.reserved_roles
                    .unwrap_or_else(config::default_reserved_roles),
            ),
            per_user_limit: Some(self.per_user_limit),
            per_user_over_limit: Some(self.per_user_over_limit.unwrap_or_default()),
            exempt_roles: Some(self.exempt_roles.unwrap_or_default()),
        }
    }
}

impl UpdatePlan {
    /// The checked changes; `checks` holds what the body's `null`s already broke.
    fn into_changes(self, mut checks: Checks, now: Millis) -> Result<plans::PlanChanges> {
        let mut v = plans::PlanChanges {
            updated_at: Some(now),
            ..Default::default()
        };
        self.check_reservations(&mut checks, &mut v);
        self.check_name_and_limit(&mut checks, &mut v);
        self.check_terms(&mut checks, &mut v);
        self.copy_modes(&mut v);
        checks.finish()?;
        Ok(v)
    }

    /// `reserved_slots`, `reserved_roles`, `per_user_limit` and `exempt_roles`: who
    /// may hold places, and whose sessions take none.
    fn check_reservations(&self, c: &mut Checks, v: &mut plans::PlanChanges) {
        v.reserved_slots = self
            .reserved_slots
            .and_then(|n| c.check("reserved_slots", config::parse_reserved_slots(n)));
        v.reserved_roles = self.reserved_roles.as_deref().and_then(|r| {
            c.check("reserved_roles", config::parse_roles(r))
                .map(|r| config::roles_to_text(&r))
        });
        v.per_user_limit = self
            .per_user_limit
            .map(|n| n.and_then(|n| c.check("per_user_limit", config::parse_per_user_limit(n))));
        v.exempt_roles = self.exempt_roles.as_deref().and_then(|r| {
            c.check("exempt_roles", config::parse_roles(r))
                .map(|r| config::roles_to_text(&r))
        });
    }

    fn check_name_and_limit(&self, c: &mut Checks, v: &mut plans::PlanChanges) {
        v.name = self
            .name
            .as_deref()
            .and_then(|n| c.check("name", ids::parse_name(n)));
        v.session_limit = self
            .session_limit
            .and_then(|n| c.check("session_limit", SessionLimit::parse(n)))
            .map(SessionLimit::get);
    }

    /// The timeouts, the message at the limit, the overage and the prices.
    fn check_terms(&self, c: &mut Checks, v: &mut plans::PlanChanges) {
        use plan_terms::{parse_limit_message, parse_overage_percent, parse_price_cents};
        v.overage_percent = self
            .overage_percent
            .and_then(|n| c.check("overage_percent", parse_overage_percent(n)));
        v.idle_timeout_seconds = self
            .idle_timeout_seconds
            .and_then(|n| c.check("idle_timeout_seconds", ids::parse_timeout_seconds(n)));
        v.session_ttl_seconds = self
            .session_ttl_seconds
            .and_then(|n| c.check("session_ttl_seconds", ids::parse_timeout_seconds(n)));
        v.limit_message = self
            .limit_message
            .as_deref()
            .and_then(|m| c.check("limit_message", parse_limit_message(m)));
        v.monthly_price_cents = self
            .monthly_price_cents
            .and_then(|n| c.check("monthly_price_cents", parse_price_cents(n)));
        v.overage_unit_price_cents = self
            .overage_unit_price_cents
            .and_then(|n| c.check("overage_unit_price_cents", parse_price_cents(n)));
        v.currency = self
            .currency
            .as_deref()
            .and_then(|s| c.check("currency", ids::parse_currency(s)));
    }

    /// The modes need no check: serde accepts only their names.
    fn copy_modes(&self, v: &mut plans::PlanChanges) {
        v.count_mode = self.count_mode;
        v.over_limit = self.over_limit;
        v.per_user_over_limit = self.per_user_over_limit;
    }
}

/// The changes of a scheduled plan change (`changes`, the body of a change of the
/// plan), checked as a change is, dated `at`.
pub fn scheduled_plan_changes(body: &serde_json::Value, at: Millis) -> Result<plans::PlanChanges> {
    let b: UpdatePlan = serde_json::from_value(body.clone())
        .map_err(|e| Error::invalid_field("changes", super::common::without_position(&e)))?;
    b.into_changes(Checks::default(), at)
}

/// Applies a scheduled plan change at `at` through the same path as a change of the
/// plan: prices from `at` on, the sites on it reconfigured and pushed, dated `at`.
pub fn apply_scheduled_plan(
    c: &mut crate::db::DbConn, code: &str, body: &serde_json::Value, at: Millis, actor: &str,
) -> Result<Plan> {
    let changes = scheduled_plan_changes(body, at)?;
    Ok(sites::change_plan_and_reconfigure_sites(
        c, code, &changes, at, actor,
    )?)
}

/// Create a plan.
#[utoipa::path(tag = "plans", request_body = CreatePlan,
    responses((status = 201, body = PlanView), BadRequest, Conflict, UnprocessableEntity))]
#[post("/v1/plans")]
pub async fn create_plan(
    state: web::Data<AppState>, caller: Caller, body: Body,
) -> Result<HttpResponse> {
    caller.require_admin()?;
    let new = body.json::<CreatePlan>()?.into_new_plan(state.now())?;
    let actor = caller.actor();
    let plan = state
        .db
        .run(move |c| plans::create(c, &new, &actor))
        .await?;
    Ok(HttpResponse::Created().json(PlanView::from(plan)))
}

/// List plans.
#[utoipa::path(tag = "plans", params(PageQuery),
    responses((status = 200, body = Page<PlanView>), BadRequest))]
#[get("/v1/plans")]
pub async fn list_plans(
    state: web::Data<AppState>, caller: Caller, q: web::Query<PageQuery>,
) -> Result<HttpResponse> {
    caller.scope()?;
    let (limit, cursor) = (q.limit, q.cursor.as_deref());
    let page = id_page(&state, limit, cursor, plans::list, |p| p.id, PlanView::from);
    Ok(HttpResponse::Ok().json(page.await?))
}

/// Get a plan.
#[utoipa::path(tag = "plans", responses((status = 200, body = PlanView), NotFound))]
#[get("/v1/plans/{code}")]
pub async fn get_plan(
    state: web::Data<AppState>, caller: Caller, code: web::Path<String>,
) -> Result<HttpResponse> {
    caller.scope()?;
    let code = path_slug("plan", &code)?;
    let plan = state.db.run(move |c| plans::get(c, &code)).await?;
    Ok(HttpResponse::Ok().json(PlanView::from(plan)))
}

/// Change a plan. A change of its limits bumps `config_version` of every site on
/// it and queues their config pushes, in the same transaction.
#[utoipa::path(tag = "plans", request_body = UpdatePlan,
    responses((status = 200, body = PlanView), BadRequest, NotFound, UnprocessableEntity))]
#[patch("/v1/plans/{code}")]
pub async fn update_plan(
    state: web::Data<AppState>, caller: Caller, code: web::Path<String>, body: Body,
) -> Result<HttpResponse> {
    caller.require_admin()?;
    let code = path_slug("plan", &code)?;
    let (b, checks): (UpdatePlan, _) = body.json_patch(&["per_user_limit"])?;
    let now = state.now();
    let changes = b.into_changes(checks, now)?;
    let actor = caller.actor();
    let plan = state
        .db
        .run(move |c| sites::change_plan_and_reconfigure_sites(c, &code, &changes, now, &actor))
        .await?;
    state.outbox_wakeup.notify_one();
    Ok(HttpResponse::Ok().json(PlanView::from(plan)))
}

/// Delete a plan; refused (409) while a site uses it.
#[utoipa::path(tag = "plans",
    responses((status = 204, description = "deleted"), NotFound, Conflict))]
#[delete("/v1/plans/{code}")]
pub async fn delete_plan(
    state: web::Data<AppState>, caller: Caller, code: web::Path<String>,
) -> Result<HttpResponse> {
    delete_audited(&state, &caller, "plan", &code, |c, code| {
        let p = plans::get(c, code)?;
        plans::delete(c, p.id, code)
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
