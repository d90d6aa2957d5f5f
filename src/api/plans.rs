//! Plans: what the provider sells. Admins write; tenants may read.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::common::{Body, Checks, Page, PageQuery, delete_audited, flattened, id_page, path_slug};
use super::problems::{BadRequest, Conflict, NotFound, UnprocessableEntity};
use crate::auth::Caller;
use crate::clock::{Millis, to_rfc3339};
use crate::db::{plans, plans::Plan, sites};
use crate::domain::config::{
    Invalid, Limits, LimitsPatch, Nulls, PlanEdit, PlanTerms, PlanTermsPatch,
};
use crate::domain::ids::{self, Slug};
use crate::domain::patch::Patch;
use crate::error::{Error, Result};
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(create_plan)
        .service(list_plans)
        .service(get_plan)
        .service(update_plan)
        .service(delete_plan);
}

/// A new plan. A field left out takes its default; among them `reserved_slots` 0,
/// `reserved_roles` `["admin"]`, no `per_user_limit` (no cap) and `exempt_roles`
/// `[]`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePlan {
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    pub code: String,
    pub name: String,
    // Must be given: read here, before the flattened limits take the other fields.
    #[schema(minimum = 0, maximum = 1000000)]
    pub session_limit: i64,
    #[serde(flatten, deserialize_with = "flattened")]
    #[schema(inline)]
    pub limits: LimitsPatch,
    #[serde(flatten, deserialize_with = "flattened")]
    #[schema(inline)]
    pub terms: PlanTermsPatch,
}

/// Any subset of a plan's writable fields (`code` is immutable); `per_user_limit`
/// `null` removes the cap.
#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct UpdatePlan {
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub name: Patch<String>,
    #[serde(flatten, deserialize_with = "flattened")]
    #[schema(inline)]
    pub limits: LimitsPatch,
    #[serde(flatten, deserialize_with = "flattened")]
    #[schema(inline)]
    pub terms: PlanTermsPatch,
}

/// A plan (`per_user_limit` `null`: no cap).
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanView {
    pub code: String,
    pub name: String,
    #[serde(flatten)]
    #[schema(inline)]
    pub limits: Limits,
    #[serde(flatten)]
    #[schema(inline)]
    pub terms: PlanTerms,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Plan> for PlanView {
    fn from(p: Plan) -> Self {
        Self {
            limits: p.limits(),
            terms: p.terms(),
            code: p.code,
            name: p.name,
            created_at: to_rfc3339(p.created_at),
            updated_at: to_rfc3339(p.updated_at),
        }
    }
}

impl CreatePlan {
    /// The new plan's row, the fields not sent (or `null`) at their defaults. Every
    /// invalid field is reported, `code` first.
    fn into_new_plan(self, now: Millis) -> Result<Plan> {
        let mut c = Checks::default();
        let code = c.check("code", Slug::parse(&self.code));
        let name = c.check("name", ids::parse_name(&self.name));
        let mut bad = Invalid::new();
        // The limit is this body's own field: the flattened one is never sent.
        let limits = LimitsPatch {
            session_limit: Patch::Set(self.session_limit),
            ..self.limits
        }
        .checked(Nulls::Default, &mut bad)
        .applied_to_limits(&Limits::with_defaults(self.session_limit));
        let terms = self
            .terms
            .checked(Nulls::Default, &mut bad)
            .applied_to(&PlanTerms::default());
        c.extend(bad);
        c.finish()?;
        Ok(Plan {
            id: 0,
            code: code.map(|s| s.as_str().to_owned()).unwrap_or_default(),
            name: name.unwrap_or_default(),
            limit_columns: (&limits).into(),
            term_columns: (&terms).into(),
            created_at: now,
            updated_at: now,
        })
    }
}

impl UpdatePlan {
    /// The checked change; every invalid field is reported. Only `per_user_limit` may
    /// be cleared (no cap).
    fn into_edit(self, mut c: Checks) -> Result<PlanEdit> {
        let UpdatePlan {
            name,
            limits,
            terms,
        } = self;
        let name = c.not_null("name", name, |n| ids::parse_name(&n));
        let mut bad = Invalid::new();
        let limits = limits.checked(Nulls::Refused, &mut bad);
        let terms = terms.checked(Nulls::Refused, &mut bad);
        c.extend(bad);
        c.finish()?;
        Ok(PlanEdit {
            name,
            limits,
            terms,
        })
    }
}

/// A scheduled plan change (`changes`, the body of a change of the plan), checked as
/// a change is.
pub fn scheduled_plan_edit(body: &serde_json::Value) -> Result<PlanEdit> {
    let b: UpdatePlan = serde_json::from_value(body.clone())
        .map_err(|e| Error::invalid_field("changes", super::common::without_position(&e)))?;
    b.into_edit(Checks::default())
}

/// Applies a scheduled plan change at `at` through the same path as a change of the
/// plan: prices from `at` on, the sites on it reconfigured and pushed, dated `at`.
pub fn apply_scheduled_plan(
    c: &mut crate::db::DbConn, code: &str, body: &serde_json::Value, at: Millis, actor: &str,
) -> Result<Plan> {
    let edit = scheduled_plan_edit(body)?;
    Ok(sites::change_plan_and_reconfigure_sites(
        c, code, &edit, at, actor,
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
    let b: UpdatePlan = body.json()?;
    let now = state.now();
    let edit = b.into_edit(Checks::default())?;
    let actor = caller.actor();
    let plan = state
        .db
        .run(move |c| sites::change_plan_and_reconfigure_sites(c, &code, &edit, now, &actor))
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
