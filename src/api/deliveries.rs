//! The push log: every push to a site with every attempt, and manual retries.

use actix_web::{HttpResponse, get, post, web};
use diesel::Connection as _;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::common::{Page, id_page};
use super::problems::{BadRequest, Conflict, NotFound};
use super::sites::visible_site;
use crate::auth::Caller;
use crate::clock::to_rfc3339;
use crate::db::DbConn;
use crate::db::outbox::{self, AttemptRow, OutboxRow};
use crate::error::{Error, Result};
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(list_deliveries).service(retry_delivery);
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    pub at: String,
    /// The receiver's HTTP status, if it answered.
    pub status_code: Option<i64>,
    pub duration_ms: i64,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    pub id: i64,
    /// The `webhook-id` header of every attempt; receivers dedupe on it.
    pub webhook_id: String,
    /// `site.config_changed` or `session.kill`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `pending`, `delivered`, `failed` or `superseded`.
    pub status: String,
    pub attempts: Vec<AttemptView>,
    pub next_attempt_at: Option<String>,
    pub created_at: String,
    pub finished_at: Option<String>,
    pub payload: serde_json::Value,
}

fn view((r, attempts): (OutboxRow, Vec<AttemptRow>)) -> DeliveryView {
    DeliveryView {
        id: r.id,
        webhook_id: r.webhook_id,
        kind: r.kind,
        next_attempt_at: (r.status == outbox::STATUS_PENDING)
            .then(|| to_rfc3339(r.next_attempt_at)),
        status: r.status,
        attempts: attempts
            .into_iter()
            .map(|a| AttemptView {
                at: to_rfc3339(a.attempted_at),
                status_code: a.status_code,
                duration_ms: a.duration_ms,
                error: a.error,
            })
            .collect(),
        created_at: to_rfc3339(r.created_at),
        finished_at: r.finished_at.map(to_rfc3339),
        payload: serde_json::from_str(&r.payload).unwrap_or_default(),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// `pending`, `delivered`, `failed` or `superseded`.
    #[param(pattern = "^(pending|delivered|failed|superseded)$")]
    pub status: Option<String>,
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// The site's pushes, newest first, each with every attempt.
#[utoipa::path(tag = "deliveries", params(("slug" = String, Path), DeliveriesQuery),
    responses((status = 200, body = Page<DeliveryView>), BadRequest, NotFound))]
#[get("/v1/sites/{slug}/deliveries")]
pub async fn list_deliveries(
    state: web::Data<AppState>, caller: Caller, slug: web::Path<String>,
    q: web::Query<DeliveriesQuery>,
) -> Result<HttpResponse> {
    let site = visible_site(&state, &caller, &slug).await?;
    if let Some(s) = &q.status
        && !matches!(
            s.as_str(),
            "pending" | "delivered" | "failed" | "superseded"
        )
    {
        return Err(Error::bad_field(
            "status",
            "must be pending, delivered, failed or superseded",
        ));
    }
    let status = q.status.clone();
    let key = site.key();
    let read = move |c: &mut DbConn, before, n| {
        outbox::list_for_site(c, key, status.as_deref(), before, n)
    };
    let (limit, cursor) = (q.limit, q.cursor.as_deref());
    let page = id_page(&state, limit, cursor, read, |r| r.0.id, view);
    Ok(HttpResponse::Ok().json(page.await?))
}

/// Send a failed push again, with a fresh retry schedule.
#[utoipa::path(tag = "deliveries", params(("id" = i64, Path)),
    responses((status = 200, body = DeliveryView), NotFound, Conflict))]
#[post("/v1/deliveries/{id}/retry")]
pub async fn retry_delivery(
    state: web::Data<AppState>, caller: Caller, id: web::Path<String>,
) -> Result<HttpResponse> {
    let scope = caller.scope()?;
    let id: i64 = id.parse().map_err(|_| Error::not_found("delivery"))?;
    let now = state.now();
    let row = state
        .db
        .run(move |c| c.transaction(|c| outbox::retry_visible(c, &scope, id, now)))
        .await?;
    state.outbox_wakeup.notify_one();
    Ok(HttpResponse::Ok().json(view(row)))
}
