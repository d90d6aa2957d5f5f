//! Group commit for small event batches: requests waiting when a committer becomes
//! free share one transaction (and one fsync). Each request is answered only after
//! the transaction that holds its rows has committed, so an acknowledged event is
//! never lost; when that transaction fails, every request in it gets the error.
//!
//! There is no gathering delay: a request that finds its committer idle is written
//! at once, and requests arriving while a transaction runs wait for the next one, so
//! batches grow with the load. Each site belongs to one committer, so that the
//! committers of one process never wait for each other's row locks.

use std::collections::HashMap;

use diesel::Connection as _;
use tokio::sync::{mpsc, oneshot};

use super::sessions;
use super::site_batch::next_batch;
use super::{Db, lock_sites};
use crate::db::{Error, Result};
use crate::domain::session::Observation;

/// Most requests in one transaction.
const MAX_REQUESTS: usize = 256;
/// Committers, each with its own queue and share of the sites (and, while it
/// commits, one pool connection).
const COMMITTERS: usize = 2;

struct Job {
    site_id: i64,
    rows: Vec<(String, Observation)>,
    done: oneshot::Sender<std::result::Result<(), String>>,
}

#[derive(Clone)]
pub struct GroupCommit {
    queues: Vec<mpsc::Sender<Job>>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupCommit")
    }
}

impl GroupCommit {
    /// Starts the committers on the current runtime.
    pub fn start(db: Db) -> Self {
        let queues = (0..COMMITTERS)
            .map(|_| {
                let (tx, rx) = mpsc::channel::<Job>(4096);
                tokio::spawn(committer(db.clone(), rx));
                tx
            })
            .collect();
        Self { queues }
    }

    /// Merges `rows` into the site's sessions; returns after they are committed.
    pub async fn merge(&self, site_id: i64, rows: Vec<(String, Observation)>) -> Result<()> {
        let (done, wait) = oneshot::channel();
        let queue = &self.queues[site_id.rem_euclid(self.queues.len() as i64) as usize];
        queue
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

async fn committer(db: Db, mut rx: mpsc::Receiver<Job>) {
    loop {
        let Some(mut jobs) = next_batch(&mut rx, MAX_REQUESTS).await else {
            return;
        };
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
        let mut sites: Vec<i64> = groups.iter().map(|(site, _)| *site).collect();
        sites.sort_unstable();
        let result = db
            .write(move |c| {
                c.transaction::<_, Error, _>(|c| {
                    // The sites are locked before their rows, as admission batches
                    // do: they write several sessions of a site in arrival order,
                    // and without the site lock the two could lock the same rows in
                    // opposite orders. One statement for the locks and one for the
                    // rows: each round trip costs more than the rows it carries.
                    lock_sites(c, &sites)?;
                    sessions::merge_sites(c, &groups)?;
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
