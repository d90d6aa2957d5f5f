//! Group commit for work that must hold its site's lock, such as admissions: the
//! requests waiting when a committer becomes free share one transaction (and one
//! fsync). The transaction locks every site it touches, in id order so that
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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use diesel::Connection as _;
use tokio::sync::{mpsc, oneshot};

use super::{Db, DbConn, lock_site};
use crate::error::{Error, Result};

/// Most requests in one transaction.
const MAX_REQUESTS: usize = 64;
/// Committers, each with its own queue and share of the sites (and, while it
/// commits, one pool connection).
const COMMITTERS: usize = 2;

type Work<T> = Box<dyn FnMut(&mut DbConn) -> Result<T> + Send>;

struct Job<T> {
    site_id: i64,
    work: Work<T>,
    done: oneshot::Sender<Result<T>>,
}

pub struct SiteBatch<T> {
    queues: Vec<mpsc::Sender<Job<T>>>,
}

impl<T> Clone for SiteBatch<T> {
    fn clone(&self) -> Self {
        Self {
            queues: self.queues.clone(),
        }
    }
}

impl<T> std::fmt::Debug for SiteBatch<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SiteBatch")
    }
}

impl<T: Send + 'static> SiteBatch<T> {
    /// Starts the committers on the current runtime.
    pub fn start(db: Db) -> Self {
        let queues = (0..COMMITTERS)
            .map(|_| {
                let (tx, rx) = mpsc::channel::<Job<T>>(4096);
                tokio::spawn(committer(db.clone(), rx));
                tx
            })
            .collect();
        Self { queues }
    }

    /// Runs `work` in a transaction that holds the site's lock; returns its result
    /// once that transaction has committed. `work` may run more than once (a
    /// transaction that fails is retried, and a failed batch is retried request by
    /// request), so it must not have effects outside the database.
    pub async fn run<F>(&self, site_id: i64, work: F) -> Result<T>
    where
        F: FnMut(&mut DbConn) -> Result<T> + Send + 'static,
    {
        let (done, wait) = oneshot::channel();
        let queue = &self.queues[site_id.rem_euclid(self.queues.len() as i64) as usize];
        queue
            .send(Job {
                site_id,
                work: Box::new(work),
                done,
            })
            .await
            .map_err(|_| Error::Unavailable("shutting down".to_owned()))?;
        wait.await
            .map_err(|_| Error::Unavailable("shutting down".to_owned()))?
    }
}

/// Waits for a request, then takes every request queued behind it, up to `max`:
/// the batch of one committer's next transaction. `None` once the queue is closed.
pub(super) async fn next_batch<J>(rx: &mut mpsc::Receiver<J>, max: usize) -> Option<Vec<J>> {
    let mut jobs = vec![rx.recv().await?];
    while jobs.len() < max {
        match rx.try_recv() {
            Ok(job) => jobs.push(job),
            Err(_) => break,
        }
    }
    Some(jobs)
}

impl<T> SiteBatch<T> {
    /// Requests waiting for a committer.
    pub fn queued(&self) -> usize {
        self.queues
            .iter()
            .map(|q| q.max_capacity() - q.capacity())
            .sum()
    }
}

async fn committer<T: Send + 'static>(db: Db, mut rx: mpsc::Receiver<Job<T>>) {
    loop {
        let Some(mut jobs) = next_batch(&mut rx, MAX_REQUESTS).await else {
            return;
        };
        if jobs.len() == 1 {
            run_alone(&db, jobs.pop().unwrap_or_else(|| unreachable!())).await;
            continue;
        }
        let mut sites: Vec<i64> = jobs.iter().map(|j| j.site_id).collect();
        sites.sort_unstable();
        sites.dedup();
        let mut ids = Vec::with_capacity(jobs.len());
        let mut works = Vec::with_capacity(jobs.len());
        let mut done = Vec::with_capacity(jobs.len());
        for j in jobs {
            ids.push(j.site_id);
            works.push(j.work);
            done.push(j.done);
        }
        // Shared so that the work can be taken back when the batch fails.
        let works = Arc::new(std::sync::Mutex::new(works));
        let batch = works.clone();
        // Set once every request's work has run: a failure after that is the
        // commit's, and the batch may have committed after all (a lost reply), so
        // running the requests again could apply them twice.
        let worked = Arc::new(AtomicBool::new(false));
        let flag = worked.clone();
        let outcome = db
            .write(move |c| {
                let mut works = batch.lock().unwrap_or_else(|e| e.into_inner());
                flag.store(false, Ordering::SeqCst);
                c.transaction(|c| {
                    for &site in &sites {
                        lock_site(c, site)?;
                    }
                    let results = works
                        .iter_mut()
                        .map(|work| work(c))
                        .collect::<Result<Vec<T>>>()?;
                    flag.store(true, Ordering::SeqCst);
                    Ok(results)
                })
            })
            .await;
        match outcome {
            Ok(results) => {
                for (tx, result) in done.into_iter().zip(results) {
                    let _ = tx.send(Ok(result));
                }
            }
            Err(e) if worked.load(Ordering::SeqCst) => {
                let msg = e.to_string();
                tracing::warn!(error = %msg, requests = ids.len(), "committing a batch failed");
                for tx in done {
                    let _ = tx.send(Err(Error::Unavailable(format!("could not commit: {msg}"))));
                }
            }
            Err(e) => {
                // One request's failure must not fail the others: each runs again
                // in its own transaction and gets its own answer.
                tracing::debug!(error = %e, requests = ids.len(), "batch failed; running its requests one by one");
                let works = std::mem::take(&mut *works.lock().unwrap_or_else(|e| e.into_inner()));
                for ((site_id, work), done) in ids.into_iter().zip(works).zip(done) {
                    run_alone(
                        &db,
                        Job {
                            site_id,
                            work,
                            done,
                        },
                    )
                    .await;
                }
            }
        }
    }
}

async fn run_alone<T: Send + 'static>(db: &Db, job: Job<T>) {
    let Job {
        site_id,
        mut work,
        done,
    } = job;
    let result = db
        .write(move |c| {
            c.transaction(|c| {
                lock_site(c, site_id)?;
                work(c)
            })
        })
        .await;
    let _ = done.send(result);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::schema::settings::dsl as st;
    use diesel::prelude::*;

    fn put(c: &mut DbConn, key: &str) -> Result<usize> {
        Ok(diesel::insert_into(st::settings)
            .values((st::key.eq(key), st::value.eq("x")))
            .execute(c)?)
    }

    fn keys(db: &Db) -> Vec<String> {
        db.run_sync(|c| {
            Ok(st::settings
                .select(st::key)
                .order(st::key)
                .load::<String>(c)?)
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
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("b.db").display());
        let db = Db::connect(&url, 4).unwrap();
        db.migrate().unwrap();
        db.run_sync(|c| {
            diesel::sql_query(
                "INSERT INTO plans (code, name, session_limit, count_mode, over_limit, \
                 overage_percent, idle_timeout_seconds, session_ttl_seconds, limit_message, \
                 monthly_price_cents, overage_unit_price_cents, currency, created_at, updated_at) \
                 VALUES ('p', 'p', 1, 'active', 'reject', 0, 60, 60, '', 0, 0, 'EUR', 0, 0)",
            )
            .execute(c)?;
            diesel::sql_query(
                "INSERT INTO tenants (slug, name, notify_secret, created_at, updated_at) \
                 VALUES ('t', 't', 's', 0, 0)",
            )
            .execute(c)?;
            for id in [1, 3] {
                diesel::sql_query(format!(
                    "INSERT INTO sites (id, slug, tenant_id, plan_id, name, webhook_secret, \
                     config_version, created_at, updated_at) \
                     VALUES ({id}, 's{id}', 1, 1, 's', 's', 1, 0, 0)"
                ))
                .execute(c)?;
            }
            Ok(())
        })
        .unwrap();
        let batch: SiteBatch<usize> = SiteBatch::start(db.clone());

        // The first request holds its committer until three more are queued behind it.
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let (started, running) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(std::sync::Mutex::new(gate));
        let first = {
            let b = batch.clone();
            tokio::spawn(async move {
                b.run(1, move |c| {
                    let _ = started.send(());
                    let _ = gate.lock().unwrap().recv();
                    put(c, "batch-a")
                })
                .await
            })
        };
        while running.try_recv().is_err() {
            tokio::task::yield_now().await;
        }
        let spawn = |site: i64, key: &'static str| {
            let b = batch.clone();
            tokio::spawn(async move { b.run(site, move |c| put(c, key)).await })
        };
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
}
