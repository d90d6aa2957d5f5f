//! SQLite's write-ahead log is copied back into the database file here, once a second,
//! rather than by whichever commit finds the log past its size (SQLite's default, set
//! off on every connection): that commit, often an admission, would wait for the whole
//! copy, up to a second after a large delete. A passive checkpoint waits for no reader
//! or writer, and no writer waits for it. PostgreSQL needs none of this.

use std::time::Duration;

use tokio::sync::watch;

use crate::db::{Backend, Db, Result};

const EVERY: Duration = Duration::from_secs(1);

pub async fn run(db: Db, mut stop: watch::Receiver<bool>) {
    if db.backend != Backend::Sqlite {
        return;
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = once(&db).await {
            tracing::warn!(error = %e, "WAL checkpoint failed; trying again in a second");
        }
    }
}

/// One passive checkpoint (nothing on PostgreSQL).
pub async fn once(db: &Db) -> Result<()> {
    db.run(crate::db::checkpoint).await
}
