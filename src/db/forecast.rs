//! The `site.limit_forecast` alert: queued by the sampler when a site's daily peaks
//! trend to its limit within a week, at most once a week per site.

use std::collections::HashMap;

use diesel::prelude::*;
use serde_json::json;

use super::DbConn;
use super::outbox::{TARGET_PROVIDER, TARGET_TENANT, enqueue_alert};
use super::schema::{outbox::dsl as o, usage_rollups::dsl as ur};
use super::sites::SiteFull;
use super::usage::DAY_MS;
use crate::clock::{Millis, to_rfc3339};
use crate::db::Result;
use crate::domain::forecast::{WINDOW_DAYS, limit_reached_at};

pub const KIND_LIMIT_FORECAST: &str = "site.limit_forecast";
/// At most one forecast per site in this long.
const EVERY_MS: i64 = 7 * DAY_MS;

/// What the forecast needs of a site: the sampler keeps this for the fleet through a
/// pass instead of every site's full record.
#[derive(Debug, Clone)]
pub struct Watched {
    pub id: i64,
    pub tenant_id: i64,
    pub slug: String,
    pub tenant_slug: String,
    pub session_limit: i64,
}

impl From<&SiteFull> for Watched {
    fn from(f: &SiteFull) -> Self {
        Self {
            id: f.site.id,
            tenant_id: f.site.tenant_id,
            slug: f.site.slug.clone(),
            tenant_slug: f.tenant_slug.clone(),
            session_limit: f.config().session_limit,
        }
    }
}

/// Checks these sites' trends of daily peaks (the day roll-ups of the last
/// [`WINDOW_DAYS`] days, today's so far included) and queues the alert for those
/// whose trend reaches the limit within a week and that had none in the last week.
pub fn check(c: &mut DbConn, sites: &[&Watched], now: Millis, provider: bool) -> Result<usize> {
    let today = now - now.rem_euclid(DAY_MS);
    let from = today - (WINDOW_DAYS - 1) * DAY_MS;
    let ids: Vec<i64> = sites.iter().map(|w| w.id).collect();
    let rows: Vec<(i64, Millis, i64)> = ur::usage_rollups
        .filter(ur::site_id.eq_any(&ids))
        .filter(ur::bucket_ms.eq(DAY_MS))
        .filter(ur::at.ge(from))
        .filter(ur::at.le(today))
        .order((ur::site_id, ur::at))
        .select((ur::site_id, ur::at, ur::max_active))
        .load(c)?;
    let mut peaks: HashMap<i64, Vec<(Millis, i64)>> = HashMap::new();
    for (site, at, max) in rows {
        peaks.entry(site).or_default().push((at, max));
    }
    let mut queued = 0;
    for &site in sites {
        let Some(days) = peaks.get(&site.id) else {
            continue;
        };
        let limit = site.session_limit;
        let Some(expected_at) = limit_reached_at(days, limit, now) else {
            continue;
        };
        let recent: i64 = o::outbox
            .filter(o::site_id.eq(site.id))
            .filter(o::kind.eq(KIND_LIMIT_FORECAST))
            .filter(o::created_at.gt(now - EVERY_MS))
            .count()
            .get_result(c)?;
        if recent > 0 {
            continue;
        }
        let mut to = Vec::new();
        if tenant_listens(c, site.tenant_id)? {
            to.push(TARGET_TENANT);
        }
        if provider {
            to.push(TARGET_PROVIDER);
        }
        if to.is_empty() {
            continue;
        }
        let data = json!({
            "site": site.slug,
            "tenant": site.tenant_slug,
            "session_limit": limit,
            "peaks": days.iter().map(|(day, peak)| json!({
                "day": &to_rfc3339(*day)[..10],
                "peak_active": peak,
            })).collect::<Vec<_>>(),
            "expected_at": to_rfc3339(expected_at),
        });
        enqueue_alert(
            c,
            site.id,
            site.tenant_id,
            KIND_LIMIT_FORECAST,
            data,
            &to,
            now,
        )?;
        queued += 1;
    }
    Ok(queued)
}

fn tenant_listens(c: &mut DbConn, tenant_id: i64) -> Result<bool> {
    Ok(super::tenants::get_by_id(c, tenant_id)?
        .notify_url
        .is_some())
}
