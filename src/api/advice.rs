//! Plan advice: which limit, count mode, idle timeout or plan would have admitted the
//! period's refused users, and what it would have cost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, ResponseError, get, web};
use serde::Deserialize;
use utoipa::IntoParams;

use super::problems::{BadRequest, NotFound};
use super::sites::visible_site;
use crate::auth::Caller;
use crate::cache::AdviceKey;
use crate::db::advice;
use crate::db::plans::Plan;
use crate::db::site_full::SiteFull;
use crate::db::visible::Visible;
use crate::domain::advice::{Advice, Input, Offer, Rule, advise_within};
use crate::domain::billing::Period;
use crate::domain::config::{self, Overrides};
use crate::error::{Error, Problem};
use crate::expensive::Read;
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(get_advice);
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AdviceQuery {
    /// The UTC month, `YYYY-MM`.
    #[param(required = true, example = "2026-10")]
    pub period: Option<String>,
}

/// A plan as an option for this site: the plan's values with the site's provider
/// overrides (count mode, over-limit rule, idle timeout), at the plan's own limit.
fn offer(plan: &Plan, overrides: &Overrides) -> Offer {
    let (limits, terms) = (plan.limits(), plan.terms());
    let e = config::effective(
        &limits,
        terms.overage_percent,
        &Overrides {
            session_limit: None,
            ..overrides.clone()
        },
    );
    Offer {
        plan: plan.code.clone(),
        plan_limit: limits.session_limit,
        rule: Rule {
            session_limit: e.values.session_limit,
            count_mode: e.values.count_mode,
            over_limit: e.values.over_limit,
            overage_percent: e.overage_percent,
            idle_timeout_seconds: e.values.idle_timeout_seconds,
        },
        monthly_price_cents: terms.monthly_price_cents,
        overage_unit_price_cents: terms.overage_unit_price_cents,
    }
}

/// The period replayed against every plan, the limits from the current one up to
/// the first that refuses nothing, live counting and other idle timeouts. Refused
/// sign-ins never became sessions; one that an option admits is assumed to last the
/// site's median session length in the period. Prices are the plans' current ones;
/// a place above a plan's own limit costs its overage unit price. One of a tenant's
/// expensive reads: at most `HEADCOUNT_EXPENSIVE_READS_PER_TENANT` run at a time,
/// others get a 429 with `Retry-After`. Kept until the period's sessions, refusals,
/// the plans or the site's settings change. A computation that needs more than
/// `HEADCOUNT_ADVICE_BUDGET_SECONDS` is given up with a 503 and `Retry-After`.
#[utoipa::path(tag = "billing", params(("slug" = String, Path), AdviceQuery),
    responses((status = 200, body = Advice), BadRequest, NotFound,
        (status = 429, body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
        (status = 503, description = "The advice needs more work than `HEADCOUNT_ADVICE_BUDGET_SECONDS` allows",
            body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again")))))]
#[get("/v1/sites/{slug}/advice")]
pub async fn get_advice(
    state: web::Data<AppState>, caller: Caller, slug: web::Path<String>, q: web::Query<AdviceQuery>,
) -> actix_web::Result<HttpResponse> {
    let read = state.expensive(&caller).await?;
    let site = visible_site(&state, &caller, &slug).await?;
    let period = q
        .period
        .as_deref()
        .ok_or_else(|| Error::bad_field("period", "required, a month like 2026-10"))
        .and_then(|p| Period::parse(p).map_err(|m| Error::bad_field("period", m)))?;
    let key = key(&state, &site, period).await?;
    if let Some(advice) = state.advice_cache.get(&key) {
        return Ok(HttpResponse::Ok().json(&*advice));
    }
    let advice = Arc::new(compute(&state, &read, &key).await?);
    state.advice_cache.insert(key, advice.clone());
    Ok(HttpResponse::Ok().json(&*advice))
}

/// Everything the advice of `period` is computed from but the rows, and the version
/// of the rows: one small read.
async fn key(
    state: &AppState, site: &Visible<SiteFull>, period: Period,
) -> Result<AdviceKey, Error> {
    let site_key = site.key();
    let (version, plans) = state
        .db
        .run(move |c| advice::version(c, site_key, &period))
        .await?;
    let e = site.effective();
    let overrides = site.site.overrides();
    let mut current = offer(&site.plan, &overrides);
    current.rule.session_limit = e.values.session_limit;
    Ok(AdviceKey {
        site: site_key,
        period,
        version,
        current,
        plans: plans.iter().map(|p| offer(p, &overrides)).collect(),
        billed_ms: (period.end - site.site.created_at.max(period.start)).clamp(0, period.len_ms()),
        currency: site.plan.terms().currency,
    })
}

/// Reads the rows and computes the advice on the blocking pool, within the budget.
async fn compute(state: &AppState, read: &Read, key: &AdviceKey) -> actix_web::Result<Advice> {
    let (site, period) = (key.site, key.period);
    let rows = read
        .db(&state.db, move |c| advice::rows(c, site, &period))
        .await
        .map_err(Error::from)?;
    let input = Input {
        period,
        billed_ms: key.billed_ms,
        sessions: rows.sessions,
        refusals: rows.refusals,
        plans: key.plans.clone(),
        current: key.current.clone(),
        currency: key.currency.clone(),
    };
    let budget = Duration::from_secs(state.config.advice_budget_seconds);
    // Set if this request is dropped with the client gone: the computation, on the
    // blocking pool, sees it and stops.
    let gone = Gone::default();
    let seen = gone.0.clone();
    Ok(read
        .compute(move || {
            let deadline = Instant::now() + budget;
            advise_within(&input, &|| {
                seen.load(Ordering::Relaxed) || Instant::now() >= deadline
            })
        })
        .await
        .map_err(|e| Error::Internal(anyhow::anyhow!("advice: {e}")))?
        .map_err(|_| OverBudget(budget.as_secs()))?)
}

/// Set when the request it belongs to is dropped.
#[derive(Default)]
struct Gone(Arc<AtomicBool>);

impl Drop for Gone {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Seconds a client is asked to wait after an advice over budget: the work it needs
/// does not shrink, but the period's rows or a busy machine may change.
const OVER_BUDGET_RETRY_AFTER_SECONDS: u64 = 60;

/// The advice needed more than its budget (seconds) of work and was given up.
#[derive(Debug, thiserror::Error)]
#[error(
    "the advice of this period needs more than HEADCOUNT_ADVICE_BUDGET_SECONDS ({0} s) of computing; it was given up so as not to hold the server's cores. Retry later, or ask the operator to raise the budget"
)]
struct OverBudget(u64);

impl ResponseError for OverBudget {
    fn status_code(&self) -> StatusCode {
        StatusCode::SERVICE_UNAVAILABLE
    }

    fn error_response(&self) -> HttpResponse {
        let problem = Problem {
            kind: "https://headcount.invalid/problems/advice-over-budget".to_owned(),
            title: "Service unavailable".to_owned(),
            status: self.status_code().as_u16(),
            detail: self.to_string(),
            errors: Vec::new(),
            request_id: crate::request_id::current(),
        };
        HttpResponse::build(self.status_code())
            .insert_header((header::CONTENT_TYPE, "application/problem+json"))
            .insert_header((
                header::RETRY_AFTER,
                OVER_BUDGET_RETRY_AFTER_SECONDS.to_string(),
            ))
            .body(serde_json::to_string(&problem).unwrap_or_default())
    }
}
