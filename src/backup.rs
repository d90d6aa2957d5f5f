//! `headcount backup` and `headcount restore`: a consistent copy of the SQLite database
//! taken while the server keeps serving, and its return into an empty data directory.
//! PostgreSQL has its own tools for both (`pg_dump`, `pg_restore`; docs/backup.md).
//!
//! Both commands write a temporary file beside the destination and rename it into
//! place only when it is complete and checked, so that a refusal or a crash leaves
//! nothing behind that could be mistaken for a backup or a database.

use std::path::{Path, PathBuf};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::Text;

use crate::config::{Config, DbArgs};
use crate::db::migrations::{known_versions, schema_version};
use crate::db::{Backend, DbConn};

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// The backup file to write; it must not exist yet.
    #[arg(long, value_name = "FILE")]
    pub output: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// A file written by `headcount backup`; it is read, never changed.
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
}

const PG_BACKUP: &str = "backup copies SQLite databases only; back up PostgreSQL \
     with `pg_dump -Fc` (see docs/backup.md)";
const PG_RESTORE: &str = "restore writes SQLite databases only; restore a \
     PostgreSQL dump with `pg_restore` (see docs/backup.md)";

/// The tables every headcount database has had since its first migration.
const HEADCOUNT_TABLES: [&str; 6] = [
    "__diesel_schema_migrations",
    "settings",
    "plans",
    "tenants",
    "sites",
    "sessions",
];

/// Copies the live SQLite database with `VACUUM INTO`, which reads one snapshot while
/// the server's writers carry on (WAL), marks the copy as a backup and renames it into
/// place.
pub fn backup(args: BackupArgs) -> Result<(), String> {
    let config = Config::for_db(&args.db)?;
    if Backend::of_url(&config.database_url) == Some(Backend::Postgres) {
        return Err(PG_BACKUP.to_owned());
    }
    let source = Path::new(crate::db::sqlite_path(&config.database_url));
    // Connecting would create an empty database where none is.
    if !source.is_file() {
        return Err(format!(
            "no database at {} to back up (check --data-dir or --database-url)",
            source.display()
        ));
    }
    let output = &args.output;
    if output.symlink_metadata().is_ok() {
        return Err(format!(
            "{} exists; backup writes a new file and overwrites nothing",
            output.display()
        ));
    }
    let partial = Partial::beside(output)?;
    let mut live = match config.db_manager().connect_now() {
        Ok(DbConn::Sqlite(c)) => c,
        Ok(DbConn::Pg(_)) => return Err(PG_BACKUP.to_owned()),
        Err(e) => return Err(format!("{}: {e}", source.display())),
    };
    diesel::sql_query("VACUUM INTO ?")
        .bind::<Text, _>(partial.utf8()?)
        .execute(&mut live)
        .map_err(|e| format!("cannot copy {}: {e}", source.display()))?;
    drop(live);

    let mut copy = open(&partial.path)?;
    let contents =
        inspect(&mut copy).map_err(|why| format!("cannot back up {}: {why}", source.display()))?;
    // A single self-contained file (no write-ahead log beside it), marked as a backup.
    let taken_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    copy.batch_execute("PRAGMA journal_mode = DELETE")
        .and_then(|()| {
            diesel::sql_query(
                "INSERT OR REPLACE INTO settings (key, value) \
                 VALUES ('backup_taken_at', ?), ('backup_release', ?)",
            )
            .bind::<Text, _>(&taken_at)
            .bind::<Text, _>(crate::db::migrations::RELEASE)
            .execute(&mut copy)
            .map(drop)
        })
        .map_err(|e| format!("cannot mark {} as a backup: {e}", partial.path.display()))?;
    drop(copy);
    // The copy holds the token signing key and the webhook secrets.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&partial.path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("{}: {e}", partial.path.display()))?;
    }
    let size = partial.place(output)?;
    println!(
        "backup written to {} ({size} bytes, schema version {})",
        output.display(),
        contents.schema_version
    );
    Ok(())
}

/// Checks a private copy of the backup and renames it to the configured SQLite
/// database, which must not exist yet. A refusal leaves the target directory as it was.
pub fn restore(args: RestoreArgs) -> Result<(), String> {
    let config = Config::for_db(&args.db)?;
    if Backend::of_url(&config.database_url) == Some(Backend::Postgres) {
        return Err(PG_RESTORE.to_owned());
    }
    let target = PathBuf::from(crate::db::sqlite_path(&config.database_url));
    for existing in [target.clone(), with_suffix(&target, "-wal")] {
        if existing.symlink_metadata().is_ok() {
            return Err(format!(
                "{} already exists; restore only into an empty data directory \
                 (stop headcount and move the old database aside first)",
                existing.display()
            ));
        }
    }
    let input = &args.input;
    check_file(input)?;
    let dir = parent(&target);
    let made_dir = !dir.exists();
    if made_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the directory {}: {e}", dir.display()))?;
    }
    let restored = restore_into(input, &target);
    if restored.is_err() && made_dir {
        let _ = std::fs::remove_dir(dir);
    }
    let (contents, size) = restored?;
    let pending = contents.pending.len();
    let later = if pending > 0 {
        format!("; serve applies {pending} newer migration(s) at start")
    } else {
        String::new()
    };
    println!(
        "restored {} into {} ({size} bytes, schema version {}, backup taken at {}){later}",
        input.display(),
        target.display(),
        contents.schema_version,
        contents.taken_at.as_deref().unwrap_or("an unknown time"),
    );
    Ok(())
}

/// A quick look at the input before anything is written: a readable SQLite file, and
/// no live database with recent writes still in its write-ahead log.
fn check_file(input: &Path) -> Result<(), String> {
    use std::io::Read as _;
    let mut header = [0u8; 16];
    let read = std::fs::File::open(input).and_then(|mut f| f.read(&mut header));
    match read {
        Err(e) => return Err(format!("cannot read {}: {e}", input.display())),
        Ok(n) if n < header.len() || &header != b"SQLite format 3\0" => {
            return Err(format!(
                "{} is not a headcount backup: not an SQLite database file",
                input.display()
            ));
        }
        Ok(_) => {}
    }
    let wal = with_suffix(input, "-wal");
    if wal.metadata().is_ok_and(|m| m.len() > 0) {
        return Err(format!(
            "{} is not a headcount backup: it is a live database with writes in {}; \
             copy it with `headcount backup`",
            input.display(),
            wal.display()
        ));
    }
    Ok(())
}

/// Copies the input beside the target, checks the copy and renames it into place.
fn restore_into(input: &Path, target: &Path) -> Result<(Contents, u64), String> {
    let partial = Partial::beside(target)?;
    std::fs::copy(input, &partial.path)
        .map_err(|e| format!("cannot copy {}: {e}", input.display()))?;
    let mut copy = open(&partial.path)?;
    let contents = inspect(&mut copy)
        .map_err(|why| format!("{} is not a headcount backup: {why}", input.display()))?;
    if !contents.unknown.is_empty() {
        return Err(format!(
            "{} is a backup of a newer headcount: its schema version is {}{}, this binary's \
             is {} (unknown migrations: {}); restore it with the release that made it",
            input.display(),
            contents.schema_version,
            contents
                .release
                .as_ref()
                .map(|r| format!(" (made by headcount {r})"))
                .unwrap_or_default(),
            schema_version(),
            contents.unknown.join(", ")
        ));
    }
    drop(copy);
    let size = partial.place(target)?;
    Ok((contents, size))
}

/// What a headcount database holds, as far as backup and restore care.
struct Contents {
    /// The newest migration applied.
    schema_version: String,
    /// Applied migrations this binary does not know: a newer release's.
    unknown: Vec<String>,
    /// Migrations of this binary not applied yet: the backup is of an older release.
    pending: Vec<String>,
    /// When `headcount backup` made it, and which release.
    taken_at: Option<String>,
    release: Option<String>,
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct Check {
    #[diesel(sql_type = Text)]
    integrity_check: String,
}

#[derive(QueryableByName)]
struct Value {
    #[diesel(sql_type = Text)]
    value: String,
}

fn open(path: &Path) -> Result<DbConn, String> {
    let utf8 = path
        .to_str()
        .ok_or_else(|| format!("{}: the path is not UTF-8", path.display()))?;
    SqliteConnection::establish(utf8)
        .map(DbConn::Sqlite)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))
}

/// Checks that `conn` is a sound headcount database; an `Err` says why it is not.
fn inspect(conn: &mut DbConn) -> Result<Contents, String> {
    let checks: Vec<Check> = diesel::sql_query("PRAGMA integrity_check")
        .load(conn)
        .map_err(|e| e.to_string())?;
    match checks.first() {
        Some(c) if checks.len() == 1 && c.integrity_check == "ok" => {}
        Some(c) => return Err(format!("the integrity check fails: {}", c.integrity_check)),
        None => return Err("the integrity check says nothing".to_owned()),
    }
    let tables: Vec<Name> =
        diesel::sql_query("SELECT name FROM sqlite_master WHERE type = 'table'")
            .load(conn)
            .map_err(|e| e.to_string())?;
    let missing: Vec<&str> = HEADCOUNT_TABLES
        .into_iter()
        .filter(|t| !tables.iter().any(|n| n.name == *t))
        .collect();
    if !missing.is_empty() {
        return Err(format!("it has no table {}", missing.join(", ")));
    }
    let applied = crate::db::migrations::applied_versions(conn).map_err(|e| e.to_string())?;
    let known = known_versions();
    // Another diesel application's tables of the same names would not start with
    // headcount's first migration.
    if known.first().is_none_or(|first| !applied.contains(first)) {
        return Err("its migrations are not headcount's".to_owned());
    }
    let unknown = crate::db::migrations::unknown(&applied);
    let pending = known
        .iter()
        .filter(|v| !applied.contains(v))
        .cloned()
        .collect();
    Ok(Contents {
        schema_version: applied.last().cloned().unwrap_or_default(),
        unknown,
        pending,
        taken_at: setting(conn, "backup_taken_at")?,
        release: setting(conn, "backup_release")?,
    })
}

fn setting(conn: &mut DbConn, key: &str) -> Result<Option<String>, String> {
    diesel::sql_query("SELECT value FROM settings WHERE key = ?")
        .bind::<Text, _>(key)
        .get_result::<Value>(conn)
        .optional()
        .map(|v| v.map(|v| v.value))
        .map_err(|e| e.to_string())
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// A file being written beside its destination under a hidden name. Dropping it removes
/// that name and any journal SQLite left beside it; once placed, the file lives on
/// under the destination's name only.
struct Partial {
    path: PathBuf,
}

impl Partial {
    fn beside(dest: &Path) -> Result<Self, String> {
        let dir = parent(dest);
        if !dir.is_dir() {
            return Err(format!(
                "cannot write {}: {} is not a directory",
                dest.display(),
                dir.display()
            ));
        }
        let name = dest
            .file_name()
            .ok_or_else(|| format!("{} names no file", dest.display()))?;
        let mut partial = std::ffi::OsString::from(".");
        partial.push(name);
        partial.push(format!(".partial-{}", std::process::id()));
        Ok(Self {
            path: dir.join(partial),
        })
    }

    fn utf8(&self) -> Result<&str, String> {
        self.path
            .to_str()
            .ok_or_else(|| format!("{}: the path is not UTF-8", self.path.display()))
    }

    /// Flushes the file to disk and gives it the name `dest`, unless something took
    /// that name meanwhile. Returns its size.
    fn place(self, dest: &Path) -> Result<u64, String> {
        let fail = |e: std::io::Error| format!("cannot write {}: {e}", dest.display());
        let file = std::fs::File::open(&self.path).map_err(fail)?;
        file.sync_all().map_err(fail)?;
        let size = file.metadata().map_err(fail)?.len();
        // A hard link, unlike a rename, never replaces what is there.
        match std::fs::hard_link(&self.path, dest) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(format!("{} exists; nothing was written", dest.display()));
            }
            // File systems without hard links.
            Err(_) if dest.symlink_metadata().is_err() => {
                std::fs::rename(&self.path, dest).map_err(fail)?;
            }
            Err(e) => return Err(fail(e)),
        }
        // Make the new name durable too.
        if let Ok(dir) = std::fs::File::open(parent(dest)) {
            let _ = dir.sync_all();
        }
        Ok(size)
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        for suffix in ["", "-journal", "-wal", "-shm"] {
            let _ = std::fs::remove_file(with_suffix(&self.path, suffix));
        }
    }
}
