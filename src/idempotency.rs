//! `Idempotency-Key` on the control API's POSTs (DESIGN §11), as one middleware in
//! front of the routes: a repeat with the same key, path and body within 24 h gets the
//! first answer (status, body, content type) and does nothing again; the same key
//! with another request is a 422. Keys belong to the caller (role, tenant or site,
//! and the token's `sub`). The answers live in the database, so every process on one
//! PostgreSQL sees them; of two requests with one key at once, one runs and the other
//! waits for its answer, up to [`WAIT`], then gets a 409 saying it is still running.
//!
//! An answer that shows a secret or token once is kept, and replayed, without it
//! ([`crate::api::shown_once`]): no secret rests in the stored answers.
//!
//! The agent's endpoints (events, admissions) are left out: they are idempotent by
//! their own rules and are the hot path.

use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpMessage as _, HttpResponse, web};
use sha2::{Digest, Sha256};

use crate::api::common::{SMALL_BODY, read_limited};
use crate::api::shown_once::ReplayBody;
use crate::auth::{Claims, Role};
use crate::db::Db;
use crate::db::idempotency::{self as store, Answer, Claim};
use crate::error::Error;
use crate::state::AppState;

pub const HEADER: &str = "idempotency-key";
/// Set on a replayed answer.
pub const REPLAYED: &str = "idempotent-replayed";
/// How long a request waits for another one with the same key to finish.
pub const WAIT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(50);

/// Whether a POST to `path` takes an `Idempotency-Key`: every control-API POST.
pub fn covered(method: &Method, path: &str) -> bool {
    if method != Method::POST {
        return false;
    }
    let Some(rest) = path.strip_prefix("/v1/") else {
        return false;
    };
    let agent =
        rest.starts_with("sites/") && (rest.ends_with("/events") || rest.ends_with("/admissions"));
    !agent
}

/// A key is 1–255 printable ASCII characters.
pub fn parse_key(value: &[u8]) -> Option<&str> {
    let ok = (1..=255).contains(&value.len()) && value.iter().all(|b| (0x20..=0x7e).contains(b));
    ok.then(|| std::str::from_utf8(value).ok()).flatten()
}

/// Whose key it is: the role, the tenant or site the token names, and its `sub`.
pub fn scope_of(claims: &Claims) -> String {
    let (role, of) = match claims.role {
        Role::Admin => ("admin", ""),
        Role::Tenant => ("tenant", claims.tenant.as_deref().unwrap_or("")),
        Role::Site => ("site", claims.site.as_deref().unwrap_or("")),
    };
    format!("{role}:{of}:{}", claims.sub)
}

/// The request as the key must match it: method, path with query, and body.
pub fn fingerprint(method: &Method, path_and_query: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(method.as_str().as_bytes());
    h.update(b" ");
    h.update(path_and_query.as_bytes());
    h.update(b"\n");
    h.update(body);
    h.finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
}

/// Answers worth replaying: successes and the client's own mistakes, not a timeout,
/// a rate limit or a server failure, which a retry with the same key may get past.
pub fn keep(status: StatusCode) -> bool {
    status.is_success()
        || (status.is_client_error()
            && status != StatusCode::REQUEST_TIMEOUT
            && status != StatusCode::TOO_MANY_REQUESTS)
}

pub async fn middleware(
    mut req: ServiceRequest, next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let keyed = match read_keyed(&mut req).await {
        Ok(Some(keyed)) => keyed,
        Ok(None) => return pass(req, next).await,
        Err(e) => return Ok(req.error_response(e)),
    };
    let req = match claim(req, &keyed).await {
        Ok(req) => req,
        Err(res) => return Ok(res),
    };
    run_and_keep(req, next, keyed).await
}

async fn pass(
    req: ServiceRequest, next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    next.call(req)
        .await
        .map(ServiceResponse::map_into_boxed_body)
}

/// A request that names a key, read off it: the body is taken out to fingerprint it.
struct Keyed {
    state: web::Data<AppState>,
    scope: String,
    key: String,
    print: String,
    body: web::Bytes,
}

/// The key and what it must match; `None` when the request passes untouched (no key,
/// not a covered POST, no token to own the key).
async fn read_keyed(req: &mut ServiceRequest) -> Result<Option<Keyed>, Error> {
    let Some(raw_key) = req.headers().get(HEADER).cloned() else {
        return Ok(None);
    };
    if !covered(req.method(), req.path()) {
        return Ok(None);
    }
    let Some(key) = parse_key(raw_key.as_bytes()).map(str::to_owned) else {
        return Err(Error::bad_field(
            "Idempotency-Key",
            "must be 1 to 255 printable ASCII characters",
        ));
    };
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(None);
    };
    // Without a valid token the handler answers 401 and does nothing: no key to keep.
    let Ok(claims) = crate::auth::extract::request_claims(&state, req.request()).await else {
        return Ok(None);
    };
    let scope = scope_of(&claims);
    // Read as `Body` would (at most 64 KiB within 10 s), so that the handler gets the
    // same bytes again.
    let body = read_limited(req.take_payload(), SMALL_BODY).await?;
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.path().to_owned(), |p| p.as_str().to_owned());
    let print = fingerprint(req.method(), &path, &body);
    Ok(Some(Keyed {
        state,
        scope,
        key,
        print,
        body,
    }))
}

/// Claims the key for this request, waiting up to [`WAIT`] while another one with it
/// runs. `Err` is the answer instead of running: the first request's, or why not.
async fn claim(
    req: ServiceRequest, keyed: &Keyed,
) -> Result<ServiceRequest, ServiceResponse<BoxBody>> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (s, k, p, now) = (
            keyed.scope.clone(),
            keyed.key.clone(),
            keyed.print.clone(),
            keyed.state.now(),
        );
        let claim = match keyed
            .state
            .db
            .write(move |c| store::claim(c, &s, &k, &p, now))
            .await
        {
            Ok(c) => c,
            Err(e) => return Err(req.error_response(Error::from(e))),
        };
        match claim {
            Claim::Claimed => return Ok(req),
            Claim::Answered(answer) => return Err(req.into_response(replay(answer))),
            Claim::Mismatch => {
                return Err(req.error_response(Error::invalid_field(
                    "Idempotency-Key",
                    "was already used within 24 h for another request (another path or body)",
                )));
            }
            Claim::Running if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(POLL).await;
            }
            Claim::Running => {
                let mut res = req.error_response(Error::Conflict(
                    "a request with this Idempotency-Key is still in progress; retry shortly"
                        .to_owned(),
                ));
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return Err(res);
            }
        }
    }
}

/// The key is this request's: run it, then keep its answer or give the key back.
async fn run_and_keep(
    mut req: ServiceRequest, next: Next<impl MessageBody + 'static>, keyed: Keyed,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let mut claim = Held {
        db: keyed.state.db.clone(),
        scope: keyed.scope,
        key: keyed.key,
        settled: false,
    };
    req.set_payload(Payload::from(keyed.body));
    let res = next.call(req).await?;
    let status = res.status();
    if !keep(status) {
        claim.release();
        return Ok(res.map_into_boxed_body());
    }
    let content_type = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // An answer showing a secret once is kept without it.
    let replay = res.response().extensions().get::<ReplayBody>().cloned();
    let (http_req, res) = res.into_parts();
    let (res, body) = res.into_parts();
    let bytes = match actix_web::body::to_bytes(body).await {
        Ok(b) => b,
        Err(e) => {
            claim.release();
            let e: Box<dyn std::error::Error> = e.into();
            return Err(Error::Internal(anyhow::anyhow!("cannot read the answer: {e}")).into());
        }
    };
    let kept = replay.map_or_else(|| bytes.to_vec(), |r| r.0.to_vec());
    claim
        .complete(Answer {
            status: status.as_u16(),
            content_type,
            body: kept,
        })
        .await;
    let res = res.set_body(BoxBody::new(bytes));
    Ok(ServiceResponse::new(http_req, res))
}

fn replay(answer: Answer) -> HttpResponse {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let mut res = HttpResponse::build(status);
    if let Some(ct) = answer
        .content_type
        .and_then(|ct| HeaderValue::from_str(&ct).ok())
    {
        res.insert_header((header::CONTENT_TYPE, ct));
    }
    res.insert_header((REPLAYED, "true"));
    res.body(answer.body)
}

/// A claimed key; released when the request ends without an answer to keep, also
/// when its future is dropped (the client went away mid-request).
struct Held {
    db: Db,
    scope: String,
    key: String,
    settled: bool,
}

impl Held {
    /// Keeps the answer for repeats of the key.
    async fn complete(&mut self, answer: Answer) {
        let (s, k) = (self.scope.clone(), self.key.clone());
        match self
            .db
            .write(move |c| store::complete(c, &s, &k, &answer))
            .await
        {
            Ok(()) => self.settled = true,
            Err(e) => {
                // The work is done; the answer just cannot be kept. A repeat would run it
                // again, so say so in the log.
                tracing::warn!(error = %e, "cannot store the answer of an idempotent request");
                self.release();
            }
        }
    }

    fn release(&mut self) {
        if self.settled {
            return;
        }
        self.settled = true;
        let (db, s, k) = (self.db.clone(), self.scope.clone(), self.key.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = db.write(move |c| store::release(c, &s, &k)).await {
                    tracing::warn!(error = %e, "cannot release an idempotency key");
                }
            });
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_control_posts_only() {
        assert!(covered(&Method::POST, "/v1/plans"));
        assert!(covered(&Method::POST, "/v1/tokens"));
        assert!(covered(&Method::POST, "/v1/sites/s1/webhook-secret"));
        assert!(covered(&Method::POST, "/v1/sites/s1/sessions/kill"));
        assert!(covered(&Method::POST, "/v1/deliveries/7/retry"));
        assert!(!covered(&Method::POST, "/v1/sites/s1/events"));
        assert!(!covered(&Method::POST, "/v1/sites/s1/admissions"));
        assert!(!covered(&Method::PATCH, "/v1/plans/p"));
        assert!(!covered(&Method::POST, "/healthz"));
    }

    #[test]
    fn keeps_final_answers() {
        assert!(keep(StatusCode::CREATED));
        assert!(keep(StatusCode::UNPROCESSABLE_ENTITY));
        assert!(keep(StatusCode::CONFLICT));
        assert!(!keep(StatusCode::TOO_MANY_REQUESTS));
        assert!(!keep(StatusCode::REQUEST_TIMEOUT));
        assert!(!keep(StatusCode::SERVICE_UNAVAILABLE));
    }

    #[test]
    fn keys_and_fingerprints() {
        assert_eq!(parse_key(b"order 42"), Some("order 42"));
        assert_eq!(parse_key(b""), None);
        assert_eq!(parse_key(&[b'k'; 256]), None);
        let a = fingerprint(&Method::POST, "/v1/plans", b"{}");
        assert_eq!(a, fingerprint(&Method::POST, "/v1/plans", b"{}"));
        assert_ne!(a, fingerprint(&Method::POST, "/v1/plans", b"{ }"));
        assert_ne!(a, fingerprint(&Method::POST, "/v1/tenants", b"{}"));
    }
}
