//! The closed-loop clients of the request scenarios (everything but `simulate`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::json;

use super::fleet::{self, Fleet};
use super::options::{Options, Scenario};
use super::report::{Live, Outcome, Recorder, Shape, Summary};

/// Stops the clients at the deadline or after the request budget, whichever comes
/// first.
#[derive(Debug)]
pub struct Gate {
    window: Duration,
    deadline: std::sync::OnceLock<Instant>,
    budget: Option<u64>,
    issued: AtomicU64,
}

impl Gate {
    pub fn new(window: Duration, budget: Option<u64>) -> Self {
        Self {
            window,
            deadline: std::sync::OnceLock::new(),
            budget,
            issued: AtomicU64::new(0),
        }
    }

    /// Starts the measured window (setup before this is not measured).
    pub fn open(&self) -> Instant {
        let now = Instant::now();
        let _ = self.deadline.set(now + self.window);
        now
    }

    /// May one more request go out?
    pub fn take(&self) -> bool {
        if self.deadline.get().is_none_or(|d| Instant::now() >= *d) {
            return false;
        }
        match self.budget {
            Some(b) => self.issued.fetch_add(1, Ordering::Relaxed) < b,
            None => true,
        }
    }
}

/// Prints `elapsed, requests, rate, errors` on one stderr line once a second until
/// `done` is set; the line is cleared at the end.
pub fn progress(live: Arc<Live>, done: Arc<AtomicBool>, label: &'static str) {
    tokio::spawn(async move {
        let started = Instant::now();
        let mut last = 0;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tick.tick().await;
            if done.load(Ordering::Relaxed) {
                eprint!("\r\x1b[2K");
                return;
            }
            let n = live.requests.load(Ordering::Relaxed);
            eprint!(
                "\r\x1b[2K{label}: {:>4}s  {n} requests  {}/s  {} errors",
                started.elapsed().as_secs(),
                n - last,
                live.errors.load(Ordering::Relaxed)
            );
            last = n;
        }
    });
}

/// What a run's clients share.
struct Ctx {
    client: reqwest::Client,
    base: String,
    admin: String,
    fleet: Fleet,
    scenario: Scenario,
    sessions: usize,
    batch: usize,
    concurrency: usize,
    seed: u64,
    live: Arc<Live>,
}

pub async fn run(
    client: &reqwest::Client, opts: &Options, window: Duration,
) -> Result<Summary, String> {
    let admin = opts.token.clone().unwrap_or_default();
    let fleet = prepare(client, opts, &admin).await?;
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        base: opts.url.clone(),
        admin,
        fleet,
        scenario: opts.scenario,
        sessions: opts.sessions,
        batch: opts.batch,
        concurrency: opts.concurrency,
        seed: opts.seed,
        live: Arc::new(Live::default()),
    });
    let done = Arc::new(AtomicBool::new(false));
    if opts.progress {
        progress(ctx.live.clone(), done.clone(), opts.scenario.name());
    }
    let mut runs = Vec::with_capacity(opts.repeat);
    for round in 0..opts.repeat {
        runs.push(measure(&ctx, opts, window, round).await?);
    }
    done.store(true, Ordering::Relaxed);
    let mut summary = Summary::median_of(runs);
    summary.prefix.clone_from(&ctx.fleet.prefix);
    Ok(summary)
}

/// The sites a scenario needs (none for `healthz`), with the sessions it expects to
/// find there already. Not measured.
async fn prepare(client: &reqwest::Client, opts: &Options, admin: &str) -> Result<Fleet, String> {
    let fleet = if opts.scenario == Scenario::Healthz {
        Fleet {
            prefix: String::new(),
            sites: Vec::new(),
        }
    } else {
        let plan = json!({
            // The pool of sessions per site fits under the limit, so that admissions
            // measure the admit path, not refusals.
            "session_limit": opts.sessions + opts.background_active,
            "over_limit": "reject",
        });
        let prefix = fleet::unique_prefix();
        let spec = fleet::Spec {
            sites: opts.sites,
            plan,
            webhook_base: None,
            tokens: true,
        };
        fleet::create(client, &opts.url, admin, &prefix, spec).await?
    };
    if opts.background_active + opts.background_ended > 0 {
        fleet::background(
            client,
            &opts.url,
            &fleet,
            opts.background_active,
            opts.background_ended,
            Duration::from_secs(1800),
        )
        .await?;
    }
    if opts.scenario == Scenario::Usage {
        // Last activity spread over two default idle timeouts: about half dangling.
        fleet::seed(
            client,
            &opts.url,
            &fleet,
            opts.sessions,
            2 * 86_400,
            opts.seed,
            Duration::from_secs(1800),
        )
        .await?;
    }
    Ok(fleet)
}

/// One measured window: every client in its loop until the gate closes.
async fn measure(
    ctx: &Arc<Ctx>, opts: &Options, window: Duration, round: usize,
) -> Result<Summary, String> {
    // Room for the expected number of samples per client, capped.
    let per_client = opts
        .requests
        .map_or(4096, |r| (r as usize / opts.concurrency).min(1 << 20))
        + 16;
    let shape = Shape {
        concurrency: opts.concurrency,
        sites: if opts.scenario == Scenario::Healthz {
            0
        } else {
            opts.sites
        },
        sessions: opts.sessions,
        batch: opts.batch,
    };
    let gate = Arc::new(Gate::new(window, opts.requests));
    let started = gate.open();
    let clients: Vec<_> = (0..opts.concurrency)
        .map(|i| {
            let ctx = ctx.clone();
            let gate = gate.clone();
            let index = (round * opts.concurrency + i) as u64;
            tokio::spawn(async move { client_loop(ctx, gate, index, per_client).await })
        })
        .collect();
    let mut total = Recorder::default();
    for c in clients {
        total.merge(c.await.map_err(|e| format!("a client failed: {e}"))?);
    }
    Ok(total.summary(opts.scenario.name(), started.elapsed(), shape))
}

/// One request of a scenario, ready to send.
enum Op {
    Healthz,
    Events { site: usize, body: String, n: u64 },
    Admission { site: usize, body: String },
    Usage { site: usize },
}

async fn client_loop(ctx: Arc<Ctx>, gate: Arc<Gate>, index: u64, capacity: usize) -> Recorder {
    let mut rng = StdRng::seed_from_u64(fleet::mix(ctx.seed, index, 0xc11e));
    let mut rec = Recorder::with_capacity(capacity);
    while gate.take() {
        let op = next_op(&ctx, &mut rng, index);
        let started = Instant::now();
        let outcome = send(&ctx, op).await;
        rec.record(started, outcome, &ctx.live);
    }
    rec
}

fn next_op(ctx: &Ctx, rng: &mut StdRng, client: u64) -> Op {
    let sites = ctx.fleet.sites.len().max(1);
    let site = if ctx.scenario == Scenario::IngestBatch {
        // A site's agent sends its batches one after the other: each client plays
        // the agent of its own sites (one each when --sites ≥ --concurrency), rather
        // than several clients writing overlapping batches into one site at once.
        let own = (client as usize) % sites;
        let stride = ctx.concurrency.min(sites).max(1);
        let mine = (sites - own).div_ceil(stride).max(1);
        own + stride * rng.random_range(0..mine)
    } else {
        rng.random_range(0..sites)
    };
    let scenario = match ctx.scenario {
        // One admission and one usage read for every twenty events sent one by one
        // or in small batches: what a fleet of agents and a dashboard look like.
        Scenario::Mixed => match rng.random_range(0..100) {
            0..60 => Scenario::IngestSingle,
            60..80 => return events(ctx, rng, site, 20),
            80..95 => Scenario::Admission,
            _ => Scenario::Usage,
        },
        s => s,
    };
    match scenario {
        Scenario::IngestBatch => events(ctx, rng, site, ctx.batch),
        Scenario::IngestSingle => events(ctx, rng, site, 1),
        Scenario::Admission => {
            let n = rng.random_range(0..ctx.sessions);
            let body = format!(
                "{{\"session\":\"{}\",\"user\":\"user-{n}\"}}",
                fleet::session_id(ctx.seed, site, n)
            );
            Op::Admission { site, body }
        }
        Scenario::Usage => Op::Usage { site },
        Scenario::Healthz | Scenario::Mixed | Scenario::Simulate | Scenario::PlanEdit => {
            Op::Healthz
        }
    }
}

/// `n` activity events for consecutive sessions of the site's pool, starting at a random
/// one, so that a batch names each session once (as an agent's coalesced batch does).
fn events(ctx: &Ctx, rng: &mut StdRng, site: usize, n: usize) -> Op {
    let at = fleet::rfc3339(chrono::Utc::now());
    let first = rng.random_range(0..ctx.sessions);
    let n = n.min(ctx.sessions);
    let mut body = String::with_capacity(16 + n * 130);
    body.push_str("{\"events\":[");
    for k in 0..n {
        let s = (first + k) % ctx.sessions;
        if k > 0 {
            body.push(',');
        }
        fleet::push_event(
            &mut body,
            "session.activity",
            &fleet::session_id(ctx.seed, site, s),
            &at,
            s,
        );
    }
    body.push_str("]}");
    Op::Events {
        site,
        body,
        n: n as u64,
    }
}

async fn send(ctx: &Ctx, op: Op) -> Outcome {
    let c = &ctx.client;
    let json = |r: reqwest::RequestBuilder, body: String| {
        r.header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
    };
    let (req, events, kind) = match op {
        Op::Healthz => (c.get(format!("{}/healthz", ctx.base)), 0, Kind::Plain),
        Op::Events { site, body, n } => {
            let s = &ctx.fleet.sites[site];
            let r = c
                .post(format!("{}/v1/sites/{}/events", ctx.base, s.slug))
                .bearer_auth(&s.token);
            (json(r, body), n, Kind::Events)
        }
        Op::Admission { site, body } => {
            let s = &ctx.fleet.sites[site];
            let r = c
                .post(format!("{}/v1/sites/{}/admissions", ctx.base, s.slug))
                .bearer_auth(&s.token);
            (json(r, body), 1, Kind::Admission)
        }
        Op::Usage { site } => {
            let s = &ctx.fleet.sites[site];
            let r = c
                .get(format!("{}/v1/sites/{}/usage", ctx.base, s.slug))
                .bearer_auth(&ctx.admin);
            (r, 0, Kind::Plain)
        }
    };
    let res = match req.send().await {
        Ok(r) => r,
        Err(_) => return Outcome::Transport,
    };
    let status = res.status();
    // Read the whole body: the connection goes back to the pool only afterwards.
    let body = match res.bytes().await {
        Ok(b) => b,
        Err(_) => return Outcome::Transport,
    };
    if !status.is_success() {
        return Outcome::Status(status.as_u16());
    }
    kind.judge(&body, events)
}

#[derive(Clone, Copy)]
enum Kind {
    Plain,
    Events,
    Admission,
}

impl Kind {
    /// A 200 can still carry a failure: rejected events, a refused admission.
    fn judge(self, body: &[u8], events: u64) -> Outcome {
        let has = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
        match self {
            Kind::Plain => Outcome::Ok { events },
            Kind::Events if has(b"\"rejected\":[]") => Outcome::Ok { events },
            Kind::Events => Outcome::Rejected("rejected-events"),
            Kind::Admission if has(b"\"admitted\":true") => Outcome::Ok { events },
            Kind::Admission => Outcome::Refused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_honours_the_budget_and_opens_once() {
        let g = Gate::new(Duration::from_secs(60), Some(3));
        assert!(!g.take(), "closed before the window opens");
        g.open();
        assert!(g.take() && g.take() && g.take());
        assert!(!g.take());
    }

    #[test]
    fn the_gate_closes_at_the_deadline() {
        let g = Gate::new(Duration::from_millis(1), None);
        g.open();
        std::thread::sleep(Duration::from_millis(5));
        assert!(!g.take());
    }

    #[test]
    fn replies_are_judged_by_their_body() {
        let ok = Kind::Events.judge(br#"{"accepted":2,"rejected":[]}"#, 2);
        assert!(matches!(ok, Outcome::Ok { events: 2 }));
        let bad = Kind::Events.judge(br#"{"accepted":1,"rejected":[{"index":0}]}"#, 2);
        assert!(matches!(bad, Outcome::Rejected(_)));
        let no = Kind::Admission.judge(br#"{"admitted":false}"#, 1);
        assert!(matches!(no, Outcome::Refused));
    }
}
