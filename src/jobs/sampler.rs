//! The usage sampler: one pass a minute over the fleet, taken by one process however
//! many run (the first to claim the minute; a claim left unfinished is taken over).
//! It writes a site's active, live, dangling and denied counts only when they changed
//! or the minute had refusals (`domain::usage_runs`), keeps each site's day maxima,
//! and checks the limit forecasts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::SharedClock;
use crate::db::{Db, Result, samples, sites, usage};
use crate::domain::scope::Scope;
use crate::metrics::{Fleet, Metrics};

/// What the sampler uses: the database, the clock, its interval, whether the provider
/// takes alerts (limit forecasts go to it too), and the metrics it updates.
#[derive(Clone)]
pub struct Sampler {
    pub db: Db,
    pub clock: SharedClock,
    pub every: Duration,
    pub provider_alerts: bool,
    pub metrics: Arc<Metrics>,
}

/// Samples every interval, the first time one interval after start: a process that
/// starts beside running ones finds the current minute's pass taken anyway.
pub async fn run(sampler: Sampler, mut stop: watch::Receiver<bool>) {
    let every = sampler.every;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = sample(sampler.clone()).await {
            tracing::warn!(error = %e, "usage sampler failed; trying again next interval");
        }
    }
}

/// A claim of a pass not finished in this long is taken over by another process.
const STALE_MS: i64 = 30_000;

/// This process, as the holder of the passes it claims.
fn holder() -> &'static str {
    static HOLDER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOLDER.get_or_init(|| format!("{}-{}", std::process::id(), uuid::Uuid::now_v7().simple()))
}

/// Takes the pass of the clock's current minute, unless another process has it: the
/// number of sites whose row it wrote (0 when the pass was another's).
pub async fn sample(sampler: impl Into<Sampler>) -> Result<usize> {
    let s = sampler.into();
    let now = s.clock.now_ms();
    let minute = now - now.rem_euclid(60_000);
    let provider = s.provider_alerts;
    let claimed =
        s.db.run(move |c| samples::claim_pass(c, minute, holder(), now, STALE_MS))
            .await?;
    if !claimed {
        return Ok(0);
    }
    let started = std::time::Instant::now();
    let (n, fleet, sites) =
        s.db.run(move |c| {
            let mut all = Vec::new();
            let mut after = None;
            loop {
                let page = sites::list(c, &Scope::Provider, None, after, 500)?;
                let done = page.len() < 500;
                after = page.last().map(|f| f.site.id);
                all.extend(page);
                if done {
                    break;
                }
            }
            if all.is_empty() {
                return Ok::<_, crate::db::Error>((0, Fleet::default(), 0));
            }
            let counts: HashMap<i64, (i64, i64)> = usage::counts(c, now, None, None)?
                .into_iter()
                .map(|r| (r.site_id, (r.active, r.dangling.unwrap_or(0))))
                .collect();
            let ids: Vec<i64> = all.iter().map(|f| f.site.id).collect();
            let mut denied = HashMap::new();
            for chunk in ids.chunks(500) {
                denied.extend(usage::denials_between(c, chunk, minute, minute + 60_000)?);
            }
            let taken: Vec<samples::Sample> = all
                .iter()
                .map(|f| {
                    let (active, dangling) = counts.get(&f.site.id).copied().unwrap_or((0, 0));
                    samples::Sample {
                        site_id: f.site.id,
                        minute,
                        active,
                        live: active - dangling,
                        dangling,
                        denied: denied.get(&f.site.id).copied().unwrap_or(0),
                        session_limit: f.config().session_limit,
                    }
                })
                .collect();
            let fleet = fleet_of(&all, &taken);
            let written = samples::write_pass(c, minute, &taken)?;
            crate::db::forecast::check(c, &all, now, provider)?;
            Ok((written, fleet, all.len()))
        })
        .await?;
    s.metrics.sampled(fleet, s.clock.now_ms());
    // Read by bench/fleet: how long a pass over the fleet takes.
    tracing::info!(
        sites,
        written = n,
        ms = started.elapsed().as_millis() as u64,
        "sampler pass"
    );
    Ok(n)
}

/// The fleet's totals for `/metrics`, from the samples just taken.
fn fleet_of(sites: &[sites::SiteFull], samples: &[samples::Sample]) -> Fleet {
    let mut fleet = Fleet::default();
    for (f, s) in sites.iter().zip(samples) {
        fleet.active += s.active;
        fleet.live += s.live;
        fleet.dangling += s.dangling;
        let counted = f.config().count_mode.counted(s.active, s.dangling);
        if counted >= s.session_limit {
            fleet.sites_at_limit += 1;
        }
        let t = fleet.by_tenant.entry(f.tenant_slug.clone()).or_default();
        t.0 += s.active;
        t.1 += s.live;
        t.2 += s.dangling;
    }
    fleet
}
