//! Usage now: per site, per tenant and provider-wide.

use std::collections::HashMap;

use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::problems::NotFound;
use super::sites::visible_site;
use super::tenants::visible_tenant;
use crate::auth::{Caller, Scope};
use crate::db::sites::SiteFull;
use crate::db::visible::{SiteKey, Visible};
use crate::db::{sites, tenants, usage};
use crate::error::Result;
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(get_site_usage)
        .service(get_tenant_usage)
        .service(get_usage);
}

/// Declares a usage view: `pub struct Name { own fields } figures { own fields }`, the
/// figures being those every level shows (a site, a tenant, the provider), written
/// here once.
macro_rules! usage_view {
    ($(#[$m:meta])* pub struct $name:ident { $($head:tt)* } figures { $($tail:tt)* }) => {
        $(#[$m])*
        pub struct $name {
            $($head)*
            pub session_limit: i64,
            pub active: i64,
            pub live: i64,
            pub dangling: i64,
            /// Sessions that count against the limit (by the site's `count_mode`; in
            /// totals, summed over the sites).
            pub counted: i64,
            /// `counted ÷ session_limit` (0 when the limit is 0).
            pub utilization: f64,
            pub denied_last_24h: i64,
            $($tail)*
        }
    };
}

usage_view! {
    /// A site's sessions now.
    #[derive(Debug, Serialize, ToSchema, Clone)]
    pub struct SiteUsage {
        pub site: String,
    } figures {
        pub config_version: i64,
    }
}

usage_view! {
    /// Totals over several sites.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct TenantUsage {
        pub tenant: String,
    } figures {
        /// The tenant's pool (`null`: none): counted sessions summed over its sites may
        /// not exceed it.
        pub pooled_session_limit: Option<i64>,
        /// Counted sessions summed over the tenant's sites, as the pool counts them.
        pub pool_counted: i64,
        pub sites: Vec<SiteUsage>,
    }
}

usage_view! {
    /// Totals over every site of every tenant.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct ProviderUsage {} figures {
        pub tenants: Vec<TenantUsage>,
    }
}

fn ratio(counted: i64, limit: i64) -> f64 {
    if limit > 0 {
        counted as f64 / limit as f64
    } else {
        0.0
    }
}

/// Usage rows for the given sites from one grouped count and one grouped denial query.
/// Runs on the blocking pool (inside a `Db::run`), views included: a provider's
/// fleet is thousands of sites, too many to assemble on an async worker.
fn site_views(
    c: &mut crate::db::DbConn, list: &[Visible<SiteFull>], now: i64,
) -> Result<Vec<SiteUsage>> {
    let keys: Vec<SiteKey> = list.iter().map(|f| f.key()).collect();
    let idle: Vec<(SiteKey, i64)> = list
        .iter()
        .map(|f| (f.key(), f.config().idle_timeout_seconds))
        .collect();
    let counts = usage::counts(c, &idle, now)?;
    let mut denied = Vec::new();
    for chunk in keys.chunks(500) {
        denied.extend(usage::denials_between(c, chunk, now - 86_400_000, now + 1)?);
    }
    let denied: HashMap<i64, i64> = denied.into_iter().collect();
    Ok(list
        .iter()
        .map(|f| {
            let cfg = f.config();
            let (active, dangling) = counts.get(&f.site.id).copied().unwrap_or((0, 0));
            let live = active - dangling;
            let counted = cfg.count_mode.counted(active, dangling);
            SiteUsage {
                site: cfg.site.clone(),
                session_limit: cfg.session_limit,
                active,
                live,
                dangling,
                counted,
                utilization: ratio(counted, cfg.session_limit),
                denied_last_24h: denied.get(&f.site.id).copied().unwrap_or(0),
                config_version: cfg.config_version,
            }
        })
        .collect())
}

/// A usage view whose figures are the sums over `$rows`, the views of the level
/// below; the rest are the view's own fields. Those come last, so that they may move
/// what `$rows` names: the sums are taken by then.
macro_rules! summed {
    ($name:ident over $rows:expr; $($own:tt)*) => {{
        let rows = &$rows;
        let session_limit = rows.iter().map(|r| r.session_limit).sum();
        let counted = rows.iter().map(|r| r.counted).sum();
        $name {
            session_limit,
            active: rows.iter().map(|r| r.active).sum(),
            live: rows.iter().map(|r| r.live).sum(),
            dangling: rows.iter().map(|r| r.dangling).sum(),
            counted,
            utilization: ratio(counted, session_limit),
            denied_last_24h: rows.iter().map(|r| r.denied_last_24h).sum(),
            $($own)*
        }
    }};
}

fn totals(tenant: String, sites: Vec<SiteUsage>) -> TenantUsage {
    // The pool counts what its sites count.
    let pool_counted = sites.iter().map(|s| s.counted).sum();
    summed!(TenantUsage over sites; tenant, pooled_session_limit: None, pool_counted, sites)
}

/// A site's sessions now.
#[utoipa::path(tag = "usage", responses((status = 200, body = SiteUsage), NotFound))]
#[get("/v1/sites/{slug}/usage")]
pub async fn get_site_usage(
    state: web::Data<AppState>, caller: Caller, slug: web::Path<String>,
) -> Result<HttpResponse> {
    let site = visible_site(&state, &caller, &slug).await?;
    let now = state.now();
    let list = vec![site];
    let mut rows = state.db.run(move |c| site_views(c, &list, now)).await?;
    Ok(HttpResponse::Ok().json(rows.pop()))
}

async fn all_sites(
    state: &AppState, scope: Scope, tenant: Option<String>,
) -> Result<Vec<Visible<SiteFull>>> {
    state
        .db
        .run(move |c| {
            let mut out = Vec::new();
            let mut after = None;
            loop {
                let page = sites::list(c, &scope, tenant.as_deref(), after, 500)?;
                let done = page.len() < 500;
                after = page.last().map(|f| f.site.id);
                out.extend(page);
                if done {
                    return Ok(out);
                }
            }
        })
        .await
}

/// A tenant's sessions now: totals and every site.
#[utoipa::path(tag = "usage", responses((status = 200, body = TenantUsage), NotFound))]
#[get("/v1/tenants/{slug}/usage")]
pub async fn get_tenant_usage(
    state: web::Data<AppState>, caller: Caller, slug: web::Path<String>,
) -> Result<HttpResponse> {
    let tenant = visible_tenant(&state, &caller, &slug).await?;
    let list = all_sites(&state, caller.scope()?, Some(tenant.slug.clone())).await?;
    let now = state.now();
    let usage = state
        .db
        .run(move |c| {
            let rows = site_views(c, &list, now)?;
            let mut usage = totals(tenant.slug.clone(), rows);
            usage.pooled_session_limit = tenant.pooled_session_limit;
            Ok::<_, crate::error::Error>(usage)
        })
        .await?;
    Ok(HttpResponse::Ok().json(usage))
}

/// Every tenant's totals, each with its sites' rows; tenants without sites included.
fn by_tenant(
    list: &[Visible<SiteFull>], rows: Vec<SiteUsage>, all_tenants: &[tenants::Tenant],
) -> ProviderUsage {
    let owners: HashMap<&str, &str> = list
        .iter()
        .map(|f| (f.site.slug.as_str(), f.tenant_slug.as_str()))
        .collect();
    let mut by_tenant: std::collections::BTreeMap<String, Vec<SiteUsage>> = Default::default();
    for t in all_tenants {
        by_tenant.entry(t.slug.clone()).or_default();
    }
    for r in rows {
        if let Some(t) = owners.get(r.site.as_str()) {
            by_tenant.entry((*t).to_owned()).or_default().push(r);
        }
    }
    let tenants: Vec<TenantUsage> = by_tenant.into_iter().map(|(t, s)| totals(t, s)).collect();
    summed!(ProviderUsage over tenants; tenants)
}

/// Provider-wide sessions now: totals and every tenant (admin).
#[utoipa::path(tag = "usage", responses((status = 200, body = ProviderUsage)))]
#[get("/v1/usage")]
pub async fn get_usage(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse> {
    caller.require_admin()?;
    let list = all_sites(&state, Scope::Provider, None).await?;
    let now = state.now();
    let usage = state
        .db
        .run(move |c| {
            let rows = site_views(c, &list, now)?;
            let all_tenants = tenants::list(c, &Scope::Provider, None, i64::MAX)?;
            Ok::<_, crate::error::Error>(by_tenant(&list, rows, &all_tenants))
        })
        .await?;
    Ok(HttpResponse::Ok().json(usage))
}
