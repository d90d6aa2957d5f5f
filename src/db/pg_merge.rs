//! The session merge on PostgreSQL as one statement whose text is the same for any
//! number of rows: the rows travel as one array per column and `unnest` turns them
//! back into rows. Diesel then prepares it once per connection and reuses it, where
//! its own multi-row upsert (a `VALUES` list that grows with the rows, and a
//! `DO UPDATE` it never caches) is parsed and planned on every call, a cost as large
//! as writing a dozen rows.
//!
//! The `DO UPDATE` rule is the monotone merge of [`super::sessions`], written out in
//! SQL: the earliest start and end, the latest activity and expiry, and for the
//! descriptive fields the greatest non-null value. The API tests run on both backends,
//! so a difference between the two spellings fails them.

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text};
use diesel::{PgConnection, QueryResult, RunQueryDsl};

use super::sessions::NewSession;

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
        out.push_sql(
            "INSERT INTO sessions (site_id, session, user_ref, started_at, last_activity_at, \
             expires_at, ended_at, end_reason, user_agent, ip, overage) \
             SELECT * FROM unnest(",
        );
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
        out.push_sql(
            ") ON CONFLICT (site_id, session) DO UPDATE SET \
             started_at = CASE WHEN excluded.started_at < sessions.started_at \
                 THEN excluded.started_at ELSE sessions.started_at END, \
             last_activity_at = CASE WHEN excluded.last_activity_at > sessions.last_activity_at \
                 THEN excluded.last_activity_at ELSE sessions.last_activity_at END, \
             expires_at = CASE WHEN excluded.expires_at > sessions.expires_at \
                 THEN excluded.expires_at ELSE sessions.expires_at END, \
             end_reason = CASE WHEN sessions.ended_at IS NULL \
                 OR excluded.ended_at < sessions.ended_at \
                 OR (excluded.ended_at = sessions.ended_at \
                     AND excluded.end_reason < sessions.end_reason) \
                 THEN excluded.end_reason ELSE sessions.end_reason END, \
             ended_at = CASE WHEN sessions.ended_at IS NULL \
                 OR excluded.ended_at < sessions.ended_at \
                 THEN excluded.ended_at ELSE sessions.ended_at END, \
             user_ref = CASE WHEN sessions.user_ref IS NULL \
                 OR excluded.user_ref > sessions.user_ref \
                 THEN excluded.user_ref ELSE sessions.user_ref END, \
             user_agent = CASE WHEN sessions.user_agent IS NULL \
                 OR excluded.user_agent > sessions.user_agent \
                 THEN excluded.user_agent ELSE sessions.user_agent END, \
             ip = CASE WHEN sessions.ip IS NULL OR excluded.ip > sessions.ip \
                 THEN excluded.ip ELSE sessions.ip END",
        );
        Ok(())
    }
}
