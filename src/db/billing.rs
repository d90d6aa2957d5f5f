//! The billing export: the rows it needs, read with portable queries, and the lines
//! computed from them by `domain::billing`. Shared by the HTTP endpoint and
//! `headcount billing export`.

use std::collections::HashMap;

use diesel::prelude::*;

use super::DbConn;
use super::plans::Plan;
use super::schema::{
    denials::dsl as dn, plan_prices::dsl as pp, plans::dsl as p, sessions::dsl as x,
    site_plan_history::dsl as h, sites::dsl as s, tenants::dsl as t, usage_rollups::dsl as ur,
};
use super::usage::HOUR_MS;
use crate::clock::{Millis, to_rfc3339};
use crate::db::{Error, Result};
use crate::domain::billing::{
    self as bill, BillingRow, Period, PlanSpan, PriceSpan, Prices, SessionSpan,
};
use crate::domain::config::OverLimit;
use crate::domain::scope::Scope;

/// A site to bill, with its tenant's slug.
#[derive(Debug, Clone, Queryable)]
pub struct BilledSite {
    pub id: i64,
    pub slug: String,
    pub tenant: String,
}

/// Which tenants the export covers: the caller's scope narrowed by an optional
/// tenant. A tenant asking for another tenant gets "not found", as does an unknown
/// tenant.
pub fn tenant_filter(
    conn: &mut DbConn, scope: &Scope, tenant: Option<&str>,
) -> Result<Option<String>> {
    let wanted = match (scope, tenant) {
        (Scope::Tenant(own), None) => own.clone(),
        (_, Some(t)) => t.to_owned(),
        (Scope::Provider, None) => return Ok(None),
    };
    super::tenants::get(conn, scope, &wanted)?;
    Ok(Some(wanted))
}

/// Sites of one tenant, or of all, ordered by tenant and site slug.
pub fn sites(conn: &mut DbConn, tenant: Option<&str>) -> Result<Vec<BilledSite>> {
    let mut q = s::sites
        .inner_join(t::tenants)
        .select((s::id, s::slug, t::slug))
        .order((t::slug, s::slug))
        .into_boxed();
    if let Some(slug) = tenant {
        q = q.filter(t::slug.eq(slug.to_owned()));
    }
    Ok(q.load(conn)?)
}

pub fn plans(conn: &mut DbConn) -> Result<HashMap<i64, Plan>> {
    let all: Vec<Plan> = p::plans.select(Plan::as_select()).load(conn)?;
    Ok(all.into_iter().map(|plan| (plan.id, plan)).collect())
}

/// Every plan's price changes, in order, keyed by plan.
pub fn prices(conn: &mut DbConn) -> Result<HashMap<i64, Vec<PriceSpan>>> {
    let rows: Vec<(i64, i64, i64, String, Millis)> = pp::plan_prices
        .order((pp::plan_id, pp::effective_from, pp::id))
        .select((
            pp::plan_id,
            pp::monthly_price_cents,
            pp::overage_unit_price_cents,
            pp::currency,
            pp::effective_from,
        ))
        .load(conn)?;
    Ok(grouped(rows.into_iter().map(
        |(plan_id, monthly, overage, currency, effective_from)| {
            let prices = Prices {
                monthly_price_cents: monthly,
                overage_unit_price_cents: overage,
                currency,
            };
            (
                plan_id,
                PriceSpan {
                    prices,
                    effective_from,
                },
            )
        },
    )))
}

/// Rows keyed by plan or site, grouped, in the order they were read (which is the
/// order the export needs).
fn grouped<T>(rows: impl IntoIterator<Item = (i64, T)>) -> HashMap<i64, Vec<T>> {
    let mut out: HashMap<i64, Vec<T>> = HashMap::new();
    for (key, row) in rows {
        out.entry(key).or_default().push(row);
    }
    out
}

/// Plan history of the given sites, in order, keyed by site.
pub fn history(conn: &mut DbConn, site_ids: &[i64]) -> Result<HashMap<i64, Vec<PlanSpan>>> {
    let mut out: HashMap<i64, Vec<PlanSpan>> = HashMap::new();
    for chunk in site_ids.chunks(500) {
        let rows: Vec<(i64, i64, i64, OverLimit, Millis)> = h::site_plan_history
            .filter(h::site_id.eq_any(chunk))
            .order((h::site_id, h::effective_from, h::id))
            .select((
                h::site_id,
                h::plan_id,
                h::session_limit,
                h::over_limit,
                h::effective_from,
            ))
            .load(conn)?;
        let spans = rows.into_iter().map(
            |(site_id, plan_id, session_limit, over_limit, effective_from)| {
                let span = PlanSpan {
                    plan_id,
                    session_limit,
                    over_limit,
                    effective_from,
                };
                (site_id, span)
            },
        );
        // Each site is in one chunk only, so a chunk's groups are whole.
        out.extend(grouped(spans));
    }
    Ok(out)
}

/// Sessions whose interval may touch `[from, to)`: started before `to` and neither
/// ended nor expired before `from`. Sessions of zero length at `from` are kept so
/// that they count as started. Exempt sessions are never billed.
macro_rules! touching {
    ($q:expr, $from:expr, $to:expr) => {
        $q.filter(diesel::dsl::not(x::exempt))
            .filter(x::started_at.lt($to))
            .filter(x::expires_at.ge($from))
            .filter(x::ended_at.is_null().or(x::ended_at.ge($from)))
    };
}

/// How many sessions of each of these sites touch `[from, to)`: sizes the batches.
pub fn session_counts(
    conn: &mut DbConn, site_ids: &[i64], from: Millis, to: Millis,
) -> Result<HashMap<i64, i64>> {
    let mut out = HashMap::new();
    for chunk in site_ids.chunks(500) {
        let rows: Vec<(i64, i64)> =
            touching!(x::sessions.filter(x::site_id.eq_any(chunk)), from, to)
                .group_by(x::site_id)
                .select((x::site_id, diesel::dsl::count_star()))
                .load(conn)?;
        out.extend(rows);
    }
    Ok(out)
}

/// `(site_id, started_at, expires_at, ended_at, user_ref)`
type SpanRow = (i64, Millis, Millis, Option<Millis>, Option<String>);

/// The sessions of these sites that touch `[from, to)`, by site. One query for many
/// sites: sessions are stored in arrival order, so each site's rows are spread over
/// the whole table and reading a batch of sites at once visits each page once
/// instead of once per site.
pub fn session_spans(
    conn: &mut DbConn, site_ids: &[i64], from: Millis, to: Millis,
) -> Result<HashMap<i64, Vec<SessionSpan>>> {
    let rows: Vec<SpanRow> = touching!(x::sessions.filter(x::site_id.eq_any(site_ids)), from, to)
        .select((
            x::site_id,
            x::started_at,
            x::expires_at,
            x::ended_at,
            x::user_ref,
        ))
        .load(conn)?;
    Ok(grouped(rows.into_iter().map(
        |(site_id, start, expires, ended, user)| {
            let end = ended.map_or(expires, |e| e.min(expires));
            (site_id, SessionSpan { start, end, user })
        },
    )))
}

/// Refused admissions of a site in `[from, to)`.
pub fn denials(conn: &mut DbConn, site_id: i64, from: Millis, to: Millis) -> Result<i64> {
    Ok(dn::denials
        .filter(dn::site_id.eq(site_id))
        .filter(dn::at.ge(from))
        .filter(dn::at.lt(to))
        .count()
        .get_result(conn)?)
}

/// How many per-minute samples in `[from, to)` saw each active count: enough for a
/// percentile without reading every minute. For the hours before the site's first
/// covered minute in the range, the hour roll-ups earlier releases kept (when their
/// minute samples were gone) stand in: each such hour counts as 60 minutes at its
/// highest active count, which can only raise the percentile.
pub fn active_histogram(
    conn: &mut DbConn, site_id: i64, from: Millis, to: Millis,
) -> Result<Vec<(i64, i64)>> {
    let pieces = super::samples::pieces(conn, site_id, from, to)?;
    let mut histogram = crate::domain::usage_runs::active_histogram(&pieces);
    let gap_end = pieces
        .first()
        .map_or(to, |p| p.start - p.start.rem_euclid(HOUR_MS));
    let hours: Vec<(i64, i64)> = ur::usage_rollups
        .filter(ur::site_id.eq(site_id))
        .filter(ur::bucket_ms.eq(HOUR_MS))
        .filter(ur::at.ge(from - from.rem_euclid(HOUR_MS)))
        .filter(ur::at.lt(gap_end.min(to)))
        .group_by(ur::max_active)
        .select((ur::max_active, diesel::dsl::count_star()))
        .load(conn)?;
    histogram.extend(hours.into_iter().map(|(v, n)| (v, n * 60)));
    Ok(histogram)
}

/// At most this many sessions, or [`BATCH_SITES`] sites, are held in memory at once
/// (a single larger site is read alone).
const BATCH_SESSIONS: i64 = 500_000;
const BATCH_SITES: usize = 200;

fn batches<'a>(sites: &'a [BilledSite], counts: &HashMap<i64, i64>) -> Vec<&'a [BilledSite]> {
    let mut out = Vec::new();
    let (mut start, mut held) = (0, 0);
    for (i, site) in sites.iter().enumerate() {
        let n = counts.get(&site.id).copied().unwrap_or(0);
        if i > start && (held + n > BATCH_SESSIONS || i - start >= BATCH_SITES) {
            out.push(&sites[start..i]);
            (start, held) = (i, 0);
        }
        held += n;
    }
    if start < sites.len() {
        out.push(&sites[start..]);
    }
    out
}

/// One export line: a site's usage and money in one plan segment.
fn line(
    conn: &mut DbConn, site: &BilledSite, priced: bill::PricedSegment, sessions: &[SessionSpan],
    plan: &Plan,
) -> Result<BillingRow> {
    let bill::PricedSegment {
        seg,
        base_cents,
        prices,
    } = priced;
    let seg = &seg;
    let usage = bill::segment_usage(sessions, seg.from, seg.to);
    let p95 = bill::p95(&active_histogram(conn, site.id, seg.from, seg.to)?);
    let denied = denials(conn, site.id, seg.from, seg.to)?;
    let money = bill::charges_with_base(seg, usage.peak_active, base_cents, &prices);
    Ok(BillingRow {
        tenant: site.tenant.clone(),
        site: site.slug.clone(),
        plan: plan.code.clone(),
        session_limit: seg.session_limit,
        from: to_rfc3339(seg.from),
        to: to_rfc3339(seg.to),
        peak_active: usage.peak_active,
        p95_active: p95,
        sessions_started: usage.sessions_started,
        distinct_users: usage.distinct_users,
        session_hours: bill::hours(usage.session_ms),
        denied_admissions: denied,
        overage_sessions: money.overage_sessions,
        base_cents: money.base_cents,
        overage_cents: money.overage_cents,
        total_cents: money.total_cents,
        currency: prices.currency,
        peak_at: to_rfc3339(usage.peak_at),
    })
}

/// The export lines of a period, one per site and plan segment, ordered by tenant,
/// site and time. `progress(done, total)` is called after each site.
/// Everything is read from one snapshot, so the lines agree with each other even
/// while sessions keep arriving.
pub fn export(
    conn: &mut DbConn, scope: &Scope, tenant: Option<&str>, period: &Period,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<BillingRow>> {
    super::read_snapshot(conn, |c| export_in(c, scope, tenant, period, progress))
}

fn export_in(
    conn: &mut DbConn, scope: &Scope, tenant: Option<&str>, period: &Period,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<BillingRow>> {
    let tenant = tenant_filter(conn, scope, tenant)?;
    let sites = sites(conn, tenant.as_deref())?;
    let plans = plans(conn)?;
    let prices = prices(conn)?;
    let ids: Vec<i64> = sites.iter().map(|s| s.id).collect();
    let mut history = history(conn, &ids)?;
    let counts = session_counts(conn, &ids, period.start, period.end)?;
    let mut rows = Vec::new();
    let mut done = 0;
    for batch in batches(&sites, &counts) {
        let batch_ids: Vec<i64> = batch.iter().map(|s| s.id).collect();
        let mut spans = session_spans(conn, &batch_ids, period.start, period.end)?;
        for site in batch {
            let history = history.remove(&site.id).unwrap_or_default();
            let sessions = spans.remove(&site.id).unwrap_or_default();
            for seg in bill::segments(&history, period) {
                let plan = plans.get(&seg.plan_id).ok_or_else(|| {
                    Error::Internal(anyhow::anyhow!(
                        "site {} has history on plan {} which does not exist",
                        site.slug,
                        seg.plan_id
                    ))
                })?;
                let current = Prices {
                    monthly_price_cents: plan.term_columns.monthly_price_cents,
                    overage_unit_price_cents: plan.term_columns.overage_unit_price_cents,
                    currency: plan.term_columns.currency.clone(),
                };
                let changes = prices.get(&plan.id).map_or(&[][..], Vec::as_slice);
                for priced in bill::price_segment(seg, changes, &current, period) {
                    rows.push(line(conn, site, priced, &sessions, plan)?);
                }
            }
            done += 1;
            progress(done, sites.len());
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(id: i64) -> BilledSite {
        BilledSite {
            id,
            slug: format!("s{id}"),
            tenant: "t".into(),
        }
    }

    #[test]
    fn batches_bound_sessions_and_sites() {
        let sites: Vec<BilledSite> = (1..=5).map(site).collect();
        let counts: HashMap<i64, i64> = [(1, 300_000), (2, 300_000), (3, 900_000), (4, 1)]
            .into_iter()
            .collect();
        let ids = |b: &[BilledSite]| b.iter().map(|s| s.id).collect::<Vec<_>>();
        let got: Vec<Vec<i64>> = batches(&sites, &counts).into_iter().map(ids).collect();
        // A site larger than the bound is read alone; empty sites ride along.
        assert_eq!(got, vec![vec![1], vec![2], vec![3], vec![4, 5]]);
        let many: Vec<BilledSite> = (1..=450).map(site).collect();
        let sizes: Vec<usize> = batches(&many, &HashMap::new())
            .iter()
            .map(|b| b.len())
            .collect();
        assert_eq!(sizes, vec![200, 200, 50]);
        assert!(batches(&[], &counts).is_empty());
    }
}
