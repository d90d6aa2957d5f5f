//! Temporary boosts: a site's limit raised for a window, opened and closed by the
//! background runner at the window's edges (each a new `config_version` and a push,
//! dated the edge).

use actix_web::{HttpResponse, delete, get, post, web};
use diesel::Connection as _;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::common::{Body, Checks, Page, PageQuery, id_page, path_slug};
use super::problems::{BadRequest, Conflict, NotFound, UnprocessableEntity};
use crate::auth::{Caller, Scope};
use crate::clock::{Millis, to_rfc3339};
use crate::db::schedule::{self, Boost, NewBoost};
use crate::db::{DbConn, audit, boosts, sites};
use crate::domain::ids::SessionLimit;
use crate::domain::schedule::{BoostStatus, Window, check_boost_limit, parse_instant};
use crate::error::{Error, Result};
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(create_boost)
        .service(list_boosts)
        .service(cancel_boost);
}

/// A site's limit raised to `session_limit` from `from` until `until` (RFC 3339;
/// `from` no earlier than a minute ago, `until` after it). Not below what was sold to
/// the site, and not overlapping another of its boosts.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBoost {
    pub session_limit: i64,
    pub from: String,
    pub until: String,
    /// Free text, up to 500 characters (what the boost is for, an order number).
    pub note: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BoostView {
    pub id: i64,
    pub site: String,
    pub session_limit: i64,
    pub from: String,
    pub until: String,
    pub note: Option<String>,
    /// `scheduled`, `active` (the site runs with it), `ended` or `cancelled`.
    #[schema(value_type = String)]
    pub status: BoostStatus,
    pub created_at: String,
    pub cancelled_at: Option<String>,
}

impl BoostView {
    fn of(b: Boost, site: &str) -> Self {
        Self {
            id: b.id,
            site: site.to_owned(),
            session_limit: b.session_limit,
            from: to_rfc3339(b.starts_at),
            until: to_rfc3339(b.ends_at),
            note: b.note,
            status: b.status,
            created_at: to_rfc3339(b.created_at),
            cancelled_at: b.cancelled_at.map(to_rfc3339),
        }
    }
}

impl CreateBoost {
    /// The limit and the window, every wrong field reported.
    fn check(&self, sold: i64, now: Millis) -> Result<(i64, Window)> {
        let mut c = Checks::default();
        let limit = c
            .check("session_limit", SessionLimit::parse(self.session_limit))
            .and_then(|n| c.check("session_limit", check_boost_limit(n.get(), sold)));
        let from = c.check("from", parse_instant(&self.from));
        let until = c.check("until", parse_instant(&self.until));
        let window = match (from, until) {
            (Some(f), Some(u)) => Window::parse(f, u, now)
                .map_err(|errors| {
                    for (field, m) in errors {
                        c.check::<()>(field, Err(m));
                    }
                })
                .ok(),
            _ => None,
        };
        if self.note.as_ref().is_some_and(|n| n.chars().count() > 500) {
            c.check::<()>("note", Err("must be at most 500 characters".to_owned()));
        }
        c.finish()?;
        match (limit, window) {
            (Some(l), Some(w)) => Ok((l, w)),
            _ => Err(Error::bad_request("incomplete boost")),
        }
    }
}

/// Checks the boost against the site and keeps it.
fn add_boost(
    c: &mut DbConn, scope: &Scope, slug: &str, b: &CreateBoost, now: Millis, actor: &str,
) -> Result<BoostView> {
    let site = sites::get(c, scope, slug)?;
    let (limit, window) = b.check(site.sold().session_limit, now)?;
    if let Some(other) = schedule::open_boosts(c, site.key())?
        .into_iter()
        .find(|o| o.window().overlaps(window))
    {
        return Err(Error::invalid_field(
            "from",
            format!(
                "overlaps boost {} ({} until {})",
                other.id,
                to_rfc3339(other.starts_at),
                to_rfc3339(other.ends_at)
            ),
        ));
    }
    let new = NewBoost {
        session_limit: limit,
        starts_at: window.from,
        ends_at: window.until,
        note: b.note.clone(),
        status: BoostStatus::Scheduled,
        actor: actor.to_owned(),
        created_at: now,
    };
    let row = schedule::insert_boost(c, site.key(), &new)?;
    let details = json!({"boost": row.id, "session_limit": limit,
        "from": to_rfc3339(window.from), "until": to_rfc3339(window.until)});
    audit::record(c, now, actor, "boost", "site", slug, &details)?;
    Ok(BoostView::of(row, slug))
}

/// Boost a site's limit for a window (admin).
#[utoipa::path(tag = "schedule", request_body = CreateBoost,
    responses((status = 201, body = BoostView), BadRequest, NotFound, UnprocessableEntity))]
#[post("/v1/sites/{slug}/boosts")]
pub async fn create_boost(
    state: web::Data<AppState>, caller: Caller, slug: web::Path<String>, body: Body,
) -> Result<HttpResponse> {
    let scope = caller.scope()?;
    let slug = path_slug("site", &slug)?;
    let (now, actor) = (state.now(), caller.actor());
    let is_admin = caller.is_admin();
    let b: CreateBoost = body.json()?;
    let view = state
        .db
        .run(move |c| {
            c.transaction(|c| {
                // Another tenant's site is not found; the site's own tenant may not boost.
                sites::get(c, &scope, &slug)?;
                if !is_admin {
                    return Err(Error::Forbidden(
                        "only the provider boosts a site".to_owned(),
                    ));
                }
                add_boost(c, &scope, &slug, &b, now, &actor)
            })
        })
        .await?;
    Ok(HttpResponse::Created().json(view))
}

/// List a site's boosts, newest first (admin, owning tenant).
#[utoipa::path(tag = "schedule", params(PageQuery),
    responses((status = 200, body = Page<BoostView>), BadRequest, NotFound))]
#[get("/v1/sites/{slug}/boosts")]
pub async fn list_boosts(
    state: web::Data<AppState>, caller: Caller, slug: web::Path<String>, q: web::Query<PageQuery>,
) -> Result<HttpResponse> {
    let scope = caller.scope()?;
    let slug = path_slug("site", &slug)?;
    let s2 = slug.clone();
    let read = move |c: &mut DbConn, after, n| {
        let site = sites::get(c, &scope, &s2)?;
        schedule::list_boosts(c, site.key(), after, n)
    };
    let (limit, cursor) = (q.limit, q.cursor.as_deref());
    let page = id_page(
        &state,
        limit,
        cursor,
        read,
        |r| r.id,
        move |r| BoostView::of(r, &slug),
    );
    Ok(HttpResponse::Ok().json(page.await?))
}

/// Cancel a boost (admin): one to come is dropped, an active one ends now and the site
/// returns to its own limit (pushed); 409 once it ended.
#[utoipa::path(tag = "schedule",
    responses((status = 200, body = BoostView), NotFound, Conflict))]
#[delete("/v1/sites/{slug}/boosts/{id}")]
pub async fn cancel_boost(
    state: web::Data<AppState>, caller: Caller, path: web::Path<(String, i64)>,
) -> Result<HttpResponse> {
    caller.require_admin()?;
    let (slug, id) = path.into_inner();
    let slug = path_slug("site", &slug)?;
    let (now, actor) = (state.now(), caller.actor());
    let view = state
        .db
        .run(move |c| {
            let site = sites::get(c, &Scope::Provider, &slug)?;
            let b = schedule::get_boost(c, site.key(), id)?;
            let done = boosts::cancel(c, &b, now, &actor)?.ok_or_else(|| {
                Error::Conflict(format!(
                    "boost {id} is {}: nothing to cancel",
                    b.status.as_str()
                ))
            })?;
            Ok::<_, Error>(BoostView::of(done, &slug))
        })
        .await?;
    state.outbox_wakeup.notify_one();
    Ok(HttpResponse::Ok().json(view))
}
