//! The outbox sender: claims due rows, POSTs them signed, records every attempt and
//! schedules retries. Several processes may run it on one PostgreSQL.

use std::time::{Duration, Instant};

use actix_web::web;
use futures_util::future::join_all;
use rand::Rng;
use reqwest::StatusCode;
use tokio::sync::watch;

use super::{resolver, signing};
use crate::app::AppState;
use crate::clock::Millis;
use crate::db::outbox::{self, AttemptResult, Next, OutboxRow};
use crate::db::{sites, tenants};
use crate::domain::targets::{self, Origin};

/// A claimed row is someone else's for this long; if its process dies, another
/// picks it up afterwards.
const LEASE_MS: i64 = 60_000;
const BATCH: i64 = 256;
/// How often an idle sender looks for due rows (wakeups come sooner on new pushes).
const IDLE_POLL: Duration = Duration::from_millis(250);

pub async fn run(state: web::Data<AppState>, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        let sent = match tick(&state).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "push sender: cannot claim due pushes");
                0
            }
        };
        if sent == 0 {
            tokio::select! {
                _ = state.outbox_wakeup.notified() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

/// Sends one batch of due pushes; returns how many it attempted.
pub async fn tick(state: &web::Data<AppState>) -> crate::error::Result<usize> {
    let now = state.now();
    let rows = state
        .db
        .write(move |c| outbox::claim_due(c, now, LEASE_MS, BATCH))
        .await?;
    let n = rows.len();
    if n == 0 {
        return Ok(0);
    }
    let st = state.clone();
    let claimed = std::sync::Arc::new(rows.clone());
    let resolved = match state
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
    };
    let done = join_all(
        rows.into_iter()
            .zip(resolved)
            .map(|(row, r)| deliver(state, row, r)),
    )
    .await
    .into_iter()
    .flatten()
    .collect();
    record(state, done).await;
    Ok(n)
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
    c: &mut crate::db::DbConn,
    state: &AppState,
    rows: &[OutboxRow],
    now: Millis,
) -> crate::error::Result<Vec<crate::error::Result<Resolve>>> {
    let mut ids: Vec<i64> = rows
        .iter()
        .filter(|r| r.target == outbox::TARGET_SITE)
        .filter_map(|r| r.site_id)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let found: std::collections::HashMap<i64, sites::SiteFull> = sites::get_many(c, &ids)?
        .into_iter()
        .map(|f| (f.site.id, f))
        .collect();
    let claimed: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let pending = outbox::still_pending(c, &claimed)?;
    Ok(rows
        .iter()
        .map(|row| {
            if pending.contains(&row.id) {
                resolve(c, state, row, now, &found)
            } else {
                Ok(Resolve::Superseded)
            }
        })
        .collect())
}

fn resolve(
    c: &mut crate::db::DbConn,
    state: &AppState,
    row: &OutboxRow,
    now: Millis,
    sites_of_batch: &std::collections::HashMap<i64, sites::SiteFull>,
) -> crate::error::Result<Resolve> {
    match row.target.as_str() {
        outbox::TARGET_SITE => {
            let Some(site_id) = row.site_id else {
                return Ok(Resolve::Skip("site is gone".into(), true));
            };
            let Some(f) = sites_of_batch.get(&site_id) else {
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
        _ => match (
            &state.config.provider_notify_url,
            &state.config.provider_notify_secret,
        ) {
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

/// Attempts one push; returns what to record (nothing for a superseded one).
async fn deliver(
    state: &web::Data<AppState>,
    row: OutboxRow,
    resolved: crate::error::Result<Resolve>,
) -> Option<(i64, AttemptResult, Next)> {
    let now = state.now();
    let started = Instant::now();
    let (status, error, retry_after) = match resolved {
        Err(e) => (None, Some(format!("cannot resolve the target: {e}")), None),
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
                next_after_failure(state, &row, now, None)
            };
            state.metrics.delivery(&row.kind, result_of(&next, false));
            return Some((row.id, attempt, next));
        }
        Ok(Resolve::Superseded) => return None,
        Ok(Resolve::Send(target)) => {
            // IP literals and local names never reach the resolver: judged here.
            match targets::judge_url_host(
                &target.url,
                target.origin,
                state.config.webhook_deny_private,
            ) {
                Err(r) => {
                    let host = url::Url::parse(&target.url)
                        .ok()
                        .and_then(|u| u.host_str().map(str::to_owned))
                        .unwrap_or_default();
                    let msg = match host.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
                        Ok(ip) => resolver::refusal(&host, ip, r, target.origin).0,
                        Err(_) => {
                            resolver::refusal(
                                &host,
                                std::net::Ipv4Addr::LOCALHOST.into(),
                                r,
                                target.origin,
                            )
                            .0
                        }
                    };
                    (None, Some(msg), None)
                }
                Ok(()) => send(state, &row, &target, now).await,
            }
        }
    };
    let duration_ms = started.elapsed().as_millis() as i64;
    let attempt = AttemptResult {
        at: now,
        status_code: status.map(|s| i64::from(s.as_u16())),
        duration_ms,
        error,
    };
    let next = match status {
        Some(s) if s.is_success() => Next::Delivered,
        Some(StatusCode::GONE) => {
            if let Some(site_id) = row.site_id.filter(|_| row.target == outbox::TARGET_SITE) {
                let _ = state
                    .db
                    .run(move |c| sites::disable_webhook(c, site_id, now))
                    .await;
                tracing::info!(site_id, "webhook answered 410 Gone: disabled");
            }
            Next::Failed
        }
        _ => next_after_failure(state, &row, now, retry_after),
    };
    let gone = status == Some(StatusCode::GONE);
    state.metrics.delivery(&row.kind, result_of(&next, gone));
    Some((row.id, attempt, next))
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

async fn record(state: &web::Data<AppState>, done: Vec<(i64, AttemptResult, Next)>) {
    let n = done.len();
    if n == 0 {
        return;
    }
    let done = std::sync::Arc::new(done);
    if let Err(e) = state
        .db
        .write(move |c| outbox::finish_attempts(c, &done))
        .await
    {
        // The leases run out and the rows are tried again: at least once, never lost.
        tracing::warn!(error = %e, pushes = n, "cannot record push attempts");
    }
}

/// The next attempt per the retry schedule (with up to 10 % jitter), or `Failed`
/// when the schedule is used up. A `Retry-After` from the receiver wins when later.
fn next_after_failure(
    state: &AppState,
    row: &OutboxRow,
    now: Millis,
    retry_after: Option<Duration>,
) -> Next {
    let schedule = &state.config.retry_schedule;
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
    state: &AppState,
    row: &OutboxRow,
    target: &Target,
    now: Millis,
) -> (Option<StatusCode>, Option<String>, Option<Duration>) {
    let ts = now / 1000;
    let secrets: Vec<&str> = target.secrets.iter().map(String::as_str).collect();
    let signature =
        signing::signature_header(&secrets, &row.webhook_id, ts, row.payload.as_bytes());
    let client = match target.origin {
        Origin::Provider => &state.http,
        Origin::Tenant => &state.http_tenant,
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
