//! Admissions as storage runs them: a batch of requests decided in arrival order
//! inside one transaction that holds their sites. The rules are in
//! `domain::admission`; this module reads what they need, asks them, and records the
//! answer (session rows, ended sessions, kills, denials, alerts).

use std::collections::HashMap;
use std::sync::Arc;

use super::sites::{SiteConfig, SiteFull};
use super::visible::SiteKey;
use super::{DbConn, Error, Result, alerts, batch_reads, counts, outbox, sessions, sites, usage};
use crate::domain::Millis;
use crate::domain::admission::{
    self, Answer, Asked, Counting, Decided, Facts, InvalidRequest, Own, OwnSession, Reads, Verdict,
};
use crate::domain::config::CountMode;
use crate::domain::session::{EndReason, Observation, Standing};

/// An admission's answer, or why the request is invalid (nothing done for it).
pub type Judged = std::result::Result<Answer, InvalidRequest>;

/// One admission request, parsed, waiting for its batch.
#[derive(Debug, Clone)]
pub struct Request {
    /// The site, as the caller was shown it.
    pub site: SiteKey,
    pub session: String,
    /// The session as the request describes it; its expiry is set under the lock
    /// from the site's current session lifetime unless `given_expiry` is set.
    pub obs: Observation,
    pub given_expiry: Option<Millis>,
    /// When the request arrived.
    pub now: Millis,
    pub roles: Vec<String>,
    /// Sessions of the same user to end for this one; each once.
    pub replace: Vec<String>,
}

/// What the batch knows of a site while deciding its admissions.
struct SiteTally {
    full: SiteFull,
    cfg: Arc<SiteConfig>,
    /// Sessions counted against the limit by the site's count mode, kept up to date
    /// with every decision of the batch.
    counted: i64,
}

type SessionKey = (i64, String);

/// A batch's sites and sessions as its decisions so far leave them.
struct Batch {
    tallies: HashMap<i64, SiteTally>,
    /// The batch's sessions as stored, then as decided.
    standings: HashMap<SessionKey, Standing>,
    /// Session writes decided but not yet sent, with their (`overage`, `exempt`)
    /// flags: one statement at the end.
    pending: Vec<(i64, String, Observation, (bool, bool))>,
    pending_index: HashMap<SessionKey, usize>,
    now: Millis,
    provider_alerts: bool,
}

/// Decides a batch of admissions, in arrival order, exactly as if each had its own
/// transaction, inside the caller's transaction that holds every site of the batch.
/// Each site's config and count are read once, and each decision carries the count
/// forward from the standing of its session before and after; the sessions are
/// written in one upsert at the end (or before a query that must see them). All
/// requests are decided at the batch's instant, the latest of their arrivals.
pub fn admit_batch(
    c: &mut DbConn, requests: &[Request], provider_alerts: bool,
) -> Result<Vec<Judged>> {
    let now = requests.iter().map(|r| r.now).max().unwrap_or_default();
    let mut batch = Batch::read(c, requests, now, provider_alerts)?;
    let mut out = Vec::with_capacity(requests.len());
    for r in requests {
        let ttl = batch.tally(r.site.id())?.cfg.session_ttl_seconds;
        let mut obs = r.obs.clone();
        obs.expires_at = r.given_expiry.unwrap_or(obs.started_at + ttl * 1000);
        out.push(decide_one(c, &mut batch, r, obs)?);
    }
    batch.flush(c)?;
    Ok(out)
}

impl Batch {
    /// The batch's sites with their counts at `now`, and the stored standings of its
    /// sessions.
    fn read(c: &mut DbConn, requests: &[Request], now: Millis, alerts: bool) -> Result<Self> {
        let mut site_ids: Vec<i64> = requests.iter().map(|r| r.site.id()).collect();
        site_ids.sort_unstable();
        site_ids.dedup();
        let sites: Vec<(SiteFull, Arc<SiteConfig>)> = sites::get_many(c, &site_ids)?
            .into_iter()
            .map(|full| {
                let cfg = Arc::new(full.config());
                (full, cfg)
            })
            .collect();
        let idle: Vec<(i64, i64)> = sites
            .iter()
            .map(|(full, cfg)| (full.site.id, cfg.idle_timeout_seconds))
            .collect();
        let mut counts = counts::at(c, &idle, now)?;
        let mut tallies = HashMap::with_capacity(sites.len());
        for (full, cfg) in sites {
            let (active, dangling) = counts.remove(&full.site.id).unwrap_or_default();
            let counted = Counting::of(&cfg, now).counted(active, dangling);
            tallies.insert(full.site.id, SiteTally { full, cfg, counted });
        }
        let wanted: Vec<(i64, &str)> = requests
            .iter()
            .map(|r| (r.site.id(), r.session.as_str()))
            .collect();
        Ok(Self {
            tallies,
            standings: batch_reads::standings(c, &wanted)?,
            pending: Vec::new(),
            pending_index: HashMap::new(),
            now,
            provider_alerts: alerts,
        })
    }

    fn tally(&mut self, site_id: i64) -> Result<&mut SiteTally> {
        self.tallies
            .get_mut(&site_id)
            .ok_or_else(|| Error::not_found("site"))
    }

    /// Records a session's admission and carries its site's count forward from the
    /// session's standing before to its standing after. `flags`: (`overage`,
    /// `exempt`), kept only by a new session.
    fn write(&mut self, site_id: i64, session: &str, obs: Observation, flags: (bool, bool)) {
        let key = (site_id, session.to_owned());
        let before = self.standings.get(&key);
        let mut after = Standing::after(before, &obs);
        if before.is_none() {
            after.exempt = flags.1;
        }
        if let Some(t) = self.tallies.get_mut(&site_id) {
            let counting = Counting::of(&t.cfg, self.now);
            t.counted += i64::from(counting.counts(&after))
                - i64::from(before.is_some_and(|b| counting.counts(b)));
        }
        self.standings.insert(key.clone(), after);
        match self.pending_index.get(&key) {
            // A later write of the same session updates the row the first one
            // inserted, and an update keeps the row's overage flag.
            Some(&i) => self.pending[i].2.merge(&obs),
            None => {
                self.pending_index.insert(key, self.pending.len());
                self.pending.push((site_id, session.to_owned(), obs, flags));
            }
        }
    }

    /// Ends sessions for a decision (evicted or replaced): in storage, as kills to
    /// push, and in the batch's counts; `counted` says which held a counted place.
    fn end(
        &mut self, c: &mut DbConn, site_id: i64, ended: &[(String, bool)], reason: EndReason,
    ) -> Result<()> {
        if ended.is_empty() {
            return Ok(());
        }
        self.flush(c)?;
        let now = self.now;
        let names: Vec<String> = ended.iter().map(|(s, _)| s.clone()).collect();
        sessions::end_sessions(c, site_id, &names, now, reason)?;
        let t = self.tally(site_id)?;
        let (tenant_id, slug) = (t.full.site.tenant_id, t.full.site.slug.clone());
        outbox::enqueue_kill(c, site_id, tenant_id, &slug, &names, reason.as_str(), now)?;
        for (session, counted) in ended {
            if *counted {
                self.tally(site_id)?.counted -= 1;
            }
            self.standings
                .entry((site_id, session.clone()))
                .or_insert(Standing {
                    last_activity_at: now,
                    expires_at: now,
                    ended_at: None,
                    exempt: false,
                })
                .ended_at = Some(now);
        }
        Ok(())
    }

    fn flush(&mut self, c: &mut DbConn) -> Result<()> {
        if !self.pending.is_empty() {
            sessions::merge_rows(
                c,
                self.pending
                    .iter()
                    .map(|(site, session, obs, flags)| (*site, session.as_str(), obs, *flags)),
            )?;
            self.pending.clear();
            self.pending_index.clear();
        }
        Ok(())
    }
}

/// What storage read for one decision beyond the count and the standing.
#[derive(Debug, Default)]
struct Read {
    own: Vec<sessions::OwnSession>,
    victim: Option<String>,
    pool: Option<(i64, i64)>,
}

/// One admission: read what the rules ask for, judge, apply the verdict. Updates
/// the batch's tally and standings.
fn decide_one(c: &mut DbConn, batch: &mut Batch, r: &Request, obs: Observation) -> Result<Judged> {
    let now = batch.now;
    let before = batch
        .standings
        .get(&(r.site.id(), r.session.clone()))
        .cloned();
    let t = batch.tally(r.site.id())?;
    let (cfg, counted) = (t.cfg.clone(), t.counted);
    let (tenant_id, pooled) = (t.full.site.tenant_id, t.full.tenant_pool);
    let asked = Asked {
        session: &r.session,
        has_user: r.obs.user.is_some(),
        roles: &r.roles,
        replace: &r.replace,
        obs: &obs,
    };
    let wanted = admission::reads(
        &cfg,
        &asked,
        before.as_ref(),
        counted,
        now,
        pooled.is_some(),
    );
    let read = read(c, batch, r, &cfg, wanted, (tenant_id, pooled))?;
    let own: Vec<Own<'_>> = read
        .own
        .iter()
        .map(|o| Own {
            session: &o.session,
            last_activity_at: o.last_activity_at,
        })
        .collect();
    let facts = Facts {
        cfg: &cfg,
        now,
        before: before.as_ref(),
        counted,
        own: &own,
        victim: read.victim.as_deref(),
        pool: read.pool,
    };
    match admission::judge(&asked, &facts) {
        Verdict::Invalid(invalid) => Ok(Err(invalid)),
        Verdict::Decided(d) => apply(c, batch, r, obs, &cfg, d, (wanted.own, read.own)).map(Ok),
    }
}

/// Reads what [`admission::reads`] asked for; the queries see this batch's writes.
fn read(
    c: &mut DbConn, batch: &mut Batch, r: &Request, cfg: &SiteConfig, wanted: Reads,
    (tenant_id, pooled): (i64, Option<i64>),
) -> Result<Read> {
    if wanted == Reads::default() {
        return Ok(Read::default());
    }
    let now = batch.now;
    batch.flush(c)?;
    let own = match r.obs.user.as_deref() {
        Some(u) if wanted.own => sessions::open_of_user(c, r.site.id(), u, now)?,
        _ => Vec::new(),
    };
    let victim = if wanted.victim {
        sessions::most_idle_dangling(c, r.site.id(), now, cfg.idle_timeout_seconds)?
    } else {
        None
    };
    let pool = match pooled {
        Some(limit) if wanted.pool => Some((sites::lock_pool(c, tenant_id, now)?, limit)),
        _ => None,
    };
    Ok(Read { own, victim, pool })
}

/// Applies a verdict: the sessions it ends (as kills to push), the session written,
/// a refusal recorded with a sample of the counted sessions and answered with the
/// user's own sessions, and the alerts the new count calls for.
fn apply(
    c: &mut DbConn, batch: &mut Batch, r: &Request, obs: Observation, cfg: &SiteConfig, d: Decided,
    (read_own, own): (bool, Vec<sessions::OwnSession>),
) -> Result<Answer> {
    let (now, provider) = (batch.now, batch.provider_alerts);
    let site = r.site.id();
    for reason in [EndReason::Replaced, EndReason::Evicted] {
        let ended: Vec<(String, bool)> = d
            .end
            .iter()
            .filter(|(_, _, why)| *why == reason)
            .map(|(s, held, _)| (s.clone(), *held))
            .collect();
        batch.end(c, site, &ended, reason)?;
    }
    if let Some(flags) = d.write {
        batch.write(site, &r.session, obs, flags);
    }
    let mut answer = Answer::new(cfg, d.outcome, d.counted);
    answer.replaced = d.ended(EndReason::Replaced);
    answer.evicted = d.ended(EndReason::Evicted);
    if d.refused {
        batch.flush(c)?;
        record_refusal(c, r, cfg, &d, now)?;
        if let Some(u) = r.obs.user.as_deref() {
            let own = if read_own {
                own
            } else {
                sessions::open_of_user(c, site, u, now)?
            };
            let counting = Counting::of(cfg, now);
            answer.own_sessions = Some(
                own.into_iter()
                    .map(|o| OwnSession {
                        live: counting.is_live(o.last_activity_at),
                        session: o.session,
                        last_activity_at: o.last_activity_at,
                        user_agent: o.user_agent,
                        ip: o.ip,
                    })
                    .collect(),
            );
        }
        alerts::on_refusal(c, &mut batch.tally(site)?.full, now, now, provider)?;
    } else if d.judged {
        alerts::on_count(c, &mut batch.tally(site)?.full, d.counted, now, provider)?;
    }
    Ok(answer)
}

/// A refusal as a denial, with a sample of the sessions that held the places.
fn record_refusal(
    c: &mut DbConn, r: &Request, cfg: &SiteConfig, d: &Decided, now: Millis,
) -> Result<()> {
    let counting = Counting::of(cfg, now);
    let live_after = (cfg.count_mode == CountMode::Live).then_some(counting.live_after());
    let sample = sessions::counted_sample(c, r.site.id(), now, live_after, 50)?;
    let counted_sessions = serde_json::Value::Array(
        sample
            .iter()
            .map(|(s, last)| {
                serde_json::json!({
                    "session": s,
                    "state": counting.state(*last),
                    "idle_seconds": (now - last).max(0) / 1000,
                })
            })
            .collect(),
    )
    .to_string();
    usage::record_denial(
        c,
        r.site.id(),
        &usage::DenialDetail {
            at: now,
            outcome: d.outcome.as_str(),
            session: &r.session,
            user: r.obs.user.as_deref(),
            counted: d.counted,
            session_limit: cfg.session_limit,
            count_mode: cfg.count_mode.as_str(),
            counted_sessions,
        },
    )
}
