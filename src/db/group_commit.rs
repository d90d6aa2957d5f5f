//! Group commit for small event batches: requests that arrive within a couple of
//! milliseconds share one transaction (and one fsync). Each request is answered only
//! after the transaction that holds its rows has committed, so an acknowledged event
//! is never lost; when that transaction fails, every request in it gets the error.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use diesel::Connection as _;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::Db;
use super::sessions;
use crate::domain::session::Observation;
use crate::error::{Error, Result};

/// How long the first request of a group waits for company.
const GATHER: Duration = Duration::from_millis(2);
/// Most requests in one transaction.
const MAX_REQUESTS: usize = 256;
/// Transactions in flight at once (each committer takes one pool connection).
const COMMITTERS: usize = 3;

struct Job {
    site_id: i64,
    rows: Vec<(String, Observation)>,
    done: oneshot::Sender<std::result::Result<(), String>>,
}

#[derive(Clone)]
pub struct GroupCommit {
    tx: mpsc::Sender<Job>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupCommit")
    }
}

impl GroupCommit {
    /// Starts the committers on the current runtime.
    pub fn start(db: Db) -> Self {
        let (tx, rx) = mpsc::channel::<Job>(4096);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..COMMITTERS {
            tokio::spawn(committer(db.clone(), rx.clone()));
        }
        Self { tx }
    }

    /// Merges `rows` into the site's sessions; returns after they are committed.
    pub async fn merge(&self, site_id: i64, rows: Vec<(String, Observation)>) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Job {
                site_id,
                rows,
                done,
            })
            .await
            .map_err(|_| Error::Unavailable("shutting down".to_owned()))?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(msg)) => Err(Error::Unavailable(format!("could not commit: {msg}"))),
            Err(_) => Err(Error::Unavailable("shutting down".to_owned())),
        }
    }
}

async fn committer(db: Db, rx: Arc<Mutex<mpsc::Receiver<Job>>>) {
    loop {
        let mut jobs = Vec::new();
        {
            // One committer gathers at a time; the others commit meanwhile.
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            jobs.push(first);
            let deadline = tokio::time::Instant::now() + GATHER;
            while jobs.len() < MAX_REQUESTS {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(job)) => jobs.push(job),
                    _ => break,
                }
            }
        }
        let mut by_site: HashMap<i64, Vec<(String, Observation)>> = HashMap::new();
        for job in &mut jobs {
            by_site
                .entry(job.site_id)
                .or_default()
                .append(&mut job.rows);
        }
        let groups: Vec<(i64, Vec<(String, Observation)>)> = by_site
            .into_iter()
            .map(|(site, rows)| (site, coalesce(rows)))
            .collect();
        let result = db
            .write(move |c| {
                c.transaction(|c| {
                    for (site_id, rows) in &groups {
                        sessions::merge(c, *site_id, rows, false)?;
                    }
                    Ok(())
                })
            })
            .await
            .map_err(|e| e.to_string());
        for job in jobs {
            let _ = job.done.send(result.clone());
        }
    }
}

/// Folds observations of the same session into one row (one upsert row per session
/// per statement).
pub fn coalesce(items: Vec<(String, Observation)>) -> Vec<(String, Observation)> {
    let mut index: HashMap<String, usize> = HashMap::with_capacity(items.len());
    let mut out: Vec<(String, Observation)> = Vec::with_capacity(items.len());
    for (s, o) in items {
        match index.get(&s) {
            Some(&i) => out[i].1.merge(&o),
            None => {
                index.insert(s.clone(), out.len());
                out.push((s, o));
            }
        }
    }
    out
}
