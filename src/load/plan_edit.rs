//! `plan-edit`: one edit of a plan that `--sites` sites share. Every site has a webhook
//! to a receiver inside the load tool; the edit bumps every site's config version and
//! queues one `site.config_changed` push each. The run reports how long the `PATCH`
//! took to answer and how long until the receiver held every site's new config, each
//! push checked with headcount's own signature verification.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use super::fleet;
use super::hooks::{Pushes, serve_hooks, signed_by};
use super::options::{Options, Scenario};
use super::report::{Live, Outcome, PlanEditReport, Recorder, Shape, Summary};

/// The plan's limit before the edit; the edit raises it by one, so that a push
/// carrying the new limit can only come from the edit.
const LIMIT_BEFORE: i64 = 100;
/// How long to wait for the creation pushes to drain before editing, so that the
/// edit's pushes do not queue behind them.
const CREATION_WAIT: Duration = Duration::from_secs(180);
/// How long to wait for the edit's pushes: well past the 10 s goal, so that a slow
/// run still yields a figure rather than a timeout.
const PUSH_WAIT: Duration = Duration::from_secs(120);

/// The webhook receiver's tally.
#[derive(Default)]
struct Receiver {
    /// Early creation pushes are acknowledged unchecked, as they are not what is
    /// measured.
    pushes: Pushes,
    /// The limit the edit sets; 0 until the edit is sent.
    edited_limit: AtomicI64,
    /// Sites whose creation push arrived.
    created: Mutex<HashSet<String>>,
    /// When each site's push with the edited config first arrived, verified.
    edited: Mutex<HashMap<String, Instant>>,
}

impl Receiver {
    fn created(&self) -> usize {
        self.created.lock().map_or(0, |s| s.len())
    }

    fn edited(&self) -> usize {
        self.edited.lock().map_or(0, |s| s.len())
    }
}

async fn receive(
    rx: web::Data<Receiver>, site: web::Path<String>, req: HttpRequest, body: web::Bytes,
) -> HttpResponse {
    let arrived = Instant::now();
    let secret = rx.pushes.arrived(&site);
    let msg: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if msg["type"] != "site.config_changed" {
        return HttpResponse::NoContent().finish();
    }
    let edited_limit = rx.edited_limit.load(Ordering::Relaxed);
    let Some(secret) = secret else {
        if edited_limit == 0 {
            rx.pushes.count_early();
            if let Ok(mut c) = rx.created.lock() {
                c.insert(site.into_inner());
            }
            return HttpResponse::NoContent().finish();
        }
        // Every secret is known before the edit: a push for an unknown site now is
        // not one of ours.
        rx.pushes.count_bad();
        return HttpResponse::Unauthorized().finish();
    };
    if !signed_by(&secret, &req, &body) {
        rx.pushes.count_bad();
        return HttpResponse::Unauthorized().finish();
    }
    let limit = msg["data"]["session_limit"].as_i64().unwrap_or(0);
    if edited_limit != 0 && limit == edited_limit {
        if let Ok(mut e) = rx.edited.lock() {
            e.entry(site.into_inner()).or_insert(arrived);
        }
    } else if let Ok(mut c) = rx.created.lock() {
        c.insert(site.into_inner());
    }
    HttpResponse::NoContent().finish()
}

pub async fn run(client: &reqwest::Client, opts: &Options) -> Result<Summary, String> {
    let rx = web::Data::new(Receiver::default());
    let (port, receiver) = serve_hooks(&rx, receive)?;
    let result = drive(client, opts, port, &rx).await;
    receiver.stop(false).await;
    result
}

async fn drive(
    client: &reqwest::Client, opts: &Options, port: u16, rx: &web::Data<Receiver>,
) -> Result<Summary, String> {
    let admin = opts.token.clone().unwrap_or_default();
    let setup = Instant::now();
    let prefix = fleet::unique_prefix();
    let hooks = format!("http://127.0.0.1:{port}/hooks/");
    let spec = fleet::Spec {
        sites: opts.sites,
        plan: json!({"session_limit": LIMIT_BEFORE, "over_limit": "reject"}),
        webhook_base: Some(&hooks),
        // The sites only receive pushes here: no agent calls, no tokens.
        tokens: false,
    };
    let fleet = fleet::create(client, &opts.url, &admin, &prefix, spec).await?;
    rx.pushes.learn(fleet.webhook_secrets());
    let waiting = Instant::now();
    while rx.created() < opts.sites && waiting.elapsed() < CREATION_WAIT {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let creation_pushes = rx.created() as u64;
    let setup_seconds = setup.elapsed().as_secs_f64();

    let edited_limit = LIMIT_BEFORE + 1;
    rx.edited_limit.store(edited_limit, Ordering::Relaxed);
    let url = format!("{}/v1/plans/{}", opts.url, fleet::plan_code(&prefix));
    let sent = Instant::now();
    fleet::call(
        client,
        reqwest::Method::PATCH,
        &url,
        &admin,
        Some(&json!({"session_limit": edited_limit})),
    )
    .await?;
    let patch = sent.elapsed();
    let mut rec = Recorder::with_capacity(1);
    rec.record(sent, Outcome::Ok { events: 0 }, &Live::default());
    while rx.edited() < opts.sites && sent.elapsed() < PUSH_WAIT {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (delivered, last) = rx
        .edited
        .lock()
        .map_or((0, None), |e| (e.len() as u64, e.values().max().copied()));
    let mut summary = rec.summary(
        Scenario::PlanEdit.name(),
        sent.elapsed(),
        Shape {
            concurrency: 1,
            sites: opts.sites,
            sessions: 0,
            batch: 0,
        },
    );
    summary.prefix = prefix;
    let (received, bad, early) = rx.pushes.counts();
    summary.plan_edit = Some(PlanEditReport {
        setup_seconds: round3(setup_seconds),
        creation_pushes,
        patch_ms: round3(patch.as_secs_f64() * 1000.0),
        pushes_expected: opts.sites as u64,
        pushes_delivered: delivered,
        delivered_ms: round3(
            last.map_or(Duration::ZERO, |t| t.saturating_duration_since(sent))
                .as_secs_f64()
                * 1000.0,
        ),
        pushes_received: received,
        pushes_bad_signature: bad,
        pushes_early: early,
    });
    Ok(summary)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
