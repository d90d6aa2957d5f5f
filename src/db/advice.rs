//! What plan advice reads: a site's session intervals and recorded refusals of a
//! period, and every plan, from one snapshot.

use diesel::prelude::*;

use super::DbConn;
use super::plans::Plan;
use super::schema::{denials::dsl as dn, plans::dsl as p};
use crate::clock::Millis;
use crate::db::Result;
use crate::domain::advice::Refusal;
use crate::domain::billing::Period;
use crate::domain::session::Span;

/// Refusals of rules the replay leaves alone: a bigger limit would not admit them.
const NOT_REPLAYED: [&str; 2] = ["user_limit_reached", "pool_limit_reached"];

/// The rows advice needs.
#[derive(Debug)]
pub struct AdviceRows {
    pub sessions: Vec<Span>,
    pub refusals: Vec<Refusal>,
    pub plans: Vec<Plan>,
}

pub fn rows(conn: &mut DbConn, site_id: i64, period: &Period) -> Result<AdviceRows> {
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
