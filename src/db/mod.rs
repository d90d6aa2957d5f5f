//! Storage: one pool over a connection enum of PostgreSQL and SQLite, one helper that
//! runs every query on the blocking thread pool, and the queries by table.

pub mod admission;
pub mod advice;
pub mod alerts;
pub mod audit;
pub mod batch_reads;
pub mod billing;
pub mod boosts;
pub mod citus;
pub mod counts;
mod error;
pub mod forecast;
pub mod history;
pub mod idempotency;
pub mod limits;
mod merge_stmt;
pub mod migrations;
pub mod outbox;
pub mod people;
pub mod plans;
mod pool_wait;
// `diesel print-schema` on the PostgreSQL migrations, unedited (`.ci/schema-check`
// compares them). SQLite declares the same columns, its INTEGER keys reading back as
// BigInt, so one schema serves the `MultiConnection`.
pub mod samples;
pub mod schedule;
pub mod schema;
pub mod sessions;
pub mod settings;
pub mod site_full;
pub mod site_writer;
pub mod sites;
pub mod tenants;
mod text_enums;
pub mod tokens;
pub mod usage;
pub mod visible;

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::{PgConnection, SqliteConnection};

pub use error::{Error, Result, Retry};
pub use pool_wait::WaitHistogram;

/// A connection to either backend. Portable diesel queries run on this enum; the
/// statements the multi backend cannot express go through [`per_backend!`].
#[derive(diesel::MultiConnection)]
pub enum DbConn {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
}

/// Runs one body per backend, type-checked against each inner connection. Used for
/// upserts and row locks, which diesel does not implement for the multi backend.
#[macro_export]
macro_rules! per_backend {
    ($conn:expr, |$c:ident, $pg:ident| $body:expr) => {
        match $conn {
            $crate::db::DbConn::Pg($c) => {
                let $pg = true;
                $body
            }
            $crate::db::DbConn::Sqlite($c) => {
                let $pg = false;
                $body
            }
        }
    };
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::db::DbConn::Pg($c) => $body,
            $crate::db::DbConn::Sqlite($c) => $body,
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub fn of_url(url: &str) -> Option<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else {
            None
        }
    }
}

/// The file path inside a `sqlite://` or `sqlite:` URL.
pub fn sqlite_path(url: &str) -> &str {
    url.strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url)
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to the database: {0}")]
    Connection(#[from] diesel::ConnectionError),
    #[error("cannot prepare the database connection: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("unsupported database URL (use sqlite://PATH or postgres://...)")]
    Scheme,
}

/// Picks the backend from the URL scheme, so that a PostgreSQL connect failure reports
/// its real cause rather than the stock manager's "invalid connection url".
#[derive(Debug, Clone)]
pub struct Manager {
    url: String,
    prepared_statements: bool,
}

impl Manager {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prepared_statements: true,
        }
    }

    /// Without named prepared statements on PostgreSQL: every statement is parsed
    /// anew, as a pooler that hands each transaction another server connection
    /// (PgBouncer before 1.21 in transaction mode) needs.
    pub fn without_prepared_statements(mut self) -> Self {
        self.prepared_statements = false;
        self
    }

    pub fn connect_now(&self) -> Result<DbConn, ConnectError> {
        match Backend::of_url(&self.url) {
            Some(Backend::Postgres) => {
                let mut c = PgConnection::establish(&self.url)?;
                if !self.prepared_statements {
                    c.set_prepared_statement_cache_size(diesel::connection::CacheSize::Disabled);
                }
                c.batch_execute(CITUS_SESSION)?;
                Ok(DbConn::Pg(c))
            }
            Some(Backend::Sqlite) => {
                let mut c = SqliteConnection::establish(sqlite_path(&self.url))?;
                // WAL lets readers run beside the one writer; the busy timeout makes
                // concurrent writers wait instead of failing with "database is locked".
                // No commit checkpoints: `jobs::checkpoint` does, off the request path.
                // Switching a new database to WAL needs it to itself, and SQLite answers
                // "locked" at once rather than wait while another process (starting
                // together with this one) migrates it: that is tried again for a while.
                let mut tries = 0;
                loop {
                    match c.batch_execute(
                        "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
                         PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
                         PRAGMA wal_autocheckpoint = 0;",
                    ) {
                        Ok(()) => break,
                        Err(e) if tries < 200 && e.to_string().contains("database is locked") => {
                            tries += 1;
                            std::thread::sleep(std::time::Duration::from_millis(50));
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(DbConn::Sqlite(c))
            }
            None => Err(ConnectError::Scheme),
        }
    }
}

/// Copies SQLite's write-ahead log into the database file as far as readers allow,
/// without waiting for them or for the writer; nothing on PostgreSQL.
pub fn checkpoint(conn: &mut DbConn) -> Result<()> {
    if let DbConn::Sqlite(c) = conn {
        c.batch_execute("PRAGMA wal_checkpoint(PASSIVE)")?;
    }
    Ok(())
}

/// Run on every new PostgreSQL connection; it changes nothing where the database has
/// no Citus. On Citus, a transaction reaches each worker over one connection: a
/// transaction that writes a reference table (the register of slugs, the audit log, a
/// plan) and then reads a site's shard joined with reference tables would otherwise
/// find their placements written over two connections of one node, which Citus
/// refuses ("placements that were modified over multiple connections"). Fleet-wide
/// reads then visit a node's shards one after another; single-site statements, the
/// bulk of the work, are not affected. `migrate --citus` also sets it on the
/// database, for connections that come through a pooler in transaction mode.
const CITUS_SESSION: &str = "SELECT set_config('citus.multi_shard_modify_mode', 'sequential', \
     false) FROM pg_extension WHERE extname = 'citus'";

impl r2d2::ManageConnection for Manager {
    type Connection = DbConn;
    type Error = ConnectError;

    fn connect(&self) -> Result<DbConn, ConnectError> {
        self.connect_now()
    }

    fn is_valid(&self, conn: &mut DbConn) -> Result<(), ConnectError> {
        conn.batch_execute("SELECT 1")?;
        Ok(())
    }

    fn has_broken(&self, _conn: &mut DbConn) -> bool {
        false
    }
}

pub type Pool = r2d2::Pool<Manager>;

/// The database handle shared by handlers and background jobs.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    /// How this handle's connections are made, for [`Db::with_own_connections`].
    manager: Manager,
    pub backend: Backend,
    /// SQLite allows one writer at a time; writers of this process queue here, first
    /// come first served (tokio's mutex is fair), instead of spinning on the busy
    /// timeout, which gives seconds-long tails, or racing for a plain mutex, which a
    /// loop of batches (retention) wins again and again.
    sqlite_writer: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// How long pool checkouts waited, for `headcount_db_pool_wait_seconds`.
    pub pool_wait: std::sync::Arc<WaitHistogram>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("backend", &self.backend)
            .finish()
    }
}

impl Db {
    /// Opens the pool. Fails fast with the real cause when the first connection
    /// cannot be made.
    pub fn connect(url: &str, max_size: u32) -> anyhow::Result<Self> {
        Self::connect_with(Manager::new(url), max_size)
    }

    /// [`Db::connect`] with the connection manager's options.
    pub fn connect_with(manager: Manager, max_size: u32) -> anyhow::Result<Self> {
        let url = manager.url.as_str();
        let backend = Backend::of_url(url).ok_or(ConnectError::Scheme)?;
        if backend == Backend::Sqlite {
            let path = std::path::Path::new(sqlite_path(url));
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    anyhow::anyhow!("cannot create the directory {}: {e}", dir.display())
                })?;
            }
        }
        // Surface the real connection error before r2d2 hides it behind a timeout.
        manager.connect_now()?;
        Ok(Self {
            pool: build_pool(manager.clone(), max_size)?,
            manager,
            backend,
            sqlite_writer: Default::default(),
            pool_wait: Default::default(),
        })
    }

    /// A handle on the same database with a pool of `size` connections of its own,
    /// for work that must never wait behind the rest: the site writer's committers
    /// (admissions and small event batches) keep connections that no expensive read,
    /// snapshot or background job can take. SQLite's writers still take turns with
    /// every other writer of the process.
    pub fn with_own_connections(&self, size: u32) -> anyhow::Result<Self> {
        Ok(Self {
            pool: build_pool(self.manager.clone(), size)?,
            manager: self.manager.clone(),
            backend: self.backend,
            sqlite_writer: self.sqlite_writer.clone(),
            pool_wait: self.pool_wait.clone(),
        })
    }
    /// Runs `f` with a pooled connection on the blocking thread pool, so that no
    /// query ever holds up an async worker. SQLite lock contention is retried.
    pub async fn run<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnMut(&mut DbConn) -> Result<T, E> + Send + 'static,
        E: From<Error> + Retry + Send + 'static,
        T: Send + 'static,
    {
        self.run_on(&tokio::runtime::Handle::current(), f).await
    }

    /// [`Db::run`] on the blocking threads of `runtime` (expensive reads have threads
    /// of their own, at a lower priority).
    pub async fn run_on<T, E, F>(&self, runtime: &tokio::runtime::Handle, f: F) -> Result<T, E>
    where
        F: FnMut(&mut DbConn) -> Result<T, E> + Send + 'static,
        E: From<Error> + Retry + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        let wait = self.pool_wait.clone();
        // The request's span follows the query, so its log lines carry the request id.
        let span = tracing::Span::current();
        runtime
            .spawn_blocking(move || span.in_scope(|| run_blocking(&pool, &wait, f)))
            .await
            .map_err(|e| {
                E::from(Error::Internal(anyhow::anyhow!(
                    "database task failed: {e}"
                )))
            })?
    }

    /// [`Db::run`] for a write transaction: on SQLite the process's writers take turns
    /// instead of contending for the database lock. PostgreSQL needs no such queue.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnMut(&mut DbConn) -> Result<T, E> + Send + 'static,
        E: From<Error> + Retry + Send + 'static,
        T: Send + 'static,
    {
        if self.backend == Backend::Postgres {
            return self.run(f).await;
        }
        let _turn = self.sqlite_writer.lock().await;
        self.run(f).await
    }

    /// The same as [`Db::write`] for code on a thread of its own, outside the async
    /// runtime.
    pub fn write_sync<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnMut(&mut DbConn) -> Result<T, E>,
        E: From<Error> + Retry,
    {
        let _turn = (self.backend == Backend::Sqlite).then(|| self.sqlite_writer.blocking_lock());
        self.run_sync(f)
    }

    /// The same as [`Db::run`] for code that already runs on a blocking thread.
    pub fn run_sync<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnMut(&mut DbConn) -> Result<T, E>,
        E: From<Error> + Retry,
    {
        run_blocking(&self.pool, &self.pool_wait, f)
    }

    pub fn pool_state(&self) -> r2d2::State {
        self.pool.state()
    }
}

/// No idle minimum: r2d2 would otherwise open replacement connections on its worker
/// thread at any moment, also while the process exits, and a PostgreSQL connect racing
/// the C library's exit handlers crashes the process. Connections are opened on demand
/// and kept while in use.
fn build_pool(manager: Manager, max_size: u32) -> anyhow::Result<Pool> {
    Ok(r2d2::Pool::builder()
        .max_size(max_size)
        .min_idle(Some(0))
        .connection_timeout(Duration::from_secs(3))
        .build(manager)?)
}

fn run_blocking<T, E, F>(pool: &Pool, wait: &WaitHistogram, mut f: F) -> Result<T, E>
where
    F: FnMut(&mut DbConn) -> Result<T, E>,
    E: From<Error> + Retry,
{
    let started = std::time::Instant::now();
    let conn = pool.get();
    wait.observe(started.elapsed().as_secs_f64());
    let mut conn = conn.map_err(|e| E::from(Error::from(e)))?;
    let mut tries = 0;
    loop {
        match f(&mut conn) {
            Err(ref e) if e.is_busy() && tries < 20 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(5 * tries));
            }
            other => return other,
        }
    }
}

/// Runs `f` in a read-only transaction whose statements all see one snapshot: at
/// `REPEATABLE READ` on PostgreSQL (where each statement of a `READ COMMITTED`
/// transaction would see its own), and by the WAL read snapshot a SQLite transaction
/// keeps from its first read. For reads whose parts must agree with each other.
pub fn read_snapshot<T, E>(
    conn: &mut DbConn, f: impl FnOnce(&mut DbConn) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    conn.transaction(|c| {
        if matches!(c, DbConn::Pg(_)) {
            diesel::sql_query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(c)?;
            // A read that grows with a site's data may not hold a connection (and the
            // database's workers) for minutes: PostgreSQL cancels it.
            let ms = READ_TIMEOUT_MS.load(std::sync::atomic::Ordering::Relaxed);
            diesel::sql_query(format!("SET LOCAL statement_timeout = {ms}")).execute(c)?;
        }
        f(c)
    })
}

/// How long one statement of a [`read_snapshot`] may run on PostgreSQL, in
/// milliseconds (`HEADCOUNT_READ_TIMEOUT_SECONDS`, set at start).
static READ_TIMEOUT_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(30_000);

/// Sets the statement timeout of [`read_snapshot`]s for this process.
pub fn set_read_timeout(timeout: std::time::Duration) {
    let ms = u64::try_from(timeout.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    READ_TIMEOUT_MS.store(ms, std::sync::atomic::Ordering::Relaxed);
}

/// Whether this process works on a distributed schema: set by the start-up check
/// (`citus::refusal`), read where a statement has a Citus shape of its own. A process talks
/// to one database, so one flag is enough; where it is wrongly set (tests that run
/// plain and Citus databases in one process) the Citus shape is still correct.
pub(crate) static DISTRIBUTED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// See [`DISTRIBUTED`].
pub fn distributed() -> bool {
    DISTRIBUTED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Starts a write transaction that holds the site's row until commit, so that
/// admissions and other check-then-write work on one site are serialized, also across
/// processes, while other sites proceed. PostgreSQL locks the row; SQLite has no row
/// locks, so the first statement is a write, which takes the database's write lock
/// at once instead of failing later when a read tries to upgrade.
pub fn lock_site(conn: &mut DbConn, site_id: i64) -> Result<()> {
    lock_sites(conn, &[site_id])
}

/// [`lock_site`] for several sites in one statement, in id order (the order every
/// transaction that holds several sites takes them in, so that none waits in a cycle).
/// `site_ids` has no repeats.
pub fn lock_sites(conn: &mut DbConn, site_ids: &[i64]) -> Result<()> {
    use schema::sites::dsl as s;
    if site_ids.is_empty() {
        return Ok(());
    }
    let locked = match conn {
        // On Citus a row lock spanning several shards is refused: one statement a
        // site, in id order, each on its site's shard.
        DbConn::Pg(c) if distributed() => {
            let mut sorted = site_ids.to_vec();
            sorted.sort_unstable();
            let mut n = 0;
            for id in sorted {
                n += s::sites
                    .filter(s::id.eq(id))
                    .select(s::id)
                    .for_no_key_update()
                    .load::<i64>(c)?
                    .len();
            }
            n
        }
        // One statement for the batch (the writer groups many sites' requests into
        // one transaction); the sort runs below the row locking, so rows are locked
        // in id order. NO KEY UPDATE: inserting sessions takes KEY SHARE on the site
        // row for the foreign key, which a plain FOR UPDATE would block (and deadlock
        // with); admissions still serialize against each other.
        DbConn::Pg(c) => s::sites
            .filter(s::id.eq_any(site_ids))
            .order(s::id)
            .select(s::id)
            .for_no_key_update()
            .load::<i64>(c)?
            .len(),
        DbConn::Sqlite(c) => diesel::update(s::sites.filter(s::id.eq_any(site_ids)))
            .set(s::config_version.eq(s::config_version))
            .execute(c)?,
    };
    // A site deleted meanwhile.
    if locked < site_ids.len() {
        return Err(Error::not_found("site"));
    }
    Ok(())
}

/// A fresh SQLite database for unit tests, with one plan, one tenant and sites of
/// the given ids.
#[cfg(test)]
pub(crate) fn test_db_with_sites(ids: &[i64]) -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let db = Db::connect(&url, 4).unwrap();
    db.migrate().unwrap();
    let ids = ids.to_vec();
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
        for id in &ids {
            diesel::sql_query(format!(
                "INSERT INTO sites (id, slug, tenant_id, plan_id, name, webhook_secret, \
                 config_version, created_at, updated_at) \
                 VALUES ({id}, 's{id}', 1, 1, 's', 's', 1, 0, 0)"
            ))
            .execute(c)?;
        }
        Ok::<_, crate::db::Error>(())
    })
    .unwrap();
    (dir, db)
}
