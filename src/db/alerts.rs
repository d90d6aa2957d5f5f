//! Threshold alerts for tenants and the provider, recorded in the outbox.

use diesel::prelude::*;
use serde_json::json;

use super::DbConn;
use super::outbox::{
    KIND_LIMIT_REACHED, KIND_UTILIZATION_HIGH, TARGET_PROVIDER, TARGET_TENANT, enqueue_alert,
    enqueue_alert_about,
};
use super::schema::sites::dsl as s;
use super::sites::SiteFull;
use crate::clock::Millis;
use crate::db::Result;
use crate::domain::admission::{self, UtilizationAlert};

/// Who receives an alert about this site: its tenant if it set a `notify_url`, and
/// the provider if it configured one.
fn recipients(c: &mut DbConn, tenant_id: i64, provider: bool) -> Result<Vec<&'static str>> {
    let mut out = Vec::new();
    if super::tenants::get_by_id(c, tenant_id)?
        .notify_url
        .is_some()
    {
        out.push(TARGET_TENANT);
    }
    if provider {
        out.push(TARGET_PROVIDER);
    }
    Ok(out)
}

/// Called with a site's counted sessions after a change.
pub fn on_count(
    c: &mut DbConn, full: &mut SiteFull, counted: i64, now: Millis, provider: bool,
) -> Result<()> {
    let limit = full.config().session_limit;
    let armed = full.site.utilization_alert_armed;
    let change = admission::utilization_alert(armed, counted, limit);
    if change == Some(UtilizationAlert::Fire) {
        diesel::update(s::sites.find(full.site.id))
            .set(s::utilization_alert_armed.eq(false))
            .execute(c)?;
        full.site.utilization_alert_armed = false;
        let to = recipients(c, full.site.tenant_id, provider)?;
        if !to.is_empty() {
            let data = json!({
                "site": full.site.slug,
                "tenant": full.tenant_slug,
                "counted": counted,
                "session_limit": limit,
                "utilization": counted as f64 / limit as f64,
            });
            enqueue_alert(
                c,
                full.site.id,
                full.site.tenant_id,
                KIND_UTILIZATION_HIGH,
                data,
                &to,
                now,
            )?;
        }
    } else if change == Some(UtilizationAlert::Rearm) {
        diesel::update(s::sites.find(full.site.id))
            .set(s::utilization_alert_armed.eq(true))
            .execute(c)?;
        full.site.utilization_alert_armed = true;
    }
    Ok(())
}

/// Called on a refusal that happened at `refused_at` (an admission's instant, or the
/// `at` a site gave its own refusal). The pacing, at most one alert an hour, follows
/// headcount's clock (`now`), not `refused_at`: a site that backdates or future-dates
/// its refusals must not raise more alerts than one an hour. The payload still
/// describes the refusal, dated `refused_at`.
pub fn on_refusal(
    c: &mut DbConn, full: &mut SiteFull, refused_at: Millis, now: Millis, provider: bool,
) -> Result<()> {
    if !admission::limit_alert_due(full.site.last_limit_alert_at, now) {
        return Ok(());
    }
    diesel::update(s::sites.find(full.site.id))
        .set(s::last_limit_alert_at.eq(Some(now)))
        .execute(c)?;
    full.site.last_limit_alert_at = Some(now);
    let to = recipients(c, full.site.tenant_id, provider)?;
    if !to.is_empty() {
        let cfg = full.config();
        let data = json!({
            "site": full.site.slug,
            "tenant": full.tenant_slug,
            "session_limit": cfg.session_limit,
            "message": crate::domain::config::limit_message(&cfg.limit_message, cfg.session_limit),
        });
        let site = (full.site.id, full.site.tenant_id);
        enqueue_alert_about(c, site, KIND_LIMIT_REACHED, data, &to, refused_at, now)?;
    }
    Ok(())
}
