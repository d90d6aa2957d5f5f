//! A boost's edges: opening, closing or withdrawing one changes what its site runs
//! with, so each reconfigures the site (a new `config_version`, a push, a plan-history
//! row) at the edge's own instant.

use diesel::Connection as _;

use super::schedule::{self, Boost};
use super::sites::{self, SiteFull};
use super::visible::SiteKey;
use super::{DbConn, Result};
use crate::clock::Millis;
use crate::domain::schedule::BoostStatus;

/// Opens (`opening`) or closes the boost at `at`, once across processes: false when
/// another process did it first or it was cancelled.
pub fn run_edge(
    conn: &mut DbConn, site_id: i64, id: i64, opening: bool, at: Millis,
) -> Result<bool> {
    conn.transaction(|c| {
        let b = schedule::get_boost(c, SiteKey::of(site_id), id)?;
        let before = sites::get_by_id(c, b.site_id)?;
        let (from, to) = if opening {
            (BoostStatus::Scheduled, BoostStatus::Active)
        } else {
            (BoostStatus::Active, BoostStatus::Ended)
        };
        if !schedule::claim_boost(c, &b, from, to, None)? {
            return Ok(false);
        }
        let action = if opening { "boost_start" } else { "boost_end" };
        reconfigure(c, &before, &b, at, action, "headcount")?;
        Ok(true)
    })
}

/// Withdraws a boost that has not ended: one still to come just goes; an active one
/// ends now and its site returns to its own limit. None when it had already ended
/// or was cancelled.
pub fn cancel(conn: &mut DbConn, b: &Boost, now: Millis, actor: &str) -> Result<Option<Boost>> {
    conn.transaction(|c| {
        let before = sites::get_by_id(c, b.site_id)?;
        for from in [BoostStatus::Scheduled, BoostStatus::Active] {
            if schedule::claim_boost(c, b, from, BoostStatus::Cancelled, Some(now))? {
                if from == BoostStatus::Active {
                    reconfigure(c, &before, b, now, "boost_cancel", actor)?;
                }
                return Ok(Some(schedule::get_boost(c, SiteKey::of(b.site_id), b.id)?));
            }
        }
        Ok(None)
    })
}

/// Pushes the site's configuration as it is after the boost's change, dated `at`,
/// when what it runs with changed; records the edge.
fn reconfigure(
    c: &mut DbConn, before: &SiteFull, b: &Boost, at: Millis, action: &str, actor: &str,
) -> Result<()> {
    let after = sites::get_by_id(c, before.site.id)?;
    let (b4, af) = (before.config(), after.config());
    if af != b4 {
        sites::bump_config(c, &[after.site.id], at)?;
    }
    let details = serde_json::json!({
        "boost": b.id,
        "session_limit": [b4.session_limit, af.session_limit],
    });
    super::audit::record(c, at, actor, action, "site", &before.site.slug, &details)
}
