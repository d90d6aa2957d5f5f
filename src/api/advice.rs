//! Plan advice: which limit, count mode, idle timeout or plan would have admitted the
//! period's refused users, and what it would have cost.

use actix_web::{HttpResponse, get, web};
use serde::Deserialize;
use utoipa::IntoParams;

use super::problems::{BadRequest, NotFound};
use super::sites::visible_site;
use crate::auth::Caller;
use crate::db::advice;
use crate::db::plans::Plan;
use crate::domain::advice::{Advice, Input, Offer, Rule, advise};
use crate::domain::billing::Period;
use crate::domain::config::{self, Overrides};
use crate::error::{Error, Problem};
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
    let e = config::effective(
        &plan.limits(),
        plan.overage_percent,
        &Overrides {
            session_limit: None,
            ..overrides.clone()
        },
    );
    Offer {
        plan: plan.code.clone(),
        plan_limit: plan.session_limit,
        rule: Rule {
            session_limit: e.values.session_limit,
            count_mode: e.values.count_mode,
            over_limit: e.values.over_limit,
            overage_percent: e.overage_percent,
            idle_timeout_seconds: e.values.idle_timeout_seconds,
        },
        monthly_price_cents: plan.monthly_price_cents,
        overage_unit_price_cents: plan.overage_unit_price_cents,
    }
}

/// The period replayed against every plan, the limits from the current one up to
/// the first that refuses nothing, live counting and other idle timeouts. Refused
/// sign-ins never became sessions; one that an option admits is assumed to last the
/// site's median session length in the period. Prices are the plans' current ones;
/// a place above a plan's own limit costs its overage unit price. One of a tenant's
/// expensive reads: at most `HEADCOUNT_EXPENSIVE_READS_PER_TENANT` run at a time,
/// others get a 429 with `Retry-After`.
#[utoipa::path(tag = "billing", params(("slug" = String, Path), AdviceQuery),
    responses((status = 200, body = Advice), BadRequest, NotFound,
        (status = 429, body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again")))))]
#[get("/v1/sites/{slug}/advice")]
pub async fn get_advice(
    state: web::Data<AppState>, caller: Caller, slug: web::Path<String>, q: web::Query<AdviceQuery>,
) -> actix_web::Result<HttpResponse> {
    let _slot = state.expensive_read(&caller)?;
    let site = visible_site(&state, &caller, &slug).await?;
    let period = q
        .period
        .as_deref()
        .ok_or_else(|| Error::bad_field("period", "required, a month like 2026-10"))
        .and_then(|p| Period::parse(p).map_err(|m| Error::bad_field("period", m)))?;
    let site_id = site.site.id;
    let rows = state
        .db
        .run(move |c| advice::rows(c, site_id, &period))
        .await
        .map_err(Error::from)?;
    let e = site.effective();
    let overrides = site.site.overrides();
    let mut current = offer(&site.plan, &overrides);
    current.rule.session_limit = e.values.session_limit;
    let input = Input {
        period,
        billed_ms: (period.end - site.site.created_at.max(period.start)).clamp(0, period.len_ms()),
        sessions: rows.sessions,
        refusals: rows.refusals,
        plans: rows.plans.iter().map(|p| offer(p, &overrides)).collect(),
        current,
        currency: site.plan.currency.clone(),
    };
    // Thousands of replays of a busy month: off the async workers.
    let advice = web::block(move || advise(&input))
        .await
        .map_err(|e| Error::Internal(anyhow::anyhow!("advice: {e}")))?;
    Ok(HttpResponse::Ok().json(advice))
}
