//! Threshold alerts for tenants and the provider, recorded in the outbox.

use diesel::prelude::*;
use serde_json::json;

use super::DbConn;
use super::outbox::{
    KIND_LIMIT_REACHED, KIND_UTILIZATION_HIGH, TARGET_PROVIDER, TARGET_TENANT, enqueue_alert,
};
use super::schema::sites::dsl as s;
use super::sites::SiteFull;
use crate::clock::Millis;
use crate::error::Result;

/// `site.utilization_high` fires when counted sessions first reach this share of the
/// limit, and re-arms when they fall below the lower one.
const HIGH_PERCENT: i64 = 80;
const REARM_PERCENT: i64 = 70;
/// At most one `site.limit_reached` per site per hour.
const LIMIT_ALERT_EVERY_MS: i64 = 3_600_000;

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
    c: &mut DbConn,
    full: &mut SiteFull,
    counted: i64,
    now: Millis,
    provider: bool,
) -> Result<()> {
    let limit = full.config().session_limit;
    if limit <= 0 {
        return Ok(());
    }
    let armed = full.site.utilization_alert_armed;
    if armed && counted * 100 >= limit * HIGH_PERCENT {
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
    } else if !armed && counted * 100 < limit * REARM_PERCENT {
        diesel::update(s::sites.find(full.site.id))
            .set(s::utilization_alert_armed.eq(true))
            .execute(c)?;
        full.site.utilization_alert_armed = true;
    }
    Ok(())
}

/// Called on a refused admission.
pub fn on_refusal(c: &mut DbConn, full: &mut SiteFull, now: Millis, provider: bool) -> Result<()> {
    if full
        .site
        .last_limit_alert_at
        .is_some_and(|at| at > now - LIMIT_ALERT_EVERY_MS)
    {
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
        enqueue_alert(
            c,
            full.site.id,
            full.site.tenant_id,
            KIND_LIMIT_REACHED,
            data,
            &to,
            now,
        )?;
    }
    Ok(())
}
