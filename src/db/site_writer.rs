//! The one writer of a site's sessions. Every write that must hold its site's lock
//! goes through here: small event batches and admissions queue and share
//! transactions (group commit), and writes too large to share one — big event
//! batches, snapshot parts, kills, a site's own refusals — run in a transaction of
//! their own that holds the site ([`SiteWriter::locked`]). No other code takes a
//! site's lock.
//!
//! Queued requests waiting when a committer becomes free share one transaction (and
//! one fsync). The transaction locks every site it touches, in id order so that
//! committers and other processes never wait on each other in a cycle, and then runs
//! each request's work in arrival order, so requests for one site are decided one
//! after the other exactly as if each had its own transaction. Every request is
//! answered only after the transaction holding its writes has committed.
//!
//! There is no gathering delay: a request that finds its committer idle runs at once,
//! and requests that arrive while a transaction runs queue up for the next one, so
//! batches grow with the load and a lone request waits for nothing. Each site belongs
//! to one committer, so that the committers of one process never wait for each
//! other's site locks.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use diesel::Connection as _;
use tokio::sync::{mpsc, oneshot};

use super::admission::{self, admit_batch};
use super::visible::SiteKey;
use super::{Backend, Db, DbConn, Retry, lock_site, lock_sites, sessions};
use crate::db::{Error, Result};
use crate::domain::Millis;
use crate::domain::session::{EndReason, Observation, coalesce};

/// Most requests in one transaction.
const MAX_REQUESTS: usize = 64;
/// Committers, each with its own queue, share of the sites and database connection
/// (apart from the shared pool). SQLite has one writer whatever the committers: a
/// second would only halve every batch and take turns with the first (measured at 16
/// clients: one committer decides 40–65% more admissions a second than two).
fn committers(backend: Backend) -> usize {
    match backend {
        Backend::Postgres => 2,
        Backend::Sqlite => 1,
    }
}

/// A request's work, as data: the batch function decides several at once.
pub trait SiteJob: Clone + Send + Sync + 'static {
    fn site_id(&self) -> i64;
}

/// Decides the jobs of one batch, in order, inside a transaction that holds their
/// sites; returns one answer per job. It may run more than once for the same jobs
/// (a failed batch is retried job by job), so it must not have effects outside the
/// database.
type Process<J, T> = dyn Fn(&mut DbConn, &[J]) -> Result<Vec<T>> + Send + Sync;

struct Job<J, T> {
    job: J,
    done: oneshot::Sender<Result<T>>,
}

pub struct SiteBatch<J, T> {
    queues: Vec<mpsc::Sender<Job<J, T>>>,
}

impl<J, T> Clone for SiteBatch<J, T> {
    fn clone(&self) -> Self {
        Self {
            queues: self.queues.clone(),
        }
    }
}

impl<J, T> std::fmt::Debug for SiteBatch<J, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SiteBatch")
    }
}

impl<J: SiteJob, T: Send + 'static> SiteBatch<J, T> {
    /// Starts the committers, each on a thread of its own; `process` decides each batch.
    pub fn start<F>(db: Db, process: F) -> Self
    where
        F: Fn(&mut DbConn, &[J]) -> Result<Vec<T>> + Send + Sync + 'static,
    {
        let process: Arc<Process<J, T>> = Arc::new(process);
        // The committers keep connections of their own, so that admissions and small
        // event batches never wait for one behind expensive reads, snapshots or
        // background jobs, however busy the shared pool is.
        let committers = committers(db.backend);
        let db = db
            .with_own_connections(committers as u32)
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "the site writer shares the pool");
                db
            });
        let queues = (0..committers)
            .map(|i| {
                let (tx, rx) = mpsc::channel::<Job<J, T>>(4096);
                let (db, process) = (db.clone(), process.clone());
                // A thread of its own, not a task: a committer must not wait for a
                // busy HTTP worker to poll it between its batches, nor hand each batch
                // to the blocking pool and back.
                std::thread::Builder::new()
                    .name(format!("headcount-committer-{i}"))
                    .spawn(move || committer(&db, &process, rx))
                    .expect("starting a committer thread");
                tx
            })
            .collect();
        Self { queues }
    }

    /// Decides `job` in a transaction that holds its site's lock; returns the answer
    /// once that transaction has committed.
    pub async fn run(&self, job: J) -> Result<T> {
        let (done, wait) = oneshot::channel();
        let queue = &self.queues[job.site_id().rem_euclid(self.queues.len() as i64) as usize];
        queue
            .send(Job { job, done })
            .await
            .map_err(|_| Error::Unavailable("shutting down".to_owned()))?;
        wait.await
            .map_err(|_| Error::Unavailable("shutting down".to_owned()))?
    }
}

/// Waits for a request, then takes every request queued behind it, up to `max`:
/// the batch of one committer's next transaction. `None` once the queue is closed.
fn next_batch<J>(rx: &mut mpsc::Receiver<J>, max: usize) -> Option<Vec<J>> {
    let mut jobs = vec![rx.blocking_recv()?];
    while jobs.len() < max {
        match rx.try_recv() {
            Ok(job) => jobs.push(job),
            Err(_) => break,
        }
    }
    Some(jobs)
}

impl<J, T> SiteBatch<J, T> {
    /// Requests waiting for a committer.
    pub fn queued(&self) -> usize {
        self.queues
            .iter()
            .map(|q| q.max_capacity() - q.capacity())
            .sum()
    }
}

/// One committer's loop, on its own thread: a batch at a time until the queue closes.
fn committer<J: SiteJob, T: Send + 'static>(
    db: &Db, process: &Arc<Process<J, T>>, mut rx: mpsc::Receiver<Job<J, T>>,
) {
    loop {
        let Some(batch) = next_batch(&mut rx, MAX_REQUESTS) else {
            return;
        };
        let (jobs, done): (Vec<J>, Vec<_>) = batch.into_iter().map(|j| (j.job, j.done)).unzip();
        if jobs.len() == 1 {
            for (job, done) in jobs.into_iter().zip(done) {
                run_alone(db, process, job, done);
            }
            continue;
        }
        let mut sites: Vec<i64> = jobs.iter().map(SiteJob::site_id).collect();
        sites.sort_unstable();
        sites.dedup();
        // Set once the batch has been decided: a failure after that is the commit's,
        // and the batch may have committed after all (a lost reply), so deciding the
        // requests again could apply them twice.
        let worked = Cell::new(false);
        let outcome = db.write_sync(|c| {
            worked.set(false);
            c.transaction::<_, Error, _>(|c| {
                lock_sites(c, &sites)?;
                let answers = process(c, &jobs)?;
                worked.set(true);
                Ok(answers)
            })
        });
        match outcome {
            Ok(answers) => {
                debug_assert_eq!(answers.len(), done.len());
                for (tx, answer) in done.into_iter().zip(answers) {
                    let _ = tx.send(Ok(answer));
                }
            }
            Err(e) if worked.get() => {
                let msg = e.to_string();
                tracing::warn!(error = %msg, requests = done.len(), "committing a batch failed");
                for tx in done {
                    let _ = tx.send(Err(Error::Unavailable(format!("could not commit: {msg}"))));
                }
            }
            Err(e) => {
                // One request's failure must not fail the others: each runs again
                // in its own transaction and gets its own answer.
                tracing::debug!(error = %e, requests = done.len(), "batch failed; running its requests one by one");
                for (job, done) in jobs.into_iter().zip(done) {
                    run_alone(db, process, job, done);
                }
            }
        }
    }
}

fn run_alone<J: SiteJob, T: Send + 'static>(
    db: &Db, process: &Arc<Process<J, T>>, job: J, done: oneshot::Sender<Result<T>>,
) {
    let result = db.write_sync(|c| {
        c.transaction(|c| {
            lock_site(c, job.site_id())?;
            let mut answers = process(c, std::slice::from_ref(&job))?;
            answers
                .pop()
                .ok_or_else(|| Error::Internal(anyhow::anyhow!("a batch gave no answer")))
        })
    });
    let _ = done.send(result);
}

/// A write that queues for its site's committer.
#[derive(Debug, Clone)]
pub enum Write {
    /// Observations to merge into the site's sessions (a small event batch).
    Merge {
        site_id: i64,
        rows: Arc<Vec<(String, Observation)>>,
    },
    Admit(admission::Request),
}

impl SiteJob for Write {
    fn site_id(&self) -> i64 {
        match self {
            Self::Merge { site_id, .. } => *site_id,
            Self::Admit(r) => r.site.id(),
        }
    }
}

/// The answer to a [`Write`].
#[derive(Debug)]
pub enum Written {
    Merged,
    Admitted(admission::Judged),
}

/// Runs one batch of writes in arrival order: each run of consecutive merges as one
/// statement for all their sites, each run of consecutive admissions as one decided
/// batch (which reads the counts the merges before it left).
fn write_batch(c: &mut DbConn, writes: &[Write], provider_alerts: bool) -> Result<Vec<Written>> {
    let mut out = Vec::with_capacity(writes.len());
    let mut rest = writes;
    while let Some(first) = rest.first() {
        let merging = matches!(first, Write::Merge { .. });
        let run = rest
            .iter()
            .take_while(|w| matches!(w, Write::Merge { .. }) == merging)
            .count();
        let (now, later) = rest.split_at(run);
        if merging {
            merge_run(c, now)?;
            out.extend(now.iter().map(|_| Written::Merged));
        } else {
            let requests: Vec<admission::Request> = now
                .iter()
                .filter_map(|w| match w {
                    Write::Admit(r) => Some(r.clone()),
                    Write::Merge { .. } => None,
                })
                .collect();
            out.extend(
                admit_batch(c, &requests, provider_alerts)?
                    .into_iter()
                    .map(Written::Admitted),
            );
        }
        rest = later;
    }
    Ok(out)
}

/// Merges the rows of several event batches: one row per session, one statement.
fn merge_run(c: &mut DbConn, writes: &[Write]) -> Result<()> {
    let mut by_site: HashMap<i64, Vec<(String, Observation)>> = HashMap::new();
    for w in writes {
        if let Write::Merge { site_id, rows } = w {
            by_site
                .entry(*site_id)
                .or_default()
                .extend(rows.iter().cloned());
        }
    }
    let mut groups: Vec<(i64, Vec<(String, Observation)>)> = by_site
        .into_iter()
        .map(|(site, rows)| (site, coalesce(rows)))
        .collect();
    groups.sort_unstable_by_key(|(site, _)| *site);
    sessions::merge_sites(c, &groups)?;
    Ok(())
}

/// The writer of every site's sessions: the queued committers and the site-holding
/// transactions for what does not queue.
#[derive(Clone)]
pub struct SiteWriter {
    db: Db,
    queued: SiteBatch<Write, Written>,
}

impl std::fmt::Debug for SiteWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SiteWriter")
    }
}

impl SiteWriter {
    /// Starts the committers, each on a thread of its own. `provider_alerts`: whether
    /// alerts also go to the provider.
    pub fn start(db: Db, provider_alerts: bool) -> Self {
        let queued = SiteBatch::start(db.clone(), move |c: &mut DbConn, writes: &[Write]| {
            write_batch(c, writes, provider_alerts)
        });
        Self { db, queued }
    }

    /// Merges a small batch of observations into the site's sessions; returns once
    /// committed.
    pub async fn merge(&self, site_id: i64, rows: Vec<(String, Observation)>) -> Result<()> {
        let rows = Arc::new(rows);
        match self.queued.run(Write::Merge { site_id, rows }).await? {
            Written::Merged => Ok(()),
            Written::Admitted(_) => Err(Error::Internal(anyhow::anyhow!("a merge was admitted"))),
        }
    }

    /// Decides an admission with the others waiting at the same moment; returns once
    /// its writes are committed.
    pub async fn admit(&self, request: admission::Request) -> Result<admission::Judged> {
        match self.queued.run(Write::Admit(request)).await? {
            Written::Admitted(answer) => Ok(answer),
            Written::Merged => Err(Error::Internal(anyhow::anyhow!("an admission was merged"))),
        }
    }

    /// Runs `f` in a write transaction of its own that holds the site, for writes
    /// too large to share a transaction or that need their own answer. Admissions on
    /// the site wait behind it, so a large write is best cut into parts.
    pub async fn locked<T, E, F>(&self, site: SiteKey, mut f: F) -> Result<T, E>
    where
        F: FnMut(&mut DbConn) -> Result<T, E> + Send + 'static,
        E: From<Error> + From<diesel::result::Error> + Retry + Send + 'static,
        T: Send + 'static,
    {
        let site_id = site.id();
        self.db
            .write(move |c| {
                c.transaction(|c| {
                    lock_site(c, site_id)?;
                    f(c)
                })
            })
            .await
    }

    /// Merges observations of any number into the site's sessions: a small batch
    /// queues and shares a transaction, a larger one fills a transaction of its own.
    pub async fn merge_any(&self, site: SiteKey, rows: Vec<(String, Observation)>) -> Result<()> {
        let site_id = site.id();
        if rows.is_empty() {
            Ok(())
        } else if rows.len() <= QUEUED_MAX_ROWS {
            self.merge(site_id, rows).await
        } else {
            let rows = Arc::new(rows);
            self.locked(site, move |c| sessions::merge(c, site_id, &rows, false))
                .await
                .map(|_| ())
        }
    }

    /// A batch of events that holds refusals the site made itself: its sessions merged
    /// and its refusals recorded (with their alert) in one transaction that holds the
    /// site, so that neither lands without the other. How many refusals were new.
    pub async fn merge_with_refusals(
        &self, site: SiteKey, rows: Vec<(String, Observation)>,
        refusals: Vec<super::usage::Refusal>, now: Millis, provider_alerts: bool,
    ) -> Result<usize> {
        let (rows, refusals) = (Arc::new(rows), Arc::new(refusals));
        self.locked(site, move |c| {
            if !rows.is_empty() {
                sessions::merge(c, site.id(), &rows, false)?;
            }
            super::usage::record_site_refusals(c, site, &refusals, now, provider_alerts)
        })
        .await
    }

    /// Applies a full snapshot of the site's active sessions: merges every listed
    /// one, then ends as `reconciled` the site's other open sessions that were idle
    /// at `as_of`. Returns (sessions created, sessions ended).
    ///
    /// Written in parts, each its own transaction holding the site for a moment, so
    /// that admissions on the site wait behind one part, not behind a 100,000-session
    /// snapshot. Merging is monotone and idempotent, so a snapshot cut short by a
    /// failure leaves only true observations, and the agent's retry completes it. A
    /// session active after `as_of` meanwhile is left alone.
    pub async fn snapshot(
        &self, site: SiteKey, rows: Vec<(String, Observation)>, as_of: Millis, now: Millis,
    ) -> Result<(usize, usize)> {
        let site_id = site.id();
        let rows = Arc::new(rows);
        let created = self
            .in_locked_parts(site, rows.clone(), move |c, part| {
                let refs: Vec<&str> = part.iter().map(|(s, _)| s.as_str()).collect();
                let known = sessions::existing(c, site_id, &refs)?;
                sessions::merge(c, site_id, part, false)?;
                Ok(part.iter().filter(|(s, _)| !known.contains(s)).count())
            })
            .await?;
        let listed: HashSet<&str> = rows.iter().map(|(s, _)| s.as_str()).collect();
        let to_end: Vec<String> = self
            .db
            .run(move |c| sessions::open_sessions(c, site_id, now))
            .await?
            .into_iter()
            .filter(|(s, last)| *last <= as_of && !listed.contains(s.as_str()))
            .map(|(s, _)| s)
            .collect();
        let ended = self
            .in_locked_parts(site, Arc::new(to_end), move |c, part| {
                sessions::end_idle_since(c, site_id, part, as_of, EndReason::Reconciled)
            })
            .await?;
        Ok((created, ended))
    }

    /// Runs `f` over `rows` in parts (of `SNAPSHOT_PART`, or `SNAPSHOT_PART_SQLITE`),
    /// each in its own transaction holding the site; returns the sum of what the parts
    /// return.
    async fn in_locked_parts<R, F>(&self, site: SiteKey, rows: Arc<Vec<R>>, f: F) -> Result<usize>
    where
        R: Send + Sync + 'static,
        F: Fn(&mut DbConn, &[R]) -> Result<usize> + Clone + Send + 'static,
    {
        let part = match self.db.backend {
            Backend::Sqlite => SNAPSHOT_PART_SQLITE,
            Backend::Postgres => SNAPSHOT_PART,
        };
        let mut total = 0;
        for start in (0..rows.len()).step_by(part) {
            let (rows, f) = (rows.clone(), f.clone());
            let end = (start + part).min(rows.len());
            total += self.locked(site, move |c| f(c, &rows[start..end])).await?;
        }
        Ok(total)
    }

    /// Requests waiting for a committer.
    pub fn queued(&self) -> usize {
        self.queued.queued()
    }
}

/// Event batches up to this many sessions queue; larger ones fill a transaction of
/// their own.
const QUEUED_MAX_ROWS: usize = 20;
/// Sessions a snapshot writes per transaction on PostgreSQL, where a part holds only
/// its own site.
const SNAPSHOT_PART: usize = 5_000;
/// The same on SQLite, where a part holds the one writer of every site: other sites'
/// admissions and events wait for at most one part (tens of milliseconds) before
/// their turn, since the process's writers queue first come first served.
const SNAPSHOT_PART_SQLITE: usize = 1_000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::schema::settings::dsl as st;
    use diesel::prelude::*;

    #[derive(Clone)]
    struct Put(i64, &'static str);

    impl SiteJob for Put {
        fn site_id(&self) -> i64 {
            self.0
        }
    }

    fn put(c: &mut DbConn, key: &str) -> Result<usize> {
        Ok(diesel::insert_into(st::settings)
            .values((st::key.eq(key), st::value.eq("x")))
            .execute(c)?)
    }

    fn keys(db: &Db) -> Vec<String> {
        db.run_sync(|c| {
            Ok::<_, crate::db::Error>(
                st::settings
                    .select(st::key)
                    .order(st::key)
                    .load::<String>(c)?,
            )
        })
        .unwrap()
        .into_iter()
        .filter(|k| k.starts_with("batch-"))
        .collect()
    }

    /// Requests queued behind a running one share the next transaction; when one of
    /// them fails, the others still commit and each gets its own answer.
    #[tokio::test]
    async fn a_failing_request_does_not_fail_its_batch() {
        let (_dir, db) = crate::db::test_db_with_sites(&[1, 3]);
        // The first request holds its committer until three more are queued behind it.
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let (started, running) = std::sync::mpsc::channel::<()>();
        let hold = std::sync::Mutex::new(Some((started, gate)));
        let batch: SiteBatch<Put, usize> =
            SiteBatch::start(db.clone(), move |c: &mut DbConn, jobs: &[Put]| {
                jobs.iter()
                    .map(|job| {
                        if let Some((started, gate)) = hold.lock().unwrap().take() {
                            let _ = started.send(());
                            let _ = gate.recv();
                        }
                        put(c, job.1)
                    })
                    .collect()
            });
        let spawn = |site: i64, key: &'static str| {
            let b = batch.clone();
            tokio::spawn(async move { b.run(Put(site, key)).await })
        };
        let first = spawn(1, "batch-a");
        while running.try_recv().is_err() {
            tokio::task::yield_now().await;
        }
        let ok_b = spawn(1, "batch-b");
        let ok_c = spawn(3, "batch-c");
        // Same key as the first request: the insert fails on the primary key.
        let dup = spawn(1, "batch-a");
        while batch.queued() < 3 {
            tokio::task::yield_now().await;
        }
        release.send(()).unwrap();

        assert_eq!(first.await.unwrap().unwrap(), 1);
        assert_eq!(ok_b.await.unwrap().unwrap(), 1);
        assert_eq!(ok_c.await.unwrap().unwrap(), 1);
        assert!(dup.await.unwrap().is_err());
        assert_eq!(keys(&db), ["batch-a", "batch-b", "batch-c"]);
    }

    /// With every connection of the shared pool taken (by reads, snapshots or jobs),
    /// the committers still commit on connections of their own; sharing the pool,
    /// the request would fail at the checkout timeout.
    #[tokio::test]
    async fn the_committers_do_not_wait_for_the_shared_pool() {
        let (_dir, db) = crate::db::test_db_with_sites(&[1]);
        let taken: Vec<_> = (0..db.pool.max_size())
            .map(|_| db.pool.get().unwrap())
            .collect();
        assert!(db.pool.try_get().is_none(), "the shared pool is exhausted");
        let batch: SiteBatch<Put, usize> =
            SiteBatch::start(db.clone(), |c: &mut DbConn, jobs: &[Put]| {
                jobs.iter().map(|job| put(c, job.1)).collect()
            });
        assert_eq!(batch.run(Put(1, "batch-own")).await.unwrap(), 1);
        drop(taken);
        assert_eq!(keys(&db), ["batch-own"]);
    }
}
