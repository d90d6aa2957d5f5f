//! The Sessions table, the per-user view and kills, for site maintainers.

use std::collections::HashSet;

use actix_web::{HttpResponse, delete, get, post, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::common::{Body, Page, decode_cursor, encode_cursor, page, page_limit};
use super::problems::{BadRequest, NotFound, UnprocessableEntity};
use super::sites::visible_site;
use crate::auth::Caller;
use crate::clock::{Millis, to_rfc3339};
use crate::db::sessions;
use crate::db::sessions::{ListFilter, SessionRow};
use crate::db::visible::SiteKey;
use crate::domain::ids::SessionRef;
use crate::domain::session::{EndReason, SessionState, state};
use crate::error::{Error, Problem, Result};
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(list_sessions)
        .service(list_users)
        .service(kill_sessions)
        .service(kill_session);
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SessionsQuery {
    /// Comma list of `active`, `live`, `dangling`, `expired`, `ended`, `all`
    /// (default `active`).
    #[param(
        pattern = "^(active|live|dangling|expired|ended|all)(,(active|live|dangling|expired|ended|all))*$"
    )]
    pub state: Option<String>,
    /// Only this user's sessions.
    pub user: Option<String>,
    /// RFC 3339: the sessions active at this instant instead of now, with `state`
    /// judged then (who was on at a billing line's `peak_at`, say).
    pub at: Option<String>,
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// One row of the Sessions table.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    pub session: String,
    pub user: Option<String>,
    pub started_at: String,
    pub last_activity_at: String,
    pub expires_at: String,
    pub ended_at: Option<String>,
    // The document has named it a string since before the reasons were an enum.
    #[schema(value_type = Option<String>)]
    pub end_reason: Option<EndReason>,
    /// `live`, `dangling`, `expired` or `ended` (`active` is live or dangling).
    pub state: SessionState,
    /// Seconds since the last activity (0 for ended sessions' future activity).
    pub idle_seconds: i64,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    /// Admitted with one of the site's `exempt_roles`: listed, never counted, evicted
    /// or billed.
    pub exempt: bool,
}

fn view(row: SessionRow, now: Millis, idle_timeout: i64) -> SessionView {
    let st = state(&row.times(), now, idle_timeout);
    SessionView {
        idle_seconds: ((now - row.last_activity_at) / 1000).max(0),
        state: st,
        session: row.session,
        user: row.user_ref,
        started_at: to_rfc3339(row.started_at),
        last_activity_at: to_rfc3339(row.last_activity_at),
        expires_at: to_rfc3339(row.expires_at),
        ended_at: row.ended_at.map(to_rfc3339),
        end_reason: row.end_reason,
        user_agent: row.user_agent,
        ip: row.ip,
        exempt: row.exempt,
    }
}

pub fn parse_states(s: Option<&str>) -> Result<HashSet<SessionState>> {
    let mut out = HashSet::new();
    for part in s.unwrap_or("active").split(',') {
        match part.trim() {
            "active" => {
                out.insert(SessionState::Live);
                out.insert(SessionState::Dangling);
            }
            "live" => {
                out.insert(SessionState::Live);
            }
            "dangling" => {
                out.insert(SessionState::Dangling);
            }
            "expired" => {
                out.insert(SessionState::Expired);
            }
            "ended" => {
                out.insert(SessionState::Ended);
            }
            "all" => {
                out.extend([
                    SessionState::Live,
                    SessionState::Dangling,
                    SessionState::Expired,
                    SessionState::Ended,
                ]);
            }
            other => {
                return Err(Error::bad_field(
                    "state",
                    format!(
                        "unknown state {other:?}; use active, live, dangling, expired, ended or all"
                    ),
                ));
            }
        }
    }
    Ok(out)
}

/// The Sessions table: newest activity first. With `at` (the sessions active at a
/// past instant) it is one of a tenant's expensive reads: at most
/// `HEADCOUNT_EXPENSIVE_READS_PER_TENANT` run at a time, others get a 429.
#[utoipa::path(tag = "sessions", params(("slug" = String, Path), SessionsQuery),
    responses((status = 200, body = Page<SessionView>), BadRequest, NotFound,
        (status = 429, body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again")))))]
#[get("/v1/sites/{slug}/sessions")]
pub async fn list_sessions(
    state: web::Data<AppState>, caller: Caller, slug: web::Path<String>,
    q: web::Query<SessionsQuery>,
) -> actix_web::Result<HttpResponse> {
    let site = visible_site(&state, &caller, &slug).await?;
    let limit = page_limit(q.limit)?;
    let filter = ListFilter {
        states: parse_states(q.state.as_deref())?,
        user: q.user.clone(),
        before: decode_cursor(q.cursor.as_deref(), 2)?.map(|v| (v[0], v[1])),
        limit: limit + 1,
        idle_longer_than_ms: None,
    };
    let at = q.at.as_deref().map(parse_at).transpose()?;
    let now = at.unwrap_or_else(|| state.now());
    let idle = site.effective().values.idle_timeout_seconds;
    let rows = rows(&state, &caller, site.key(), at, now, idle, filter).await?;
    Ok(HttpResponse::Ok().json(page(
        rows,
        limit,
        |r| vec![r.last_activity_at, r.id],
        |r| match at {
            Some(at) => view_at(r, at, idle),
            None => view(r, now, idle),
        },
    )))
}

/// The page's rows: the sessions now, or at a past instant, which reads the site's
/// history of sessions and so is one of the caller's expensive reads.
async fn rows(
    state: &AppState, caller: &Caller, key: SiteKey, at: Option<Millis>, now: Millis, idle: i64,
    filter: ListFilter,
) -> actix_web::Result<Vec<SessionRow>> {
    let rows = match at {
        Some(at) => {
            let read = state.expensive(caller).await?;
            read.db(&state.db, move |c| {
                sessions::list_active_at(c, key, at, idle, &filter)
            })
            .await
        }
        None => {
            state
                .db
                .run(move |c| sessions::list(c, key, now, idle, &filter))
                .await
        }
    };
    Ok(rows.map_err(Error::from)?)
}

fn parse_at(s: &str) -> Result<Millis> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|d| d.timestamp_millis())
        .map_err(|_| Error::bad_field("at", format!("{s:?} is not an RFC 3339 instant")))
}

/// A row as it stood at `at`: its state and idle time then; the stored instants
/// (an end after `at` included) as they are now.
fn view_at(row: SessionRow, at: Millis, idle_timeout: i64) -> SessionView {
    let mut then = row.times();
    then.ended_at = then.ended_at.filter(|e| *e <= at);
    let st = state(&then, at, idle_timeout);
    SessionView {
        state: st,
        ..view(row, at, idle_timeout)
    }
}

/// A user's active sessions.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    /// The site's user reference (`null` for sessions reported without one).
    pub user: Option<String>,
    pub active: i64,
    pub live: i64,
    pub dangling: i64,
}

/// Per user: active, live and dangling counts, most dangling first.
#[utoipa::path(tag = "sessions", params(("slug" = String, Path), super::common::PageQuery),
    responses((status = 200, body = Page<UserView>), BadRequest, NotFound))]
#[get("/v1/sites/{slug}/users")]
pub async fn list_users(
    state: web::Data<AppState>, caller: Caller, slug: web::Path<String>,
    q: web::Query<super::common::PageQuery>,
) -> Result<HttpResponse> {
    let site = visible_site(&state, &caller, &slug).await?;
    let limit = q.limit()?;
    let offset = decode_cursor(q.cursor.as_deref(), 1)?.map_or(0, |v| v[0].max(0));
    let now = state.now();
    let idle = site.effective().values.idle_timeout_seconds;
    let key = site.key();
    let mut rows = state
        .db
        .run(move |c| sessions::per_user(c, key, now, idle))
        .await?;
    rows.sort_by(|a, b| b.2.cmp(&a.2).then(b.1.cmp(&a.1)).then(a.0.cmp(&b.0)));
    let total = rows.len() as i64;
    let items: Vec<UserView> = rows
        .into_iter()
        .skip(offset as usize)
        .take(limit as usize)
        .map(|(user, active, dangling)| UserView {
            user,
            active,
            live: active - dangling,
            dangling,
        })
        .collect();
    let next = offset + limit;
    Ok(HttpResponse::Ok().json(Page {
        items,
        next_cursor: (next < total).then(|| encode_cursor(&[next])),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KillResult {
    /// Sessions ended by this request.
    pub killed: usize,
}

/// Kill one session: it ends as `killed` and a `session.kill` push is queued.
#[utoipa::path(tag = "sessions", params(("slug" = String, Path), ("session" = String, Path)),
    responses((status = 200, body = KillResult), NotFound))]
#[delete("/v1/sites/{slug}/sessions/{session}")]
pub async fn kill_session(
    state: web::Data<AppState>, caller: Caller, path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    let (slug, session) = path.into_inner();
    let site = visible_site(&state, &caller, &slug).await?;
    let session = SessionRef::parse(&session)
        .map_err(|_| Error::not_found(format!("session {session:?}")))?
        .into_string();
    let now = state.now();
    let killed = state
        .writer()
        .locked(site.key(), move |c| {
            sessions::kill_session(c, &site, &session, now)
        })
        .await?;
    state.outbox_wakeup.notify_one();
    Ok(HttpResponse::Ok().json(KillResult { killed }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KillRequest {
    /// `dangling` or `active`.
    #[schema(pattern = "^(dangling|active)$")]
    pub state: String,
    /// Only this user's sessions.
    pub user: Option<String>,
    /// Only sessions idle for longer than this.
    #[schema(minimum = 0)]
    pub idle_longer_than_seconds: Option<i64>,
}

impl KillRequest {
    /// Which sessions to kill, as a list filter over all of them.
    fn into_filter(self) -> Result<ListFilter> {
        let states = match self.state.as_str() {
            "dangling" => HashSet::from([SessionState::Dangling]),
            "active" => HashSet::from([SessionState::Live, SessionState::Dangling]),
            _ => {
                return Err(Error::invalid_field(
                    "state",
                    "must be \"dangling\" or \"active\"",
                ));
            }
        };
        if self
            .idle_longer_than_seconds
            .is_some_and(|s| !(0..=10 * 365 * 86_400).contains(&s))
        {
            return Err(Error::invalid_field(
                "idle_longer_than_seconds",
                "must be between 0 and 315360000",
            ));
        }
        Ok(ListFilter {
            states,
            user: self.user,
            before: None,
            limit: i64::MAX,
            idle_longer_than_ms: self.idle_longer_than_seconds.map(|s| s * 1000),
        })
    }
}

/// Kill many sessions at once, by state, user and idle time.
#[utoipa::path(tag = "sessions", request_body = KillRequest,
    responses((status = 200, body = KillResult), BadRequest, NotFound, UnprocessableEntity))]
#[post("/v1/sites/{slug}/sessions/kill")]
pub async fn kill_sessions(
    state: web::Data<AppState>, caller: Caller, slug: web::Path<String>, body: Body,
) -> Result<HttpResponse> {
    let site = visible_site(&state, &caller, &slug).await?;
    let filter = body.json::<KillRequest>()?.into_filter()?;
    let now = state.now();
    let idle = site.effective().values.idle_timeout_seconds;
    let killed = state
        .writer()
        .locked(site.key(), move |c| {
            sessions::kill_selected(c, &site, now, idle, &filter)
        })
        .await?;
    state.outbox_wakeup.notify_one();
    Ok(HttpResponse::Ok().json(KillResult { killed }))
}
