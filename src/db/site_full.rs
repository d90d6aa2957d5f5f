//! A site row with its plan and tenant, and the effective configuration they give:
//! what storage reads for a site, shared by the modules that write its sessions,
//! configuration and pushes.

use diesel::prelude::*;

use super::limits::OverrideColumns;
use super::plans::Plan;
use crate::clock::Millis;
use crate::domain::config::{self, Effective, Overrides};
use crate::domain::schedule;

/// A site as stored, and as a new one is inserted.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = super::schema::sites)]
pub struct Site {
    /// Given by the database: a new site's is not written (any value will do).
    #[diesel(skip_insertion)]
    pub id: i64,
    pub slug: String,
    pub tenant_id: i64,
    pub plan_id: i64,
    pub name: String,
    pub webhook_url: Option<String>,
    pub webhook_disabled_at: Option<Millis>,
    pub webhook_secret: String,
    pub previous_webhook_secret: Option<String>,
    pub previous_secret_expires_at: Option<Millis>,
    pub config_version: i64,
    pub utilization_alert_armed: bool,
    pub last_limit_alert_at: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// Named in the site's tokens: a token for a deleted site never fits a new one.
    pub token_key: Option<String>,
    /// A tenant chose `webhook_url` (not the provider): it is judged as a tenant's.
    pub webhook_url_by_tenant: bool,
    /// The provider's own limit for this site (an admin's `session_limit`): it
    /// replaces the plan's, upwards too, and caps the tenant's own override.
    pub provider_session_limit: Option<i64>,
    /// The site's own overrides (`config::Overrides`).
    #[diesel(embed)]
    pub override_columns: OverrideColumns,
}

impl Site {
    /// The site's own overrides.
    pub fn overrides(&self) -> Overrides {
        Overrides::from(&self.override_columns)
    }
}

/// A site with its tenant's slug and its plan: everything its views need.
#[derive(Debug, Clone)]
pub struct SiteFull {
    pub site: Site,
    pub tenant_slug: String,
    /// The tenant's `pooled_session_limit`.
    pub tenant_pool: Option<i64>,
    pub plan: Plan,
    /// The limit of the site's active boost, if one is active.
    pub boost: Option<i64>,
}

impl SiteFull {
    /// What the site runs with; inside a boost's window the limit is the boost's.
    pub fn effective(&self) -> Effective {
        let mut e = config::effective(
            &self.sold(),
            self.plan.term_columns.overage_percent,
            &self.site.overrides(),
        );
        e.values.session_limit = schedule::boosted(e.values.session_limit, self.boost);
        e
    }

    /// What the provider sold this site: its plan's values, with the provider's own
    /// limit for the site where one is set.
    pub fn sold(&self) -> config::Limits {
        config::sold(&self.plan.limits(), self.site.provider_session_limit)
    }

    pub fn config(&self) -> SiteConfig {
        let e = self.effective();
        SiteConfig {
            site: self.site.slug.clone(),
            plan: self.plan.code.clone(),
            config_version: self.site.config_version,
            limits: e.values,
            overage_percent: e.overage_percent,
        }
    }
}

pub use crate::domain::config::SiteConfig;
