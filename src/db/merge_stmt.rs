//! The session merge as statements whose text never changes, so that diesel prepares
//! each once per connection and reuses it. Diesel's own multi-row upsert (a `VALUES`
//! list that grows with the rows, and a `DO UPDATE` it never caches) is parsed and
//! planned on every call, which costs as much as writing a dozen rows.
//!
//! - PostgreSQL: one statement for any number of rows; the rows travel as one array
//!   per column and `unnest` turns them back into rows.
//! - SQLite: one single-row statement, run once per row inside the caller's
//!   transaction; SQLite runs in the process, so a row costs no round trip.
//!
//! Both share [`ON_CONFLICT_RULE`], the monotone merge of [`super::sessions`] in SQL: the
//! earliest start and end (ties go to the smaller reason, so that the result does not
//! depend on arrival order), the latest activity and expiry, and for the descriptive
//! fields the greatest non-null value.

use std::sync::LazyLock;

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text};
use diesel::sqlite::Sqlite;
use diesel::{PgConnection, QueryResult, RunQueryDsl, SqliteConnection};

use crate::domain::Millis;

/// A session row to merge.
#[derive(Debug)]
pub(super) struct NewSession<'a> {
    pub(super) site_id: i64,
    pub(super) session: &'a str,
    pub(super) user_ref: Option<&'a str>,
    pub(super) started_at: Millis,
    pub(super) last_activity_at: Millis,
    pub(super) expires_at: Millis,
    pub(super) ended_at: Option<Millis>,
    pub(super) end_reason: Option<&'a str>,
    pub(super) user_agent: Option<&'a str>,
    pub(super) ip: Option<&'a str>,
    pub(super) overage: bool,
    /// Kept only when the row is inserted: the merge never changes it.
    pub(super) exempt: bool,
}

const COLUMNS: &str = "INSERT INTO sessions (site_id, session, user_ref, started_at, \
     last_activity_at, expires_at, ended_at, end_reason, user_agent, ip, overage, exempt) ";

/// The merge rule, shared by both backends. `@C` marks the text comparisons: bytewise
/// on both backends (SQLite compares bytes, PostgreSQL is told to), as the in-memory
/// merge of observations that share a batch compares them, so that the result does
/// not depend on which events arrived together, whatever the database's collation.
const ON_CONFLICT_RULE: &str = " ON CONFLICT (site_id, session) DO UPDATE SET \
     started_at = CASE WHEN excluded.started_at < sessions.started_at \
         THEN excluded.started_at ELSE sessions.started_at END, \
     last_activity_at = CASE WHEN excluded.last_activity_at > sessions.last_activity_at \
         THEN excluded.last_activity_at ELSE sessions.last_activity_at END, \
     expires_at = CASE WHEN excluded.expires_at > sessions.expires_at \
         THEN excluded.expires_at ELSE sessions.expires_at END, \
     end_reason = CASE WHEN sessions.ended_at IS NULL \
         OR excluded.ended_at < sessions.ended_at \
         OR (excluded.ended_at = sessions.ended_at \
             AND excluded.end_reason@C < sessions.end_reason) \
         THEN excluded.end_reason ELSE sessions.end_reason END, \
     ended_at = CASE WHEN sessions.ended_at IS NULL \
         OR excluded.ended_at < sessions.ended_at \
         THEN excluded.ended_at ELSE sessions.ended_at END, \
     user_ref = CASE WHEN sessions.user_ref IS NULL \
         OR excluded.user_ref@C > sessions.user_ref \
         THEN excluded.user_ref ELSE sessions.user_ref END, \
     user_agent = CASE WHEN sessions.user_agent IS NULL \
         OR excluded.user_agent@C > sessions.user_agent \
         THEN excluded.user_agent ELSE sessions.user_agent END, \
     ip = CASE WHEN sessions.ip IS NULL OR excluded.ip@C > sessions.ip \
         THEN excluded.ip ELSE sessions.ip END";

static ON_CONFLICT_PG: LazyLock<String> =
    LazyLock::new(|| ON_CONFLICT_RULE.replace("@C", " COLLATE \"C\""));
static ON_CONFLICT_SQLITE: LazyLock<String> = LazyLock::new(|| ON_CONFLICT_RULE.replace("@C", ""));

/// Merges the rows on SQLite, one prepared statement run per row.
pub(super) fn sqlite_merge(
    c: &mut SqliteConnection, rows: &[NewSession<'_>],
) -> QueryResult<usize> {
    rows.iter().map(|row| SqliteMerge(row).execute(c)).sum()
}

struct SqliteMerge<'r, 'a>(&'r NewSession<'a>);

impl QueryId for SqliteMerge<'_, '_> {
    type QueryId = SqliteMerge<'static, 'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl RunQueryDsl<SqliteConnection> for SqliteMerge<'_, '_> {}

impl QueryFragment<Sqlite> for SqliteMerge<'_, '_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        let r = self.0;
        out.push_sql(COLUMNS);
        out.push_sql("VALUES (");
        out.push_bind_param::<BigInt, _>(&r.site_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&r.session)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&r.user_ref)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, _>(&r.started_at)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, _>(&r.last_activity_at)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, _>(&r.expires_at)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<BigInt>, _>(&r.ended_at)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&r.end_reason)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&r.user_agent)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&r.ip)?;
        out.push_sql(", ");
        out.push_bind_param::<Bool, _>(&r.overage)?;
        out.push_sql(", ");
        out.push_bind_param::<Bool, _>(&r.exempt)?;
        out.push_sql(")");
        out.push_sql(&ON_CONFLICT_SQLITE);
        Ok(())
    }
}

pub(super) struct PgMerge<'a> {
    site_id: Vec<i64>,
    session: Vec<&'a str>,
    user_ref: Vec<Option<&'a str>>,
    started_at: Vec<i64>,
    last_activity_at: Vec<i64>,
    expires_at: Vec<i64>,
    ended_at: Vec<Option<i64>>,
    end_reason: Vec<Option<&'a str>>,
    user_agent: Vec<Option<&'a str>>,
    ip: Vec<Option<&'a str>>,
    overage: Vec<bool>,
    exempt: Vec<bool>,
}

impl<'a> PgMerge<'a> {
    pub(super) fn new(rows: &[NewSession<'a>]) -> Self {
        Self {
            site_id: rows.iter().map(|r| r.site_id).collect(),
            session: rows.iter().map(|r| r.session).collect(),
            user_ref: rows.iter().map(|r| r.user_ref).collect(),
            started_at: rows.iter().map(|r| r.started_at).collect(),
            last_activity_at: rows.iter().map(|r| r.last_activity_at).collect(),
            expires_at: rows.iter().map(|r| r.expires_at).collect(),
            ended_at: rows.iter().map(|r| r.ended_at).collect(),
            end_reason: rows.iter().map(|r| r.end_reason).collect(),
            user_agent: rows.iter().map(|r| r.user_agent).collect(),
            ip: rows.iter().map(|r| r.ip).collect(),
            overage: rows.iter().map(|r| r.overage).collect(),
            exempt: rows.iter().map(|r| r.exempt).collect(),
        }
    }

    pub(super) fn run(self, c: &mut PgConnection) -> QueryResult<usize> {
        self.execute(c)
    }
}

/// One statement for any row count: the same prepared statement every time.
impl QueryId for PgMerge<'_> {
    type QueryId = PgMerge<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl RunQueryDsl<PgConnection> for PgMerge<'_> {}

impl QueryFragment<Pg> for PgMerge<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(COLUMNS);
        out.push_sql("SELECT * FROM unnest(");
        out.push_bind_param::<Array<BigInt>, _>(&self.site_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.session)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.user_ref)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.started_at)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.last_activity_at)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.expires_at)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<BigInt>>, _>(&self.ended_at)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.end_reason)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.user_agent)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.ip)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Bool>, _>(&self.overage)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Bool>, _>(&self.exempt)?;
        out.push_sql(")");
        out.push_sql(&ON_CONFLICT_PG);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::db::sessions::{self, SessionRow};
    use crate::domain::session::{EndReason, Observation};

    fn obs(
        start: i64, act: i64, exp: i64, ended: Option<(i64, EndReason)>, user: Option<&str>,
    ) -> Observation {
        Observation {
            started_at: start,
            last_activity_at: act,
            expires_at: exp,
            ended,
            user: user.map(str::to_owned),
            user_agent: None,
            ip: user.map(|u| format!("10.0.0.{}", u.len())),
            exempt: false,
        }
    }

    /// The SQL rule agrees with the in-memory one, whatever order the observations
    /// arrive in and however they are grouped into statements.
    #[test]
    fn the_statement_merges_as_the_monotone_rule_in_any_order() {
        let (_dir, db) = crate::db::test_db_with_sites(&[1]);
        let all = [
            obs(10, 50, 900, None, Some("bob")),
            obs(5, 20, 700, None, None),
            obs(12, 60, 800, Some((300, EndReason::Logout)), Some("alice")),
            obs(12, 40, 950, Some((300, EndReason::Killed)), None),
            obs(30, 70, 600, Some((400, EndReason::Evicted)), Some("carol")),
        ];
        let mut expected = all[0].clone();
        for o in &all[1..] {
            expected.merge(o);
        }
        let orders: [&[usize]; 4] = [
            &[0, 1, 2, 3, 4],
            &[4, 3, 2, 1, 0],
            &[2, 0, 4, 1, 3],
            &[3, 4, 0, 2, 1],
        ];
        for (k, order) in orders.iter().enumerate() {
            let session = format!("s{k}");
            let list: Vec<(String, Observation)> = order
                .iter()
                .map(|&i| (session.clone(), all[i].clone()))
                .collect();
            let (first, rest) = list.split_at(2);
            let row: SessionRow = db
                .run_sync(|c| {
                    // One statement of a row, then one row at a time.
                    sessions::merge(c, 1, &first[..1], false)?;
                    sessions::merge(c, 1, &first[1..], false)?;
                    for one in rest {
                        sessions::merge(c, 1, std::slice::from_ref(one), false)?;
                    }
                    Ok::<_, crate::db::Error>(sessions::get(c, 1, &session)?.expect("the row"))
                })
                .unwrap();
            assert_eq!(row.started_at, expected.started_at, "order {order:?}");
            assert_eq!(
                row.last_activity_at, expected.last_activity_at,
                "order {order:?}"
            );
            assert_eq!(row.expires_at, expected.expires_at, "order {order:?}");
            assert_eq!(row.ended_at, Some(300), "order {order:?}");
            assert_eq!(
                row.end_reason,
                expected.ended.map(|e| e.1),
                "order {order:?}"
            );
            assert_eq!(row.user_ref, expected.user, "order {order:?}");
            assert_eq!(row.ip, expected.ip, "order {order:?}");
            assert_eq!(row.user_agent, None, "order {order:?}");
        }
    }
}
