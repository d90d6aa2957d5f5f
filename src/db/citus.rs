//! headcount on Citus: which tables are distributed by site and which are copied to
//! every node, the command that distributes a migrated schema
//! (`headcount migrate --citus`), and the check `serve` makes before it starts.
//!
//! Every per-site table is hash-distributed by its site (`sites` by `id`, the others
//! by `site_id`) and colocated with `sites`, so that all rows of one site live on one
//! shard and a site's statements (which all name `site_id`, `tests/api/statements.rs`)
//! run on one worker. The fleet-wide tables are small and read beside the per-site
//! ones, so they are reference tables: a copy on every node.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Text};

use super::Result;

/// Distributed by site, colocated with `sites`; `sites` first (the others follow it).
/// `site_counts` comes before `sessions`: the counting triggers that copying the
/// sessions into their shards fires look for it.
pub const BY_SITE: &[&str] = &[
    "sites",
    "site_counts",
    "sessions",
    "denials",
    "outbox",
    "delivery_attempts",
    "usage_samples",
    "usage_current",
    "usage_rollups",
    "site_plan_history",
    "scheduled_changes",
    "site_boosts",
];

/// Copied to every node: the catalogue, the customers, and the provider-wide records.
pub const REFERENCE: &[&str] = &[
    "settings",
    "plans",
    "plan_prices",
    "plan_scheduled_changes",
    "tenants",
    "site_slugs",
    "revoked_tokens",
    "audit_log",
    "idempotency_keys",
    "sampler_coverage",
    "sampler_passes",
    "sign_in_attempts",
    "people",
    "web_sessions",
];

/// For a transaction that reads distributed tables across shards and then writes a
/// reference table they point to (deleting a plan or a tenant after checking that no
/// site uses it): Citus refuses that write after a parallel multi-shard read, so the
/// read runs over one connection per worker instead. Call it first in the
/// transaction; nothing on one PostgreSQL.
pub fn sequential(conn: &mut super::DbConn) -> Result<()> {
    if let super::DbConn::Pg(c) = conn
        && super::distributed()
    {
        c.batch_execute("SET LOCAL citus.multi_shard_modify_mode TO 'sequential'")?;
    }
    Ok(())
}

/// Shards per distributed table when `--shards` is not given: room to add workers
/// and rebalance later without resharding.
pub const DEFAULT_SHARDS: u32 = 32;

/// What kind of PostgreSQL a connection reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    /// No Citus extension in this database.
    Plain,
    /// A Citus coordinator: where headcount connects.
    Coordinator,
    /// A Citus worker: it holds shards, not the schema headcount works with.
    Worker,
}

#[derive(QueryableByName)]
struct Flag {
    #[diesel(sql_type = Bool)]
    flag: bool,
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn flag(c: &mut PgConnection, sql: &str) -> Result<bool> {
    Ok(diesel::sql_query(sql).get_result::<Flag>(c)?.flag)
}

/// Whether the database has Citus, and if so which node this is.
pub fn node(c: &mut PgConnection) -> Result<Node> {
    if !flag(
        c,
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') AS flag",
    )? {
        return Ok(Node::Plain);
    }
    // A coordinator is the node of group 0 in the cluster's metadata; a worker knows
    // it is one (`citus_is_coordinator` answers false there).
    Ok(if flag(c, "SELECT citus_is_coordinator() AS flag")? {
        Node::Coordinator
    } else {
        Node::Worker
    })
}

/// How far the schema is distributed: the tables not yet placed as they should be
/// (empty when all are).
pub fn undistributed(c: &mut PgConnection) -> Result<Vec<String>> {
    let rows: Vec<Name> = diesel::sql_query(
        "SELECT logicalrelid::regclass::text || ':' || partmethod::text AS name \
         FROM pg_dist_partition",
    )
    .load(c)?;
    let placed: Vec<String> = rows.into_iter().map(|r| r.name).collect();
    let want = BY_SITE
        .iter()
        .map(|t| format!("{t}:h"))
        .chain(REFERENCE.iter().map(|t| format!("{t}:n")));
    Ok(want
        .filter(|w| !placed.contains(w))
        .map(|w| w.split(':').next().unwrap_or_default().to_owned())
        .collect())
}

/// The settings a migration needs on a distributed schema: DDL and data changes of
/// one table in one transaction run shard by shard over one connection a worker,
/// and the counting triggers may be created on distributed tables (each trigger's
/// statements name one site, so they stay on the shard that fired them).
pub fn migration_settings(c: &mut PgConnection) -> Result<()> {
    c.batch_execute(
        "SET LOCAL citus.multi_shard_modify_mode TO 'sequential'; \
         SET LOCAL citus.enable_unsafe_triggers TO on",
    )?;
    Ok(())
}

/// What headcount says when pointed at a Citus worker.
pub const WORKER: &str = "this database is a Citus worker, which holds shards, not \
     headcount's schema: point DATABASE_URL at the coordinator";

/// The one line `serve` (and `migrate` without `--citus`) stops with when the schema
/// is not what headcount can run on, or `None` when it is.
pub fn refusal(c: &mut PgConnection) -> Result<Option<String>> {
    match node(c)? {
        Node::Plain => Ok(None),
        Node::Worker => Ok(Some(WORKER.to_owned())),
        Node::Coordinator => {
            let missing = undistributed(c)?;
            Ok(if missing.is_empty() {
                super::DISTRIBUTED.store(true, std::sync::atomic::Ordering::Relaxed);
                None
            } else if missing.len() == BY_SITE.len() + REFERENCE.len() {
                Some(
                    "this Citus database is not distributed: run `headcount migrate \
                     --citus` once, then start headcount again"
                        .to_owned(),
                )
            } else {
                Some(format!(
                    "this Citus database is half distributed ({} not placed): run \
                     `headcount migrate --citus` to finish",
                    missing.join(", ")
                ))
            })
        }
    }
}

/// Distributes the migrated schema on a Citus coordinator: reference tables first,
/// then `sites`, then every per-site table colocated with it, in one transaction.
/// Foreign keys between the tables are taken off for the move and put back after it
/// (Citus places a table only when what it references is placed already). Tables
/// already placed are left as they are, so running it again changes nothing. The
/// number of tables placed.
pub fn distribute(c: &mut PgConnection, shards: u32) -> anyhow::Result<usize> {
    match node(c)? {
        Node::Plain => anyhow::bail!(
            "--citus: this database has no Citus extension (CREATE EXTENSION citus on the \
             coordinator and register the workers first, see docs/scaling.md)"
        ),
        Node::Worker => {
            anyhow::bail!("--citus: this database is a Citus worker; run it on the coordinator")
        }
        Node::Coordinator => {}
    }
    let workers: i64 =
        diesel::sql_query("SELECT count(*) AS n FROM pg_dist_node WHERE groupid <> 0 AND isactive")
            .get_result::<Count>(c)?
            .n;
    if workers == 0 {
        anyhow::bail!(
            "--citus: the coordinator has no workers registered (SELECT citus_add_node(…))"
        );
    }
    c.transaction(|c| {
        migration_settings(c)?;
        let missing = undistributed(c)?;
        if missing.is_empty() {
            return Ok(0);
        }
        let keys = foreign_keys(c)?;
        for (table, name, _) in &keys {
            c.batch_execute(&format!("ALTER TABLE {table} DROP CONSTRAINT {name}"))?;
        }
        // A unique slug cannot be kept by a table distributed by id; the register
        // of slugs (a reference table) keeps it instead.
        c.batch_execute("ALTER TABLE sites DROP CONSTRAINT IF EXISTS sites_slug_key")?;
        // The kept counts are a cache (a site without a row is counted in full at its
        // next admission). Emptied, so that the triggers that copying the sessions
        // into their shards fires do not count those sessions a second time.
        if missing.iter().any(|m| m == "sessions") {
            c.batch_execute("DELETE FROM site_counts")?;
        }
        for t in REFERENCE.iter().filter(|t| missing.iter().any(|m| m == *t)) {
            c.batch_execute(&format!("SELECT create_reference_table('{t}')"))?;
        }
        for t in BY_SITE.iter().filter(|t| missing.iter().any(|m| m == *t)) {
            let sql = if *t == "sites" {
                format!("SELECT create_distributed_table('sites', 'id', shard_count => {shards})")
            } else {
                format!(
                    "SELECT create_distributed_table('{t}', 'site_id', colocate_with => 'sites')"
                )
            };
            c.batch_execute(&sql)?;
        }
        for (table, name, def) in &keys {
            c.batch_execute(&format!("ALTER TABLE {table} ADD CONSTRAINT {name} {def}"))?;
        }
        c.batch_execute(
            "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET \
             citus.multi_shard_modify_mode TO sequential', current_database()); END $$",
        )?;
        Ok(missing.len())
    })
}

#[derive(QueryableByName)]
struct ForeignKey {
    #[diesel(sql_type = Text)]
    tbl: String,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    def: String,
}

/// The foreign keys between headcount's tables: (table, constraint, definition).
fn foreign_keys(c: &mut PgConnection) -> Result<Vec<(String, String, String)>> {
    let tables: Vec<String> = BY_SITE
        .iter()
        .chain(REFERENCE)
        .map(|t| format!("'{t}'"))
        .collect();
    let rows: Vec<ForeignKey> = diesel::sql_query(format!(
        "SELECT r.relname::text AS tbl, k.conname::text AS name, \
                pg_get_constraintdef(k.oid) AS def \
         FROM pg_constraint k JOIN pg_class r ON r.oid = k.conrelid \
         WHERE k.contype = 'f' AND r.relnamespace = current_schema()::regnamespace \
           AND r.relname IN ({}) ORDER BY r.relname, k.conname",
        tables.join(", ")
    ))
    .load(c)?;
    Ok(rows.into_iter().map(|r| (r.tbl, r.name, r.def)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every table of the schema is placed somewhere on Citus: a table added by a
    /// migration and forgotten here would stay on the coordinator alone.
    #[test]
    fn every_table_is_placed_once() {
        let schema = include_str!("schema.rs");
        let tables: Vec<&str> = schema
            .split("diesel::table! {")
            .skip(1)
            .filter_map(|b| b.split_whitespace().next())
            .collect();
        assert!(tables.len() > 10, "{tables:?}");
        for t in &tables {
            let n = BY_SITE.iter().chain(REFERENCE).filter(|x| x == &t).count();
            assert_eq!(n, 1, "table {t} is placed {n} times");
        }
        assert_eq!(BY_SITE.len() + REFERENCE.len(), tables.len());
        assert_eq!(BY_SITE[0], "sites");
    }
}
