//! Plans: what the provider sells. Admins write; tenants may read.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::common::{Body, Checks, Page, PageQuery, delete_audited, flattened, id_page, path_slug};
use super::problems::{BadRequest, Conflict, NotFound, UnprocessableEntity};
use crate::auth::Caller;
use crate::clock::{Millis, to_rfc3339};
use crate::db::{plans, plans::Plan, sites};
use crate::domain::config::{self, Limits, LimitsPatch, PlanTerms, PlanTermsPatch};
use crate::domain::ids::{self, SessionLimit, Slug};
use crate::domain::patch::Patch;
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
    /// The new plan's row, the fields not sent at their defaults. Every invalid field
    /// is reported, `code` first.
    fn into_new_plan(self, now: Millis) -> Result<Plan> {
        let mut c = Checks::default();
        let code = c.check("code", Slug::parse(&self.code));
        let v = self.with_defaults().check(&mut c);
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
    /// same rules; a field left out or `null` is set to its default.
    fn with_defaults(self) -> UpdatePlan {
        // The limit is this body's own field: the flattened one is never sent.
        let LimitsPatch {
            session_limit: _,
            count_mode,
            over_limit,
            idle_timeout_seconds,
            session_ttl_seconds,
            limit_message,
            reserved_slots,
            reserved_roles,
            per_user_limit,
            per_user_over_limit,
            exempt_roles,
        } = self.limits;
        let PlanTermsPatch {
            overage_percent,
            monthly_price_cents,
            overage_unit_price_cents,
            currency,
        } = self.terms;
        let or = |p: Patch<i64>, default: i64| Patch::Set(p.set().unwrap_or(default));
        UpdatePlan {
            name: Patch::Set(self.name),
            limits: LimitsPatch {
                session_limit: Patch::Set(self.session_limit),
                count_mode: Patch::Set(count_mode.set().unwrap_or_default()),
                over_limit: Patch::Set(over_limit.set().unwrap_or_default()),
                idle_timeout_seconds: or(
                    idle_timeout_seconds,
                    config::DEFAULT_IDLE_TIMEOUT_SECONDS,
                ),
                session_ttl_seconds: or(session_ttl_seconds, config::DEFAULT_SESSION_TTL_SECONDS),
                limit_message: Patch::Set(
                    limit_message
                        .set()
                        .unwrap_or_else(|| config::DEFAULT_LIMIT_MESSAGE.to_owned()),
                ),
                reserved_slots: or(reserved_slots, 0),
                reserved_roles: Patch::Set(
                    reserved_roles
                        .set()
                        .unwrap_or_else(config::default_reserved_roles),
                ),
                // No cap unless one is given.
                per_user_limit: per_user_limit.set().map_or(Patch::Clear, Patch::Set),
                per_user_over_limit: Patch::Set(per_user_over_limit.set().unwrap_or_default()),
                exempt_roles: Patch::Set(exempt_roles.set().unwrap_or_default()),
            },
            terms: PlanTermsPatch {
                overage_percent: or(overage_percent, 0),
                monthly_price_cents: or(monthly_price_cents, 0),
                overage_unit_price_cents: or(overage_unit_price_cents, 0),
                currency: Patch::Set(currency.set().unwrap_or_else(|| "EUR".to_owned())),
            },
        }
    }
}

impl UpdatePlan {
    /// The checked changes; a field that fails its check is left unchanged and
    /// reported in `c`. Only `per_user_limit` may be cleared (no cap).
    fn check(self, c: &mut Checks) -> plans::PlanChanges {
        use plan_terms::{parse_limit_message, parse_overage_percent, parse_price_cents};
        let roles = |r: Vec<String>| config::parse_roles(&r).map(|r| config::roles_to_text(&r));
        let UpdatePlan {
            name,
            limits:
                LimitsPatch {
                    session_limit,
                    count_mode,
                    over_limit,
                    idle_timeout_seconds,
                    session_ttl_seconds,
                    limit_message,
                    reserved_slots,
                    reserved_roles,
                    per_user_limit,
                    per_user_over_limit,
                    exempt_roles,
                },
            terms:
                PlanTermsPatch {
                    overage_percent,
                    monthly_price_cents,
                    overage_unit_price_cents,
                    currency,
                },
        } = self;
        plans::PlanChanges {
            reserved_slots: c.not_null(
                "reserved_slots",
                reserved_slots,
                config::parse_reserved_slots,
            ),
            reserved_roles: c.not_null("reserved_roles", reserved_roles, roles),
            per_user_limit: c.clearable(
                "per_user_limit",
                per_user_limit,
                config::parse_per_user_limit,
            ),
            exempt_roles: c.not_null("exempt_roles", exempt_roles, roles),
            name: c.not_null("name", name, |n| ids::parse_name(&n)),
            session_limit: c.not_null("session_limit", session_limit, |n| {
                SessionLimit::parse(n).map(SessionLimit::get)
            }),
            overage_percent: c.not_null("overage_percent", overage_percent, parse_overage_percent),
            idle_timeout_seconds: c.not_null(
                "idle_timeout_seconds",
                idle_timeout_seconds,
                ids::parse_timeout_seconds,
            ),
            session_ttl_seconds: c.not_null(
                "session_ttl_seconds",
                session_ttl_seconds,
                ids::parse_timeout_seconds,
            ),
            limit_message: c.not_null("limit_message", limit_message, |m| parse_limit_message(&m)),
            monthly_price_cents: c.not_null(
                "monthly_price_cents",
                monthly_price_cents,
                parse_price_cents,
            ),
            overage_unit_price_cents: c.not_null(
                "overage_unit_price_cents",
                overage_unit_price_cents,
                parse_price_cents,
            ),
            currency: c.not_null("currency", currency, |s| ids::parse_currency(&s)),
            // The modes need no check: serde accepts only their names.
            count_mode: c.not_null("count_mode", count_mode, Ok),
            over_limit: c.not_null("over_limit", over_limit, Ok),
            per_user_over_limit: c.not_null("per_user_over_limit", per_user_over_limit, Ok),
            updated_at: None,
        }
    }

    /// The checked changes, dated `now`.
    fn into_changes(self, mut checks: Checks, now: Millis) -> Result<plans::PlanChanges> {
        let v = plans::PlanChanges {
            updated_at: Some(now),
            ..self.check(&mut checks)
        };
        checks.finish()?;
        Ok(v)
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
    let b: UpdatePlan = body.json()?;
    let now = state.now();
    let changes = b.into_changes(Checks::default(), now)?;
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
