//! Why refused: every denial with what the decision saw.

use actix_web::{HttpResponse, get, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::common::{Page, decode_cursor, page, page_limit};
use super::problems::{BadRequest, NotFound};
use super::sites::visible_site;
use crate::auth::Caller;
use crate::clock::{Millis, to_rfc3339};
use crate::db::usage::{self, DenialRow};
use crate::error::{Error, FieldError, Result};
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(list_denials);
}

/// The default window: the last 30 days.
const DEFAULT_WINDOW_MS: i64 = 30 * 86_400_000;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DenialsQuery {
    /// RFC 3339; default 30 days before `to`.
    pub from: Option<String>,
    /// RFC 3339, exclusive; default now.
    pub to: Option<String>,
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// One of the sessions that counted when a refusal was decided.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CountedSession {
    pub session: String,
    /// `live` or `dangling`.
    pub state: String,
    pub idle_seconds: i64,
}

/// A refused admission, or a refusal the site reported (`outcome: site_refused`).
#[derive(Debug, Serialize, ToSchema)]
pub struct DenialView {
    pub at: String,
    pub session: Option<String>,
    pub user: Option<String>,
    pub outcome: String,
    /// Sessions that counted then (`null` for refusals the site reported).
    pub counted: Option<i64>,
    pub session_limit: Option<i64>,
    pub count_mode: Option<String>,
    /// Up to 50 of the sessions that counted, most idle first.
    pub counted_sessions: Vec<CountedSession>,
}

impl DenialsQuery {
    /// `from` and `to` as sent, both reported when both are not RFC 3339 instants.
    fn window(&self) -> Result<(Option<Millis>, Option<Millis>)> {
        match (instant("from", &self.from), instant("to", &self.to)) {
            (Ok(f), Ok(t)) => Ok((f, t)),
            (f, t) => Err(Error::BadRequest {
                detail: "from/to must be RFC 3339 instants".to_owned(),
                errors: [f.err(), t.err()].into_iter().flatten().collect(),
            }),
        }
    }
}

fn instant(field: &str, s: &Option<String>) -> std::result::Result<Option<i64>, FieldError> {
    match s {
        None => Ok(None),
        Some(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|d| Some(d.timestamp_millis()))
            .map_err(|_| FieldError::new(field, format!("{s:?} is not an RFC 3339 instant"))),
    }
}

impl From<DenialRow> for DenialView {
    fn from(r: DenialRow) -> Self {
        Self {
            at: to_rfc3339(r.at),
            session: r.session,
            user: r.user_ref,
            outcome: r.outcome,
            counted: r.counted,
            session_limit: r.session_limit,
            count_mode: r.count_mode,
            // A row whose sample does not read shows none rather than failing the list.
            counted_sessions: r
                .counted_sessions
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or_default(),
        }
    }
}

/// A site's denials, newest first: what each refusal saw.
#[utoipa::path(tag = "usage", params(("slug" = String, Path), DenialsQuery),
    responses((status = 200, body = Page<DenialView>), BadRequest, NotFound))]
#[get("/v1/sites/{slug}/denials")]
pub async fn list_denials(
    state: web::Data<AppState>, caller: Caller, slug: web::Path<String>,
    q: web::Query<DenialsQuery>,
) -> Result<HttpResponse> {
    let site = visible_site(&state, &caller, &slug).await?;
    let limit = page_limit(q.limit)?;
    let before = decode_cursor(q.cursor.as_deref(), 2)?.map(|v| (v[0], v[1]));
    let (from, to) = q.window()?;
    let to = to.unwrap_or_else(|| state.now() + 1);
    let from = from.unwrap_or(to - DEFAULT_WINDOW_MS);
    let key = site.key();
    let rows = state
        .db
        .run(move |c| usage::list_denials(c, key, from, to, before, limit + 1))
        .await?;
    Ok(HttpResponse::Ok().json(page(rows, limit, |r| vec![r.at, r.id], DenialView::from)))
}
