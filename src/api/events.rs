//! What a site's agent sends: event batches, full snapshots and admissions.

use actix_web::{HttpResponse, post, put, web};
use chrono::{DateTime, Utc};
use diesel::Connection as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::sites::agent_site;
use super::{Body, EVENTS_BODY, SNAPSHOT_BODY};
use crate::app::AppState;
use crate::auth::Caller;
use crate::clock::Millis;
use crate::db::{self, outbox, sessions, usage};
use crate::domain::admission::{self, Outcome};
use crate::domain::config::{CountMode, OverLimit, limit_message};
use crate::domain::ids::SessionRef;
use crate::domain::session::{EndReason, Observation};
use crate::error::{Error, FieldError, Problem, Result};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(ingest_events)
        .service(put_snapshot)
        .service(create_admission);
}

pub const MAX_EVENTS: usize = 1000;
pub const MAX_SNAPSHOT: usize = 100_000;
const MAX_PAST_MS: i64 = 35 * 86_400_000;
const MAX_FUTURE_MS: i64 = 5 * 60_000;

/// One session event.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// The agent's own id for the event (for its logs; merging is idempotent anyway).
    #[schema(max_length = 128)]
    pub id: Option<String>,
    /// `session.started`, `session.activity` or `session.ended`.
    #[serde(rename = "type")]
    #[schema(pattern = "^session\\.(started|activity|ended)$")]
    pub kind: String,
    /// The site's opaque session id (a hash of the session key): 1–128 printable ASCII.
    #[schema(min_length = 1, max_length = 128, pattern = "^[\\x21-\\x7e]{1,128}$")]
    pub session: String,
    /// When it happened: within the last 35 days and at most 5 minutes ahead.
    pub at: DateTime<Utc>,
    /// Opaque user reference.
    #[schema(max_length = 256)]
    pub user: Option<String>,
    /// The session's expiry; without it, `at + session_ttl_seconds`.
    pub expires_at: Option<DateTime<Utc>>,
    /// For `session.ended`: `logout` (default), `expired`, `killed`, `evicted`, `reconciled`.
    pub reason: Option<String>,
    #[schema(max_length = 1024)]
    pub user_agent: Option<String>,
    #[schema(max_length = 64)]
    pub ip: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventBatch {
    /// At most 1000 events; each is judged on its own.
    #[schema(value_type = Vec<Event>, max_items = 1000)]
    pub events: Vec<serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RejectedEvent {
    /// Position of the event in the batch.
    pub index: usize,
    pub error: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResult {
    pub accepted: usize,
    pub rejected: Vec<RejectedEvent>,
}

fn check_instant(field: &str, at: Millis, now: Millis) -> std::result::Result<(), String> {
    if at < now - MAX_PAST_MS {
        Err(format!("{field}: more than 35 days in the past"))
    } else if at > now + MAX_FUTURE_MS {
        Err(format!("{field}: more than 5 minutes in the future"))
    } else {
        Ok(())
    }
}

fn check_text(field: &str, v: &Option<String>, max: usize) -> std::result::Result<(), String> {
    match v {
        Some(s) if s.chars().count() > max => Err(format!("{field}: at most {max} characters")),
        Some(s) if s.chars().any(char::is_control) => {
            Err(format!("{field}: must not contain control characters"))
        }
        _ => Ok(()),
    }
}

fn check_ip(v: &Option<String>) -> std::result::Result<(), String> {
    match v {
        Some(s) if s.parse::<std::net::IpAddr>().is_err() => {
            Err("ip: not an IPv4 or IPv6 address".to_owned())
        }
        _ => Ok(()),
    }
}

/// Turns one event into an observation of its session, or says what is wrong.
fn observe(
    e: Event,
    now: Millis,
    ttl_seconds: i64,
) -> std::result::Result<(String, Observation), String> {
    let session = SessionRef::parse(&e.session).map_err(|m| format!("session: {m}"))?;
    let at = e.at.timestamp_millis();
    check_instant("at", at, now)?;
    check_text("user", &e.user, 256)?;
    check_text("user_agent", &e.user_agent, 1024)?;
    check_text("id", &e.id, 128)?;
    check_ip(&e.ip)?;
    let expires = e.expires_at.map(|t| t.timestamp_millis());
    let ended = match e.kind.as_str() {
        "session.started" | "session.activity" => {
            if e.reason.is_some() {
                return Err("reason: only session.ended takes a reason".to_owned());
            }
            None
        }
        "session.ended" => {
            let reason = match e.reason.as_deref() {
                None => EndReason::Logout,
                Some(r) => EndReason::parse(r).map_err(|m| format!("reason: {m}"))?,
            };
            Some((at, reason))
        }
        other => {
            return Err(format!(
                "type: unknown event type {other:?} (use session.started, session.activity or session.ended)"
            ));
        }
    };
    let expires_at = match (expires, ended) {
        (Some(x), _) => x,
        // An end says nothing about the lifetime; the interval stops at the end anyway.
        (None, Some(_)) => at,
        (None, None) => at + ttl_seconds * 1000,
    };
    Ok((
        session.into_string(),
        Observation {
            started_at: at,
            last_activity_at: at,
            expires_at,
            ended,
            user: e.user,
            user_agent: e.user_agent,
            ip: e.ip,
        },
    ))
}

use crate::db::group_commit::coalesce;

/// Batches up to this many events go through group commit; larger ones fill a
/// transaction of their own.
const GROUP_COMMIT_MAX_EVENTS: usize = 20;

/// Ingest a batch of session events (site token). Well-formed events are applied
/// even when others are rejected; the reply comes after the commit.
#[utoipa::path(post, path = "/v1/sites/{slug}/events", tag = "agent", operation_id = "ingest_events",
    params(("slug" = String, Path)), request_body = EventBatch, security(("bearer" = [])),
    responses((status = 200, body = BatchResult),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json")))]
#[post("/v1/sites/{slug}/events")]
pub async fn ingest_events(
    state: web::Data<AppState>,
    caller: Caller,
    slug: web::Path<String>,
    body: Body<EVENTS_BODY>,
) -> Result<HttpResponse> {
    let site = agent_site(&state, &caller, &slug).await?;
    let batch: EventBatch = body.json()?;
    if batch.events.len() > MAX_EVENTS {
        return Err(Error::PayloadTooLarge(format!(
            "a batch holds at most {MAX_EVENTS} events, this one {}",
            batch.events.len()
        )));
    }
    let now = state.now();
    let ttl = site.effective().values.session_ttl_seconds;
    let mut rejected = Vec::new();
    let mut good = Vec::with_capacity(batch.events.len());
    for (index, raw) in batch.events.into_iter().enumerate() {
        let parsed = serde_path_to_error::deserialize::<_, Event>(raw)
            .map_err(|e| {
                let path = e.path().to_string();
                let msg = e.into_inner().to_string();
                if path == "." {
                    msg
                } else {
                    format!("{path}: {msg}")
                }
            })
            .and_then(|e| observe(e, now, ttl));
        match parsed {
            Ok(o) => good.push(o),
            Err(error) => rejected.push(RejectedEvent { index, error }),
        }
    }
    let accepted = good.len();
    let rows = coalesce(good);
    let site_id = site.site.id;
    if rows.is_empty() {
        // Nothing to write.
    } else if rows.len() <= GROUP_COMMIT_MAX_EVENTS {
        state.group_commit().merge(site_id, rows).await?;
    } else {
        state
            .db
            .write(move |c| {
                c.transaction(|c| {
                    // Several sessions at once: the site first, as admissions do.
                    db::lock_site(c, site_id)?;
                    sessions::merge(c, site_id, &rows, false)
                })
            })
            .await?;
    }
    Ok(HttpResponse::Ok().json(BatchResult { accepted, rejected }))
}

/// One session in a snapshot.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotSession {
    #[schema(min_length = 1, max_length = 128, pattern = "^[\\x21-\\x7e]{1,128}$")]
    pub session: String,
    #[schema(max_length = 256)]
    pub user: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub last_activity_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Every active session of the site, as the site sees it now.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// When the site took the snapshot (default: now). Sessions not listed whose last
    /// activity is not after this instant end as `reconciled`.
    pub as_of: Option<DateTime<Utc>>,
    #[schema(max_items = 100000)]
    pub sessions: Vec<SnapshotSession>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SnapshotResult {
    pub created: usize,
    pub updated: usize,
    /// Sessions the snapshot did not list, ended as `reconciled`.
    pub ended: usize,
}

/// Replace the site's picture of its active sessions with a full snapshot (site token).
#[utoipa::path(put, path = "/v1/sites/{slug}/sessions", tag = "agent", operation_id = "put_snapshot",
    params(("slug" = String, Path)), request_body = Snapshot, security(("bearer" = [])),
    responses((status = 200, body = SnapshotResult),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
#[put("/v1/sites/{slug}/sessions")]
pub async fn put_snapshot(
    state: web::Data<AppState>,
    caller: Caller,
    slug: web::Path<String>,
    body: Body<SNAPSHOT_BODY>,
) -> Result<HttpResponse> {
    let site = agent_site(&state, &caller, &slug).await?;
    let snap: Snapshot = body.json()?;
    if snap.sessions.len() > MAX_SNAPSHOT {
        return Err(Error::PayloadTooLarge(format!(
            "a snapshot holds at most {MAX_SNAPSHOT} sessions"
        )));
    }
    let now = state.now();
    let ttl = site.effective().values.session_ttl_seconds;
    let as_of = snap.as_of.map_or(now, |t| t.timestamp_millis());
    let mut errors = Vec::new();
    if let Err(m) = check_instant("as_of", as_of, now) {
        errors.push(FieldError::new("as_of", m));
    }
    let mut rows = Vec::with_capacity(snap.sessions.len());
    for (i, s) in snap.sessions.into_iter().enumerate() {
        let field = |f: &str| format!("sessions[{i}].{f}");
        let session = match SessionRef::parse(&s.session) {
            Ok(r) => r,
            Err(m) => {
                errors.push(FieldError::new(field("session"), m));
                continue;
            }
        };
        if let Err(m) = check_text("user", &s.user, 256) {
            errors.push(FieldError::new(field("user"), m));
        }
        let last = s.last_activity_at.timestamp_millis();
        if let Err(m) = check_instant("last_activity_at", last, now) {
            errors.push(FieldError::new(field("last_activity_at"), m));
        }
        let started = s
            .started_at
            .map_or(last, |t| t.timestamp_millis())
            .min(last);
        rows.push((
            session.into_string(),
            Observation {
                started_at: started,
                last_activity_at: last,
                expires_at: s
                    .expires_at
                    .map_or(last + ttl * 1000, |t| t.timestamp_millis()),
                ended: None,
                user: s.user,
                user_agent: None,
                ip: None,
            },
        ));
        if errors.len() > 50 {
            break;
        }
    }
    if !errors.is_empty() {
        return Err(Error::invalid(errors));
    }
    let rows = coalesce(rows);
    let site_id = site.site.id;
    let result = state
        .db
        .write(move |c| {
            c.transaction(|c| {
                db::lock_site(c, site_id)?;
                let refs: Vec<&str> = rows.iter().map(|(s, _)| s.as_str()).collect();
                let known = sessions::existing(c, site_id, &refs)?;
                let created = rows.iter().filter(|(s, _)| !known.contains(s)).count();
                sessions::merge(c, site_id, &rows, false)?;
                let listed: std::collections::HashSet<&str> = refs.iter().copied().collect();
                let to_end: Vec<String> = sessions::open_sessions(c, site_id, now)?
                    .into_iter()
                    .filter(|(s, last)| !listed.contains(s.as_str()) && *last <= as_of)
                    .map(|(s, _)| s)
                    .collect();
                let ended =
                    sessions::end_sessions(c, site_id, &to_end, as_of, EndReason::Reconciled)?;
                Ok(SnapshotResult {
                    created,
                    updated: rows.len() - created,
                    ended,
                })
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(result))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdmissionRequest {
    #[schema(min_length = 1, max_length = 128, pattern = "^[\\x21-\\x7e]{1,128}$")]
    pub session: String,
    #[schema(max_length = 256)]
    pub user: Option<String>,
    /// Default: now.
    pub at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    #[schema(max_length = 1024)]
    pub user_agent: Option<String>,
    #[schema(max_length = 64)]
    pub ip: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdmissionResult {
    pub admitted: bool,
    pub outcome: Outcome,
    /// The text to show a refused user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub session_limit: i64,
    /// Sessions counted against the limit after this decision.
    pub counted: i64,
    /// Sessions ended to make room (`evict_dangling`).
    pub evicted: Vec<String>,
    pub config_version: i64,
}

/// May this session start? Checks and records in one transaction that holds the site,
/// so that concurrent admissions never pass the limit (site token).
#[utoipa::path(post, path = "/v1/sites/{slug}/admissions", tag = "agent", operation_id = "create_admission",
    params(("slug" = String, Path)), request_body = AdmissionRequest, security(("bearer" = [])),
    responses((status = 200, description = "the decision; a refusal has admitted: false", body = AdmissionResult),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
#[post("/v1/sites/{slug}/admissions")]
pub async fn create_admission(
    state: web::Data<AppState>,
    caller: Caller,
    slug: web::Path<String>,
    body: Body,
) -> Result<HttpResponse> {
    let site = agent_site(&state, &caller, &slug).await?;
    let req: AdmissionRequest = body.json()?;
    let now = state.now();
    let at = req.at.map_or(now, |t| t.timestamp_millis());
    let mut c = super::Checks::default();
    let session = c.check("session", SessionRef::parse(&req.session));
    c.check("at", check_instant("at", at, now));
    c.check("user", check_text("user", &req.user, 256));
    c.check(
        "user_agent",
        check_text("user_agent", &req.user_agent, 1024),
    );
    c.check("ip", check_ip(&req.ip));
    c.finish()?;
    let session = session.map(SessionRef::into_string).unwrap_or_default();
    let given_expiry = req.expires_at.map(|t| t.timestamp_millis());
    let mut obs = Observation {
        started_at: at,
        last_activity_at: at,
        // Set under the lock from the site's current session lifetime.
        expires_at: at,
        ended: None,
        user: req.user,
        user_agent: req.user_agent,
        ip: req.ip,
    };
    let site_id = site.site.id;
    let provider_alerts = state.config.provider_notify_url.is_some();
    // Runs in a transaction that holds the site's lock, shared with other
    // admissions waiting at the same moment.
    let result = state
        .admissions()
        .run(site_id, move |c| {
            // Read the config under the lock: a concurrent change cannot slip in.
            let full = db::sites::get_by_id(c, site_id)?;
            let ttl = full.effective().values.session_ttl_seconds;
            obs.expires_at = given_expiry.unwrap_or(at + ttl * 1000);
            admit(c, &full, &session, &obs, now, provider_alerts)
        })
        .await?;
    if !result.evicted.is_empty() || !result.admitted {
        state.outbox_wakeup.notify_one();
    }
    Ok(HttpResponse::Ok().json(result))
}

/// The admission decision and its records, inside the caller's transaction.
fn admit(
    c: &mut db::DbConn,
    full: &db::sites::SiteFull,
    session: &str,
    obs: &Observation,
    now: Millis,
    provider_alerts: bool,
) -> Result<AdmissionResult> {
    let cfg = full.config();
    let site_id = full.site.id;
    let limit = cfg.session_limit;
    let reply = |admitted, outcome, counted, evicted: Vec<String>| AdmissionResult {
        admitted,
        outcome,
        message: (!admitted).then(|| limit_message(&cfg.limit_message, limit)),
        session_limit: limit,
        counted,
        evicted,
        config_version: cfg.config_version,
    };
    let counted_now = |c: &mut db::DbConn| -> Result<i64> {
        let (active, dangling) = sessions::count(c, site_id, now, cfg.idle_timeout_seconds)?;
        Ok(match cfg.count_mode {
            CountMode::Active => active,
            CountMode::Live => active - dangling,
        })
    };
    // A session the site already has is decided before counting: an ended one is
    // refused, an active one is admitted again and counted once.
    if let Some(row) = sessions::get(c, site_id, session)? {
        if row.ended_at.is_some() {
            let counted = counted_now(c)?;
            return Ok(reply(false, Outcome::SessionEnded, counted, Vec::new()));
        }
        if row.expires_at > now {
            sessions::merge(c, site_id, &[(session.to_owned(), obs.clone())], false)?;
            let counted = counted_now(c)?;
            return Ok(reply(true, Outcome::WithinLimit, counted, Vec::new()));
        }
    }
    let counted = counted_now(c)?;
    // With count_mode live, dangling sessions hold no counted place, so evicting one
    // frees nothing: evict_dangling then acts as reject.
    let victim = if cfg.over_limit == OverLimit::EvictDangling
        && cfg.count_mode == CountMode::Active
        && counted >= limit
    {
        sessions::most_idle_dangling(c, site_id, now, cfg.idle_timeout_seconds)?
    } else {
        None
    };
    let outcome = admission::decide(
        counted,
        limit,
        cfg.over_limit,
        cfg.overage_percent,
        victim.is_some(),
    );
    let mut evicted = Vec::new();
    let mut counted_after = counted;
    match outcome {
        Outcome::EvictedDangling => {
            let v = victim.unwrap_or_default();
            sessions::end_sessions(
                c,
                site_id,
                std::slice::from_ref(&v),
                now,
                EndReason::Evicted,
            )?;
            outbox::enqueue_kill(
                c,
                site_id,
                full.site.tenant_id,
                &full.site.slug,
                std::slice::from_ref(&v),
                EndReason::Evicted.as_str(),
                now,
            )?;
            evicted.push(v);
            sessions::merge(c, site_id, &[(session.to_owned(), obs.clone())], false)?;
        }
        Outcome::WithinLimit | Outcome::Overage => {
            sessions::merge(
                c,
                site_id,
                &[(session.to_owned(), obs.clone())],
                outcome == Outcome::Overage,
            )?;
            counted_after += 1;
        }
        Outcome::LimitReached | Outcome::SessionEnded => {
            usage::record_denial(c, site_id, now, outcome.as_str())?;
            crate::db::alerts::on_refusal(c, full, now, provider_alerts)?;
        }
    }
    if outcome.admitted() {
        crate::db::alerts::on_count(c, full, counted_after, now, provider_alerts)?;
    }
    Ok(reply(outcome.admitted(), outcome, counted_after, evicted))
}
