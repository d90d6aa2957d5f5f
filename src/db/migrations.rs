//! The schema's versions and its migrations: which schema this binary knows, what a
//! database holds, and migrating it once however many processes start together.

use std::sync::LazyLock;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::{PgConnection, SqliteConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use super::DbConn;

const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// The release: the crate's version.
pub const RELEASE: &str = env!("CARGO_PKG_VERSION");

/// The versions of this binary's migrations, oldest first, as diesel records them
/// (`2026-12-05-000010_provider_session_limit` is `20261205000010`). Both backends have the same
/// list of migrations, one folder each.
pub fn known_versions() -> &'static [String] {
    static KNOWN: LazyLock<Vec<String>> = LazyLock::new(|| {
        let mut v: Vec<String> =
            diesel::migration::MigrationSource::<diesel::pg::Pg>::migrations(&PG_MIGRATIONS)
                .expect("embedded migrations")
                .iter()
                .map(|m| m.name().version().to_string())
                .collect();
        v.sort();
        v
    });
    &KNOWN
}

/// The schema this binary knows: the version of its newest migration.
pub fn schema_version() -> &'static str {
    known_versions().last().map_or("0", String::as_str)
}

/// `0.2.0 (schema 20261205000010)`: what `--version`, `/healthz` and
/// `headcount_build_info` report.
pub fn release_line() -> &'static str {
    static LINE: LazyLock<String> =
        LazyLock::new(|| format!("{RELEASE} (schema {})", schema_version()));
    &LINE
}

/// A database this binary must not touch: a newer release migrated it.
#[derive(Debug, thiserror::Error)]
#[error(
    "the database has schema {database}{written_by}, newer than this headcount {RELEASE} \
     knows (schema {ours}; unknown migrations: {unknown}); nothing was changed: run \
     that release or a newer one",
    ours = schema_version(),
    unknown = unknown.join(", ")
)]
pub struct NewerSchema {
    pub database: String,
    /// ` (migrated by headcount X)` when the database says which release migrated it.
    pub written_by: String,
    pub unknown: Vec<String>,
}

#[derive(diesel::QueryableByName)]
struct Version {
    #[diesel(sql_type = diesel::sql_types::Text)]
    version: String,
}

/// The migration versions a database records (none for an empty database). Reads
/// only: diesel's own harness would create its table first.
pub fn applied_versions(conn: &mut DbConn) -> QueryResult<Vec<String>> {
    #[derive(diesel::QueryableByName)]
    struct Present {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let probe = match conn {
        DbConn::Pg(_) => {
            "SELECT count(*)::bigint AS n FROM pg_catalog.pg_tables \
             WHERE tablename = '__diesel_schema_migrations' AND schemaname = current_schema()"
        }
        DbConn::Sqlite(_) => {
            "SELECT count(*) AS n FROM sqlite_master \
             WHERE type = 'table' AND name = '__diesel_schema_migrations'"
        }
    };
    let present = crate::per_backend!(conn, |c| diesel::sql_query(probe)
        .get_result::<Present>(c)?
        .n);
    if present == 0 {
        return Ok(Vec::new());
    }
    let mut v: Vec<String> = crate::per_backend!(conn, |c| diesel::sql_query(
        "SELECT version FROM __diesel_schema_migrations"
    )
    .load::<Version>(c)?)
    .into_iter()
    .map(|r| r.version)
    .collect();
    v.sort();
    Ok(v)
}

/// Refuses a database that holds a migration this binary does not know.
pub fn check_known(conn: &mut DbConn) -> anyhow::Result<()> {
    let applied = applied_versions(conn)?;
    if let Some(mut newer) = newer_schema(&applied) {
        if let Ok(Some(r)) = super::settings::get(conn, MIGRATED_BY) {
            newer.written_by = format!(" (migrated by headcount {r})");
        }
        return Err(newer.into());
    }
    Ok(())
}

/// The versions of `applied` this binary does not know: a newer release's.
pub fn unknown(applied: &[String]) -> Vec<String> {
    let known = known_versions();
    applied
        .iter()
        .filter(|v| !known.contains(v))
        .cloned()
        .collect()
}

fn newer_schema(applied: &[String]) -> Option<NewerSchema> {
    let unknown = unknown(applied);
    (!unknown.is_empty()).then(|| NewerSchema {
        database: applied.iter().max().cloned().unwrap_or_default(),
        written_by: String::new(),
        unknown,
    })
}

/// The settings key naming the release that last applied migrations.
const MIGRATED_BY: &str = "migrated_by_release";

/// Applies pending migrations, once however many processes start together: the first
/// to take the lock migrates, the others then find nothing pending. The lock is held
/// by a transaction, not a session, so it also holds through PgBouncer in transaction
/// mode (a session advisory lock and its unlock could land on different server
/// connections there). Every migration runs inside that transaction, so a failed one
/// leaves the schema as it was. A database with a migration this binary does not know
/// is refused before anything is written.
pub fn run(conn: &mut DbConn) -> anyhow::Result<usize> {
    check_known(conn)?;
    let applied = match conn {
        DbConn::Pg(c) => {
            // On Citus, advisory locks are per node: every process migrates through
            // the coordinator, so the lock is taken there, and a worker is refused
            // before anything is written to it.
            let node = super::citus::node(c)?;
            if node == super::citus::Node::Worker {
                anyhow::bail!(super::citus::WORKER);
            }
            c.transaction(|c| {
                c.batch_execute("SELECT pg_advisory_xact_lock(727468)")?;
                if node == super::citus::Node::Coordinator {
                    super::citus::migration_settings(c)?;
                }
                migrate_locked(c)
            })?
        }
        DbConn::Sqlite(c) => {
            // Another process may hold the write lock for as long as a migration of a
            // large database takes; wait for it rather than give up after the usual
            // busy timeout.
            c.batch_execute("PRAGMA busy_timeout = 600000")?;
            let r = c.exclusive_transaction(migrate_locked);
            c.batch_execute("PRAGMA busy_timeout = 10000")?;
            r?
        }
    };
    if applied > 0 {
        super::settings::set(conn, MIGRATED_BY, RELEASE)?;
    }
    Ok(applied)
}

/// Inside the migration lock: check again (a newer release may have migrated while
/// this process waited), then apply what is pending.
fn migrate_locked<C>(c: &mut C) -> anyhow::Result<usize>
where
    C: Connection + MigrationHarness<<C as Connection>::Backend> + MigrationsFor,
{
    let applied: Vec<String> = c
        .applied_migrations()
        .map_err(|e| anyhow::anyhow!("cannot read the applied migrations: {e}"))?
        .iter()
        .map(ToString::to_string)
        .collect();
    if let Some(newer) = newer_schema(&applied) {
        return Err(newer.into());
    }
    c.run_pending_migrations(C::migrations())
        .map(|v| v.len())
        .map_err(|e| anyhow::anyhow!("migration failed: {e}"))
}

trait MigrationsFor {
    fn migrations() -> EmbeddedMigrations;
}
impl MigrationsFor for PgConnection {
    fn migrations() -> EmbeddedMigrations {
        PG_MIGRATIONS
    }
}
impl MigrationsFor for SqliteConnection {
    fn migrations() -> EmbeddedMigrations {
        SQLITE_MIGRATIONS
    }
}

/// Whether migrations are pending (for `/readyz`).
pub fn pending(conn: &mut DbConn) -> anyhow::Result<bool> {
    let applied = applied_versions(conn)?;
    Ok(known_versions().iter().any(|v| !applied.contains(v)))
}

impl super::Db {
    /// Applies pending migrations; see [`run`].
    pub fn migrate(&self) -> anyhow::Result<usize> {
        let mut conn = self.pool.get()?;
        run(&mut conn)
    }

    /// Why `serve` must not start on this database (a Citus worker, or a Citus schema
    /// not yet distributed), or `None`.
    pub fn citus_refusal(&self) -> super::Result<Option<String>> {
        match &mut *self.pool.get()? {
            DbConn::Pg(c) => super::citus::refusal(c),
            DbConn::Sqlite(_) => Ok(None),
        }
    }

    /// Distributes the migrated schema on a Citus coordinator (`migrate --citus`).
    pub fn distribute(&self, shards: u32) -> anyhow::Result<usize> {
        match &mut *self.pool.get()? {
            DbConn::Pg(c) => super::citus::distribute(c, shards),
            DbConn::Sqlite(_) => {
                anyhow::bail!("--citus: Citus is PostgreSQL; this database is SQLite")
            }
        }
    }

    pub fn pending_migrations(&self) -> super::Result<bool> {
        let mut conn = self.pool.get()?;
        pending(&mut conn)
            .map_err(|e| super::Error::Unavailable(format!("cannot read migrations: {e}")))
    }
}
