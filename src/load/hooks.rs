//! The webhook receiver that `simulate` and `plan-edit` run on loopback: it checks
//! every push with headcount's own signature verification, as a site would.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::dev::ServerHandle;
use actix_web::{App, FromRequest, Handler, HttpRequest, HttpServer, Responder, web};

/// What every receiver counts, and the secrets it checks with.
#[derive(Default)]
pub(super) struct Pushes {
    /// Site slug → webhook secret, filled once the sites exist.
    secrets: RwLock<HashMap<String, String>>,
    received: AtomicU64,
    bad: AtomicU64,
    /// Pushes that came before the site's creation reply, so before its secret was
    /// known here.
    early: AtomicU64,
}

impl Pushes {
    pub(super) fn learn(&self, secrets: impl Iterator<Item = (String, String)>) {
        if let Ok(mut m) = self.secrets.write() {
            m.extend(secrets);
        }
    }

    /// Counts an arrival and returns the site's secret, if known yet.
    pub(super) fn arrived(&self, site: &str) -> Option<String> {
        self.received.fetch_add(1, Ordering::Relaxed);
        self.secrets.read().ok().and_then(|m| m.get(site).cloned())
    }

    pub(super) fn count_bad(&self) {
        self.bad.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_early(&self) {
        self.early.fetch_add(1, Ordering::Relaxed);
    }

    /// Received, bad signature, early.
    pub(super) fn counts(&self) -> (u64, u64, u64) {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        (n(&self.received), n(&self.bad), n(&self.early))
    }
}

pub(super) fn header<'r>(req: &'r HttpRequest, name: &str) -> &'r str {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// Whether a push carries a valid Standard Webhooks signature by `secret`, checked
/// with headcount's own verification, as a site's receiver would check it.
pub(super) fn signed_by(secret: &str, req: &HttpRequest, body: &[u8]) -> bool {
    header(req, "webhook-timestamp")
        .parse::<i64>()
        .is_ok_and(|ts| {
            crate::push::signing::verify(
                secret,
                header(req, "webhook-id"),
                ts,
                body,
                header(req, "webhook-signature"),
            )
        })
}

/// Starts a webhook receiver on a free local port: `receive` answers
/// `POST /hooks/{site}` with `rx` as its data. Returns the port and what stops it.
pub(super) fn serve_hooks<R, F, Args>(
    rx: &web::Data<R>, receive: F,
) -> Result<(u16, ServerHandle), String>
where
    R: Send + Sync + 'static,
    F: Handler<Args> + Send,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    let failed = |e: std::io::Error| format!("webhook receiver: {e}");
    let listener = TcpListener::bind("127.0.0.1:0").map_err(failed)?;
    let port = listener.local_addr().map_err(failed)?.port();
    let data = rx.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/hooks/{site}", web::post().to(receive.clone()))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .map_err(failed)?
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok((port, handle))
}
