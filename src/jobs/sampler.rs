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
use crate::db::forecast::Watched;
use crate::db::sites::SiteFull;
use crate::db::visible::{SiteKey, Visible};
use crate::db::{Db, DbConn, Result, samples, sites, usage};
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
    let (taken, fleet, watched) = s.db.run(move |c| take(c, minute, now)).await?;
    let sites = taken.len();
    let read_ms = started.elapsed().as_millis() as u64;
    // The write queues with the process's other SQLite writers; the reads above and
    // the forecasts below do not hold it.
    let written = if taken.is_empty() {
        samples::Written::default()
    } else {
        s.db.write(move |c| samples::write_pass(c, minute, &taken))
            .await?
    };
    let n = written.rows;
    let write_ms = started.elapsed().as_millis() as u64 - read_ms;
    s.db.run(move |c| forecasts(c, &watched, &written, now, provider))
        .await?;
    s.metrics.sampled(fleet, s.clock.now_ms());
    // Read by bench/fleet: how long a pass over the fleet takes, and where.
    let ms = started.elapsed().as_millis() as u64;
    tracing::info!(
        sites,
        written = n,
        read_ms,
        write_ms,
        forecast_ms = ms - read_ms - write_ms,
        ms,
        "sampler pass"
    );
    Ok(n)
}

/// Sites read and checked at a time: a pass holds a page of full site records, and
/// for the fleet only figures and what the forecasts need.
const PAGE: i64 = 500;

/// Every site's figures for the pass, read a page of sites at a time, the fleet's
/// totals, and what the forecasts need of each site.
fn take(
    c: &mut DbConn, minute: i64, now: i64,
) -> Result<(Vec<samples::Sample>, Fleet, Vec<Watched>)> {
    let mut taken = Vec::new();
    let mut watched = Vec::new();
    let mut fleet = Fleet::default();
    let mut after = None;
    loop {
        let page = sites::list(c, &Scope::Provider, None, after, PAGE)?;
        watched.extend(page.iter().map(|f| Watched::from(&**f)));
        let done = page.len() < PAGE as usize;
        after = page.last().map(|f| f.site.id);
        let ids: Vec<SiteKey> = page.iter().map(|f| f.key()).collect();
        let idle: Vec<(SiteKey, i64)> = page
            .iter()
            .map(|f| (f.key(), f.config().idle_timeout_seconds))
            .collect();
        let counts = usage::counts(c, &idle, now)?;
        let denied: HashMap<i64, i64> = usage::denials_between(c, &ids, minute, minute + 60_000)?
            .into_iter()
            .collect();
        let start = taken.len();
        taken.extend(page.iter().map(|f| {
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
        }));
        add_to_fleet(&mut fleet, &page, &taken[start..]);
        if done {
            break;
        }
    }
    Ok((taken, fleet, watched))
}

/// Forecasts follow the daily peaks: every site on the day's first pass (a trend
/// moves with the date), then only the sites whose day roll-up the pass moved.
fn forecasts(
    c: &mut DbConn, watched: &[Watched], written: &samples::Written, now: i64, provider: bool,
) -> Result<()> {
    let due: Vec<&Watched> = if written.first_of_day {
        watched.iter().collect()
    } else {
        let changed: std::collections::HashSet<i64> = written.changed.iter().copied().collect();
        watched.iter().filter(|w| changed.contains(&w.id)).collect()
    };
    for page in due.chunks(PAGE as usize) {
        crate::db::forecast::check(c, page, now, provider)?;
    }
    Ok(())
}

/// Adds a page of sites to the fleet's totals for `/metrics`, from the samples just
/// taken.
fn add_to_fleet(fleet: &mut Fleet, sites: &[Visible<SiteFull>], samples: &[samples::Sample]) {
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
}
