//! Goal V2: another tenant's admissions while one tenant floods the server with
//! expensive reads. Tenant `big` (100,000 sessions and 10,000 refusals in March, as
//! goal V1 seeds them) keeps 8 requests running at once, round the four kinds of
//! expensive read (advice with the cache emptied, the hourly history of the month, its
//! chart, the billing export), retrying a 429 after 100 ms as a client honouring
//! `Retry-After` loosely would, from a thread of its own. Tenant `light` makes
//! admissions from 4 clients, alone and then during the flood, three times; the line
//! compares the medians of their p99. Ignored: run by `bench/fairness`, which prints
//! the `V2` line.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::json;

use crate::advice_bench::big_month;
use crate::helpers::{TestApp, is_pg, spawn};

/// Admissions per client in each measured run, and clients.
const ADMISSIONS: usize = 1000;
const CLIENTS: usize = 4;
/// The flooding tenant's requests in flight.
const READERS: usize = 8;

const READS: [&str; 4] = [
    "/v1/sites/big/advice?period=2031-03",
    "/v1/sites/big/usage/history?from=2031-03-01T00:00:00Z&to=2031-04-01T00:00:00Z&step=hour",
    "/v1/sites/big/usage/chart.svg?from=2031-03-01T00:00:00Z&to=2031-04-01T00:00:00Z&step=hour",
    "/v1/billing/export?period=2031-03",
];

/// The admission latencies of `CLIENTS` clients making `ADMISSIONS` each, in ms.
async fn admissions(app: &TestApp, token: &str, round: &str) -> Vec<f64> {
    let runs = (0..CLIENTS).map(|client| {
        let (url, http, token) = (app.url.clone(), app.client.clone(), token.to_owned());
        let round = round.to_owned();
        async move {
            let mut waits = Vec::with_capacity(ADMISSIONS);
            for n in 0..ADMISSIONS {
                let t = Instant::now();
                let r = http
                    .post(format!("{url}/v1/sites/light/admissions"))
                    .bearer_auth(&token)
                    .json(&json!({"session": format!("{round}-{client}-{n}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::OK);
                let body: serde_json::Value = r.json().await.unwrap();
                assert_eq!(body["admitted"], true, "{body}");
                waits.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            waits
        }
    });
    let mut all: Vec<f64> = join_all(runs).await.into_iter().flatten().collect();
    all.sort_by(f64::total_cmp);
    all
}

fn p(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

/// Rounds of "alone, then during the flood"; each figure is the median of its rounds.
const ROUNDS: usize = 3;

/// Tenant `big`'s readers, on a thread and runtime of their own as another machine's
/// client would be: reading their large answers does not delay the admissions' client.
struct Flood {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Flood {
    fn start(app: &TestApp, token: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (done, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (url, token, state) = (app.url.clone(), token.to_owned(), app.state.clone());
        let (s, d, r) = (stop.clone(), done.clone(), refused.clone());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let http = reqwest::Client::new();
                let readers = (0..READERS).map(|k| {
                    let (http, url, token, state) =
                        (http.clone(), url.clone(), token.clone(), state.clone());
                    let (stop, done, refused) = (s.clone(), d.clone(), r.clone());
                    async move {
                        let mut n = k;
                        while !stop.load(Ordering::Relaxed) {
                            let read = READS[n % READS.len()];
                            if read.contains("/advice") {
                                state.advice_cache.clear();
                            }
                            let r = http
                                .get(format!("{url}{read}"))
                                .bearer_auth(&token)
                                .send()
                                .await
                                .unwrap();
                            if r.status() == StatusCode::TOO_MANY_REQUESTS {
                                refused.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                continue;
                            }
                            assert_eq!(r.status(), StatusCode::OK, "{read}");
                            let _ = r.bytes().await;
                            done.fetch_add(1, Ordering::Relaxed);
                            n += 1;
                        }
                    }
                });
                join_all(readers).await;
            });
        });
        Self {
            stop,
            done,
            refused,
            thread,
        }
    }

    /// Stops the readers; the reads answered and refused.
    fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        (
            self.done.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }
}

/// One round's admission latencies, alone and during the flood, in ms (sorted).
type Round = (Vec<f64>, Vec<f64>);

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

#[tokio::test]
#[ignore = "benchmark: bench/fairness"]
async fn v2_other_tenants_admissions_during_a_flood_of_expensive_reads() {
    let app = spawn().await;
    big_month(&app).await;
    let heavy = app.token("tenant", Some("big"), None).await;
    app.create_plan("roomy", json!({"session_limit": 100_000}))
        .await;
    app.create_tenant("light").await;
    app.create_site("light", "light", "roomy", json!({})).await;
    let light = app.token("site", None, Some("light")).await;
    // Each read once, so that the flood is of warm reads.
    for read in READS {
        let r = app.get(read, &heavy).await;
        assert_eq!(r.status, StatusCode::OK, "{read}: {}", r.text);
    }

    let mut rounds = Vec::new();
    let (mut done, mut refused, mut took) = (0, 0, 0.0);
    for round in 0..ROUNDS {
        let alone = admissions(&app, &light, &format!("alone-{round}")).await;
        let flood = Flood::start(&app, &heavy);
        // The flood is under way before the admissions start.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let t = Instant::now();
        let during = admissions(&app, &light, &format!("during-{round}")).await;
        took += t.elapsed().as_secs_f64();
        let (d, r) = flood.stop();
        (done, refused) = (done + d, refused + r);
        rounds.push((alone, during));
    }

    let figure = |f: &dyn Fn(&Round) -> f64| median(rounds.iter().map(f).collect());
    let (p99_alone, p99_during) = (figure(&|r| p(&r.0, 0.99)), figure(&|r| p(&r.1, 0.99)));
    let met = p99_during <= 50.0 && p99_during <= 2.0 * p99_alone;
    println!(
        "V2 other tenant's admissions ({}), {} from {CLIENTS} clients, median of {ROUNDS} rounds: \
         p99 {p99_alone:.1} ms alone, {p99_during:.1} ms during {READERS} concurrent expensive \
         reads (goal <= 50 ms and <= 2 x alone){}; p50 {:.1} / {:.1} ms; the flood: {done} reads \
         answered, {refused} refused (429) in {took:.1} s",
        if is_pg(&app) { "postgres" } else { "sqlite" },
        ADMISSIONS * CLIENTS,
        if met { "" } else { " NOT MET" },
        figure(&|r| p(&r.0, 0.5)),
        figure(&|r| p(&r.1, 0.5)),
    );
}
