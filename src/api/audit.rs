//! The audit trail: who changed which plan, tenant, site, limit or token, and when.

use actix_web::{HttpResponse, get, web};

use super::common::{Page, PageQuery, id_page};
use super::problems::BadRequest;
use crate::auth::Caller;
use crate::clock::to_rfc3339;
use crate::db::audit::{self, AuditEntry};
use crate::error::Result;
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(list_audit);
}

/// The audit trail, newest first (admin).
#[utoipa::path(tag = "audit", params(PageQuery),
    responses((status = 200, body = Page<AuditEntry>), BadRequest))]
#[get("/v1/audit")]
pub async fn list_audit(
    state: web::Data<AppState>, caller: Caller, q: web::Query<PageQuery>,
) -> Result<HttpResponse> {
    caller.require_admin()?;
    let (limit, cursor) = (q.limit, q.cursor.as_deref());
    let page = id_page(&state, limit, cursor, audit::list, |r| r.id, entry);
    Ok(HttpResponse::Ok().json(page.await?))
}

fn entry(r: audit::AuditRow) -> AuditEntry {
    AuditEntry {
        id: r.id,
        at: to_rfc3339(r.at),
        actor: r.actor,
        action: r.action,
        entity: r.entity,
        key: r.entity_key,
        detail: serde_json::from_str(&r.detail).unwrap_or_default(),
    }
}
