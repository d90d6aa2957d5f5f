//! Retention: ends sessions long past their expiry, and deletes ended sessions,
//! samples, roll-ups and denials older than the retention window (and idempotency answers
//! older than 24 h), in small batches so that no
//! statement holds locks for long.

use tokio::sync::watch;

use crate::clock::SharedClock;
use crate::db::{Db, Result, samples, sessions, usage};

const DAY_MS: i64 = 86_400_000;
/// Sessions past expiry stay visible as `expired` this long before being ended.
const EXPIRED_GRACE_MS: i64 = DAY_MS;
const BATCH: i64 = 1000;

/// What retention uses: the database, the clock and the two windows.
#[derive(Clone)]
pub struct Retention {
    pub db: Db,
    pub clock: SharedClock,
    /// Sessions, denials, usage samples (stored by change) and day roll-ups.
    pub session_retention_days: i64,
}

pub async fn run(retention: Retention, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(e) = sweep(retention.clone()).await {
            tracing::warn!(error = %e, "retention sweep failed; trying again later");
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// A site's rows before the cutoff (superseded samples, refusals, roll-ups), a batch
/// of sites per transaction, so that no statement runs long or holds many rows; then
/// the fleet-wide records (coverage, pass claims, stored answers).
async fn delete_by_site(db: &Db, cutoff: i64, now: i64) -> Result<usize> {
    let mut total = 0;
    let mut after = 0;
    loop {
        let (n, last) = db
            .write(move |c| {
                let ids = crate::db::sites::ids_after(c, after, BATCH)?;
                let n = samples::delete_superseded(c, &ids, cutoff)?
                    + usage::delete_denials_before(c, &ids, cutoff)?
                    + usage::delete_rollups_before(c, &ids, cutoff)?;
                Ok::<_, crate::db::Error>((n, ids.last().copied()))
            })
            .await?;
        total += n;
        match last {
            Some(id) => after = id,
            None => break,
        }
    }
    total += db
        .write(move |c| {
            Ok::<_, crate::db::Error>(
                samples::trim(c, cutoff, now)? + crate::db::idempotency::purge(c, now)?,
            )
        })
        .await?;
    Ok(total)
}

/// One sweep; returns how many rows it changed.
pub async fn sweep(retention: impl Into<Retention>) -> Result<usize> {
    let Retention {
        db,
        clock,
        session_retention_days,
    } = retention.into();
    let now = clock.now_ms();
    let session_cutoff = now - session_retention_days * DAY_MS;
    let mut total = 0;
    // Bounded loops: a huge backlog is worked off over several sweeps.
    // Writes queue with the process's other writers (SQLite's one writer), so that an
    // admission waits for one batch at most, not for the whole backlog.
    for _ in 0..100 {
        let n = db
            .write(move |c| {
                let mut n = sessions::end_expired(c, now, EXPIRED_GRACE_MS, BATCH)?;
                n += sessions::delete_ended_before(c, session_cutoff, BATCH)?;
                Ok::<_, crate::db::Error>(n)
            })
            .await?;
        total += n;
        if n == 0 {
            break;
        }
    }
    total += delete_by_site(&db, session_cutoff, now).await?;
    Ok(total)
}
