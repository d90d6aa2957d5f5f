//! Expensive reads: the usage history and its chart, plan advice, the billing export
//! and the sessions of a past instant, whose work grows with a site's data. Three
//! things keep one tenant's flood of them from slowing another tenant's admissions:
//!
//! - a place per tenant ([`ConcurrencyLimiter`]): one read more than
//!   `HEADCOUNT_EXPENSIVE_READS_PER_TENANT` is refused at once with a 429;
//! - a turn, all tenants together: at most `HEADCOUNT_EXPENSIVE_READS_AT_ONCE` are
//!   computed at once, the others wait first come first served;
//! - threads of their own at a lower CPU priority (`HEADCOUNT_EXPENSIVE_READS_NICE`):
//!   when admissions, events and an expensive read want the same core, the scheduler
//!   gives it to the admissions first; on an idle machine the read runs at full speed.

use std::sync::Arc;

use tokio::runtime::{Handle, Runtime};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::Caller;
use crate::db::{Db, DbConn, Retry};
use crate::ratelimit::{ConcurrencyLimiter, Slot, TooManyReads};

/// What expensive reads share: places, turns and threads.
pub struct ExpensiveReads {
    places: ConcurrencyLimiter,
    turns: Arc<Semaphore>,
    threads: Threads,
}

impl std::fmt::Debug for ExpensiveReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExpensiveReads")
            .field("places", &self.places)
            .finish_non_exhaustive()
    }
}

/// An expensive read with its place and its turn, both given back when dropped; its
/// queries and computing run on the reads' own threads.
#[must_use = "the read's place and turn are given back when it is dropped"]
pub struct Read {
    _place: Slot,
    _turn: OwnedSemaphorePermit,
    threads: Handle,
}

impl ExpensiveReads {
    /// `per_tenant` places per tenant, `at_once` turns, threads at `nice` (0 keeps the
    /// priority of the rest of the process).
    pub fn new(per_tenant: u32, at_once: u32, nice: u8) -> anyhow::Result<Self> {
        Ok(Self {
            places: ConcurrencyLimiter::new(per_tenant),
            turns: Arc::new(Semaphore::new(at_once.max(1) as usize)),
            threads: Threads::start(at_once.max(1) as usize, nice)?,
        })
    }

    /// A place for one expensive read of `caller`, refused at once when its tenant
    /// already has as many running as the setting allows; then its turn, waited for.
    pub async fn start(&self, caller: &Caller) -> Result<Read, TooManyReads> {
        let place = self.place(caller)?;
        let turn = self
            .turns
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        Ok(Read {
            _place: place,
            _turn: turn,
            threads: self.threads.handle(),
        })
    }

    /// A place for one expensive read of `caller`, without its turn (which
    /// [`Self::start`] waits for next).
    pub fn place(&self, caller: &Caller) -> Result<Slot, TooManyReads> {
        // Slugs hold no ':', so no tenant's key can be another's or the provider's.
        let (key, who) = match caller {
            Caller::Admin { .. } => ("admin".to_owned(), "the provider".to_owned()),
            Caller::Tenant { tenant, .. } => {
                (format!("tenant:{tenant}"), format!("tenant {tenant}"))
            }
            Caller::Site { site, .. } => (format!("site:{site}"), format!("site {site}")),
        };
        self.places.try_acquire(&key).ok_or_else(|| TooManyReads {
            who,
            limit: self.places.per_key(),
        })
    }

    /// Keys with an expensive read running now.
    pub fn busy(&self) -> usize {
        self.places.busy_keys()
    }
}

impl Read {
    /// Runs `f` with a pooled connection on the reads' threads ([`Db::run`]).
    pub async fn db<T, E, F>(&self, db: &Db, f: F) -> Result<T, E>
    where
        F: FnMut(&mut DbConn) -> Result<T, E> + Send + 'static,
        E: From<crate::db::Error> + Retry + Send + 'static,
        T: Send + 'static,
    {
        db.run_on(&self.threads, f).await
    }

    /// Computes `f` on the reads' threads.
    pub async fn compute<T: Send + 'static>(
        &self, f: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let span = tracing::Span::current();
        Ok(self
            .threads
            .spawn_blocking(move || span.in_scope(f))
            .await?)
    }
}

/// A runtime whose blocking threads run the reads: `at_once` of them, made at the
/// lower priority as they start.
struct Threads {
    runtime: Option<Runtime>,
}

impl Threads {
    fn start(at_once: usize, nice: u8) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(at_once)
            .thread_name("headcount-reads")
            .on_thread_start(move || lower_priority(nice))
            .build()?;
        Ok(Self {
            runtime: Some(runtime),
        })
    }

    fn handle(&self) -> Handle {
        self.runtime
            .as_ref()
            .expect("the runtime lives as long as its owner")
            .handle()
            .clone()
    }
}

impl Drop for Threads {
    /// Without waiting for reads still running: the state may be dropped on an async
    /// worker, where a runtime may not block.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Raises the calling thread's nice value to `nice`: Linux keeps one per thread, and
/// any process may lower its own threads' priority. Where that fails, the reads run
/// at normal priority and the log says so once.
#[cfg(target_os = "linux")]
fn lower_priority(nice: u8) {
    if nice == 0 {
        return;
    }
    let thread = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(thread), i32::from(nice.min(19))) {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| tracing::warn!(error = %e, "expensive reads run at normal priority"));
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority(_nice: u8) {}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt as _;

    fn admin() -> Caller {
        Caller::Admin {
            jti: "t".to_owned(),
            person: None,
        }
    }

    /// The reads' threads run at the nice value asked for, while the threads of the
    /// rest of the process keep theirs.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn reads_are_computed_at_the_lower_priority() {
        let nice_here = || rustix::process::getpriority_process(Some(rustix::thread::gettid()));
        let ours = nice_here().unwrap();
        // 19, the lowest priority, can be asked for whatever the tests run at.
        let reads = ExpensiveReads::new(4, 1, 19).unwrap();
        let read = reads.start(&admin()).await.unwrap();
        let theirs = read.compute(move || nice_here().unwrap()).await.unwrap();
        assert_eq!(theirs, 19);
        assert_eq!(nice_here().unwrap(), ours);
    }

    /// A tenant over its places is refused at once; a read waits for a turn and gets
    /// it when the one before it ends.
    #[tokio::test]
    async fn places_are_refused_and_turns_are_waited_for() {
        let reads = ExpensiveReads::new(1, 1, 0).unwrap();
        let first = reads.start(&admin()).await.unwrap();
        let refused = reads.start(&admin()).await.err().unwrap();
        assert_eq!(refused.limit, 1);
        let tenant = Caller::Tenant {
            jti: "u".to_owned(),
            tenant: "acme".to_owned(),
            person: None,
        };
        assert!(
            reads.start(&tenant).now_or_never().is_none(),
            "a second turn while the only one is taken"
        );
        drop(first);
        let second = reads.start(&tenant).await.unwrap();
        assert_eq!(reads.busy(), 1);
        drop(second);
        assert_eq!(reads.busy(), 0);
    }
}
