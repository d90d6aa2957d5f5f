//! Request ids: every response carries `X-Request-Id` (the client's own when it is
//! 1–128 printable ASCII characters, else a new one), every problem body its
//! `request_id`, and every log line written while the request runs the id, through a
//! tracing span around the whole request.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument as _;

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled, if any (read by the problem bodies).
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// A client's id is kept when it is 1–128 printable ASCII characters (no spaces), the
/// rule session ids follow; anything else could smuggle text into logs.
pub fn accept(value: &[u8]) -> Option<&str> {
    let ok = (1..=128).contains(&value.len()) && value.iter().all(|b| (0x21..=0x7e).contains(b));
    ok.then(|| std::str::from_utf8(value).ok()).flatten()
}

/// A new id: a UUIDv7, so ids sort by the time they were made.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The middleware (outermost, so that the other middleware log inside the span too).
pub async fn middleware(
    req: ServiceRequest, next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get(&HEADER)
        .and_then(|v| accept(v.as_bytes()))
        .map_or_else(new_id, str::to_owned);
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.path(),
    );
    let started = Instant::now();
    // No clone of the request may outlive this point: routing needs it unshared.
    // Handlers turn their errors into responses themselves, inside the scope, so
    // problem bodies carry the id; an error escaping the services is passed on.
    let handled = REQUEST_ID.scope(id.clone(), async move {
        next.call(req)
            .await
            .map(|res| res.map_into_left_body::<()>())
    });
    let mut res = handled.instrument(span.clone()).await?;
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(HEADER, v);
    }
    span.in_scope(|| {
        tracing::debug!(
            status = res.status().as_u16(),
            elapsed_ms = started.elapsed().as_micros() as f64 / 1000.0,
            "request finished"
        );
    });
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_printable_ascii_up_to_128() {
        assert_eq!(accept(b"abc-123_X:/"), Some("abc-123_X:/"));
        assert_eq!(accept(&[b'a'; 128]).map(str::len), Some(128));
        assert_eq!(accept(&[b'a'; 129]), None);
        assert_eq!(accept(b""), None);
        assert_eq!(accept(b"has space"), None);
        assert_eq!(accept(b"tab\there"), None);
        assert_eq!(accept("é".as_bytes()), None);
    }

    #[test]
    fn new_ids_are_accepted_ids() {
        let id = new_id();
        assert_eq!(accept(id.as_bytes()), Some(id.as_str()));
    }
}
