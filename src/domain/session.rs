//! Session states and the monotone merge rule.
//!
//! A session's state is computed at read time from its stored instants and `now`.
//! Merging is monotone (`started_at = min`, `last_activity_at = max`,
//! `expires_at = max`, `ended_at = min`, ending is terminal), so any order and any
//! duplication of the same events gives the same row.

use std::collections::HashMap;

use crate::domain::Millis;

names! {
    // A session at one instant; `active` is `live` or `dangling`.
    pub enum SessionState {
        Live = "live",
        Dangling = "dangling",
        Expired = "expired",
        Ended = "ended",
    }
    else |_| "must be one of live, dangling, expired, ended"
}

/// The instants that decide a session's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Times {
    pub started_at: Millis,
    pub last_activity_at: Millis,
    pub expires_at: Millis,
    pub ended_at: Option<Millis>,
}

/// How long an open session may go without activity before it is dangling: the one
/// definition of live and dangling. Everything that judges a session by its last
/// activity asks here: the states below, counting ([`super::admission::Counting`]),
/// intervals ([`Span`]), and storage, whose one expression (`db::sessions::dangling`)
/// compares with [`IdleTimeout::cutoff`]. The `site_counts` triggers carry the only
/// other copy, in SQL (migration `site_counts`), which the counts test checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleTimeout {
    ms: i64,
}

impl IdleTimeout {
    pub fn seconds(seconds: i64) -> Self {
        Self {
            ms: seconds.saturating_mul(1000),
        }
    }

    pub fn from_ms(ms: i64) -> Self {
        Self { ms }
    }

    pub fn ms(self) -> i64 {
        self.ms
    }

    /// The latest last activity that is dangling at `now`: a session is dangling once
    /// a whole timeout has passed without activity (exactly the timeout included).
    pub fn cutoff(self, now: Millis) -> Millis {
        now.saturating_sub(self.ms)
    }

    /// Whether an open, unexpired session last active at `last_activity` is dangling
    /// at `now`.
    pub fn is_dangling(self, last_activity: Millis, now: Millis) -> bool {
        last_activity <= self.cutoff(now)
    }

    /// The first instant at which a session last active at `last_activity` is
    /// dangling: [`Self::cutoff`] turned around.
    pub fn dangling_from(self, last_activity: Millis) -> Millis {
        last_activity.saturating_add(self.ms)
    }
}

/// The state of a session at `now`. `active` is `live` or `dangling`.
pub fn state(t: &Times, now: Millis, idle_timeout_seconds: i64) -> SessionState {
    if t.ended_at.is_some() {
        SessionState::Ended
    } else if t.expires_at <= now {
        SessionState::Expired
    } else if IdleTimeout::seconds(idle_timeout_seconds).is_dangling(t.last_activity_at, now) {
        SessionState::Dangling
    } else {
        SessionState::Live
    }
}

names! {
    /// Why a session ended.
    #[derive(PartialOrd, Ord)]
    pub enum EndReason {
        Logout = "logout",
        Expired = "expired",
        Killed = "killed",
        Evicted = "evicted",
        Reconciled = "reconciled",
        /// Ended for a new session of the same user (`replace`, `replace_oldest`).
        Replaced = "replaced",
    }
    else |_| "must be one of logout, expired, killed, evicted, reconciled, replaced"
}

names! {
    /// What an agent's event reports (its `type`).
    pub enum EventType {
        Started = "session.started",
        Activity = "session.activity",
        Ended = "session.ended",
        /// A sign-in the site refused itself (local enforcement): no session is created.
        Refused = "session.refused",
    }
    else |other| format!(
        "unknown event type {other:?} (use session.started, session.activity, session.ended or session.refused)"
    )
}

/// A stored session as an interval, as history, billing-style peaks and advice's
/// replay see it: active over `[start, end)`, last active at `last_activity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: Millis,
    /// `min(ended_at, expires_at)`.
    pub end: Millis,
    pub last_activity: Millis,
}

impl Span {
    /// From a session row, with billing's rule for where a session stops being active.
    pub fn of_row(
        started_at: Millis, expires_at: Millis, ended_at: Option<Millis>, last_activity_at: Millis,
    ) -> Self {
        Self {
            start: started_at,
            end: ended_at.map_or(expires_at, |e| e.min(expires_at)),
            last_activity: last_activity_at,
        }
    }

    /// When the session was active.
    pub fn active(&self) -> (Millis, Millis) {
        (self.start, self.end)
    }

    /// When it was live: until its last activity plus the idle timeout. Only the
    /// latest activity is stored, so an idle gap before it cannot be seen: derived
    /// from the rows alone, a session is live up to there and dangling only after.
    pub fn live(&self, idle_ms: i64) -> (Millis, Millis) {
        (self.start, self.end.min(self.idle_from(idle_ms)))
    }

    /// When it was dangling: from its last activity plus the idle timeout to its end.
    pub fn dangling(&self, idle_ms: i64) -> (Millis, Millis) {
        (self.start.max(self.idle_from(idle_ms)), self.end)
    }

    fn idle_from(&self, idle_ms: i64) -> Millis {
        IdleTimeout::from_ms(idle_ms).dangling_from(self.last_activity)
    }
}

/// What one or more events say about one session; merged into the stored row with
/// the same rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub started_at: Millis,
    pub last_activity_at: Millis,
    pub expires_at: Millis,
    pub ended: Option<(Millis, EndReason)>,
    pub user: Option<String>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    /// Reported with one of the site's `exempt_roles`: listed, never counted. Kept
    /// from the row's first write; any observation saying so makes it so.
    pub exempt: bool,
}

impl Observation {
    /// Folds another observation of the same session into this one. Commutative,
    /// associative and idempotent: for the instants by the monotone rule, and for the
    /// descriptive fields (user, user agent, ip) the greatest non-empty value wins when
    /// events disagree, matching the stored-row merge.
    pub fn merge(&mut self, other: &Observation) {
        self.exempt |= other.exempt;
        self.started_at = self.started_at.min(other.started_at);
        self.last_activity_at = self.last_activity_at.max(other.last_activity_at);
        self.expires_at = self.expires_at.max(other.expires_at);
        self.ended = match (self.ended, other.ended) {
            (None, x) | (x, None) => x,
            // The earliest end; at the same instant the smaller reason by name, as
            // the stored merge compares them.
            (Some(a), Some(b)) => Some(if (b.0, b.1.as_str()) < (a.0, a.1.as_str()) {
                b
            } else {
                a
            }),
        };
        for (mine, theirs) in [
            (&mut self.user, &other.user),
            (&mut self.user_agent, &other.user_agent),
            (&mut self.ip, &other.ip),
        ] {
            if theirs > mine {
                mine.clone_from(theirs);
            }
        }
    }
}

/// What deciding an admission needs to know of a stored session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub last_activity_at: Millis,
    pub expires_at: Millis,
    pub ended_at: Option<Millis>,
    /// Admitted with one of the site's `exempt_roles`: listed, never counted.
    pub exempt: bool,
}

impl Standing {
    /// The standing after merging `obs` into a session with the standing `before`
    /// (none: a new session), by the same monotone rule as the stored merge. A new
    /// session is not exempt; a known one keeps its mark, as the stored merge does.
    pub fn after(before: Option<&Standing>, obs: &Observation) -> Standing {
        let ended = obs.ended.map(|e| e.0);
        match before {
            None => Standing {
                last_activity_at: obs.last_activity_at,
                expires_at: obs.expires_at,
                ended_at: ended,
                exempt: false,
            },
            Some(b) => Standing {
                last_activity_at: b.last_activity_at.max(obs.last_activity_at),
                expires_at: b.expires_at.max(obs.expires_at),
                ended_at: match (b.ended_at, ended) {
                    (None, x) | (x, None) => x,
                    (Some(a), Some(e)) => Some(a.min(e)),
                },
                exempt: b.exempt,
            },
        }
    }
}

/// Folds observations of the same session into one row (one upsert row per session
/// per statement).
pub fn coalesce(items: Vec<(String, Observation)>) -> Vec<(String, Observation)> {
    let mut index: HashMap<String, usize> = HashMap::with_capacity(items.len());
    let mut out: Vec<(String, Observation)> = Vec::with_capacity(items.len());
    for (s, o) in items {
        match index.get(&s) {
            Some(&i) => out[i].1.merge(&o),
            None => {
                index.insert(s.clone(), out.len());
                out.push((s, o));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn obs(start: i64, act: i64, exp: i64, ended: Option<(i64, EndReason)>) -> Observation {
        Observation {
            started_at: start,
            last_activity_at: act,
            expires_at: exp,
            ended,
            user: None,
            user_agent: None,
            ip: None,
            exempt: false,
        }
    }

    #[test]
    fn states_follow_the_rules() {
        let t = Times {
            started_at: 0,
            last_activity_at: 10 * H,
            expires_at: 100 * H,
            ended_at: None,
        };
        assert_eq!(state(&t, 11 * H, 86_400), SessionState::Live);
        // Exactly idle_timeout without activity is dangling.
        assert_eq!(state(&t, 34 * H, 86_400), SessionState::Dangling);
        assert_eq!(state(&t, 100 * H, 86_400), SessionState::Expired);
        let ended = Times {
            ended_at: Some(5 * H),
            ..t
        };
        assert_eq!(state(&ended, 11 * H, 86_400), SessionState::Ended);
    }

    #[test]
    fn merge_is_order_independent_and_idempotent() {
        let events = [
            obs(5, 5, 50, None),
            obs(7, 9, 60, None),
            obs(8, 8, 40, Some((20, EndReason::Logout))),
            obs(3, 4, 30, Some((15, EndReason::Killed))),
        ];
        // Every permutation, each event possibly duplicated, gives one result.
        let mut results = std::collections::HashSet::new();
        let perms = permutations(&[0, 1, 2, 3]);
        for p in &perms {
            for dup in 0..4 {
                let mut acc = events[p[0]].clone();
                for &i in &p[1..] {
                    acc.merge(&events[i]);
                }
                acc.merge(&events[p[dup]]);
                results.insert(format!("{acc:?}"));
            }
        }
        assert_eq!(results.len(), 1, "{results:?}");
        let mut acc = events[0].clone();
        for e in &events[1..] {
            acc.merge(e);
        }
        assert_eq!(acc.started_at, 3);
        assert_eq!(acc.last_activity_at, 9);
        assert_eq!(acc.expires_at, 60);
        assert_eq!(acc.ended, Some((15, EndReason::Killed)));
    }

    fn permutations(v: &[usize]) -> Vec<Vec<usize>> {
        if v.len() <= 1 {
            return vec![v.to_vec()];
        }
        let mut out = Vec::new();
        for i in 0..v.len() {
            let mut rest = v.to_vec();
            let x = rest.remove(i);
            for mut p in permutations(&rest) {
                p.insert(0, x);
                out.push(p);
            }
        }
        out
    }
}
