//! What a site's agent sends: event batches, full snapshots and admissions.

use actix_web::{HttpResponse, post, put, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::common::{Body, EVENTS_BODY, SNAPSHOT_BODY};
use super::problems::{BadRequest, NotFound, PayloadTooLarge, UnprocessableEntity};
use super::sites::agent_site;
use crate::auth::Caller;
use crate::clock::Millis;
use crate::db::visible::SiteKey;
use crate::db::{self, usage};
use crate::domain::admission::{Answer, Outcome};
use crate::domain::ids::SessionRef;
use crate::domain::session::{EndReason, EventType, Observation, coalesce};
use crate::error::{Error, FieldError, Result};
use crate::state::AppState;

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
    /// The user's roles, on a session's events (`session.started` above all): a session
    /// first reported with one of the site's `exempt_roles` is listed but never
    /// counted, as an admission carrying it would be (a service account in local
    /// mode, say).
    pub roles: Option<Vec<String>>,
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
                let msg = super::common::without_position(e.inner());
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
fn observe(
    e: Event, now: Millis, ttl_seconds: i64, exempt_roles: &[String],
) -> std::result::Result<Observed, String> {
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
    let roles = match e.roles.as_deref() {
        Some(r) => crate::domain::config::parse_roles(r).map_err(|m| format!("roles: {m}"))?,
        None => Vec::new(),
    };
    let exempt = roles.iter().any(|r| exempt_roles.contains(r));
    // Judged here, after the fields every type shares, so that an event with several
    // faults names the same one first whatever its type.
    let kind = EventType::parse(&e.kind).map_err(|m| format!("type: {m}"));
    if kind == Ok(EventType::Refused) {
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
    let ended = match kind? {
        EventType::Ended => {
            let reason = match e.reason.as_deref() {
                None => EndReason::Logout,
                Some(r) => EndReason::parse(r).map_err(|m| format!("reason: {m}"))?,
            };
            Some((at, reason))
        }
        EventType::Started | EventType::Activity | EventType::Refused => {
            if e.reason.is_some() {
                return Err("reason: only session.ended takes a reason".to_owned());
            }
            None
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
            exempt,
        },
    ))
}

/// Ingest a batch of session events (site token). Well-formed events are applied
/// even when others are rejected; the reply comes after the commit.
#[utoipa::path(tag = "agent", request_body = EventBatch,
    responses((status = 200, body = BatchResult), BadRequest, NotFound, PayloadTooLarge))]
#[post("/v1/sites/{slug}/events")]
pub async fn ingest_events(
    state: web::Data<AppState>, caller: Caller, slug: web::Path<String>, body: Body<EVENTS_BODY>,
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
    let limits = site.effective().values;
    let (ttl, exempt_roles) = (limits.session_ttl_seconds, limits.exempt_roles);
    let mut rejected = Vec::new();
    let mut good = Vec::with_capacity(batch.events.len());
    let mut refusals = Vec::new();
    for (index, raw) in batch.events.into_iter().enumerate() {
        let parsed = parse_event(raw.get()).and_then(|e| observe(e, now, ttl, &exempt_roles));
        match parsed {
            Ok(Observed::Session(s, o)) => good.push((s, o)),
            Ok(Observed::Refusal(r)) => refusals.push(r),
            Err(error) => rejected.push(RejectedEvent { index, error }),
        }
    }
    let accepted = good.len() + refusals.len();
    if refusals.is_empty() {
        state.writer().merge_any(site.key(), coalesce(good)).await?;
    } else {
        record_with_refusals(&state, site.key(), coalesce(good), refusals, now).await?;
    }
    state.metrics.events(accepted, rejected.len());
    Ok(HttpResponse::Ok().json(BatchResult { accepted, rejected }))
}

/// Merges a batch's sessions and records the refusals the site made itself as
/// denials, each once, in one transaction; raises the `site.limit_reached` alert as a
/// refused admission would: paced by headcount's clock (`now`), whatever instants the
/// site gave them.
async fn record_with_refusals(
    state: &web::Data<AppState>, site: SiteKey, rows: Vec<(String, Observation)>,
    refusals: Vec<usage::Refusal>, now: Millis,
) -> Result<()> {
    let provider_alerts = state.config.provider_notify_url.is_some();
    let queued = state
        .writer()
        .merge_with_refusals(site, rows, refusals, now, provider_alerts)
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
#[utoipa::path(tag = "agent", request_body = Snapshot,
    responses((status = 200, body = SnapshotResult), BadRequest, NotFound, PayloadTooLarge,
        UnprocessableEntity))]
#[put("/v1/sites/{slug}/sessions")]
pub async fn put_snapshot(
    state: web::Data<AppState>, caller: Caller, slug: web::Path<String>, body: Body<SNAPSHOT_BODY>,
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
    let (as_of, rows) = parse_snapshot(snap, now, ttl)?;
    let listed = rows.len();
    let (created, ended) = state
        .writer()
        .snapshot(site.key(), rows, as_of, now)
        .await?;
    let result = SnapshotResult {
        created,
        updated: listed - created,
        ended,
    };
    state.metrics.snapshot();
    Ok(HttpResponse::Ok().json(result))
}

/// The snapshot's instant (never later than now: a snapshot cannot have seen what
/// happens after it) and its sessions, one row each, or every field that is wrong
/// (at most about 50).
fn parse_snapshot(
    snap: Snapshot, now: Millis, ttl: i64,
) -> Result<(Millis, Vec<(String, Observation)>)> {
    let as_of = snap.as_of.map_or(now, |t| t.timestamp_millis()).min(now);
    let mut errors = Vec::new();
    if let Err(m) = check_instant("as_of", as_of, now) {
        errors.push(FieldError::new("as_of", m));
    }
    let mut rows = Vec::with_capacity(snap.sessions.len());
    for (i, s) in snap.sessions.into_iter().enumerate() {
        match snapshot_row(i, s, now, ttl, &mut errors) {
            Some(row) => rows.push(row),
            None => continue,
        }
        if errors.len() > 50 {
            break;
        }
    }
    if !errors.is_empty() {
        return Err(Error::invalid(errors));
    }
    Ok((as_of, coalesce(rows)))
}

/// One listed session as an observation; its errors go to `errors` (none: no row).
fn snapshot_row(
    i: usize, s: SnapshotSession, now: Millis, ttl: i64, errors: &mut Vec<FieldError>,
) -> Option<(String, Observation)> {
    let field = |f: &str| format!("sessions[{i}].{f}");
    let session = match SessionRef::parse(&s.session) {
        Ok(r) => r,
        Err(m) => {
            errors.push(FieldError::new(field("session"), m));
            return None;
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
    let obs = Observation {
        started_at: started,
        last_activity_at: last,
        expires_at: s
            .expires_at
            .map_or(last + ttl * 1000, |t| t.timestamp_millis()),
        ended: None,
        user: s.user,
        user_agent: None,
        ip: None,
        exempt: false,
    };
    Some((session.into_string(), obs))
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
}

/// May this session start? Checks and records in one transaction that holds the site,
/// so that concurrent admissions never pass the limit (site token).
#[utoipa::path(tag = "agent", request_body = AdmissionRequest,
    responses(
        (status = 200, description = "the decision; a refusal has admitted: false",
            body = AdmissionResult),
        BadRequest, NotFound, UnprocessableEntity))]
#[post("/v1/sites/{slug}/admissions")]
pub async fn create_admission(
    state: web::Data<AppState>, caller: Caller, slug: web::Path<String>, body: Body,
) -> Result<HttpResponse> {
    let site = agent_site(&state, &caller, &slug).await?;
    let req: AdmissionRequest = body.json()?;
    let job = req.parse(site.key(), state.now())?;
    // Decided in a transaction that holds the site's lock, together with the other
    // admissions waiting at the same moment.
    // A `replace` naming a session that is not the user's: a 422, nothing done.
    let answer = state
        .writer()
        .admit(job)
        .await?
        .map_err(|i| Error::invalid_field(i.field, i.message))?;
    state.metrics.admission(answer.outcome.as_str());
    if !answer.evicted.is_empty() || !answer.replaced.is_empty() || !answer.outcome.admitted() {
        state.outbox_wakeup.notify_one();
    }
    Ok(HttpResponse::Ok().json(AdmissionResult::from(answer)))
}

impl AdmissionRequest {
    /// The request as the writer decides it, or every field that is wrong.
    fn parse(self, site: SiteKey, now: Millis) -> Result<db::admission::Request> {
        let at = self.at.map_or(now, |t| t.timestamp_millis());
        let mut c = super::common::Checks::default();
        let session = c.check("session", SessionRef::parse(&self.session));
        c.check("at", check_instant("at", at, now));
        c.check("user", check_text("user", &self.user, 256));
        c.check(
            "user_agent",
            check_text("user_agent", &self.user_agent, 1024),
        );
        c.check("ip", check_ip(&self.ip));
        let roles = self
            .roles
            .as_deref()
            .and_then(|r| c.check("roles", crate::domain::config::parse_roles(r)))
            .unwrap_or_default();
        let replace = self.sessions_to_replace(&mut c);
        c.finish()?;
        let session = session.map(SessionRef::into_string).unwrap_or_default();
        Ok(db::admission::Request {
            site,
            session,
            // The expiry is set under the lock from the site's current session lifetime.
            obs: Observation {
                started_at: at,
                last_activity_at: at,
                expires_at: at,
                ended: None,
                user: self.user,
                user_agent: self.user_agent,
                ip: self.ip,
                exempt: false,
            },
            given_expiry: self.expires_at.map(|t| t.timestamp_millis()),
            now,
            roles,
            replace,
        })
    }

    /// The sessions named in `replace`, each once (a repeated id must not free its
    /// place twice); a problem with the list goes to `c`.
    fn sessions_to_replace(&self, c: &mut super::common::Checks) -> Vec<String> {
        match &self.replace {
            None => Vec::new(),
            Some(list) if list.len() > 100 => {
                c.0.push(FieldError::new("replace", "at most 100 sessions"));
                Vec::new()
            }
            Some(_) if self.user.is_none() => {
                c.0.push(FieldError::new(
                    "replace",
                    "needs `user`: only a user's own sessions can be replaced",
                ));
                Vec::new()
            }
            Some(list) => {
                let unique: std::collections::BTreeSet<String> = list
                    .iter()
                    .filter_map(|s| c.check("replace", SessionRef::parse(s)))
                    .map(SessionRef::into_string)
                    .collect();
                unique.into_iter().collect()
            }
        }
    }
}

impl From<Answer> for AdmissionResult {
    fn from(a: Answer) -> Self {
        Self {
            admitted: a.outcome.admitted(),
            outcome: a.outcome,
            message: a.message,
            session_limit: a.session_limit,
            counted: a.counted,
            evicted: a.evicted,
            replaced: a.replaced,
            own_sessions: a.own_sessions.map(|own| {
                own.into_iter()
                    .map(|o| OwnSession {
                        session: o.session,
                        state: if o.live { "live" } else { "dangling" }.to_owned(),
                        last_activity_at: crate::clock::to_rfc3339(o.last_activity_at),
                        user_agent: o.user_agent,
                        ip: o.ip,
                    })
                    .collect()
            }),
            config_version: a.config_version,
        }
    }
}
