//! What every handler and background task shares, and how it is built at start.

use std::sync::Arc;

use actix_web::web;
use base64::Engine;
use rand::RngCore;
use tokio::sync::Notify;

use crate::auth::{Caller, Keys, Revocations, Role, VerifiedTokens};
use crate::clock::SharedClock;
use crate::config::{Config, Secret};
use crate::db::Db;
use crate::db::site_writer::SiteWriter;
use crate::error::{Error, Result};
use crate::expensive::{ExpensiveReads, Read};
use crate::metrics::Metrics;
use crate::ratelimit::{RateLimiter, Slot, TooManyReads};

/// What every handler and background task shares.
pub struct AppState {
    pub db: Db,
    pub clock: SharedClock,
    pub keys: Keys,
    pub revocations: Revocations,
    /// Tokens already verified, so that each request does not redo the HMAC.
    pub verified_tokens: VerifiedTokens,
    /// Tenants' subject keys, so that a tenant token dies with its tenant.
    pub tenant_keys: crate::auth::TenantKeys,
    pub config: Arc<Config>,
    /// Shared with the background jobs, which take it without the rest of the state.
    pub metrics: Arc<Metrics>,
    /// Wakes the push sender when a change has queued a push.
    pub outbox_wakeup: Arc<Notify>,
    rate_limiter: Option<RateLimiter>,
    /// Places, turns and threads of expensive reads.
    expensive_reads: ExpensiveReads,
    /// Pushes to URLs the provider chose.
    pub http: reqwest::Client,
    /// Pushes to URLs a tenant chose: never loopback or link-local.
    pub http_tenant: reqwest::Client,
    /// The writer of every site's sessions; started on first use, on the server's
    /// runtime.
    site_writer: std::sync::OnceLock<SiteWriter>,
    /// Sites looked up by their agents' requests, kept for a second.
    agent_sites: crate::db::sites::SiteCache,
    /// Computed plan advice, by site, period and data version.
    pub advice_cache: crate::cache::AdviceCache,
    /// The identity provider people sign in with, when one is configured.
    pub oidc: Option<Arc<crate::oidc::Provider>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("db", &self.db)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AppState {
    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The writer of every site's sessions.
    pub fn writer(&self) -> &SiteWriter {
        let provider_alerts = self.config.provider_notify_url.is_some();
        self.site_writer
            .get_or_init(|| SiteWriter::start(self.db.clone(), provider_alerts))
    }

    pub fn agent_sites(&self) -> &crate::db::sites::SiteCache {
        &self.agent_sites
    }

    pub fn rate_limit(&self, caller: &Caller) -> Result<()> {
        match &self.rate_limiter {
            Some(r) => r.take(caller.jti()).map_err(|s| Error::RateLimited {
                retry_after_seconds: s,
                limit: r.per_second(),
            }),
            None => Ok(()),
        }
    }

    /// A place for one expensive read of `caller` (usage history and charts, advice,
    /// billing export, sessions at a past instant), refused at once with a 429 when the
    /// caller's tenant already has as many running as the setting allows; then its
    /// turn to run, waited for. Both are held until the read is dropped; its queries
    /// and computing go through it.
    pub async fn expensive(&self, caller: &Caller) -> std::result::Result<Read, TooManyReads> {
        self.expensive_reads.start(caller).await
    }

    /// A place for one expensive read of `caller`, without a turn to run: what a
    /// running read holds against its tenant's limit.
    pub fn expensive_read(&self, caller: &Caller) -> std::result::Result<Slot, TooManyReads> {
        self.expensive_reads.place(caller)
    }

    /// Keys with an expensive read running now.
    pub fn expensive_reads_busy(&self) -> usize {
        self.expensive_reads.busy()
    }

    /// Mints a token with the shared key.
    pub fn mint(
        &self, role: Role, tenant: Option<String>, site: Option<String>, subject_key: Option<&str>,
        ttl_seconds: i64,
    ) -> Result<(String, crate::auth::Claims)> {
        let claims = crate::auth::claims(role, tenant, site, subject_key, self.now(), ttl_seconds);
        Ok((self.keys.mint(&claims)?, claims))
    }
}

/// Opens the database, applies migrations and loads the JWT key, generating it on the
/// very first start. Returns the state and whether this was the first start.
pub fn prepare(config: Config, clock: SharedClock) -> anyhow::Result<(AppState, bool)> {
    let db = Db::connect_with(config.db_manager(), config.pool_size)?;
    let applied = db.migrate()?;
    if let Some(line) = db.citus_refusal()? {
        anyhow::bail!(line);
    }
    if applied > 0 {
        tracing::info!(
            applied,
            schema = crate::db::migrations::schema_version(),
            "applied {applied} migration(s)"
        );
    }
    let now = clock.now_ms();
    let (key, first_start) = db
        .run_sync(|c| {
            let secret = match &config.jwt_secret {
                Some(s) => s.expose().to_owned(),
                None => {
                    let generated = random_secret(48);
                    crate::db::settings::get_or_insert(c, "jwt_secret", &generated)?.0
                }
            };
            let (_, first) =
                crate::db::settings::get_or_insert(c, "initialized_at", &now.to_string())?;
            Ok::<_, crate::db::Error>((secret, first))
        })
        .map_err(|e| anyhow::anyhow!("cannot prepare the database: {e}"))?;
    crate::db::set_read_timeout(config.read_timeout);
    let rate_limiter = config.rate_limit.map(RateLimiter::new);
    let expensive_reads = ExpensiveReads::new(
        config.expensive_reads_per_tenant,
        config.expensive_reads_at_once,
        config.expensive_reads_nice,
    )?;
    let advice_cache = crate::cache::Lru::new(config.advice_cache_entries);
    use crate::domain::targets::Origin;
    let http = crate::push::resolver::client(Origin::Provider, config.webhook_deny_private)?;
    let http_tenant = crate::push::resolver::client(Origin::Tenant, config.webhook_deny_private)?;
    let oidc = config
        .oidc
        .clone()
        .map(|o| Arc::new(crate::oidc::Provider::new(o, http.clone())));
    Ok((
        AppState {
            db,
            clock,
            keys: Keys::from_secret(&Secret::new(key)),
            revocations: Revocations::default(),
            verified_tokens: VerifiedTokens::default(),
            tenant_keys: Default::default(),
            config: Arc::new(config),
            metrics: Arc::default(),
            outbox_wakeup: Arc::new(Notify::new()),
            rate_limiter,
            expensive_reads,
            http,
            http_tenant,
            site_writer: std::sync::OnceLock::new(),
            agent_sites: crate::db::sites::SiteCache::default(),
            advice_cache,
            oidc,
        },
        first_start,
    ))
}

pub fn random_secret(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// The sampler's part of the state.
impl From<&AppState> for crate::jobs::sampler::Sampler {
    fn from(s: &AppState) -> Self {
        Self {
            db: s.db.clone(),
            clock: s.clock.clone(),
            every: s.config.sample_interval,
            provider_alerts: s.config.provider_notify_url.is_some(),
            metrics: s.metrics.clone(),
        }
    }
}

/// Retention's part of the state.
impl From<&AppState> for crate::jobs::retention::Retention {
    fn from(s: &AppState) -> Self {
        Self {
            db: s.db.clone(),
            clock: s.clock.clone(),
            session_retention_days: s.config.session_retention_days,
        }
    }
}

/// As [`AppState`]'s, for the callers that hold the server's `web::Data`.
impl From<&web::Data<AppState>> for crate::jobs::sampler::Sampler {
    fn from(s: &web::Data<AppState>) -> Self {
        Self::from(&***s)
    }
}

impl From<&web::Data<AppState>> for crate::jobs::retention::Retention {
    fn from(s: &web::Data<AppState>) -> Self {
        Self::from(&***s)
    }
}

/// The push sender's part of the state.
impl From<&AppState> for crate::push::sender::Pusher {
    fn from(s: &AppState) -> Self {
        Self {
            db: s.db.clone(),
            clock: s.clock.clone(),
            provider_notify_url: s.config.provider_notify_url.clone(),
            provider_notify_secret: s.config.provider_notify_secret.clone(),
            deny_private: s.config.webhook_deny_private,
            retry_schedule: s.config.retry_schedule.clone(),
            http: s.http.clone(),
            http_tenant: s.http_tenant.clone(),
            metrics: s.metrics.clone(),
            wakeup: s.outbox_wakeup.clone(),
        }
    }
}
