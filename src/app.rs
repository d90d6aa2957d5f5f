//! Builds the HTTP server and starts the background tasks around the shared state.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, Service, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{App, HttpResponse, HttpServer, web};
use tokio::sync::watch;

use crate::error::Error;
pub use crate::state::{AppState, prepare, random_secret};

/// A running server with its background tasks.
pub struct Running {
    pub server: Server,
    pub port: u16,
    pub state: web::Data<AppState>,
    pub stop_jobs: watch::Sender<bool>,
    pub jobs: Vec<tokio::task::JoinHandle<()>>,
}

/// Binds the listener, builds the server and starts the background tasks. The
/// caller awaits `server` (which ends on SIGINT/SIGTERM after in-flight requests).
pub fn start(
    state: AppState, listener: TcpListener, with_signals: bool,
) -> anyhow::Result<Running> {
    let port = listener.local_addr()?.port();
    let workers = state.config.workers;
    let state = web::Data::new(state);
    let data = state.clone();
    let mut server = HttpServer::new(move || app(data.clone()))
        .workers(workers)
        .client_request_timeout(std::time::Duration::from_secs(10))
        .client_disconnect_timeout(std::time::Duration::from_secs(5))
        .max_connections(25_000)
        .shutdown_timeout(20)
        .listen(listener)?;
    if !with_signals {
        server = server.disable_signals();
    }
    let server = server.run();
    let (stop_jobs, jobs) = start_jobs(&state);
    Ok(Running {
        server,
        port,
        state,
        stop_jobs,
        jobs,
    })
}

/// The application each worker runs: the routes behind the middleware stack, with
/// every extractor's rejection in the one error envelope.
fn app(
    data: web::Data<AppState>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(data)
        .configure(extractor_errors)
        .wrap(actix_web::middleware::from_fn(query_text))
        .wrap(actix_web::middleware::from_fn(
            crate::idempotency::middleware,
        ))
        .wrap_fn(|req, srv| {
            let started = Instant::now();
            let state = req.app_data::<web::Data<AppState>>().cloned();
            let method = req.method().to_string();
            let fut = srv.call(req);
            async move {
                let res = fut.await?;
                if let Some(state) = state {
                    let route = res
                        .request()
                        .match_pattern()
                        .unwrap_or_else(|| "unmatched".to_owned());
                    state.metrics.observe(
                        &method,
                        &route,
                        res.status().as_u16(),
                        started.elapsed().as_secs_f64(),
                    );
                }
                Ok(res)
            }
        })
        .wrap(actix_web::middleware::from_fn(
            crate::request_id::middleware,
        ))
        .configure(crate::api::routes)
        .configure(crate::openapi::routes)
        .default_service(web::to(|| async {
            HttpResponse::from_error(Error::NotFound("no such endpoint".to_owned()))
        }))
}

/// Query parameters are text: one holding a control character (a NUL, which
/// PostgreSQL cannot store or compare) is refused with a 400 naming it, before any
/// handler or query sees it.
async fn query_text(
    req: ServiceRequest, next: actix_web::middleware::Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let bad = url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, v)| k.chars().chain(v.chars()).any(char::is_control));
    if let Some((k, _)) = bad {
        return Err(Error::bad_field(k, "must not contain control characters").into());
    }
    next.call(req).await
}

/// A query, path or JSON body that does not parse is answered like any other error.
fn extractor_errors(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::QueryConfig::default()
            .error_handler(|e, _| Error::bad_field("query", e.to_string()).into()),
    )
    .app_data(
        web::PathConfig::default()
            .error_handler(|e, _| Error::NotFound(format!("no such resource ({e})")).into()),
    )
    .app_data(
        web::JsonConfig::default().error_handler(|e, _| Error::bad_request(e.to_string()).into()),
    );
}

/// Starts the push sender, the sampler, retention, the runner of scheduled changes
/// and boosts, and SQLite's checkpoints; they stop when told through the returned
/// sender.
fn start_jobs(
    state: &web::Data<AppState>,
) -> (watch::Sender<bool>, Vec<tokio::task::JoinHandle<()>>) {
    let (stop_jobs, stop_rx) = watch::channel(false);
    let jobs = vec![
        tokio::spawn(crate::push::sender::run(
            Arc::new(crate::push::sender::Pusher::from(&***state)),
            stop_rx.clone(),
        )),
        tokio::spawn(crate::jobs::sampler::run(state.into(), stop_rx.clone())),
        tokio::spawn(crate::jobs::retention::run(state.into(), stop_rx.clone())),
        tokio::spawn(crate::jobs::checkpoint::run(
            state.db.clone(),
            stop_rx.clone(),
        )),
        tokio::spawn(crate::jobs::schedule::run(state.clone(), stop_rx)),
    ];
    (stop_jobs, jobs)
}
