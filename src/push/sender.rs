//! The outbox sender: claims due rows, POSTs them signed, records every attempt and
//! schedules retries. Several processes may run it on one PostgreSQL.
//!
//! It never waits for a whole batch: claimed pushes start as soon as their receiver
//! and the process have a free place ([`fanout`](super::fanout)), finished attempts
//! are recorded in batches as they end, and the next claim is made while slow
//! deliveries are still in flight. A receiver that answers only at the timeout thus
//! holds up its own pushes and nobody else's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::StatusCode;
use tokio::sync::{Notify, watch};
use tokio::task::{Id, JoinError, JoinSet};

use super::fanout::{self, Fanout};
use super::{resolver, signing};
use crate::clock::{Millis, SharedClock};
use crate::config::Secret;
use crate::db::Db;
use crate::db::outbox::{self, AttemptResult, Next, OutboxRow};
use crate::db::{sites, tenants};
use crate::domain::targets::{self, Origin};
use crate::metrics::Metrics;

/// A claimed row is someone else's for this long; if its process dies, another
/// picks it up afterwards. It must outlast waiting for a place ([`START_WITHIN`]),
/// the longest attempt (the push clients' 15 s timeout) and recording the result,
/// or another process could send the row a second time while this one still does.
const LEASE_MS: i64 = 60_000;
/// A claimed push that found no free place within this long is not sent by this
/// process: it is left alone until its lease runs out and then claimed again, here
/// or elsewhere. 30 s of waiting + 15 s of attempt leave 15 s of the lease to record.
const START_WITHIN: Duration = Duration::from_secs(30);
/// Rows claimed per statement.
const BATCH: i64 = 256;
/// Claimed rows this process holds at most (waiting, in flight or to be recorded):
/// bounds memory and how many leases one process sits on.
const MAX_HELD: usize = 1024;
/// Finished attempts are recorded together, in one transaction, once this many have
/// piled up or [`RECORD_LINGER`] after the first of them, whichever comes first.
const RECORD_BATCH: usize = 128;
const RECORD_LINGER: Duration = Duration::from_millis(20);
/// How often an idle sender looks for due rows (wakeups come sooner on new pushes).
const IDLE_POLL: Duration = Duration::from_millis(250);

/// What the sender uses: the database, the clock, the push settings, the two HTTP
/// clients, the metrics it counts deliveries in, and the wakeup that changes ring
/// when they queue a push.
pub struct Pusher {
    pub db: Db,
    pub clock: SharedClock,
    /// Where provider alerts go, and the secret that signs them.
    pub provider_notify_url: Option<String>,
    pub provider_notify_secret: Option<Secret>,
    /// Refuse private and loopback targets for every URL, the provider's too
    /// (`HEADCOUNT_WEBHOOK_DENY_PRIVATE`); tenants' URLs are refused them always.
    pub deny_private: bool,
    pub retry_schedule: Vec<Duration>,
    /// Pushes to URLs the provider chose.
    pub http: reqwest::Client,
    /// Pushes to URLs a tenant chose: never loopback or link-local.
    pub http_tenant: reqwest::Client,
    pub metrics: Arc<Metrics>,
    pub wakeup: Arc<Notify>,
}

/// An attempt's outcome, as [`outbox::finish_attempts`] records it.
type Done = (outbox::Key, AttemptResult, Next);

/// A finished attempt, and the `kind` and `result` labels that
/// `headcount_deliveries_total` counts it under once it is recorded: a scrape never
/// shows an attempt the outbox does not.
struct Finished {
    done: Done,
    kind: String,
    result: &'static str,
}

impl Finished {
    fn new(row: &OutboxRow, attempt: AttemptResult, next: Next, gone: bool) -> Self {
        let result = result_of(&next, gone);
        Self {
            done: ((row.site_id, row.id), attempt, next),
            kind: row.kind.clone(),
            result,
        }
    }
}

pub async fn run(push: Arc<Pusher>, mut stop: watch::Receiver<bool>) {
    let mut s = Sender::new(push.clone());
    let mut want_claim = true;
    loop {
        if *stop.borrow() {
            break;
        }
        s.start_ready();
        if s.should_record() {
            s.record().await;
            // A recorded retry may be due at once.
            want_claim = true;
        }
        if want_claim && s.room() > 0 {
            want_claim = match s.claim().await {
                Ok(more) => more,
                Err(e) => {
                    tracing::warn!(error = %e, "push sender: cannot claim due pushes");
                    false
                }
            };
            continue;
        }
        let flush_at = s.flush_at;
        tokio::select! {
            Some(joined) = s.tasks.join_next_with_id(), if !s.tasks.is_empty() => {
                s.collect(joined);
                while let Some(more) = s.tasks.try_join_next_with_id() {
                    s.collect(more);
                }
            }
            () = sleep_until(flush_at), if flush_at.is_some() => {}
            () = push.wakeup.notified() => want_claim = true,
            () = tokio::time::sleep(IDLE_POLL) => want_claim = true,
            _ = stop.changed() => break,
        }
    }
    s.shut_down().await;
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A claimed push waiting for a place, or in flight.
struct Job {
    row: OutboxRow,
    target: Target,
    /// When it was claimed, on the clock the lease is measured with.
    claimed_at: Millis,
}

/// The sender's state between claims: pushes waiting per receiver, attempts in
/// flight (each its own task, so that they progress while the loop claims or
/// records), and finished attempts not yet recorded.
struct Sender {
    push: Arc<Pusher>,
    fanout: Fanout<Job>,
    tasks: JoinSet<Finished>,
    /// The receiver of each task, to free its place also if the task panicked.
    receiver_of_task: HashMap<Id, String>,
    done: Vec<Done>,
    /// The labels of `done`, counted once it is recorded.
    tally: Vec<(String, &'static str)>,
    /// When `done` is to be recorded at the latest.
    flush_at: Option<tokio::time::Instant>,
}

impl Sender {
    fn new(push: Arc<Pusher>) -> Self {
        Self {
            push,
            fanout: Fanout::default(),
            tasks: JoinSet::new(),
            receiver_of_task: HashMap::new(),
            done: Vec::new(),
            tally: Vec::new(),
            flush_at: None,
        }
    }

    /// How many rows the next claim may take: none while every place is busy, so
    /// that claimed rows do not sit out their lease waiting.
    fn room(&self) -> i64 {
        if self.fanout.in_flight() >= fanout::MAX_IN_FLIGHT {
            return 0;
        }
        let held = self.fanout.in_flight() + self.fanout.waiting() + self.done.len();
        BATCH.min(i64::try_from(MAX_HELD.saturating_sub(held)).unwrap_or(BATCH))
    }

    /// Claims due rows and queues them by receiver; rows that need no request
    /// (no URL, refused target…) are finished at once. Returns whether more rows may
    /// be due (the claim was full).
    async fn claim(&mut self) -> crate::error::Result<bool> {
        let limit = self.room();
        let now = self.push.clock.now_ms();
        let rows = self
            .push
            .db
            .write(move |c| outbox::claim_due(c, now, LEASE_MS, limit))
            .await?;
        let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) >= limit;
        if rows.is_empty() {
            return Ok(false);
        }
        let resolved = self.resolve(&rows, now).await;
        let start_by = Instant::now() + START_WITHIN;
        for (row, r) in rows.into_iter().zip(resolved) {
            match prepare(&self.push, row, r, now) {
                Prepared::Done(d) => self.finish(d),
                Prepared::Send(row, target) => {
                    let receiver = fanout::receiver_of(&target.url);
                    let job = Job {
                        row,
                        target,
                        claimed_at: now,
                    };
                    self.fanout.push(receiver, job, start_by);
                }
            }
        }
        Ok(more)
    }

    /// Where each claimed row goes; a database failure fails each row's attempt.
    async fn resolve(&self, rows: &[OutboxRow], now: Millis) -> Vec<crate::error::Result<Resolve>> {
        let st = self.push.clone();
        let claimed = std::sync::Arc::new(rows.to_vec());
        match self
            .push
            .db
            .run(move |c| resolve_all(c, &st, &claimed, now))
            .await
        {
            Ok(r) => r,
            Err(e) => {
                let msg = e.to_string();
                rows.iter()
                    .map(|_| Err(crate::error::Error::Unavailable(msg.clone())))
                    .collect()
            }
        }
    }

    /// Starts what has a free place now; what waited too long is left to its lease.
    fn start_ready(&mut self) {
        let ready = self.fanout.ready(Instant::now());
        let now = self.push.clock.now_ms();
        let budget = START_WITHIN.as_millis() as i64;
        for job in ready.expired {
            left_to_lease(&job);
        }
        for (receiver, job) in ready.start {
            // The lease runs on the injected clock, which may have moved faster.
            if now - job.claimed_at >= budget {
                self.fanout.finished(&receiver);
                left_to_lease(&job);
                continue;
            }
            let st = self.push.clone();
            let handle = self
                .tasks
                .spawn(async move { attempt(&st, job.row, job.target).await });
            self.receiver_of_task.insert(handle.id(), receiver);
        }
    }

    /// Takes a finished task's outcome and frees its receiver's place.
    fn collect(&mut self, joined: Result<(Id, Finished), JoinError>) {
        let id = match &joined {
            Ok((id, _)) => *id,
            Err(e) => e.id(),
        };
        if let Some(receiver) = self.receiver_of_task.remove(&id) {
            self.fanout.finished(&receiver);
        }
        match joined {
            Ok((_, d)) => self.finish(Some(d)),
            // Unrecorded, the row is tried again when its lease runs out.
            Err(e) => tracing::error!(error = %e, "push attempt task failed"),
        }
    }

    fn finish(&mut self, finished: Option<Finished>) {
        if let Some(f) = finished {
            self.done.push(f.done);
            self.tally.push((f.kind, f.result));
            self.flush_at
                .get_or_insert_with(|| tokio::time::Instant::now() + RECORD_LINGER);
        }
    }

    fn should_record(&self) -> bool {
        !self.done.is_empty()
            && (self.done.len() >= RECORD_BATCH
                || self.fanout.in_flight() == 0
                || self
                    .flush_at
                    .is_some_and(|at| at <= tokio::time::Instant::now()))
    }

    /// Records the finished attempts in one transaction.
    async fn record(&mut self) {
        self.flush_at = None;
        let done = std::mem::take(&mut self.done);
        let tally = std::mem::take(&mut self.tally);
        let n = done.len();
        if n == 0 {
            return;
        }
        let done = std::sync::Arc::new(done);
        match self
            .push
            .db
            .write(move |c| outbox::finish_attempts(c, &done))
            .await
        {
            Ok(_) => {
                for (kind, result) in &tally {
                    self.push.metrics.delivery(kind, result);
                }
            }
            // The leases run out and the rows are tried again: at least once, never lost.
            Err(e) => tracing::warn!(error = %e, pushes = n, "cannot record push attempts"),
        }
    }

    /// On stop: what waits is left to its lease, what is in flight finishes (within
    /// the clients' timeout) and is recorded, so that it is not sent again.
    async fn shut_down(mut self) {
        for job in self.fanout.drain_waiting() {
            left_to_lease(&job);
        }
        while let Some(joined) = self.tasks.join_next_with_id().await {
            self.collect(joined);
        }
        self.record().await;
    }
}

fn left_to_lease(job: &Job) {
    tracing::debug!(
        outbox_id = job.row.id,
        "push found no free place in time; it is retried when its lease runs out"
    );
}

/// Where a row goes, who chose it, and which secrets sign it.
struct Target {
    url: String,
    origin: Origin,
    secrets: Vec<String>,
}

enum Resolve {
    Send(Target),
    /// Superseded since it was claimed: neither sent nor recorded.
    Superseded,
    /// Cannot be sent (no URL, webhook disabled); the reason is recorded.
    Skip(String, bool),
}

/// Where each claimed row goes, with the batch's sites read in one query.
fn resolve_all(
    c: &mut crate::db::DbConn, push: &Pusher, rows: &[OutboxRow], now: Millis,
) -> crate::error::Result<Vec<crate::error::Result<Resolve>>> {
    let mut ids: Vec<i64> = rows
        .iter()
        .filter(|r| r.target == outbox::TARGET_SITE)
        .map(|r| r.site_id)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let found: std::collections::HashMap<i64, sites::SiteFull> = sites::get_many(c, &ids)?
        .into_iter()
        .map(|f| (f.site.id, f))
        .collect();
    let claimed: Vec<(i64, i64)> = rows.iter().map(|r| (r.site_id, r.id)).collect();
    let pending = outbox::still_pending(c, &claimed)?;
    Ok(rows
        .iter()
        .map(|row| {
            if pending.contains(&row.id) {
                resolve(c, push, row, now, &found)
            } else {
                Ok(Resolve::Superseded)
            }
        })
        .collect())
}

fn resolve(
    c: &mut crate::db::DbConn, push: &Pusher, row: &OutboxRow, now: Millis,
    sites_of_batch: &std::collections::HashMap<i64, sites::SiteFull>,
) -> crate::error::Result<Resolve> {
    match row.target.as_str() {
        outbox::TARGET_SITE => {
            let Some(f) = sites_of_batch.get(&row.site_id) else {
                return Ok(Resolve::Skip("site is gone".into(), true));
            };
            if f.site.webhook_disabled_at.is_some() {
                return Ok(Resolve::Skip(
                    "webhook disabled after a 410 Gone; set webhook_url again to re-enable".into(),
                    true,
                ));
            }
            let Some(url) = f.site.webhook_url.clone() else {
                return Ok(Resolve::Skip("the site has no webhook_url".into(), false));
            };
            let mut secrets = vec![f.site.webhook_secret.clone()];
            if let (Some(prev), Some(until)) = (
                &f.site.previous_webhook_secret,
                f.site.previous_secret_expires_at,
            ) && until > now
            {
                secrets.push(prev.clone());
            }
            let origin = if f.site.webhook_url_by_tenant {
                Origin::Tenant
            } else {
                Origin::Provider
            };
            Ok(Resolve::Send(Target {
                url,
                origin,
                secrets,
            }))
        }
        outbox::TARGET_TENANT => {
            let Some(tid) = row.tenant_id else {
                return Ok(Resolve::Skip("tenant is gone".into(), true));
            };
            let t = tenants::get_by_id(c, tid)?;
            match t.notify_url {
                Some(url) => Ok(Resolve::Send(Target {
                    url,
                    origin: if t.notify_url_by_tenant {
                        Origin::Tenant
                    } else {
                        Origin::Provider
                    },
                    secrets: vec![t.notify_secret],
                })),
                None => Ok(Resolve::Skip("the tenant has no notify_url".into(), true)),
            }
        }
        _ => match (&push.provider_notify_url, &push.provider_notify_secret) {
            (Some(url), Some(secret)) => Ok(Resolve::Send(Target {
                url: url.clone(),
                origin: Origin::Provider,
                secrets: vec![secret.expose().to_owned()],
            })),
            _ => Ok(Resolve::Skip(
                "no provider notify URL is configured".into(),
                true,
            )),
        },
    }
}

/// A claimed row, ready to be sent or already finished without a request.
enum Prepared {
    /// Nothing to send: what to record (nothing for a superseded row).
    Done(Option<Finished>),
    Send(OutboxRow, Target),
}

/// Settles what needs no request (superseded, skipped, unresolvable, refused
/// targets) and passes on what is to be sent.
fn prepare(
    push: &Pusher, row: OutboxRow, resolved: crate::error::Result<Resolve>, now: Millis,
) -> Prepared {
    let target = match resolved {
        Err(e) => {
            let error = format!("cannot resolve the target: {e}");
            return Prepared::Done(Some(not_sent(push, &row, now, error)));
        }
        Ok(Resolve::Superseded) => return Prepared::Done(None),
        Ok(Resolve::Skip(reason, final_)) => {
            let attempt = AttemptResult {
                at: now,
                status_code: None,
                duration_ms: 0,
                error: Some(reason),
            };
            let next = if final_ {
                Next::Failed
            } else {
                next_after_failure(push, &row, now, None)
            };
            return Prepared::Done(Some(Finished::new(&row, attempt, next, false)));
        }
        Ok(Resolve::Send(target)) => target,
    };
    // IP literals and local names never reach the resolver: judged here.
    match targets::judge_url_host(&target.url, target.origin, push.deny_private) {
        Ok(()) => Prepared::Send(row, target),
        Err(r) => {
            let host = url::Url::parse(&target.url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_default();
            let ip = host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
            let msg = resolver::refusal(&host, ip, r, target.origin).0;
            Prepared::Done(Some(not_sent(push, &row, now, msg)))
        }
    }
}

/// An attempt that failed before any request was made, retried per the schedule.
fn not_sent(push: &Pusher, row: &OutboxRow, now: Millis, error: String) -> Finished {
    let attempt = AttemptResult {
        at: now,
        status_code: None,
        duration_ms: 0,
        error: Some(error),
    };
    let next = next_after_failure(push, row, now, None);
    Finished::new(row, attempt, next, false)
}

/// Sends one push and judges the answer.
async fn attempt(push: &Pusher, row: OutboxRow, target: Target) -> Finished {
    let now = push.clock.now_ms();
    let started = Instant::now();
    let (status, error, retry_after) = send(push, &row, &target, now).await;
    let attempt = AttemptResult {
        at: now,
        status_code: status.map(|s| i64::from(s.as_u16())),
        duration_ms: started.elapsed().as_millis() as i64,
        error,
    };
    let next = match status {
        Some(s) if s.is_success() => Next::Delivered,
        Some(StatusCode::GONE) => {
            if row.target == outbox::TARGET_SITE {
                let site_id = row.site_id;
                let _ = push
                    .db
                    .run(move |c| sites::disable_webhook(c, site_id, now))
                    .await;
                tracing::info!(site_id, "webhook answered 410 Gone: disabled");
            }
            Next::Failed
        }
        _ => next_after_failure(push, &row, now, retry_after),
    };
    let gone = status == Some(StatusCode::GONE);
    Finished::new(&row, attempt, next, gone)
}

/// The `result` label of `headcount_deliveries_total` for an attempt's outcome.
fn result_of(next: &Next, gone: bool) -> &'static str {
    match next {
        _ if gone => "gone",
        Next::Delivered => "delivered",
        Next::RetryAt(_) => "retried",
        Next::Failed => "failed",
    }
}

/// The next attempt per the retry schedule (with up to 10 % jitter), or `Failed`
/// when the schedule is used up. A `Retry-After` from the receiver wins when later.
fn next_after_failure(
    push: &Pusher, row: &OutboxRow, now: Millis, retry_after: Option<Duration>,
) -> Next {
    let schedule = &push.retry_schedule;
    let done = usize::try_from(row.attempts)
        .unwrap_or(usize::MAX)
        .saturating_add(1);
    let Some(delay) = schedule.get(done) else {
        return Next::Failed;
    };
    let base = delay.as_millis() as i64;
    let jitter = if base > 0 {
        rand::rng().random_range(0..=base / 10)
    } else {
        0
    };
    let mut at = now + base + jitter;
    if let Some(ra) = retry_after {
        at = at.max(now + ra.as_millis() as i64);
    }
    Next::RetryAt(at)
}

async fn send(
    push: &Pusher, row: &OutboxRow, target: &Target, now: Millis,
) -> (Option<StatusCode>, Option<String>, Option<Duration>) {
    let ts = now / 1000;
    let secrets: Vec<&str> = target.secrets.iter().map(String::as_str).collect();
    let signature =
        signing::signature_header(&secrets, &row.webhook_id, ts, row.payload.as_bytes());
    let client = match target.origin {
        Origin::Provider => &push.http,
        Origin::Tenant => &push.http_tenant,
    };
    let res = client
        .post(&target.url)
        .header("content-type", "application/json")
        .header("webhook-id", &row.webhook_id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", signature)
        .body(row.payload.clone())
        .send()
        .await;
    match res {
        Ok(r) => {
            let status = r.status();
            let retry_after = if status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::SERVICE_UNAVAILABLE
            {
                r.headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(|s| Duration::from_secs(s.min(86_400)))
            } else {
                None
            };
            // The status only: what the target answered stays out of the log a
            // tenant reads.
            let error = (!status.is_success()).then(|| format!("receiver answered {status}"));
            (Some(status), error, retry_after)
        }
        Err(e) => {
            if let Some(refused) = resolver::refused_in(&e) {
                return (None, Some(refused), None);
            }
            tracing::debug!(error = %e, url = %target.url, "push failed");
            // The kind only: the underlying error can quote the peer.
            let kind = if e.is_timeout() {
                "timed out after 15 s"
            } else if e.is_connect() {
                "cannot connect"
            } else {
                "request failed"
            };
            (None, Some(kind.to_owned()), None)
        }
    }
}
