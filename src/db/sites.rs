//! Sites, their effective configuration and its version.

use diesel::prelude::*;

use super::DbConn;
use super::limits::OverrideColumns;
use super::plans::Plan;
use super::schema::{plans, site_plan_history::dsl as h, site_slugs, sites::dsl as s, tenants};
use super::visible::{SiteKey, Visible};
use crate::clock::Millis;
use crate::db::{Error, Result};
use crate::domain::config::{LimitsPatch, OverLimit, PlanEdit};

use crate::domain::scope::Scope;

pub use super::site_full::{Site, SiteConfig, SiteFull};

/// A partial update of the site's own fields (its overrides change with
/// [`change`]); `Some(None)` clears.
#[derive(Debug, Default, Clone, AsChangeset)]
#[diesel(table_name = super::schema::sites)]
pub struct SiteChanges {
    pub name: Option<String>,
    pub plan_id: Option<i64>,
    pub webhook_url: Option<Option<String>>,
    pub webhook_disabled_at: Option<Option<Millis>>,
    pub updated_at: Option<Millis>,
    pub webhook_url_by_tenant: Option<bool>,
    pub provider_session_limit: Option<Option<i64>>,
}

type FullRow = (Site, String, Option<i64>, Plan);

fn load_full(conn: &mut DbConn, filter: SiteFilter<'_>) -> Result<Vec<SiteFull>> {
    // A slug is looked up in the register first, so that the site itself is read by
    // its id: one shard on Citus instead of every shard. A site the previous release
    // created has no entry there and is found by its slug.
    let filter = match filter {
        SiteFilter::Slug(slug) => match registered_id(conn, slug)? {
            Some(id) => SiteFilter::Id(id),
            None => SiteFilter::Slug(slug),
        },
        other => other,
    };
    let mut q = s::sites
        .inner_join(tenants::table)
        .inner_join(plans::table)
        .select((
            Site::as_select(),
            tenants::slug,
            tenants::pooled_session_limit,
            Plan::as_select(),
        ))
        .into_boxed();
    match filter {
        SiteFilter::Slug(slug) => q = q.filter(s::slug.eq(slug.to_owned())),
        SiteFilter::Id(id) => q = q.filter(s::id.eq(id)),
        SiteFilter::Ids(ids) => q = q.filter(s::id.eq_any(ids.to_vec())),
        SiteFilter::Page {
            tenant,
            after_id,
            limit,
        } => {
            q = q.filter(s::id.gt(after_id.unwrap_or(0)));
            if let Some(t) = tenant {
                q = q.filter(tenants::slug.eq(t.to_owned()));
            }
            q = q.order(s::id).limit(limit);
        }
    }
    let rows: Vec<FullRow> = q.load(conn)?;
    let boosts = if rows.is_empty() {
        Default::default()
    } else {
        let ids: Vec<i64> = rows.iter().map(|r| r.0.id).collect();
        super::schedule::active_boost_limits(conn, &ids)?
    };
    Ok(rows
        .into_iter()
        .map(|(site, tenant_slug, tenant_pool, plan)| SiteFull {
            boost: boosts.get(&site.id).copied(),
            site,
            tenant_slug,
            tenant_pool,
            plan,
        })
        .collect())
}

enum SiteFilter<'a> {
    Slug(&'a str),
    Id(i64),
    Ids(&'a [i64]),
    Page {
        tenant: Option<&'a str>,
        after_id: Option<i64>,
        limit: i64,
    },
}

/// A site as the scope sees it: another tenant's site is "not found".
pub fn get(conn: &mut DbConn, scope: &Scope, slug: &str) -> Result<Visible<SiteFull>> {
    let found = load_full(conn, SiteFilter::Slug(slug))?.pop();
    match found {
        Some(f) if visible(scope, &f) => Ok(Visible::new(f)),
        _ => Err(Error::not_found(format!("site {slug:?}"))),
    }
}

/// A site as the scope sees it, held until the transaction ends (see
/// [`super::lock_site`]): what a change reads before it writes, so that two changes
/// of one site apply one after the other.
pub fn get_for_change(conn: &mut DbConn, scope: &Scope, slug: &str) -> Result<Visible<SiteFull>> {
    let seen = get(conn, scope, slug)?;
    super::lock_site(conn, seen.site.id)?;
    Ok(Visible::new(get_by_id(conn, seen.site.id)?))
}

/// A site for its own agent (the caller has been checked to be this site).
pub fn get_for_agent(conn: &mut DbConn, slug: &str) -> Result<Visible<SiteFull>> {
    get(conn, &Scope::Provider, slug)
}

/// The ids of up to `limit` sites after `after`, in order: how fleet-wide jobs walk
/// the sites in bounded batches.
pub fn ids_after(conn: &mut DbConn, after: i64, limit: i64) -> Result<Vec<i64>> {
    Ok(s::sites
        .filter(s::id.gt(after))
        .order(s::id)
        .limit(limit)
        .select(s::id)
        .load(conn)?)
}

pub fn get_by_id(conn: &mut DbConn, id: i64) -> Result<SiteFull> {
    load_full(conn, SiteFilter::Id(id))?
        .pop()
        .ok_or_else(|| Error::not_found("site"))
}

/// A tenant's pool: counted sessions summed over its sites (each by its own count
/// mode), with the tenant's row held so that concurrent admissions on its sites
/// decide one after the other (PostgreSQL; SQLite's writer holds everything).
/// Callers hold their sites' locks first, so the tenant lock comes last.
pub fn lock_pool(conn: &mut DbConn, tenant_id: i64, now: Millis) -> Result<i64> {
    if let DbConn::Pg(c) = conn {
        tenants::table
            .filter(tenants::id.eq(tenant_id))
            .select(tenants::id)
            .for_no_key_update()
            .load::<i64>(c)?;
    }
    let ids: Vec<i64> = s::sites
        .filter(s::tenant_id.eq(tenant_id))
        .select(s::id)
        .load(conn)?;
    let fulls = get_many(conn, &ids)?;
    let idle: Vec<(i64, i64)> = fulls
        .iter()
        .map(|f| (f.site.id, f.effective().values.idle_timeout_seconds))
        .collect();
    let counts = super::batch_reads::counts(conn, &idle, now)?;
    Ok(fulls
        .iter()
        .map(|f| {
            let (active, dangling) = counts.get(&f.site.id).copied().unwrap_or_default();
            f.effective().values.count_mode.counted(active, dangling)
        })
        .sum())
}

/// Several sites by id, in one query; ids that do not exist are left out.
pub fn get_many(conn: &mut DbConn, ids: &[i64]) -> Result<Vec<SiteFull>> {
    load_full(conn, SiteFilter::Ids(ids))
}

fn visible(scope: &Scope, f: &SiteFull) -> bool {
    scope.sees(&f.tenant_slug)
}

pub fn list(
    conn: &mut DbConn, scope: &Scope, tenant: Option<&str>, after_id: Option<i64>, limit: i64,
) -> Result<Vec<Visible<SiteFull>>> {
    let tenant = match (scope, tenant) {
        (Scope::Tenant(own), Some(t)) if own != t => return Ok(Vec::new()),
        (Scope::Tenant(own), _) => Some(own.as_str()),
        (Scope::Provider, t) => t,
    };
    Ok(load_full(
        conn,
        SiteFilter::Page {
            tenant,
            after_id,
            limit,
        },
    )?
    .into_iter()
    .map(Visible::new)
    .collect())
}

/// The site a slug names, from the fleet-wide register of slugs.
fn registered_id(conn: &mut DbConn, slug: &str) -> Result<Option<i64>> {
    Ok(site_slugs::table
        .filter(site_slugs::slug.eq(slug))
        .select(site_slugs::site_id)
        .first(conn)
        .optional()?)
}

/// Adds a site and registers its slug; a slug in use is a conflict (the register's
/// key, which also holds on Citus where `sites` cannot keep a unique slug itself).
pub fn insert(conn: &mut DbConn, new: &Site, now: Millis) -> Result<SiteFull> {
    let id: i64 = crate::per_backend!(conn, |c| diesel::insert_into(s::sites)
        .values(new)
        .returning(s::id)
        .get_result(c)?);
    diesel::insert_into(site_slugs::table)
        .values((site_slugs::slug.eq(&new.slug), site_slugs::site_id.eq(id)))
        .execute(conn)?;
    let full = get_by_id(conn, id)?;
    record_plan_history(conn, &full, now)?;
    Ok(full)
}

/// Applies a checked change to the site read as `before` (held with
/// [`get_for_change`]) and records it: a change of what the site runs with bumps its
/// configuration (and pushes it); setting the webhook URL again re-enables a webhook
/// that answered 410 and pushes the configuration to it. The site as it is now.
pub fn change(
    conn: &mut DbConn, before: &SiteFull, mut changes: SiteChanges, overrides: LimitsPatch,
    now: Millis, actor: &str,
) -> Result<SiteFull> {
    let url_set = matches!(changes.webhook_url, Some(Some(_)));
    if url_set {
        changes.webhook_disabled_at = Some(None);
    }
    let own = overrides.applied_to_overrides(&before.site.overrides());
    diesel::update(s::sites.find(before.site.id))
        .set((&changes, OverrideColumns::from(&own)))
        .execute(conn)?;
    let mut after = get_by_id(conn, before.site.id)?;
    if after.config() != before.config() {
        after = bump_config(conn, &[after.site.id], now)?
            .pop()
            .ok_or_else(|| Error::not_found("site"))?;
    } else if url_set
        && (changes.webhook_url != Some(before.site.webhook_url.clone())
            || before.site.webhook_disabled_at.is_some())
    {
        super::outbox::enqueue_config(conn, &after, now)?;
    }
    let (b4, af) = (before.config(), after.config());
    let details = serde_json::json!({
        "plan": [before.plan.code, after.plan.code],
        "session_limit": [b4.session_limit, af.session_limit],
        "config_version": [b4.config_version, af.config_version],
    });
    super::audit::record(
        conn,
        now,
        actor,
        "update",
        "site",
        &before.site.slug,
        &details,
    )?;
    Ok(after)
}

pub fn delete(conn: &mut DbConn, site: SiteKey) -> Result<()> {
    let id = site.id();
    diesel::delete(site_slugs::table.filter(site_slugs::site_id.eq(id))).execute(conn)?;
    diesel::delete(s::sites.find(id)).execute(conn)?;
    Ok(())
}

/// Bumps `config_version` of the given sites, keeps the plan history and queues a
/// `site.config_changed` push for each, all in the caller's transaction.
pub fn bump_config(conn: &mut DbConn, site_ids: &[i64], now: Millis) -> Result<Vec<SiteFull>> {
    if site_ids.is_empty() {
        return Ok(Vec::new());
    }
    for chunk in site_ids.chunks(500) {
        diesel::update(s::sites.filter(s::id.eq_any(chunk.to_vec())))
            .set((
                s::config_version.eq(s::config_version + 1),
                s::updated_at.eq(now),
            ))
            .execute(conn)?;
    }
    let mut out = Vec::with_capacity(site_ids.len());
    for chunk in site_ids.chunks(500) {
        let fulls = load_full(conn, SiteFilter::Ids(chunk))?;
        record_plan_histories(conn, &fulls, now)?;
        super::outbox::enqueue_configs(conn, &fulls, now)?;
        out.extend(fulls);
    }
    Ok(out)
}

/// Changes the plan and reconfigures the sites on it when what they run with
/// changed, in one transaction; the plan as it is now. Lives here, not in
/// `db::plans`, because reconfiguring builds on this module, which builds on that one.
pub fn change_plan_and_reconfigure_sites(
    conn: &mut DbConn, code: &str, edit: &PlanEdit, now: Millis, actor: &str,
) -> Result<Plan> {
    conn.transaction(|c| {
        let (before, after) = super::plans::change(c, code, edit, now, actor)?;
        let ids = super::plans::sites_to_reconfigure(c, &before, &after)?;
        bump_config(c, &ids, now)?;
        Ok(after)
    })
}

/// [`record_plan_history`] for many sites: their latest rows in one query, the new
/// rows in one statement.
fn record_plan_histories(conn: &mut DbConn, fulls: &[SiteFull], now: Millis) -> Result<()> {
    let ids: Vec<i64> = fulls.iter().map(|f| f.site.id).collect();
    let rows: Vec<(i64, i64, i64, OverLimit)> = h::site_plan_history
        .filter(h::site_id.eq_any(&ids))
        .order((h::site_id, h::effective_from, h::id))
        .select((h::site_id, h::plan_id, h::session_limit, h::over_limit))
        .load(conn)?;
    // Ordered by time within each site: the last one seen is the latest.
    let mut last = std::collections::HashMap::with_capacity(ids.len());
    for (site, plan, limit, over) in rows {
        last.insert(site, (plan, limit, over));
    }
    let new: Vec<_> = fulls
        .iter()
        .filter_map(|full| {
            let e = full.effective();
            let current = (full.plan.id, e.values.session_limit, e.values.over_limit);
            (last.get(&full.site.id) != Some(&current)).then(|| {
                (
                    h::site_id.eq(full.site.id),
                    h::plan_id.eq(current.0),
                    h::session_limit.eq(current.1),
                    h::over_limit.eq(current.2),
                    h::effective_from.eq(now),
                )
            })
        })
        .collect();
    if !new.is_empty() {
        crate::per_backend!(conn, |c| diesel::insert_into(h::site_plan_history)
            .values(&new)
            .execute(c)?);
    }
    Ok(())
}

/// Appends a plan-history row when the plan or effective limit differs from the last.
fn record_plan_history(conn: &mut DbConn, full: &SiteFull, now: Millis) -> Result<()> {
    record_plan_histories(conn, std::slice::from_ref(full), now)
}

#[derive(Debug, Clone, Queryable)]
pub struct PlanHistoryRow {
    pub plan_id: i64,
    pub session_limit: i64,
    pub over_limit: OverLimit,
    pub effective_from: Millis,
}

pub fn plan_history(conn: &mut DbConn, site_id: i64) -> Result<Vec<PlanHistoryRow>> {
    Ok(h::site_plan_history
        .filter(h::site_id.eq(site_id))
        .order((h::effective_from, h::id))
        .select((
            h::plan_id,
            h::session_limit,
            h::over_limit,
            h::effective_from,
        ))
        .load(conn)?)
}

pub fn set_webhook_secret(
    conn: &mut DbConn, site: SiteKey, secret: &str, previous: &str, previous_until: Millis,
) -> Result<()> {
    diesel::update(s::sites.find(site.id()))
        .set((
            s::webhook_secret.eq(secret),
            s::previous_webhook_secret.eq(Some(previous)),
            s::previous_secret_expires_at.eq(Some(previous_until)),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn disable_webhook(conn: &mut DbConn, id: i64, now: Millis) -> Result<()> {
    diesel::update(s::sites.find(id))
        .set(s::webhook_disabled_at.eq(Some(now)))
        .execute(conn)?;
    Ok(())
}

/// Sites by slug for the agent endpoints, kept for a second: an agent's every request
/// needs its site, and a second-old copy is good enough for ingestion (admissions
/// read the site again under its lock).
#[derive(Debug, Default)]
pub struct SiteCache {
    map: std::sync::RwLock<
        std::collections::HashMap<String, (std::time::Instant, Visible<SiteFull>)>,
    >,
}

const SITE_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(1);

impl SiteCache {
    pub fn get(&self, slug: &str) -> Option<Visible<SiteFull>> {
        let map = self.map.read().ok()?;
        let (at, f) = map.get(slug)?;
        (at.elapsed() < SITE_CACHE_TTL).then(|| f.clone())
    }

    /// Drops a deleted site at once, so that its tokens stop working here.
    pub fn forget(&self, slug: &str) {
        if let Ok(mut map) = self.map.write() {
            map.remove(slug);
        }
    }

    pub fn put(&self, f: &Visible<SiteFull>) {
        if let Ok(mut map) = self.map.write() {
            if map.len() > 100_000 {
                map.clear();
            }
            map.insert(f.site.slug.clone(), (std::time::Instant::now(), f.clone()));
        }
    }
}
