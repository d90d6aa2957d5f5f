//! Retention: ends sessions long past their expiry, and deletes ended sessions,
//! samples, roll-ups and denials older than their windows (and idempotency answers
//! older than 24 h), in small batches so that no
//! statement holds locks for long.

use actix_web::web;
use tokio::sync::watch;

use crate::db::{sessions, usage};
use crate::error::Result;
use crate::state::AppState;

const DAY_MS: i64 = 86_400_000;
/// Sessions past expiry stay visible as `expired` this long before being ended.
const EXPIRED_GRACE_MS: i64 = DAY_MS;
const BATCH: i64 = 1000;

pub async fn run(state: web::Data<AppState>, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(e) = sweep(&state).await {
            tracing::warn!(error = %e, "retention sweep failed; trying again later");
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// One sweep; returns how many rows it changed.
pub async fn sweep(state: &AppState) -> Result<usize> {
    let now = state.now();
    let session_cutoff = now - state.config.session_retention_days * DAY_MS;
    let sample_cutoff = now - state.config.sample_retention_days * DAY_MS;
    let mut total = 0;
    // Bounded loops: a huge backlog is worked off over several sweeps.
    for _ in 0..100 {
        let n = state
            .db
            .run(move |c| {
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
    total += state
        .db
        .run(move |c| {
            Ok::<_, crate::db::Error>(
                usage::delete_samples_before(c, sample_cutoff)?
                    + usage::delete_denials_before(c, session_cutoff)?
                    + usage::delete_rollups_before(c, session_cutoff)?
                    + crate::db::idempotency::purge(c, now)?,
            )
        })
        .await?;
    Ok(total)
}
