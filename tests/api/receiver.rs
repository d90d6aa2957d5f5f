//! A real local HTTP receiver for pushes that verifies every Standard Webhooks
//! signature, records what arrived and answers as the test scripts it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Received {
    pub webhook_id: String,
    pub body: Value,
    pub signature_ok: bool,
}

/// A request as it arrived; its signature is checked when the test reads it, so that
/// a push arriving before the test has learnt the secret is judged all the same.
#[derive(Debug, Clone)]
struct Raw {
    id: String,
    ts: i64,
    sig: String,
    body: Vec<u8>,
}

#[derive(Default)]
struct Inner {
    secrets: Vec<String>,
    received: Vec<Raw>,
    /// Scripted answers (status, Retry-After); 200 once used up.
    script: VecDeque<(u16, Option<u64>)>,
    /// While set, each request waits for a permit (or the time given) before it is
    /// answered, as a slow site's agent would make it wait.
    gate: Option<(Arc<tokio::sync::Semaphore>, Duration)>,
    /// Requests waiting at the gate now, and the most that ever waited at once.
    held: usize,
    most_held: usize,
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

async fn hook(
    req: HttpRequest, body: web::Bytes, inner: web::Data<Arc<Mutex<Inner>>>,
) -> HttpResponse {
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let id = header("webhook-id");
    let ts: i64 = header("webhook-timestamp").parse().unwrap_or(0);
    let sig = header("webhook-signature");
    wait_at_gate(&inner).await;
    let mut g = inner.lock().unwrap();
    let answer = g.script.pop_front().unwrap_or((200, None));
    if (200..300).contains(&answer.0) {
        g.received.push(Raw {
            id,
            ts,
            sig,
            body: body.to_vec(),
        });
    }
    let mut res = HttpResponse::build(actix_web::http::StatusCode::from_u16(answer.0).unwrap());
    if let Some(s) = answer.1 {
        res.insert_header(("retry-after", s.to_string()));
    }
    res.finish()
}

/// Holds the request while the gate is set: until a permit is given, the gate is
/// opened, or the gate's time is up.
async fn wait_at_gate(inner: &Mutex<Inner>) {
    let gate = {
        let mut g = inner.lock().unwrap();
        let gate = g.gate.clone();
        if gate.is_some() {
            g.held += 1;
            g.most_held = g.most_held.max(g.held);
        }
        gate
    };
    let Some((sem, max)) = gate else { return };
    if let Ok(Ok(permit)) = tokio::time::timeout(max, sem.acquire()).await {
        // One permit lets one request through.
        permit.forget();
    }
    inner.lock().unwrap().held -= 1;
}

/// Checks a `v1a` (ed25519) signature with aws-lc-rs, an implementation independent
/// of the one headcount signs with.
fn verify_v1a(public_key_b64: &str, r: &Raw) -> bool {
    use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let Ok(pk) = b64.decode(public_key_b64) else {
        return false;
    };
    let msg = [
        r.id.as_bytes(),
        b".",
        r.ts.to_string().as_bytes(),
        b".",
        &r.body,
    ]
    .concat();
    r.sig.split(' ').any(|s| {
        s.strip_prefix("v1a,")
            .and_then(|b| b64.decode(b).ok())
            .is_some_and(|sig| {
                UnparsedPublicKey::new(&ED25519, &pk)
                    .verify(&msg, &sig)
                    .is_ok()
            })
    })
}

impl Receiver {
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let data = web::Data::new(inner.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(hook))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Self {
            url: format!("http://127.0.0.1:{port}/hook"),
            inner,
        }
    }

    pub fn trust(&self, secret: &str) {
        self.inner.lock().unwrap().secrets.push(secret.to_owned());
    }

    /// The next answers, in order (then 200).
    pub fn script(&self, answers: &[(u16, Option<u64>)]) {
        self.inner
            .lock()
            .unwrap()
            .script
            .extend(answers.iter().copied());
    }

    /// From now on every request is held until [`Receiver::let_one_through`] or
    /// [`Receiver::open`], or at most `max`: a slow site.
    pub fn hold(&self, max: Duration) {
        self.inner.lock().unwrap().gate = Some((Arc::new(tokio::sync::Semaphore::new(0)), max));
    }

    /// Lets one held (or the next) request through.
    pub fn let_one_through(&self) {
        if let Some((sem, _)) = &self.inner.lock().unwrap().gate {
            sem.add_permits(1);
        }
    }

    /// Lets every held request through and holds no more.
    pub fn open(&self) {
        if let Some((sem, _)) = self.inner.lock().unwrap().gate.take() {
            sem.close();
        }
    }

    /// Requests held now, and the most held at once so far.
    pub fn held(&self) -> (usize, usize) {
        let g = self.inner.lock().unwrap();
        (g.held, g.most_held)
    }

    /// Waits (bounded) until `n` requests are held at once.
    pub async fn wait_held(&self, what: &str, n: usize) {
        for _ in 0..600 {
            if self.held().0 >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("timed out waiting for {what}: {:?} held", self.held());
    }

    /// What was accepted (answered 2xx), each judged against the trusted secrets.
    pub fn received(&self) -> Vec<Received> {
        let g = self.inner.lock().unwrap();
        g.received
            .iter()
            .map(|r| Received {
                webhook_id: r.id.clone(),
                body: serde_json::from_slice(&r.body).unwrap_or(Value::Null),
                signature_ok: g.secrets.iter().any(|s| match s.strip_prefix("whpk_") {
                    Some(pk) => verify_v1a(pk, r),
                    None => headcount::push::signing::verify(s, &r.id, r.ts, &r.body, &r.sig),
                }),
            })
            .collect()
    }

    /// Accepted pushes (signature verified, answered 2xx) of one type.
    pub fn of_type(&self, kind: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.signature_ok && r.body["type"] == kind)
            .collect()
    }

    /// Waits (bounded) until `pred` holds over what arrived.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        for _ in 0..600 {
            let r = self.received();
            if pred(&r) {
                return r;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!(
            "timed out waiting for {what}; received {:?}",
            self.received()
        );
    }
}
