//! Usage history of a site in minute, hour or day points (minute samples and their
//! hour and day roll-ups), as JSON or as a small SVG chart against the limit.

use std::fmt::Write as _;

use actix_web::http::header;
use actix_web::{HttpResponse, get, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::sites::visible_site;
use crate::app::AppState;
use crate::auth::Caller;
use crate::clock::{Millis, to_rfc3339};
use crate::db::history::{self, Bucket};
use crate::error::{Error, FieldError, Problem, Result};

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
    /// End (RFC 3339, exclusive) [default: now].
    pub to: Option<String>,
    /// `minute`, `hour` (the default) or `day`; at most 10,000 points per request.
    /// Minute points are kept `HEADCOUNT_SAMPLE_RETENTION_DAYS` (35 by default), hour
    /// and day points as long as ended sessions (`HEADCOUNT_SESSION_RETENTION_DAYS`).
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

/// One bucket of samples.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct HistoryPoint {
    /// Start of the bucket (UTC minute, hour or day).
    pub at: String,
    pub max_active: i64,
    pub max_live: i64,
    pub max_dangling: i64,
    /// Refused admissions in the bucket.
    pub denied: i64,
    /// The sessions limit in force (the highest during the bucket).
    pub session_limit: i64,
}

/// A site's usage over time. Buckets without samples (the sampler was not running)
/// are left out.
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

async fn load(
    state: &AppState,
    caller: &Caller,
    slug: &str,
    q: &HistoryQuery,
) -> Result<UsageHistory> {
    let site = visible_site(state, caller, slug).await?;
    let range = parse_range(q, state.now())?;
    let site_id = site.site.id;
    let buckets = state
        .db
        .run(move |c| history::buckets(c, site_id, range.from, range.to, range.step.ms()))
        .await?;
    Ok(UsageHistory {
        site: site.site.slug,
        step: range.step,
        from: to_rfc3339(range.from),
        to: to_rfc3339(range.to),
        points: buckets.into_iter().map(point).collect(),
    })
}

fn point(b: Bucket) -> HistoryPoint {
    HistoryPoint {
        at: to_rfc3339(b.at),
        max_active: b.max_active,
        max_live: b.max_live,
        max_dangling: b.max_dangling,
        denied: b.denied,
        session_limit: b.session_limit,
    }
}

/// A site's usage over time: the highest active, live and dangling counts, the
/// refused admissions and the limit per minute, hour or day (admin, owning tenant).
#[utoipa::path(get, path = "/v1/sites/{slug}/usage/history", tag = "usage",
    operation_id = "get_usage_history",
    params(("slug" = String, Path), HistoryQuery), security(("bearer" = [])),
    responses((status = 200, body = UsageHistory),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
#[get("/v1/sites/{slug}/usage/history")]
pub async fn get_usage_history(
    state: web::Data<AppState>,
    caller: Caller,
    slug: web::Path<String>,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse> {
    let h = load(&state, &caller, &slug, &query).await?;
    Ok(HttpResponse::Ok().json(h))
}

/// The same series as a self-contained SVG chart against the limit (admin, owning
/// tenant).
#[utoipa::path(get, path = "/v1/sites/{slug}/usage/chart.svg", tag = "usage",
    operation_id = "get_usage_chart",
    params(("slug" = String, Path), HistoryQuery), security(("bearer" = [])),
    responses((status = 200, body = String, content_type = "image/svg+xml"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
#[get("/v1/sites/{slug}/usage/chart.svg")]
pub async fn get_usage_chart(
    state: web::Data<AppState>,
    caller: Caller,
    slug: web::Path<String>,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse> {
    let h = load(&state, &caller, &slug, &query).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "image/svg+xml; charset=utf-8"))
        .body(chart(&h)))
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 36.0;

/// Draws active and live sessions as steps and the limit as a dashed red step line.
/// A gap in the samples breaks the lines rather than bridging it.
pub fn chart(h: &UsageHistory) -> String {
    let from = chrono::DateTime::parse_from_rfc3339(&h.from).map_or(0, |d| d.timestamp_millis());
    let to = chrono::DateTime::parse_from_rfc3339(&h.to).map_or(1, |d| d.timestamp_millis());
    let step = h.step.ms();
    let ats: Vec<Millis> = h
        .points
        .iter()
        .map(|p| chrono::DateTime::parse_from_rfc3339(&p.at).map_or(0, |d| d.timestamp_millis()))
        .collect();
    let top_value = h
        .points
        .iter()
        .map(|p| p.max_active.max(p.session_limit))
        .max()
        .unwrap_or(0)
        .max(1);
    // Head room above the highest value so that the limit line is never on the frame.
    let y_max = (top_value as f64 * 1.15).ceil().max(1.0);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let span = (to - from).max(1) as f64;
    let x = |t: Millis| LEFT + ((t - from).clamp(0, to - from) as f64 / span) * plot_w;
    let y = |v: i64| TOP + plot_h - (v as f64 / y_max) * plot_h;

    let series = |value: &dyn Fn(&HistoryPoint) -> i64| -> String {
        let mut d = String::new();
        let mut prev_end: Option<Millis> = None;
        for (p, &at) in h.points.iter().zip(&ats) {
            let end = (at + step).min(to);
            let (x0, x1, yv) = (x(at.max(from)), x(end), y(value(p)));
            if prev_end == Some(at) {
                let _ = write!(d, " L{x0:.1},{yv:.1}");
            } else {
                let _ = write!(d, " M{x0:.1},{yv:.1}");
            }
            let _ = write!(d, " L{x1:.1},{yv:.1}");
            prev_end = Some(end);
        }
        d
    };
    let active = series(&|p| p.max_active);
    let live = series(&|p| p.max_live);
    let limit = series(&|p| p.session_limit);

    let mut svg = String::with_capacity(4096);
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">"##
    );
    let _ = write!(
        svg,
        r##"<title>{} sessions per {}</title><rect width="100%" height="100%" fill="#ffffff"/>"##,
        xml_escape(&h.site),
        step_name(h.step)
    );
    let _ = write!(
        svg,
        r##"<text x="{LEFT}" y="16" font-size="13" fill="#222">{} — sessions per {}</text>"##,
        xml_escape(&h.site),
        step_name(h.step)
    );
    // Axes and three horizontal guides with their values.
    for v in [0, (y_max / 2.0).round() as i64, y_max as i64] {
        let yy = y(v);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">{v}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            yy + 4.0
        );
    }
    let base = TOP + plot_h;
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{base}" stroke="#888"/><line x1="{LEFT}" y1="{base}" x2="{:.1}" y2="{base}" stroke="#888"/>"##,
        WIDTH - RIGHT
    );
    let _ = write!(
        svg,
        r##"<text x="{LEFT}" y="{:.1}" fill="#555">{}</text><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">{}</text>"##,
        base + 16.0,
        xml_escape(&h.from),
        WIDTH - RIGHT,
        base + 16.0,
        xml_escape(&h.to)
    );
    if h.points.is_empty() {
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#888">no samples in this range</text>"##,
            LEFT + plot_w / 2.0,
            TOP + plot_h / 2.0
        );
    } else {
        let _ = write!(
            svg,
            r##"<path d="{}" fill="none" stroke="#d62728" stroke-width="1.5" stroke-dasharray="6 4"><title>session limit</title></path>"##,
            limit.trim()
        );
        let _ = write!(
            svg,
            r##"<path d="{}" fill="none" stroke="#2ca02c" stroke-width="1.2"><title>live</title></path>"##,
            live.trim()
        );
        let _ = write!(
            svg,
            r##"<path d="{}" fill="none" stroke="#1f77b4" stroke-width="1.8"><title>active</title></path>"##,
            active.trim()
        );
    }
    // Legend.
    let ly = HEIGHT - 8.0;
    for (i, (name, color, dash)) in [
        ("active", "#1f77b4", ""),
        ("live", "#2ca02c", ""),
        ("limit", "#d62728", r#" stroke-dasharray="6 4""#),
    ]
    .into_iter()
    .enumerate()
    {
        let lx = LEFT + 90.0 * i as f64;
        let _ = write!(
            svg,
            r##"<line x1="{lx:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="2"{dash}/><text x="{:.1}" y="{ly:.1}" fill="#333">{name}</text>"##,
            ly - 4.0,
            lx + 18.0,
            ly - 4.0,
            lx + 22.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn step_name(s: Step) -> &'static str {
    match s {
        Step::Minute => "minute",
        Step::Hour => "hour",
        Step::Day => "day",
    }
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

    #[test]
    fn chart_draws_the_series_and_escapes_text() {
        let h = UsageHistory {
            site: "a<b".into(),
            step: Step::Hour,
            from: "2030-01-01T00:00:00.000Z".into(),
            to: "2030-01-01T04:00:00.000Z".into(),
            points: vec![
                HistoryPoint {
                    at: "2030-01-01T00:00:00.000Z".into(),
                    max_active: 3,
                    max_live: 2,
                    max_dangling: 1,
                    denied: 0,
                    session_limit: 5,
                },
                HistoryPoint {
                    at: "2030-01-01T02:00:00.000Z".into(),
                    max_active: 5,
                    max_live: 5,
                    max_dangling: 0,
                    denied: 2,
                    session_limit: 5,
                },
            ],
        };
        let svg = chart(&h);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>\n"));
        assert!(svg.contains("a&lt;b"));
        assert!(!svg.contains("a<b"));
        // The gap between the two points breaks the line: two moves per series.
        let active = svg.split("<title>active</title>").next().unwrap();
        let d = active.rsplit("d=\"").next().unwrap();
        assert_eq!(d.matches('M').count(), 2);
        let empty = chart(&UsageHistory {
            points: vec![],
            ..h
        });
        assert!(empty.contains("no samples in this range"));
    }
}
