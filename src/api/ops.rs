//! Liveness, readiness and metrics.

use actix_web::{HttpRequest, HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{Error, Problem, Result};
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(get_healthz)
        .service(get_readyz)
        .service(get_metrics);
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: &'static str,
    /// The release (the crate's version), e.g. `0.2.0`.
    pub version: &'static str,
    /// The newest migration this binary knows, as the database records it
    /// (`20261205000010`).
    pub schema: &'static str,
}

impl Health {
    fn ok() -> Self {
        Self {
            status: "ok",
            version: crate::db::migrations::RELEASE,
            schema: crate::db::migrations::schema_version(),
        }
    }
}

/// Liveness: the process answers, with its release and schema version.
#[utoipa::path(tag = "operations", responses((status = 200, description = "alive", body = Health)))]
#[get("/healthz")]
pub async fn get_healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health::ok())
}

/// Readiness: the database answers and every migration is applied.
#[utoipa::path(tag = "operations",
    responses((status = 200, description = "ready", body = Health),
        (status = 503, description = "not ready", body = Problem,
            content_type = "application/problem+json")))]
#[get("/readyz")]
pub async fn get_readyz(state: web::Data<AppState>) -> Result<HttpResponse> {
    let db = state.db.clone();
    let pending = tokio::task::spawn_blocking(move || db.pending_migrations())
        .await
        .map_err(|e| Error::Internal(anyhow::anyhow!("{e}")))??;
    if pending {
        return Err(Error::Unavailable("migrations are pending".to_owned()));
    }
    Ok(HttpResponse::Ok().json(Health::ok()))
}

/// Prometheus metrics: requests by route and status, latency histograms, pool state,
/// and the business series (sessions, admissions, events, outbox, deliveries).
#[utoipa::path(tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String,
        content_type = "text/plain")))]
#[get("/metrics")]
pub async fn get_metrics(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse> {
    if !state.config.metrics_public {
        let mut payload = actix_web::dev::Payload::None;
        let caller = <Caller as actix_web::FromRequest>::from_request(&req, &mut payload).await?;
        caller.require_admin()?;
    }
    let pool = state.db.pool_state();
    let extra = format!(
        "# HELP headcount_db_pool_connections Open database connections.\n\
         # TYPE headcount_db_pool_connections gauge\n\
         headcount_db_pool_connections {}\n\
         # HELP headcount_db_pool_idle_connections Idle database connections.\n\
         # TYPE headcount_db_pool_idle_connections gauge\n\
         headcount_db_pool_idle_connections {}\n",
        pool.connections, pool.idle_connections
    );
    let now = state.now();
    let pending = state.db.run(crate::db::outbox::pending_by_kind).await?;
    let mut outbox = crate::metrics::Outbox::default();
    for (kind, n, oldest) in pending {
        if let Some(at) = oldest {
            let age = (now - at).max(0) as f64 / 1000.0;
            outbox.oldest_pending_seconds = outbox.oldest_pending_seconds.max(age);
        }
        outbox.pending.insert(kind, n);
    }
    let business = state.metrics.render_business(
        &outbox,
        &state.db.pool_wait,
        state.config.metrics_per_tenant,
    );
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render(&(extra + &business))))
}
