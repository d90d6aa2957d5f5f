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
/// Sessions a snapshot writes per transaction.
const SNAPSHOT_PART: usize = 5_000;
const MAX_PAST_MS: i64 = 35 * 86_400_000;
const MAX_FUTURE_MS: i64 = 5 * 60_000;

/// One session event.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// The agent's own id for the event (for its logs; merging is idempotent anyway).
    #[schema(max_length = 128)]
    pub id: Option<String>,
    /// `session.started`, `session.activity`, `session.ended` or `session.refused`
    /// (a sign-in the site refused itself, in local mode: recorded as a denial,
    /// creating no session; send it with an `id` so that a resent one counts once).
    #[serde(rename = "type")]
    #[schema(pattern = "^session\\.(started|activity|ended|refused)$")]
    pub kind: String,
    /// The site's opaque session id (a hash of the session key): 1–128 printable ASCII.
    /// Required except on `session.refused`.
    #[schema(min_length = 1, max_length = 128, pattern = "^[\\x21-\\x7e]{1,128}$")]
    pub session: Option<String>,
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
    // Kept as raw text until each event is parsed on its own, straight into `Event`
    // (a `Value` tree first would allocate every key and string twice).
    #[schema(value_type = Vec<Event>, max_items = 1000)]
    pub events: Vec<Box<serde_json::value::RawValue>>,
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

/// One event of a batch, or what is wrong with it, naming the field.
fn parse_event(raw: &str) -> std::result::Result<Event, String> {
    // The plain parse is the fast path; only a bad event is parsed again with the
    // path tracking that names its field.
    serde_json::from_str(raw).map_err(|_| {
        match serde_path_to_error::deserialize::<_, Event>(&mut serde_json::Deserializer::from_str(
            raw,
        )) {
            Ok(_) => "invalid event".to_owned(),
            Err(e) => {
                let path = e.path().to_string();
                let msg = super::without_position(e.inner());
                if path == "." {
                    msg
                } else {
                    format!("{path}: {msg}")
                }
            }
        }
    })
}

/// What one well-formed event says.
enum Observed {
    Session(String, Observation),
    Refusal(usage::Refusal),
}

/// Turns one event into an observation of its session (or a site's own refusal),
/// or says what is wrong.
fn observe(e: Event, now: Millis, ttl_seconds: i64) -> std::result::Result<Observed, String> {
    let session = match &e.session {
        Some(s) => Some(SessionRef::parse(s).map_err(|m| format!("session: {m}"))?),
        None => None,
    };
    let at = e.at.timestamp_millis();
    check_instant("at", at, now)?;
    check_text("user", &e.user, 256)?;
    check_text("user_agent", &e.user_agent, 1024)?;
    check_text("id", &e.id, 128)?;
    check_ip(&e.ip)?;
    if e.kind == "session.refused" {
        if e.reason.is_some() {
            return Err("reason: only session.ended takes a reason".to_owned());
        }
        if e.expires_at.is_some() {
            return Err("expires_at: a refused sign-in has no session to expire".to_owned());
        }
        return Ok(Observed::Refusal(usage::Refusal {
            at,
            event_id: e.id,
            session: session.map(SessionRef::into_string),
            user: e.user,
        }));
    }
    let session = session.ok_or_else(|| "session: required".to_owned())?;
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
                "type: unknown event type {other:?} (use session.started, session.activity, session.ended or session.refused)"
            ));
        }
    };
    let expires_at = match (expires, ended) {
        (Some(x), _) => x,
        // An end says nothing about the lifetime; the interval stops at the end anyway.
        (None, Some(_)) => at,
        (None, None) => at + ttl_seconds * 1000,
    };
    Ok(Observed::Session(
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
    let mut refusals = Vec::new();
    for (index, raw) in batch.events.into_iter().enumerate() {
        let parsed = parse_event(raw.get()).and_then(|e| observe(e, now, ttl));
        match parsed {
            Ok(Observed::Session(s, o)) => good.push((s, o)),
            Ok(Observed::Refusal(r)) => refusals.push(r),
            Err(error) => rejected.push(RejectedEvent { index, error }),
        }
    }
    let accepted = good.len() + refusals.len();
    if !refusals.is_empty() {
        record_site_refusals(&state, site.site.id, refusals).await?;
    }
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
    state.metrics.events(accepted, rejected.len());
    Ok(HttpResponse::Ok().json(BatchResult { accepted, rejected }))
}

/// Records the refusals a site made itself as denials, each once, and raises the
/// `site.limit_reached` alert as a refused admission would.
async fn record_site_refusals(
    state: &web::Data<AppState>,
    site_id: i64,
    refusals: Vec<usage::Refusal>,
) -> Result<()> {
    let provider_alerts = state.config.provider_notify_url.is_some();
    let queued = state
        .db
        .write(move |c| {
            c.transaction(|c| {
                db::lock_site(c, site_id)?;
                let mut new = 0;
                let mut latest = None;
                for r in &refusals {
                    if usage::record_site_refusal(c, site_id, r)? {
                        new += 1;
                        latest = latest.max(Some(r.at));
                    }
                }
                if let Some(at) = latest {
                    let mut full = db::sites::get_by_id(c, site_id)?;
                    crate::db::alerts::on_refusal(c, &mut full, at, provider_alerts)?;
                }
                Ok(new)
            })
        })
        .await?;
    if queued > 0 {
        state.outbox_wakeup.notify_one();
    }
    Ok(())
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
    // Never later than now: a snapshot cannot have seen what happens after it.
    let as_of = snap.as_of.map_or(now, |t| t.timestamp_millis()).min(now);
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
    let rows = std::sync::Arc::new(coalesce(rows));
    let site_id = site.site.id;
    // Written in parts, each its own transaction holding the site for a moment, so
    // that admissions on the site wait behind one part, not behind a 100,000-session
    // snapshot. Merging is monotone and idempotent, so a snapshot cut short by a
    // failure leaves only true observations, and the agent's retry completes it.
    let mut created = 0;
    for start in (0..rows.len()).step_by(SNAPSHOT_PART) {
        let rows = rows.clone();
        created += state
            .db
            .write(move |c| {
                let part = &rows[start..(start + SNAPSHOT_PART).min(rows.len())];
                c.transaction(|c| {
                    db::lock_site(c, site_id)?;
                    let refs: Vec<&str> = part.iter().map(|(s, _)| s.as_str()).collect();
                    let known = sessions::existing(c, site_id, &refs)?;
                    sessions::merge(c, site_id, part, false)?;
                    Ok(part.iter().filter(|(s, _)| !known.contains(s)).count())
                })
            })
            .await?;
    }
    // Then the site's other open sessions that the snapshot saw idle end, in parts
    // too; one that was active after `as_of` meanwhile is left alone.
    let listed = rows.clone();
    let to_end: Vec<String> = state
        .db
        .run(move |c| sessions::open_sessions(c, site_id, now))
        .await?
        .into_iter()
        .filter(|(_, last)| *last <= as_of)
        .map(|(s, _)| s)
        .filter({
            let listed: std::collections::HashSet<&str> =
                listed.iter().map(|(s, _)| s.as_str()).collect();
            move |s| !listed.contains(s.as_str())
        })
        .collect();
    let to_end = std::sync::Arc::new(to_end);
    let mut ended = 0;
    for start in (0..to_end.len()).step_by(SNAPSHOT_PART) {
        let to_end = to_end.clone();
        ended += state
            .db
            .write(move |c| {
                let part = &to_end[start..(start + SNAPSHOT_PART).min(to_end.len())];
                c.transaction(|c| {
                    db::lock_site(c, site_id)?;
                    sessions::end_idle_since(c, site_id, part, as_of, EndReason::Reconciled)
                })
            })
            .await?;
    }
    let result = SnapshotResult {
        created,
        updated: rows.len() - created,
        ended,
    };
    state.metrics.snapshot();
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
    /// The user's roles; one of the site's `reserved_roles` may use reserved places.
    #[schema(max_items = 16)]
    pub roles: Option<Vec<String>>,
    /// Sessions of the same `user` on this site to end (reason `replaced`, pushed as
    /// kills) in the same decision that admits this one.
    #[schema(max_items = 100)]
    pub replace: Option<Vec<String>>,
}

/// One of the refused user's active sessions, so that the site can offer to end it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OwnSession {
    pub session: String,
    /// `live` or `dangling`.
    pub state: String,
    pub last_activity_at: String,
    pub user_agent: Option<String>,
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
    /// The user's sessions ended for this one (`replace`, `replace_oldest`).
    pub replaced: Vec<String>,
    /// On a refusal that names a `user`: that user's active sessions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub own_sessions: Option<Vec<OwnSession>>,
    pub config_version: i64,
    /// A request the batch found invalid (a `replace` naming a session that is not
    /// the user's): answered as a 422, with nothing done.
    #[serde(skip)]
    #[schema(ignore)]
    pub invalid: Option<FieldError>,
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
    let roles = req
        .roles
        .as_deref()
        .and_then(|r| c.check("roles", crate::domain::config::parse_roles(r)))
        .unwrap_or_default();
    let replace = match &req.replace {
        None => Vec::new(),
        Some(list) if list.len() > 100 => {
            c.0.push(FieldError::new("replace", "at most 100 sessions"));
            Vec::new()
        }
        Some(_) if req.user.is_none() => {
            c.0.push(FieldError::new(
                "replace",
                "needs `user`: only a user's own sessions can be replaced",
            ));
            Vec::new()
        }
        Some(list) => {
            // Each session once: a repeated id must not free its place twice.
            let unique: std::collections::BTreeSet<String> = list
                .iter()
                .filter_map(|s| c.check("replace", SessionRef::parse(s)))
                .map(SessionRef::into_string)
                .collect();
            unique.into_iter().collect()
        }
    };
    c.finish()?;
    let session = session.map(SessionRef::into_string).unwrap_or_default();
    let job = AdmissionJob {
        site_id: site.site.id,
        session,
        // The expiry is set under the lock from the site's current session lifetime.
        obs: Observation {
            started_at: at,
            last_activity_at: at,
            expires_at: at,
            ended: None,
            user: req.user,
            user_agent: req.user_agent,
            ip: req.ip,
        },
        given_expiry: req.expires_at.map(|t| t.timestamp_millis()),
        now,
        roles,
        replace,
    };
    // Decided in a transaction that holds the site's lock, together with the other
    // admissions waiting at the same moment.
    let result = state.admissions().run(job).await?;
    state.metrics.admission(result.outcome.as_str());
    if let Some(e) = result.invalid {
        return Err(Error::invalid(vec![e]));
    }
    if !result.evicted.is_empty() || !result.replaced.is_empty() || !result.admitted {
        state.outbox_wakeup.notify_one();
    }
    Ok(HttpResponse::Ok().json(result))
}

/// One admission request, waiting for its batch.
#[derive(Debug, Clone)]
pub struct AdmissionJob {
    site_id: i64,
    session: String,
    obs: Observation,
    given_expiry: Option<Millis>,
    /// When the request arrived.
    now: Millis,
    roles: Vec<String>,
    replace: Vec<String>,
}

impl db::site_batch::SiteJob for AdmissionJob {
    fn site_id(&self) -> i64 {
        self.site_id
    }
}

/// What the batch knows of a site while deciding its admissions.
struct SiteTally {
    full: db::sites::SiteFull,
    cfg: std::sync::Arc<db::sites::SiteConfig>,
    /// Sessions counted against the limit by the site's count mode, kept up to date
    /// with every decision of the batch.
    counted: i64,
}

impl SiteTally {
    /// Whether a session in this standing counts against the limit at `now`.
    fn counts(&self, s: &sessions::Standing, now: Millis) -> bool {
        s.ended_at.is_none()
            && s.expires_at > now
            && (self.cfg.count_mode == CountMode::Active
                || s.last_activity_at > now - self.cfg.idle_timeout_seconds * 1000)
    }
}

/// Decides a batch of admissions, in arrival order, exactly as if each had its own
/// transaction, inside the caller's transaction that holds every site of the batch.
/// Each site's config and count are read once, and each decision carries the count
/// forward from the standing of its session before and after; the sessions are
/// written in one upsert at the end (or before a query that must see them). All
/// requests are decided at the batch's instant, the latest of their arrivals.
pub fn admit_batch(
    c: &mut db::DbConn,
    jobs: &[AdmissionJob],
    provider_alerts: bool,
) -> Result<Vec<AdmissionResult>> {
    let now = jobs.iter().map(|j| j.now).max().unwrap_or_default();
    let mut site_ids: Vec<i64> = jobs.iter().map(|j| j.site_id).collect();
    site_ids.sort_unstable();
    site_ids.dedup();
    let sites: Vec<_> = db::sites::get_many(c, &site_ids)?
        .into_iter()
        .map(|full| {
            let cfg = std::sync::Arc::new(full.config());
            (full, cfg)
        })
        .collect();
    let idle: Vec<(i64, i64)> = sites
        .iter()
        .map(|(full, cfg)| (full.site.id, cfg.idle_timeout_seconds))
        .collect();
    let mut counts = db::counts::at(c, &idle, now)?;
    let mut tallies = std::collections::HashMap::with_capacity(sites.len());
    for (full, cfg) in sites {
        let (active, dangling) = counts.remove(&full.site.id).unwrap_or_default();
        let counted = match cfg.count_mode {
            CountMode::Active => active,
            CountMode::Live => active - dangling,
        };
        tallies.insert(full.site.id, SiteTally { full, cfg, counted });
    }
    let wanted: Vec<(i64, &str)> = jobs
        .iter()
        .map(|j| (j.site_id, j.session.as_str()))
        .collect();
    let standings = db::batch_reads::standings(c, &wanted)?;
    let mut batch = BatchState {
        tallies,
        standings,
        pending: Vec::new(),
        pending_index: std::collections::HashMap::new(),
    };
    let mut out = Vec::with_capacity(jobs.len());
    for job in jobs {
        let ttl = batch
            .tallies
            .get(&job.site_id)
            .ok_or_else(|| Error::not_found("site"))?
            .cfg
            .session_ttl_seconds;
        let mut obs = job.obs.clone();
        obs.expires_at = job.given_expiry.unwrap_or(obs.started_at + ttl * 1000);
        out.push(decide_one(c, &mut batch, job, obs, now, provider_alerts)?);
    }
    batch.flush(c)?;
    Ok(out)
}

type SessionKey = (i64, String);

/// A batch's sites and sessions as its decisions so far leave them.
struct BatchState {
    tallies: std::collections::HashMap<i64, SiteTally>,
    /// The batch's sessions as stored, then as decided.
    standings: std::collections::HashMap<SessionKey, sessions::Standing>,
    /// Session writes decided but not yet sent: one statement at the end.
    pending: Vec<(i64, String, Observation, bool)>,
    pending_index: std::collections::HashMap<SessionKey, usize>,
}

impl BatchState {
    /// Records a session's admission and carries its site's count forward from the
    /// session's standing before to its standing after.
    fn write(&mut self, site_id: i64, session: &str, obs: Observation, overage: bool, now: Millis) {
        let key = (site_id, session.to_owned());
        let before = self.standings.get(&key);
        let after = sessions::Standing::after(before, &obs);
        if let Some(t) = self.tallies.get_mut(&site_id) {
            t.counted += i64::from(t.counts(&after, now))
                - i64::from(before.is_some_and(|b| t.counts(b, now)));
        }
        self.standings.insert(key.clone(), after);
        match self.pending_index.get(&key) {
            // A later write of the same session updates the row the first one
            // inserted, and an update keeps the row's overage flag.
            Some(&i) => self.pending[i].2.merge(&obs),
            None => {
                self.pending_index.insert(key, self.pending.len());
                self.pending
                    .push((site_id, session.to_owned(), obs, overage));
            }
        }
    }

    /// Records a session ended by a decision (evicted or replaced); `counted` says
    /// whether it held a counted place.
    fn ended(&mut self, site_id: i64, session: &str, now: Millis, counted: bool) {
        if counted && let Some(t) = self.tallies.get_mut(&site_id) {
            t.counted -= 1;
        }
        self.standings
            .entry((site_id, session.to_owned()))
            .or_insert(sessions::Standing {
                last_activity_at: now,
                expires_at: now,
                ended_at: None,
            })
            .ended_at = Some(now);
    }

    fn flush(&mut self, c: &mut db::DbConn) -> Result<()> {
        if !self.pending.is_empty() {
            sessions::merge_rows(
                c,
                self.pending
                    .iter()
                    .map(|(site, session, obs, overage)| (*site, session.as_str(), obs, *overage)),
            )?;
            self.pending.clear();
            self.pending_index.clear();
        }
        Ok(())
    }
}

/// One admission decision and its records; updates the tally and the standings.
fn decide_one(
    c: &mut db::DbConn,
    batch: &mut BatchState,
    job: &AdmissionJob,
    obs: Observation,
    now: Millis,
    provider_alerts: bool,
) -> Result<AdmissionResult> {
    let (site_id, session) = (job.site_id, job.session.as_str());
    let key = (site_id, session.to_owned());
    let before = batch.standings.get(&key).cloned();
    let t = batch
        .tallies
        .get(&site_id)
        .ok_or_else(|| Error::not_found("site"))?;
    let cfg = t.cfg.clone();
    let counted = t.counted;
    let tenant_id = t.full.site.tenant_id;
    let tenant_pool = t.full.tenant_pool;
    let slug = t.full.site.slug.clone();
    let limit = cfg.session_limit;
    let reply = |outcome: Outcome, counted| AdmissionResult {
        admitted: outcome.admitted(),
        outcome,
        message: (!outcome.admitted()).then(|| limit_message(&cfg.limit_message, limit)),
        session_limit: limit,
        counted,
        evicted: Vec::new(),
        replaced: Vec::new(),
        own_sessions: None,
        config_version: cfg.config_version,
        invalid: None,
    };
    // A session the site already has is decided before counting: an ended one is
    // refused, an active one is admitted again and counted once.
    if let Some(row) = &before {
        if row.ended_at.is_some() {
            return Ok(reply(Outcome::SessionEnded, counted));
        }
        if row.expires_at > now && job.replace.is_empty() {
            batch.write(site_id, session, obs, false, now);
            let counted = batch.tallies[&site_id].counted;
            return Ok(reply(Outcome::WithinLimit, counted));
        }
    }
    let live_after = now - cfg.idle_timeout_seconds * 1000;
    let counts_now = |last: Millis| cfg.count_mode == CountMode::Active || last > live_after;
    // The user's own sessions, when a rule needs them (the queries must see this
    // batch's writes).
    let user = obs.user.clone();
    let needs_own = user.is_some() && (cfg.per_user_limit.is_some() || !job.replace.is_empty());
    let own = match (&user, needs_own) {
        (Some(u), true) => {
            batch.flush(c)?;
            sessions::open_of_user(c, site_id, u, now)?
        }
        _ => Vec::new(),
    };
    // Sessions named in `replace` must be the same user's active sessions here. A
    // session that is already active and counted is in `counted` already: asking
    // again with `replace` must not count it twice.
    let already_counted = before.as_ref().is_some_and(|b| {
        b.ended_at.is_none() && b.expires_at > now && counts_now(b.last_activity_at)
    });
    let mut replacing = i64::from(already_counted);
    for r in &job.replace {
        match own.iter().find(|o| o.session == *r) {
            Some(o) => replacing += i64::from(counts_now(o.last_activity_at)),
            None if *r == session => {}
            None => {
                let mut invalid = reply(Outcome::LimitReached, counted);
                invalid.invalid = Some(FieldError::new(
                    "replace",
                    format!("{r:?} is not an active session of this user on this site"),
                ));
                return Ok(invalid);
            }
        }
    }
    let oldest = own
        .iter()
        .filter(|o| {
            o.session != session
                && counts_now(o.last_activity_at)
                && !job.replace.contains(&o.session)
        })
        .map(|o| o.session.clone())
        .next();
    let user_cap = match (&user, cfg.per_user_limit) {
        (Some(_), Some(cap)) => Some(admission::UserCap {
            counted: own
                .iter()
                .filter(|o| counts_now(o.last_activity_at))
                .count() as i64,
            limit: cap,
            over: cfg.per_user_over_limit,
            can_replace: oldest.is_some(),
        }),
        _ => None,
    };
    let may_reserve = job.roles.iter().any(|r| cfg.reserved_roles.contains(r));
    let reserve = if may_reserve { 0 } else { cfg.reserved_slots };
    // With count_mode live, dangling sessions hold no counted place, so evicting one
    // frees nothing: evict_dangling then acts as reject.
    let victim = if cfg.over_limit == OverLimit::EvictDangling
        && cfg.count_mode == CountMode::Active
        && counted - replacing >= limit - reserve
    {
        batch.flush(c)?;
        sessions::most_idle_dangling(c, site_id, now, cfg.idle_timeout_seconds)?
            .filter(|v| v != session && !job.replace.contains(v) && oldest.as_ref() != Some(v))
    } else {
        None
    };
    let pool = match tenant_pool {
        Some(pool_limit) => {
            batch.flush(c)?;
            Some((db::sites::lock_pool(c, tenant_id, now)?, pool_limit))
        }
        None => None,
    };
    let decision = admission::decide(&admission::Ask {
        counted,
        limit,
        reserve,
        over_limit: cfg.over_limit,
        overage_percent: cfg.overage_percent,
        can_evict: victim.is_some(),
        replacing,
        replaces: !job.replace.is_empty(),
        user: user_cap,
        pool,
    });
    let outcome = decision.outcome;
    if !outcome.admitted() {
        batch.flush(c)?;
        let sample = sessions::counted_sample(
            c,
            site_id,
            now,
            (cfg.count_mode == CountMode::Live).then_some(live_after),
            50,
        )?;
        let counted_sessions = serde_json::Value::Array(
            sample
                .iter()
                .map(|(s, last)| {
                    serde_json::json!({
                        "session": s,
                        "state": if *last > live_after { "live" } else { "dangling" },
                        "idle_seconds": (now - last).max(0) / 1000,
                    })
                })
                .collect(),
        )
        .to_string();
        usage::record_denial(
            c,
            site_id,
            &usage::DenialDetail {
                at: now,
                outcome: outcome.as_str(),
                session,
                user: user.as_deref(),
                counted,
                session_limit: limit,
                count_mode: cfg.count_mode.as_str(),
                counted_sessions,
            },
        )?;
        let mut out = reply(outcome, counted);
        if user.is_some() {
            let own = if needs_own {
                own
            } else {
                sessions::open_of_user(c, site_id, user.as_deref().unwrap_or_default(), now)?
            };
            out.own_sessions = Some(
                own.into_iter()
                    .map(|o| OwnSession {
                        state: if o.last_activity_at > live_after {
                            "live"
                        } else {
                            "dangling"
                        }
                        .to_owned(),
                        session: o.session,
                        last_activity_at: crate::clock::to_rfc3339(o.last_activity_at),
                        user_agent: o.user_agent,
                        ip: o.ip,
                    })
                    .collect(),
            );
        }
        let t = batch
            .tallies
            .get_mut(&site_id)
            .ok_or_else(|| Error::not_found("site"))?;
        crate::db::alerts::on_refusal(c, &mut t.full, now, provider_alerts)?;
        return Ok(out);
    }
    // Admitted: end what the decision frees, then record the session.
    let mut replaced: Vec<String> = job
        .replace
        .iter()
        .filter(|r| *r != session)
        .cloned()
        .collect();
    if decision.replace_oldest
        && let Some(o) = oldest
    {
        replaced.push(o);
    }
    let mut counted_after = counted;
    if !replaced.is_empty() {
        batch.flush(c)?;
        sessions::end_sessions(c, site_id, &replaced, now, EndReason::Replaced)?;
        outbox::enqueue_kill(
            c,
            site_id,
            tenant_id,
            &slug,
            &replaced,
            EndReason::Replaced.as_str(),
            now,
        )?;
        for r in &replaced {
            let counted_here = own
                .iter()
                .find(|o| o.session == *r)
                .is_some_and(|o| counts_now(o.last_activity_at));
            batch.ended(site_id, r, now, counted_here);
            counted_after -= i64::from(counted_here);
        }
    }
    let mut evicted = Vec::new();
    if decision.evict
        && let Some(v) = victim
    {
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
            tenant_id,
            &slug,
            std::slice::from_ref(&v),
            EndReason::Evicted.as_str(),
            now,
        )?;
        batch.ended(site_id, &v, now, true);
        counted_after -= 1;
        evicted.push(v);
    }
    batch.write(site_id, session, obs, outcome == Outcome::Overage, now);
    counted_after += i64::from(!already_counted);
    let t = batch
        .tallies
        .get_mut(&site_id)
        .ok_or_else(|| Error::not_found("site"))?;
    crate::db::alerts::on_count(c, &mut t.full, counted_after, now, provider_alerts)?;
    let mut out = reply(outcome, counted_after);
    out.evicted = evicted;
    out.replaced = replaced;
    Ok(out)
}
