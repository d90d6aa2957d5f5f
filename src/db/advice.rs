//! What plan advice reads: a site's session intervals and recorded refusals of a
//! period, and every plan, from one snapshot; and a version of those rows, so that a
//! computed advice can be kept until they change.

use diesel::prelude::*;
use diesel::sql_types::BigInt;

use super::DbConn;
use super::plans::Plan;
use super::schema::{denials::dsl as dn, plans::dsl as p};
use super::usage::numbered;
use super::visible::SiteKey;
use crate::clock::Millis;
use crate::db::Result;
use crate::domain::advice::Refusal;
use crate::domain::billing::Period;
use crate::domain::session::Span;

/// Refusals of rules the replay leaves alone: a bigger limit would not admit them.
const NOT_REPLAYED: [&str; 2] = ["user_limit_reached", "pool_limit_reached"];

/// A version of the rows advice reads of a site and period: it changes whenever they
/// do. Sessions merge monotonically (a start only moves earlier, a last activity and
/// an expiry only later, an end appears or moves earlier), so each of these sums moves
/// one way with every change of a row, and a new row moves the count or the largest
/// id (a deleted one the count, unless a new one came: then the largest id). Refusals
/// are only inserted and deleted. The sums are taken modulo a prime so that they
/// cannot overflow; a change by a multiple of it (11.6 days to the millisecond, in
/// the same statement as no other change) would go unseen. One aggregate read of the
/// period's rows through the same indexes as the rows themselves, with one row back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, QueryableByName)]
pub struct Version {
    #[diesel(sql_type = BigInt)]
    sessions: i64,
    #[diesel(sql_type = BigInt)]
    max_session: i64,
    #[diesel(sql_type = BigInt)]
    started: i64,
    #[diesel(sql_type = BigInt)]
    last_activity: i64,
    #[diesel(sql_type = BigInt)]
    expires: i64,
    #[diesel(sql_type = BigInt)]
    ended: i64,
    #[diesel(sql_type = BigInt)]
    ended_sum: i64,
    #[diesel(sql_type = BigInt)]
    refusals: i64,
    #[diesel(sql_type = BigInt)]
    max_refusal: i64,
}

/// The version of the rows [`rows`] reads, and every plan (prices and limits are part
/// of the advice too).
pub fn version(conn: &mut DbConn, site: SiteKey, period: &Period) -> Result<(Version, Vec<Plan>)> {
    let site_id = site.id();
    // The same rows as `sessions::times_overlapping` and the denials below.
    const SQL: &str = "SELECT s.*, d.* FROM \
        (SELECT count(*) AS sessions, COALESCE(max(id), 0) AS max_session, \
            CAST(COALESCE(sum(started_at % 1000000007), 0) AS BIGINT) AS started, \
            CAST(COALESCE(sum(last_activity_at % 1000000007), 0) AS BIGINT) AS last_activity, \
            CAST(COALESCE(sum(expires_at % 1000000007), 0) AS BIGINT) AS expires, \
            count(ended_at) AS ended, \
            CAST(COALESCE(sum(ended_at % 1000000007), 0) AS BIGINT) AS ended_sum \
         FROM sessions WHERE site_id = ? AND NOT exempt AND started_at < ? \
            AND expires_at > ? AND (ended_at IS NULL OR ended_at > ?)) s, \
        (SELECT count(*) AS refusals, COALESCE(max(id), 0) AS max_refusal \
         FROM denials WHERE site_id = ? AND at >= ? AND at < ?) d";
    super::read_snapshot(conn, |c| {
        let sql = match c {
            DbConn::Pg(_) => numbered(SQL),
            DbConn::Sqlite(_) => SQL.to_owned(),
        };
        let q = diesel::sql_query(sql)
            .bind::<BigInt, _>(site_id)
            .bind::<BigInt, _>(period.end)
            .bind::<BigInt, _>(period.start)
            .bind::<BigInt, _>(period.start)
            .bind::<BigInt, _>(site_id)
            .bind::<BigInt, _>(period.start)
            .bind::<BigInt, _>(period.end);
        let version: Version = match c {
            DbConn::Pg(c) => q.get_result(c)?,
            DbConn::Sqlite(c) => q.get_result(c)?,
        };
        let plans = p::plans.order(p::code).select(Plan::as_select()).load(c)?;
        Ok((version, plans))
    })
}

/// The rows advice needs.
#[derive(Debug)]
pub struct AdviceRows {
    pub sessions: Vec<Span>,
    pub refusals: Vec<Refusal>,
    pub plans: Vec<Plan>,
}

pub fn rows(conn: &mut DbConn, site: SiteKey, period: &Period) -> Result<AdviceRows> {
    let site_id = site.id();
    super::read_snapshot(conn, |c| {
        let sessions = super::sessions::times_overlapping(c, site_id, period.start, period.end)?;
        let denials: Vec<(Millis, String, Option<String>)> = dn::denials
            .filter(dn::site_id.eq(site_id))
            .filter(dn::at.ge(period.start))
            .filter(dn::at.lt(period.end))
            .order((dn::at, dn::id))
            .select((dn::at, dn::outcome, dn::counted_sessions))
            .load(c)?;
        let plans = p::plans.order(p::code).select(Plan::as_select()).load(c)?;
        Ok(AdviceRows {
            sessions: sessions
                .into_iter()
                .map(|(start, expires, ended, last)| Span {
                    start,
                    end: ended.map_or(expires, |e| e.min(expires)),
                    last_activity: last,
                })
                .collect(),
            refusals: denials
                .into_iter()
                .map(|(at, outcome, counted)| Refusal {
                    at,
                    dangling: counted.as_deref().and_then(any_dangling),
                    replayable: !NOT_REPLAYED.contains(&outcome.as_str()),
                })
                .collect(),
            plans,
        })
    })
}

/// Whether a denial's `counted_sessions` (`[{session, state, idle_seconds}]`) held a
/// dangling one; `None` if it cannot be read.
fn any_dangling(json: &str) -> Option<bool> {
    let v: Vec<serde_json::Value> = serde_json::from_str(json).ok()?;
    Some(v.iter().any(|s| s["state"] == "dangling"))
}
