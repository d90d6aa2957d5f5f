//! Usage history of a site in minute, hour or day points, as JSON or as a small SVG
//! chart against the limit: the most active sessions exact from the session rows,
//! live and dangling from the minute samples and their roll-ups where the sampler saw
//! the bucket (derived from the rows elsewhere), refusals from the recorded denials.

use actix_web::http::header;
use actix_web::{HttpResponse, get, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::problems::{BadRequest, NotFound};
use super::sites::visible_site;
use crate::auth::Caller;
use crate::clock::{Millis, to_rfc3339};
use crate::domain::chart::{self, Chart};
use crate::domain::history::{self, Buckets, Point};
use crate::error::{Error, FieldError, Problem, Result};
use crate::expensive::Read;
use crate::state::AppState;

/// The most points one request may ask for.
pub const MAX_POINTS: i64 = 10_000;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(get_usage_history).service(get_usage_chart);
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Start (RFC 3339, inclusive, rounded down to the start of its minute, hour or
    /// day) [default: `to` minus 6 hours for `minute`, 7 days for `hour`, 35 days for
    /// `day`].
    pub from: Option<String>,
    /// End (RFC 3339, exclusive; the last bucket is cut here) [default: now].
    pub to: Option<String>,
    /// `minute`, `hour` (the default) or `day`; at most 10,000 points per request.
    /// History reaches back as far as the session rows (ended sessions are kept
    /// `HEADCOUNT_SESSION_RETENTION_DAYS`), and so do the sampled live and dangling
    /// counts, at every step.
    pub step: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Minute,
    Hour,
    Day,
}

impl Step {
    fn parse(s: &str) -> std::result::Result<Self, String> {
        match s {
            "minute" => Ok(Self::Minute),
            "hour" => Ok(Self::Hour),
            "day" => Ok(Self::Day),
            other => Err(format!(
                "{other:?} is not one of \"minute\", \"hour\", \"day\""
            )),
        }
    }

    pub fn ms(self) -> i64 {
        match self {
            Self::Minute => 60_000,
            Self::Hour => 3_600_000,
            Self::Day => 86_400_000,
        }
    }

    fn default_span_ms(self) -> i64 {
        match self {
            Self::Minute => 6 * 3_600_000,
            Self::Hour => 7 * 86_400_000,
            Self::Day => 35 * 86_400_000,
        }
    }
}

/// One bucket `[at, at + step)`, cut at the request's `to`.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct HistoryPoint {
    /// Start of the bucket (UTC minute, hour or day).
    pub at: String,
    /// The most sessions active at one instant of the bucket, those already active at
    /// its start included; exact from the session rows (active over `[started_at,
    /// min(ended_at, expires_at))`, as billing's `peak_active`), so sessions reported
    /// late, by a first snapshot say, show in the past too.
    pub max_active: i64,
    /// The most live sessions, as the sampler saw them; in a bucket it did not see,
    /// derived from the rows: a session is live from its start until its last
    /// activity plus the idle timeout, since idle times before its last activity are
    /// not stored.
    pub max_live: i64,
    /// The most dangling sessions, from the sampler like `max_live`; elsewhere derived
    /// from the rows: dangling from the last activity plus the idle timeout to the end.
    pub max_dangling: i64,
    /// Refused admissions in the bucket (site-side refusals included).
    pub denied: i64,
    /// The sessions limit in force (the highest during the bucket).
    pub session_limit: i64,
}

/// A site's usage over time. Buckets in which no session was active, nothing was
/// refused and the sampler recorded nothing are left out.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UsageHistory {
    pub site: String,
    pub step: Step,
    pub from: String,
    pub to: String,
    pub points: Vec<HistoryPoint>,
}

/// The validated request: `[from, to)` and the step.
#[derive(Debug, Clone, Copy)]
struct Range {
    from: Millis,
    to: Millis,
    step: Step,
}

fn parse_instant(field: &str, s: &str) -> std::result::Result<Millis, FieldError> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|d| d.timestamp_millis())
        .map_err(|_| FieldError::new(field, format!("{s:?} is not an RFC 3339 instant")))
}

fn parse_range(q: &HistoryQuery, now: Millis) -> Result<Range> {
    let mut errors = Vec::new();
    let step = match q.step.as_deref().map_or(Ok(Step::Hour), Step::parse) {
        Ok(s) => s,
        Err(m) => {
            errors.push(FieldError::new("step", m));
            Step::Hour
        }
    };
    let to = match q.to.as_deref().map(|s| parse_instant("to", s)) {
        None => now,
        Some(Ok(t)) => t,
        Some(Err(e)) => {
            errors.push(e);
            now
        }
    };
    let from = match q.from.as_deref().map(|s| parse_instant("from", s)) {
        None => to - step.default_span_ms(),
        Some(Ok(t)) => t,
        Some(Err(e)) => {
            errors.push(e);
            to
        }
    };
    if errors.is_empty() {
        if from >= to {
            errors.push(FieldError::new("from", "must be before to"));
        } else {
            let from = from - from.rem_euclid(step.ms());
            let points = (to - from + step.ms() - 1) / step.ms();
            if points > MAX_POINTS {
                errors.push(FieldError::new(
                    "step",
                    format!(
                        "this range has {points} points at this step, more than {MAX_POINTS}; \
                         use a larger step or a shorter range"
                    ),
                ));
            }
        }
    }
    if errors.is_empty() {
        // Whole buckets: hour and day points come from roll-ups of whole UTC hours
        // and days, so the range starts where the bucket holding `from` starts.
        let from = from - from.rem_euclid(step.ms());
        Ok(Range { from, to, step })
    } else {
        let detail = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        Err(Error::BadRequest { detail, errors })
    }
}

/// A site's history, computed.
struct Loaded {
    site: String,
    range: Range,
    points: Vec<Point>,
}

/// Loads a site's history and hands it to `render`, both off the async workers: the
/// sweep, and the rendering of up to 10,000 points, grow with the site's data, and
/// an async worker that spends a second on them holds up every request queued
/// behind it, other tenants' admissions included.
async fn load<T: Send + 'static>(
    state: &AppState, read: &Read, caller: &Caller, slug: &str, q: &HistoryQuery,
    render: impl FnOnce(Loaded) -> T + Send + 'static,
) -> Result<T> {
    let site = visible_site(state, caller, slug).await?;
    let now = state.now();
    let range = parse_range(q, now)?;
    // The future has no history yet: buckets end at now, that instant included (as
    // `GET …/usage` counts the sessions active now).
    let until = range.to.min(now + 1);
    let (key, step) = (site.key(), range.step.ms());
    let idle_ms = site
        .effective()
        .values
        .idle_timeout_seconds
        .saturating_mul(1000);
    let input = read
        .db(&state.db, move |c| {
            crate::db::history::history_inputs(c, key, range.from, until, step, idle_ms)
        })
        .await?;
    // Computed apart from the query, so that the pooled connection is back before it.
    let site = site.site.slug.clone();
    read.compute(move || {
        let points = history::points(&input, &Buckets::new(range.from, until, step));
        render(Loaded {
            site,
            range,
            points,
        })
    })
    .await
    .map_err(|e| Error::Internal(anyhow::anyhow!("history: {e}")))
}

fn view(h: Loaded) -> UsageHistory {
    UsageHistory {
        site: h.site,
        step: h.range.step,
        from: to_rfc3339(h.range.from),
        to: to_rfc3339(h.range.to),
        points: h
            .points
            .into_iter()
            .map(|p| HistoryPoint {
                at: to_rfc3339(p.at),
                max_active: p.max_active,
                max_live: p.max_live,
                max_dangling: p.max_dangling,
                denied: p.denied,
                session_limit: p.session_limit,
            })
            .collect(),
    }
}

/// A site's usage over time: the most active, live and dangling sessions, the
/// refused admissions and the limit per minute, hour or day (admin, owning tenant).
/// One of a tenant's expensive reads: at most `HEADCOUNT_EXPENSIVE_READS_PER_TENANT`
/// run at a time, others get a 429 with `Retry-After`.
#[utoipa::path(tag = "usage", params(("slug" = String, Path), HistoryQuery),
    responses((status = 200, body = UsageHistory), BadRequest, NotFound,
        (status = 429, body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again")))))]
#[get("/v1/sites/{slug}/usage/history")]
pub async fn get_usage_history(
    state: web::Data<AppState>, caller: Caller, slug: web::Path<String>,
    query: web::Query<HistoryQuery>,
) -> actix_web::Result<HttpResponse> {
    let read = state.expensive(&caller).await?;
    let body = load(&state, &read, &caller, &slug, &query, |h| {
        serde_json::to_vec(&view(h))
    })
    .await?
    .map_err(|e| Error::Internal(anyhow::anyhow!("history: {e}")))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .body(body))
}

/// The same series as a self-contained SVG chart against the limit, refusals marked,
/// times labelled in UTC (admin, owning tenant). An expensive read, limited as the
/// history is.
#[utoipa::path(tag = "usage", params(("slug" = String, Path), HistoryQuery),
    responses((status = 200, body = String, content_type = "image/svg+xml"), BadRequest, NotFound,
        (status = 429, body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again")))))]
#[get("/v1/sites/{slug}/usage/chart.svg")]
pub async fn get_usage_chart(
    state: web::Data<AppState>, caller: Caller, slug: web::Path<String>,
    query: web::Query<HistoryQuery>,
) -> actix_web::Result<HttpResponse> {
    let read = state.expensive(&caller).await?;
    let svg = load(&state, &read, &caller, &slug, &query, |h| {
        chart::svg(&Chart {
            site: &h.site,
            from: h.range.from,
            to: h.range.to,
            step_ms: h.range.step.ms(),
            points: &h.points,
        })
    })
    .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "image/svg+xml; charset=utf-8"))
        .body(svg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(from: Option<&str>, to: Option<&str>, step: Option<&str>) -> HistoryQuery {
        HistoryQuery {
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
            step: step.map(str::to_owned),
        }
    }

    fn field(e: Error) -> String {
        match e {
            Error::BadRequest { errors, .. } => errors[0].field.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ranges_are_checked_and_bounded() {
        let now = 1_900_000_000_000;
        let r = parse_range(&q(None, None, None), now).unwrap();
        // The default start, 7 days back, is rounded down to its hour.
        let start = now - 7 * 86_400_000;
        assert_eq!(
            (r.from, r.to, r.step),
            (start - start % 3_600_000, now, Step::Hour)
        );
        assert_ne!(start % 3_600_000, 0, "the rounding is exercised");
        let r = parse_range(
            &q(
                Some("2030-01-01T00:00:00Z"),
                Some("2030-01-01T01:00:00Z"),
                Some("minute"),
            ),
            now,
        )
        .unwrap();
        assert_eq!(r.to - r.from, 3_600_000);
        assert_eq!(
            field(parse_range(&q(None, None, Some("week")), now).unwrap_err()),
            "step"
        );
        assert_eq!(
            field(parse_range(&q(Some("yesterday"), None, None), now).unwrap_err()),
            "from"
        );
        assert_eq!(
            field(
                parse_range(
                    &q(
                        Some("2030-01-02T00:00:00Z"),
                        Some("2030-01-01T00:00:00Z"),
                        None
                    ),
                    now
                )
                .unwrap_err()
            ),
            "from"
        );
        // 30 days of minutes is 43,200 points.
        assert_eq!(
            field(
                parse_range(
                    &q(
                        Some("2030-01-01T00:00:00Z"),
                        Some("2030-01-31T00:00:00Z"),
                        Some("minute")
                    ),
                    now
                )
                .unwrap_err()
            ),
            "step"
        );
        // Exactly 10,000 minutes is allowed.
        assert!(
            parse_range(
                &q(
                    Some("2030-01-01T00:00:00Z"),
                    Some("2030-01-07T22:40:00Z"),
                    Some("minute")
                ),
                now
            )
            .is_ok()
        );
    }
}
