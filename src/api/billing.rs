//! The billing export: what each tenant owes for a month, per site and plan segment.

use actix_web::http::header;
use actix_web::{HttpResponse, get, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::common::path_slug;
use super::problems::{BadRequest, NotFound};
use crate::auth::Caller;
use crate::domain::billing::{BillingRow, Period, to_csv};
use crate::error::{Error, FieldError, Problem, Result};
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(export_billing);
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// The UTC month, `YYYY-MM`.
    #[param(required = true, example = "2026-10")]
    pub period: Option<String>,
    /// `csv` (the default) or `json`.
    #[param(example = "csv")]
    pub format: Option<String>,
    /// Only this tenant's sites. A tenant token gets its own rows with or without it;
    /// naming another tenant is "not found".
    pub tenant: Option<String>,
}

/// The export as JSON: the same columns as the CSV.
#[derive(Debug, Serialize, ToSchema)]
pub struct BillingExport {
    /// The month, `YYYY-MM`.
    pub period: String,
    pub rows: Vec<BillingRow>,
}

/// How the export is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

impl Format {
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        match s {
            "csv" => Ok(Self::Csv),
            "json" => Ok(Self::Json),
            other => Err(format!("{other:?} is neither \"csv\" nor \"json\"")),
        }
    }
}

impl ExportQuery {
    /// The month, the format and the tenant asked for. A wrong `period` and a wrong
    /// `format` are reported together; a malformed tenant slug cannot name a tenant,
    /// so it is "not found".
    fn parse(self) -> Result<(Period, Format, Option<String>)> {
        let period = match self.period.as_deref() {
            Some(p) => Period::parse(p),
            None => Err("required, a month like 2026-10".to_owned()),
        };
        let format = self
            .format
            .as_deref()
            .map_or(Ok(Format::Csv), Format::parse);
        let (period, format) = match (period, format) {
            (Ok(p), Ok(f)) => (p, f),
            (p, f) => {
                let errors: Vec<FieldError> = [
                    p.err().map(|m| FieldError::new("period", m)),
                    f.err().map(|m| FieldError::new("format", m)),
                ]
                .into_iter()
                .flatten()
                .collect();
                let detail = errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(Error::BadRequest { detail, errors });
            }
        };
        let tenant = self
            .tenant
            .as_deref()
            .map(|t| path_slug("tenant", t))
            .transpose()?;
        Ok((period, format, tenant))
    }
}

/// The export, rendered, as a response: CSV as a file to save, JSON as it is.
fn export_response(period: &Period, body: String, format: Format) -> HttpResponse {
    let mut res = HttpResponse::Ok();
    match format {
        Format::Csv => {
            res.insert_header((header::CONTENT_TYPE, "text/csv; charset=utf-8"));
            res.insert_header((
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"headcount-billing-{period}.csv\""),
            ));
        }
        Format::Json => {
            res.insert_header((header::CONTENT_TYPE, "application/json"));
        }
    }
    res.body(body)
}

/// Renders the export in a format; shared with `headcount billing export`.
pub fn render(period: &Period, rows: Vec<BillingRow>, format: Format) -> String {
    match format {
        Format::Csv => to_csv(&rows),
        Format::Json => {
            let body = BillingExport {
                period: period.to_string(),
                rows,
            };
            let mut s = serde_json::to_string(&body).unwrap_or_else(|_| "{}".to_owned());
            s.push('\n');
            s
        }
    }
}

/// Export a month's billing lines: one per site and plan segment (admin; a tenant
/// for itself).
///
/// `peak_active` is the exact maximum of overlapping session intervals
/// `[started_at, min(ended_at, expires_at))` (ends before starts at one instant),
/// including sessions started before the month. `p95_active` is the nearest-rank 95th
/// percentile of the per-minute samples (for hours sampled before 0.2.0 whose minutes
/// were gone, of their hourly maxima). `session_hours` is the overlap of session intervals with
/// the segment, rounded half up to two decimals. A site's first segment starts at the
/// period start; a change of the site's plan or limit starts a new one, as does a
/// change of its plan's currency. `base_cents` is the plan's monthly price prorated by
/// the time the site existed on that plan within the segment, each price for the time
/// it was in force, rounded half up to a whole cent. `overage_sessions` = max(0,
/// peak − limit) on `allow_overage` plans, priced at the `overage_unit_price_cents` in
/// force at the segment's end.
///
/// One of a tenant's expensive reads: at most `HEADCOUNT_EXPENSIVE_READS_PER_TENANT`
/// run at a time, others get a 429 with `Retry-After`.
#[utoipa::path(tag = "billing", params(ExportQuery),
    responses(
        (status = 200, description = "CSV (RFC 4180, header row) or JSON", content(
            (String = "text/csv"),
            (BillingExport = "application/json"))),
        BadRequest, NotFound,
        (status = 429, body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again")))))]
#[get("/v1/billing/export")]
pub async fn export_billing(
    state: web::Data<AppState>, caller: Caller, query: web::Query<ExportQuery>,
) -> actix_web::Result<HttpResponse> {
    let scope = caller.scope()?;
    let (period, format, tenant) = query.into_inner().parse()?;
    let read = state.expensive(&caller).await?;
    // Rendered where the rows are made, on the reads' threads: a fleet's export is
    // thousands of lines.
    let body = read
        .db(&state.db, move |c| {
            let rows =
                crate::db::billing::export(c, &scope, tenant.as_deref(), &period, &mut |_, _| {})?;
            Ok::<_, Error>(render(&period, rows, format))
        })
        .await?;
    Ok(export_response(&period, body, format))
}
