//! `simulate`: sites whose users log in (an admission, then `session.started`), stay
//! active for a while, and then log out or abandon their session. Some logins are
//! reported with a past time, as an agent catching up would, so that dangling
//! sessions exist and the limit policy (`evict_dangling`) ends them; the resulting
//! `session.kill` pushes, and the `site.config_changed` pushes of a limit change made
//! mid-run, arrive at a local webhook receiver that checks every signature.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{Value, json};

use super::fleet::{self, Fleet};
use super::hooks::{Pushes, header, serve_hooks, signed_by};
use super::options::{Options, Scenario};
use super::report::{Live, Outcome, Recorder, Shape, SimulateReport, Summary};
use super::workload::{Gate, progress};

/// The plan's idle timeout: the smallest the API accepts, so that abandoned sessions
/// turn dangling soon.
const IDLE_TIMEOUT_SECONDS: i64 = 60;
/// Share of logins reported with a past time (dangling at once).
const STALE_SHARE: f64 = 0.2;
/// Share of active users who log out rather than abandon their session.
const LOGOUT_SHARE: f64 = 0.6;
/// How long to wait after the run for the pushes still under way.
const PUSH_GRACE: Duration = Duration::from_secs(10);

/// The webhook receiver's tally.
#[derive(Default)]
struct Receiver {
    /// Early pushes are answered 503, so that they come again once the secret is known.
    pushes: Pushes,
    /// Verified `webhook-id`s: pushes are sent at least once, so count each once.
    seen: Mutex<HashSet<String>>,
    by_type: Mutex<BTreeMap<String, u64>>,
}

impl Receiver {
    fn verified(&self) -> u64 {
        self.seen.lock().map_or(0, |s| s.len() as u64)
    }
}

async fn receive(
    rx: web::Data<Receiver>, site: web::Path<String>, req: HttpRequest, body: web::Bytes,
) -> HttpResponse {
    let id = header(&req, "webhook-id").to_owned();
    let Some(secret) = rx.pushes.arrived(&site) else {
        // A push for a site whose creation reply has not come back yet: its secret
        // is not known here yet. Ask for a retry rather than call it forged.
        rx.pushes.count_early();
        return HttpResponse::ServiceUnavailable()
            .insert_header(("retry-after", "1"))
            .finish();
    };
    if !signed_by(&secret, &req, &body) {
        rx.pushes.count_bad();
        return HttpResponse::Unauthorized().finish();
    }
    let first = rx.seen.lock().is_ok_and(|mut s| s.insert(id));
    if first {
        let kind = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["type"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "unknown".to_owned());
        if let Ok(mut m) = rx.by_type.lock() {
            *m.entry(kind).or_default() += 1;
        }
    }
    HttpResponse::NoContent().finish()
}

/// The users' fate, shared by the clients.
#[derive(Default)]
struct Tally {
    logins: AtomicU64,
    admitted: AtomicU64,
    refused: AtomicU64,
    evicted: AtomicU64,
    logouts: AtomicU64,
    abandoned: AtomicU64,
    stale: AtomicU64,
}

impl Tally {
    /// The users' fate and the receiver's count of the pushes it caused.
    fn report(&self, rx: &Receiver, config_changes: u64, expected: u64) -> SimulateReport {
        let (received, bad, early) = rx.pushes.counts();
        SimulateReport {
            logins: self.logins.load(Ordering::Relaxed),
            admitted: self.admitted.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
            logouts: self.logouts.load(Ordering::Relaxed),
            abandoned: self.abandoned.load(Ordering::Relaxed),
            stale_logins: self.stale.load(Ordering::Relaxed),
            config_changes,
            pushes_expected: expected,
            pushes_received: received,
            pushes_verified: rx.verified(),
            pushes_bad_signature: bad,
            pushes_early: early,
            pushes_by_type: rx.by_type.lock().map(|m| m.clone()).unwrap_or_default(),
        }
    }
}

struct Ctx {
    client: reqwest::Client,
    base: String,
    fleet: Fleet,
    sessions: usize,
    seed: u64,
    gate: Gate,
    live: Arc<Live>,
    tally: Tally,
    next_session: AtomicU64,
}

pub async fn run(
    client: &reqwest::Client, opts: &Options, window: Duration,
) -> Result<Summary, String> {
    let admin = opts.token.clone().unwrap_or_default();
    let rx = web::Data::new(Receiver::default());
    let (port, receiver) = serve_hooks(&rx, receive)?;
    let result = drive(client, opts, window, &admin, port, &rx).await;
    receiver.stop(false).await;
    result
}

async fn drive(
    client: &reqwest::Client, opts: &Options, window: Duration, admin: &str, port: u16,
    rx: &web::Data<Receiver>,
) -> Result<Summary, String> {
    let ctx = Arc::new(setup(client, opts, window, admin, port, rx).await?);
    let done = Arc::new(AtomicBool::new(false));
    if opts.progress {
        progress(ctx.live.clone(), done.clone(), Scenario::Simulate.name());
    }
    let started = ctx.gate.open();
    let changer = tokio::spawn(change_limits_midway(
        ctx.clone(),
        admin.to_owned(),
        window,
        opts.requests,
        done.clone(),
    ));
    let users: Vec<_> = (0..opts.concurrency)
        .map(|i| {
            let ctx = ctx.clone();
            tokio::spawn(async move { user_loop(ctx, i as u64).await })
        })
        .collect();
    let mut total = Recorder::default();
    for u in users {
        total.merge(
            u.await
                .map_err(|e| format!("a simulated user failed: {e}"))?,
        );
    }
    let elapsed = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let config_changes = changer.await.unwrap_or(0);

    let expected = ctx.tally.evicted.load(Ordering::Relaxed) + config_changes;
    let waiting = Instant::now();
    while rx.verified() < expected && waiting.elapsed() < PUSH_GRACE {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut summary = total.summary(
        Scenario::Simulate.name(),
        elapsed,
        Shape {
            concurrency: opts.concurrency,
            sites: opts.sites,
            sessions: opts.sessions,
            batch: 1,
        },
    );
    summary.prefix.clone_from(&ctx.fleet.prefix);
    summary.simulate = Some(ctx.tally.report(rx, config_changes, expected));
    Ok(summary)
}

/// Creates the sites, with the receiver as their webhook, and tells the receiver
/// their secrets.
async fn setup(
    client: &reqwest::Client, opts: &Options, window: Duration, admin: &str, port: u16,
    rx: &Receiver,
) -> Result<Ctx, String> {
    let plan = json!({
        "session_limit": opts.sessions,
        "over_limit": "evict_dangling",
        "idle_timeout_seconds": IDLE_TIMEOUT_SECONDS,
    });
    let prefix = fleet::unique_prefix();
    let hooks = format!("http://127.0.0.1:{port}/hooks/");
    let fleet = fleet::create(
        client,
        &opts.url,
        admin,
        &prefix,
        fleet::Spec {
            sites: opts.sites,
            plan,
            webhook_base: Some(&hooks),
            tokens: true,
        },
    )
    .await?;
    rx.pushes.learn(fleet.webhook_secrets());
    Ok(Ctx {
        client: client.clone(),
        base: opts.url.clone(),
        fleet,
        sessions: opts.sessions,
        seed: opts.seed,
        gate: Gate::new(window, opts.requests),
        live: Arc::new(Live::default()),
        tally: Tally::default(),
        next_session: AtomicU64::new(0),
    })
}

/// A third into the run, the operator lowers the limit of a few sites by one: each
/// change bumps the site's config version and queues a `site.config_changed` push.
async fn change_limits_midway(
    ctx: Arc<Ctx>, admin: String, window: Duration, budget: Option<u64>, done: Arc<AtomicBool>,
) -> u64 {
    let start = Instant::now();
    loop {
        if done.load(Ordering::Relaxed) {
            return 0;
        }
        let by_time = start.elapsed() >= window / 3;
        let by_count = budget.is_some_and(|b| ctx.live.requests.load(Ordering::Relaxed) >= b / 3);
        if by_time || by_count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let limit = ctx.sessions.saturating_sub(1).max(1);
    let mut changed = 0;
    for s in ctx.fleet.sites.iter().take(3) {
        let r = fleet::call(
            &ctx.client,
            reqwest::Method::PATCH,
            &format!("{}/v1/sites/{}", ctx.base, s.slug),
            &admin,
            Some(&json!({"session_limit": limit})),
        )
        .await;
        if r.is_ok() {
            changed += 1;
        }
    }
    changed
}

/// One simulated user after another on this client: log in, stay a while, leave.
async fn user_loop(ctx: Arc<Ctx>, index: u64) -> Recorder {
    let mut rng = StdRng::seed_from_u64(fleet::mix(ctx.seed, index, 0x51a1));
    let mut rec = Recorder::with_capacity(1024);
    let t = &ctx.tally;
    while ctx.gate.take() {
        let site = rng.random_range(0..ctx.fleet.sites.len());
        let n = ctx.next_session.fetch_add(1, Ordering::Relaxed) as usize;
        let session = fleet::session_id(ctx.seed, site, n);
        let user = rng.random_range(0..ctx.sessions * 2);
        let stale = rng.random_bool(STALE_SHARE);
        let now = chrono::Utc::now();
        let at = if stale {
            let back = rng.random_range(IDLE_TIMEOUT_SECONDS + 60..IDLE_TIMEOUT_SECONDS + 3600);
            fleet::rfc3339(now - chrono::Duration::seconds(back))
        } else {
            fleet::rfc3339(now)
        };
        t.logins.fetch_add(1, Ordering::Relaxed);
        if !admit(&ctx, &mut rec, site, &session, user, &at).await {
            continue;
        }
        // The agent reports the login it was just allowed.
        if !event(&ctx, &mut rec, site, "session.started", &session, &at, user).await {
            t.abandoned.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if stale {
            t.stale.fetch_add(1, Ordering::Relaxed);
            t.abandoned.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let left = if stay_then_leave(&ctx, &mut rec, &mut rng, site, &session, user).await {
            &t.logouts
        } else {
            &t.abandoned
        };
        left.fetch_add(1, Ordering::Relaxed);
    }
    rec
}

/// Asks to admit the user's login; true when admitted.
async fn admit(
    ctx: &Ctx, rec: &mut Recorder, site: usize, session: &str, user: usize, at: &str,
) -> bool {
    let t = &ctx.tally;
    let body = format!("{{\"session\":\"{session}\",\"user\":\"user-{user}\",\"at\":\"{at}\"}}");
    let started = Instant::now();
    match post(ctx, site, "admissions", body).await {
        Ok(v) if v["admitted"] == json!(true) => {
            let evicted = v["evicted"].as_array().map_or(0, Vec::len) as u64;
            t.evicted.fetch_add(evicted, Ordering::Relaxed);
            t.admitted.fetch_add(1, Ordering::Relaxed);
            rec.record(started, Outcome::Ok { events: 1 }, &ctx.live);
            true
        }
        Ok(_) => {
            t.refused.fetch_add(1, Ordering::Relaxed);
            rec.record(started, Outcome::Refused, &ctx.live);
            false
        }
        Err(o) => {
            rec.record(started, o, &ctx.live);
            false
        }
    }
}

/// A logged-in user's activity, then a logout or nothing; true when it logged out.
async fn stay_then_leave(
    ctx: &Ctx, rec: &mut Recorder, rng: &mut StdRng, site: usize, session: &str, user: usize,
) -> bool {
    for _ in 0..rng.random_range(1..=3) {
        tokio::time::sleep(Duration::from_millis(rng.random_range(5..40))).await;
        let now = fleet::rfc3339(chrono::Utc::now());
        if !event(ctx, rec, site, "session.activity", session, &now, user).await {
            return false;
        }
    }
    if !rng.random_bool(LOGOUT_SHARE) {
        return false;
    }
    let now = fleet::rfc3339(chrono::Utc::now());
    event(ctx, rec, site, "session.ended", session, &now, user).await
}

/// Sends one event if the run allows one more request; false when it does not or when
/// the event failed.
async fn event(
    ctx: &Ctx, rec: &mut Recorder, site: usize, kind: &str, session: &str, at: &str, user: usize,
) -> bool {
    if !ctx.gate.take() {
        return false;
    }
    let mut body = String::from("{\"events\":[");
    fleet::push_event(&mut body, kind, session, at, user);
    body.push_str("]}");
    let started = Instant::now();
    match post(ctx, site, "events", body).await {
        Ok(v) if v["rejected"].as_array().is_some_and(Vec::is_empty) => {
            rec.record(started, Outcome::Ok { events: 1 }, &ctx.live);
            true
        }
        Ok(_) => {
            rec.record(started, Outcome::Rejected("rejected-events"), &ctx.live);
            false
        }
        Err(o) => {
            rec.record(started, o, &ctx.live);
            false
        }
    }
}

async fn post(ctx: &Ctx, site: usize, what: &str, body: String) -> Result<Value, Outcome> {
    let s = &ctx.fleet.sites[site];
    let res = ctx
        .client
        .post(format!("{}/v1/sites/{}/{what}", ctx.base, s.slug))
        .bearer_auth(&s.token)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|_| Outcome::Transport)?;
    let status = res.status();
    let bytes = res.bytes().await.map_err(|_| Outcome::Transport)?;
    if !status.is_success() {
        return Err(Outcome::Status(status.as_u16()));
    }
    serde_json::from_slice(&bytes).map_err(|_| Outcome::Rejected("malformed-reply"))
}
