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
use crate::domain::admission::{self, Answer, Counting, Known, Outcome, OwnSession};
use crate::domain::config::CountMode;
use crate::domain::session::{EndReason, Observation, Standing};

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
) -> Result<Vec<Answer>> {
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

/// What one decision looked at besides the counts: the user's places, the
/// eviction candidate and the request's own sessions.
struct Seen {
    places: admission::UserPlaces,
    own: Vec<sessions::OwnSession>,
    needs_own: bool,
    victim: Option<String>,
}

/// One admission decision and its records; updates the tally and the standings.
fn decide_one(c: &mut DbConn, batch: &mut Batch, r: &Request, obs: Observation) -> Result<Answer> {
    let now = batch.now;
    let key = (r.site.id(), r.session.clone());
    let before = batch.standings.get(&key).cloned();
    let t = batch.tally(r.site.id())?;
    let (cfg, counted) = (t.cfg.clone(), t.counted);
    let (tenant_id, tenant_pool) = (t.full.site.tenant_id, t.full.tenant_pool);
    match admission::known(before.as_ref(), now, !r.replace.is_empty()) {
        Some(Known::Ended) => return Ok(Answer::new(&cfg, Outcome::SessionEnded, counted)),
        Some(Known::Again) => {
            batch.write(r.site.id(), &r.session, obs, (false, false));
            let counted = batch.tally(r.site.id())?.counted;
            return Ok(Answer::new(&cfg, Outcome::WithinLimit, counted));
        }
        None => {}
    }
    let reserve = admission::reserve(&cfg, &r.roles);
    // A known session keeps its mark: only a new one is judged by its roles.
    let exempt = before
        .as_ref()
        .map_or_else(|| admission::exempt(&cfg, &r.roles), |b| b.exempt);
    let seen = match look(
        c,
        batch,
        r,
        &cfg,
        before.as_ref(),
        (counted, reserve),
        exempt,
    )? {
        Ok(seen) => seen,
        Err(invalid) => {
            let mut answer = Answer::new(&cfg, Outcome::LimitReached, counted);
            answer.invalid = Some(("replace".to_owned(), invalid));
            return Ok(answer);
        }
    };
    let pool = match tenant_pool {
        Some(pool_limit) if !exempt => {
            batch.flush(c)?;
            Some((sites::lock_pool(c, tenant_id, now)?, pool_limit))
        }
        _ => None,
    };
    let decision = admission::decide(&admission::Ask {
        counted,
        limit: cfg.session_limit,
        reserve,
        over_limit: cfg.over_limit,
        overage_percent: cfg.overage_percent,
        can_evict: seen.victim.is_some(),
        replacing: seen.places.replacing,
        replaces: !r.replace.is_empty(),
        user: seen.places.cap,
        pool,
        exempt,
    });
    if decision.outcome.admitted() {
        admit(c, batch, r, (obs, exempt), &cfg, decision, seen)
    } else {
        refuse(c, batch, r, &cfg, decision.outcome, seen)
    }
}

/// Reads what the rules need beyond the counts: the user's own sessions when a rule
/// needs them, and the eviction candidate at the limit (the queries must see this
/// batch's writes). `Ok(Err(..))` is a `replace` naming a session not the user's. An
/// exempt session takes no place, so it looks for nothing to evict.
fn look(
    c: &mut DbConn, batch: &mut Batch, r: &Request, cfg: &SiteConfig, before: Option<&Standing>,
    (counted, reserve): (i64, i64), exempt: bool,
) -> Result<std::result::Result<Seen, String>> {
    let now = batch.now;
    let counting = Counting::of(cfg, now);
    let user = r.obs.user.as_deref();
    let needs_own = admission::needs_own(cfg, user.is_some(), !r.replace.is_empty());
    let own = match user {
        Some(u) if needs_own => {
            batch.flush(c)?;
            sessions::open_of_user(c, r.site.id(), u, now)?
        }
        _ => Vec::new(),
    };
    let view: Vec<admission::Own<'_>> = own
        .iter()
        .map(|o| admission::Own {
            session: &o.session,
            last_activity_at: o.last_activity_at,
        })
        .collect();
    let request = (r.session.as_str(), before, user.is_some());
    let places = match admission::user_places(cfg, &counting, request, &r.replace, &view) {
        Ok(p) => p,
        Err(name) => {
            return Ok(Err(format!(
                "{name:?} is not an active session of this user on this site"
            )));
        }
    };
    let victim = if !exempt && admission::wants_eviction(cfg, counted, places.replacing, reserve) {
        batch.flush(c)?;
        sessions::most_idle_dangling(c, r.site.id(), now, cfg.idle_timeout_seconds)?
            .filter(|v| admission::may_evict(v, &r.session, &r.replace, places.oldest.as_deref()))
    } else {
        None
    };
    Ok(Ok(Seen {
        places,
        own,
        needs_own,
        victim,
    }))
}

/// A refusal: recorded as a denial with a sample of the counted sessions, answered
/// with the user's own sessions, and alerted once an hour.
fn refuse(
    c: &mut DbConn, batch: &mut Batch, r: &Request, cfg: &SiteConfig, outcome: Outcome, seen: Seen,
) -> Result<Answer> {
    let now = batch.now;
    let counting = Counting::of(cfg, now);
    let counted = batch.tally(r.site.id())?.counted;
    batch.flush(c)?;
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
    let user = r.obs.user.as_deref();
    usage::record_denial(
        c,
        r.site.id(),
        &usage::DenialDetail {
            at: now,
            outcome: outcome.as_str(),
            session: &r.session,
            user,
            counted,
            session_limit: cfg.session_limit,
            count_mode: cfg.count_mode.as_str(),
            counted_sessions,
        },
    )?;
    let mut answer = Answer::new(cfg, outcome, counted);
    if let Some(u) = user {
        let own = if seen.needs_own {
            seen.own
        } else {
            sessions::open_of_user(c, r.site.id(), u, now)?
        };
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
    let provider = batch.provider_alerts;
    alerts::on_refusal(c, &mut batch.tally(r.site.id())?.full, now, now, provider)?;
    Ok(answer)
}

/// An admission: ends what the decision frees, records the session, and checks the
/// utilization alert with the new count.
fn admit(
    c: &mut DbConn, batch: &mut Batch, r: &Request, (obs, exempt): (Observation, bool),
    cfg: &SiteConfig, decision: admission::Decision, seen: Seen,
) -> Result<Answer> {
    let counting = Counting::of(cfg, batch.now);
    // The answer's count follows the decision (the places it freed and the one it
    // took, unless the session takes none), as the site will see it once the session
    // is on.
    let takes = !exempt && !seen.places.already_counted;
    let mut counted = batch.tally(r.site.id())?.counted + i64::from(takes);
    let mut replaced: Vec<String> = r
        .replace
        .iter()
        .filter(|s| **s != r.session)
        .cloned()
        .collect();
    if decision.replace_oldest
        && let Some(o) = seen.places.oldest
    {
        replaced.push(o);
    }
    let held = |s: &String| {
        let own = seen.own.iter().find(|o| o.session == *s);
        own.is_some_and(|o| counting.counts_open(o.last_activity_at))
    };
    let ended: Vec<(String, bool)> = replaced.iter().map(|s| (s.clone(), held(s))).collect();
    counted -= ended.iter().filter(|(_, held)| *held).count() as i64;
    batch.end(c, r.site.id(), &ended, EndReason::Replaced)?;
    let mut evicted = Vec::new();
    if decision.evict
        && let Some(v) = seen.victim
    {
        batch.end(c, r.site.id(), &[(v.clone(), true)], EndReason::Evicted)?;
        counted -= 1;
        evicted.push(v);
    }
    let overage = decision.outcome == Outcome::Overage;
    batch.write(r.site.id(), &r.session, obs, (overage, exempt));
    let (now, provider) = (batch.now, batch.provider_alerts);
    alerts::on_count(
        c,
        &mut batch.tally(r.site.id())?.full,
        counted,
        now,
        provider,
    )?;
    let mut answer = Answer::new(cfg, decision.outcome, counted);
    answer.evicted = evicted;
    answer.replaced = replaced;
    Ok(answer)
}
