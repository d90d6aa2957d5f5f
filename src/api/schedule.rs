//! Scheduled changes: a change of a site (plan, overrides) or of a plan (limits,
//! prices) applied once at a chosen instant by the background runner, through the same
//! path as the change itself, dated that instant.

use actix_web::{HttpResponse, delete, get, post, web};
use diesel::Connection as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use super::common::{Body, Page, PageQuery, id_page, path_slug};
use super::problems::{BadRequest, Conflict, NotFound, UnprocessableEntity};
use super::sites::ScheduledEdit;
use crate::auth::{Caller, Scope};
use crate::clock::{Millis, to_rfc3339};
use crate::db::schedule::{self, NewChange, ScheduledChange, Target};
use crate::db::{DbConn, audit, plans, sites};
use crate::domain::schedule::{ChangeStatus, check_future, parse_instant};
use crate::error::{Error, Result};
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(create_site_scheduled_change)
        .service(list_site_scheduled_changes)
        .service(cancel_site_scheduled_change)
        .service(create_plan_scheduled_change)
        .service(list_plan_scheduled_changes)
        .service(cancel_plan_scheduled_change);
}

/// A change of a site at `at` (RFC 3339, in the future): a move to `plan`, new
/// `overrides` (the limits of a change of the site: `session_limit`, `count_mode`,
/// `over_limit`, … with `null` clearing one), or both. Judged now as a change of the
/// site would be, with the caller's rights, and applied at `at` with them; a tenant may
/// move its own site to any plan and set its own `session_limit` and `limit_message`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSiteScheduledChange {
    pub at: String,
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    pub plan: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub overrides: Option<Map<String, Value>>,
}

/// A change of a plan at `at` (RFC 3339, in the future): `changes` takes the fields of
/// a change of the plan. Prices apply from `at`; the sites on the plan are
/// reconfigured and pushed at `at`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePlanScheduledChange {
    pub at: String,
    #[schema(value_type = Object)]
    pub changes: Map<String, Value>,
}

/// A scheduled change and where it stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduledChangeView {
    pub id: i64,
    /// The site it changes (changes of a site).
    pub site: Option<String>,
    /// For a change of a site: the plan it moves the site to, if any. For a change of
    /// a plan: that plan.
    pub plan: Option<String>,
    pub at: String,
    /// `pending`, `done`, `failed` (see `error`) or `cancelled`.
    #[schema(value_type = String)]
    pub status: ChangeStatus,
    /// For a change of a site: the overrides it sets.
    #[schema(value_type = Option<Object>)]
    pub overrides: Option<Value>,
    /// For a change of a plan: the fields it changes.
    #[schema(value_type = Option<Object>)]
    pub changes: Option<Value>,
    /// `provider` or `tenant`: whose rights it runs with.
    pub scheduled_by: String,
    pub created_at: String,
    /// When it ran or was cancelled.
    pub finished_at: Option<String>,
    /// Why it could not be applied (`failed`).
    pub error: Option<String>,
}

impl ScheduledChangeView {
    fn of(row: ScheduledChange, site: Option<&str>, plan: Option<&str>) -> Self {
        let mut body: Map<String, Value> = serde_json::from_str(&row.body).unwrap_or_default();
        let (plan, overrides, changes) = match site {
            Some(_) => {
                let to = body
                    .remove("plan")
                    .and_then(|p| p.as_str().map(str::to_owned));
                (to, Some(Value::Object(body)), None)
            }
            None => (plan.map(str::to_owned), None, Some(Value::Object(body))),
        };
        Self {
            id: row.id,
            site: site.map(str::to_owned),
            plan,
            at: to_rfc3339(row.at),
            status: row.status,
            overrides,
            changes,
            scheduled_by: if row.by_provider {
                "provider"
            } else {
                "tenant"
            }
            .to_owned(),
            created_at: to_rfc3339(row.created_at),
            finished_at: row.finished_at.map(to_rfc3339),
            error: row.error,
        }
    }
}

/// Who asks, and when.
struct Asker {
    scope: Scope,
    by_provider: bool,
    actor: String,
    now: Millis,
}

impl Asker {
    fn of(state: &AppState, caller: &Caller) -> Result<Self> {
        Ok(Self {
            scope: caller.scope()?,
            by_provider: caller.is_admin(),
            actor: caller.actor(),
            now: state.now(),
        })
    }
}

impl CreateSiteScheduledChange {
    /// `at`, and the change as a change of the site takes it.
    fn check(self, now: Millis) -> Result<(Millis, Value)> {
        let at = parse_instant(&self.at)
            .and_then(|at| check_future(at, now))
            .map_err(|m| Error::invalid_field("at", m))?;
        let mut body = self.overrides.unwrap_or_default();
        for f in ["plan", "name", "webhook_url"] {
            if body.contains_key(f) {
                let m = format!("{f} is not an override (a move to a plan is `plan`)");
                return Err(Error::invalid_field(format!("overrides.{f}"), m));
            }
        }
        if let Some(p) = self.plan {
            body.insert("plan".to_owned(), Value::String(p));
        }
        if body.is_empty() {
            return Err(Error::invalid_field(
                "plan",
                "give a plan, overrides or both",
            ));
        }
        Ok((at, Value::Object(body)))
    }
}

/// Judges the change by applying it at its time and rolling that back, then keeps it.
fn schedule_site_change(
    c: &mut DbConn, state: &AppState, who: &Asker, slug: &str, b: CreateSiteScheduledChange,
) -> Result<ScheduledChangeView> {
    let site = sites::get(c, &who.scope, slug)?;
    let (at, body) = b.check(who.now)?;
    let trial = c.transaction(|c| {
        let edit = ScheduledEdit {
            body: &body,
            by_provider: who.by_provider,
            at,
            actor: &who.actor,
        };
        let applied = super::sites::apply_scheduled(c, state, &who.scope, slug, &edit);
        Err::<(), _>(Trial(applied.map(drop)))
    });
    match trial {
        Err(Trial(Ok(()))) | Ok(()) => {}
        Err(Trial(Err(e))) => return Err(e),
    }
    let row = schedule::insert_change(
        c,
        &NewChange {
            target: site.key().target(),
            at,
            body: body.to_string(),
            by_provider: who.by_provider,
            actor: who.actor.clone(),
            created_at: who.now,
        },
    )?;
    let details = json!({"id": row.id, "at": to_rfc3339(at), "change": body});
    audit::record(c, who.now, &who.actor, "schedule", "site", slug, &details)?;
    Ok(ScheduledChangeView::of(row, Some(slug), None))
}

/// The outcome of a trial run, carried out of the transaction that rolls it back.
struct Trial(Result<()>);

impl From<diesel::result::Error> for Trial {
    fn from(e: diesel::result::Error) -> Self {
        Self(Err(e.into()))
    }
}

/// Schedule a change of a site.
#[utoipa::path(tag = "schedule", request_body = CreateSiteScheduledChange,
    responses((status = 201, body = ScheduledChangeView), BadRequest, NotFound,
        UnprocessableEntity))]
#[post("/v1/sites/{slug}/scheduled-changes")]
pub async fn create_site_scheduled_change(
    state: web::Data<AppState>, caller: Caller, slug: web::Path<String>, body: Body,
) -> Result<HttpResponse> {
    let who = Asker::of(&state, &caller)?;
    let slug = path_slug("site", &slug)?;
    let b: CreateSiteScheduledChange = body.json()?;
    let st = state.clone();
    let view = state
        .db
        .run(move |c| c.transaction(|c| schedule_site_change(c, &st, &who, &slug, b.clone())))
        .await?;
    Ok(HttpResponse::Created().json(view))
}

/// List a site's scheduled changes, pending and past, newest first.
#[utoipa::path(tag = "schedule", params(PageQuery),
    responses((status = 200, body = Page<ScheduledChangeView>), BadRequest, NotFound))]
#[get("/v1/sites/{slug}/scheduled-changes")]
pub async fn list_site_scheduled_changes(
    state: web::Data<AppState>, caller: Caller, slug: web::Path<String>, q: web::Query<PageQuery>,
) -> Result<HttpResponse> {
    let scope = caller.scope()?;
    let slug = path_slug("site", &slug)?;
    let s2 = slug.clone();
    let read = move |c: &mut DbConn, after, n| {
        let site = sites::get(c, &scope, &s2)?;
        schedule::list_changes(c, site.key().target(), after, n)
    };
    let (limit, cursor) = (q.limit, q.cursor.as_deref());
    let view = move |r| ScheduledChangeView::of(r, Some(&slug), None);
    let page = id_page(&state, limit, cursor, read, |r| r.id, view);
    Ok(HttpResponse::Ok().json(page.await?))
}

/// Cancels a pending change of the site or plan; 409 once it ran.
fn cancel_change(c: &mut DbConn, who: &Asker, target: Target, id: i64) -> Result<ScheduledChange> {
    let row = schedule::get_change(c, target, id)?;
    if row.by_provider && !who.by_provider {
        return Err(Error::Forbidden(
            "the provider scheduled this change; only the provider may cancel it".to_owned(),
        ));
    }
    if !schedule::claim_change(c, target, id, ChangeStatus::Cancelled, who.now, None)? {
        return Err(Error::Conflict(format!(
            "scheduled change {id} is {} and can no longer be cancelled",
            row.status.as_str()
        )));
    }
    let details = json!({"id": id, "at": to_rfc3339(row.at)});
    audit::record(
        c,
        who.now,
        &who.actor,
        "cancel",
        "scheduled_change",
        &id.to_string(),
        &details,
    )?;
    Ok(schedule::get_change(c, target, id)?)
}

/// Cancel a change of a site that has not run (409 once it ran).
#[utoipa::path(tag = "schedule",
    responses((status = 200, body = ScheduledChangeView), NotFound, Conflict))]
#[delete("/v1/sites/{slug}/scheduled-changes/{id}")]
pub async fn cancel_site_scheduled_change(
    state: web::Data<AppState>, caller: Caller, path: web::Path<(String, i64)>,
) -> Result<HttpResponse> {
    let who = Asker::of(&state, &caller)?;
    let (slug, id) = path.into_inner();
    let slug = path_slug("site", &slug)?;
    let view = state
        .db
        .run(move |c| {
            c.transaction(|c| {
                let site = sites::get(c, &who.scope, &slug)?;
                let row = cancel_change(c, &who, site.key().target(), id)?;
                Ok::<_, Error>(ScheduledChangeView::of(row, Some(&slug), None))
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Schedule a change of a plan (admin).
#[utoipa::path(tag = "schedule", request_body = CreatePlanScheduledChange,
    responses((status = 201, body = ScheduledChangeView), BadRequest, NotFound,
        UnprocessableEntity))]
#[post("/v1/plans/{code}/scheduled-changes")]
pub async fn create_plan_scheduled_change(
    state: web::Data<AppState>, caller: Caller, code: web::Path<String>, body: Body,
) -> Result<HttpResponse> {
    caller.require_admin()?;
    let who = Asker::of(&state, &caller)?;
    let code = path_slug("plan", &code)?;
    let b: CreatePlanScheduledChange = body.json()?;
    let changes = Value::Object(b.changes);
    let at = parse_instant(&b.at)
        .and_then(|at| check_future(at, who.now))
        .map_err(|m| Error::invalid_field("at", m))?;
    super::plans::scheduled_plan_edit(&changes)?;
    let view = state
        .db
        .run(move |c| c.transaction(|c| schedule_plan_change(c, &who, &code, at, &changes)))
        .await?;
    Ok(HttpResponse::Created().json(view))
}

fn schedule_plan_change(
    c: &mut DbConn, who: &Asker, code: &str, at: Millis, changes: &Value,
) -> Result<ScheduledChangeView> {
    let plan = plans::get(c, code)?;
    let row = schedule::insert_change(
        c,
        &NewChange {
            target: Target::Plan(plan.id),
            at,
            body: changes.to_string(),
            by_provider: true,
            actor: who.actor.clone(),
            created_at: who.now,
        },
    )?;
    let details = json!({"id": row.id, "at": to_rfc3339(at), "changes": changes});
    audit::record(c, who.now, &who.actor, "schedule", "plan", code, &details)?;
    Ok(ScheduledChangeView::of(row, None, Some(code)))
}

/// List a plan's scheduled changes, pending and past, newest first (admin).
#[utoipa::path(tag = "schedule", params(PageQuery),
    responses((status = 200, body = Page<ScheduledChangeView>), BadRequest, NotFound))]
#[get("/v1/plans/{code}/scheduled-changes")]
pub async fn list_plan_scheduled_changes(
    state: web::Data<AppState>, caller: Caller, code: web::Path<String>, q: web::Query<PageQuery>,
) -> Result<HttpResponse> {
    caller.require_admin()?;
    let code = path_slug("plan", &code)?;
    let c2 = code.clone();
    let read = move |c: &mut DbConn, after, n| {
        let plan = plans::get(c, &c2)?;
        schedule::list_changes(c, Target::Plan(plan.id), after, n)
    };
    let (limit, cursor) = (q.limit, q.cursor.as_deref());
    let view = move |r| ScheduledChangeView::of(r, None, Some(&code));
    let page = id_page(&state, limit, cursor, read, |r| r.id, view);
    Ok(HttpResponse::Ok().json(page.await?))
}

/// Cancel a change of a plan that has not run (admin; 409 once it ran).
#[utoipa::path(tag = "schedule",
    responses((status = 200, body = ScheduledChangeView), NotFound, Conflict))]
#[delete("/v1/plans/{code}/scheduled-changes/{id}")]
pub async fn cancel_plan_scheduled_change(
    state: web::Data<AppState>, caller: Caller, path: web::Path<(String, i64)>,
) -> Result<HttpResponse> {
    caller.require_admin()?;
    let who = Asker::of(&state, &caller)?;
    let (code, id) = path.into_inner();
    let code = path_slug("plan", &code)?;
    let view = state
        .db
        .run(move |c| {
            c.transaction(|c| {
                let plan = plans::get(c, &code)?;
                let row = cancel_change(c, &who, Target::Plan(plan.id), id)?;
                Ok::<_, Error>(ScheduledChangeView::of(row, None, Some(&code)))
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(view))
}
