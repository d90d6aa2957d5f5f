//! Limits over time: changes scheduled for an instant and temporary boosts of a site's
//! limit. Which of them is due, in which order, and the checks on their times.

use super::Millis;

names! {
    /// Where a scheduled change stands: `pending` until it runs (or is cancelled),
    /// then `done`, or `failed` when it could no longer be applied (its plan was
    /// deleted, say).
    pub enum ChangeStatus {
        Pending = "pending",
        Done = "done",
        Failed = "failed",
        Cancelled = "cancelled",
    }
    else |name| format!("unknown change status {name:?}")
}

names! {
    /// Where a boost stands: `scheduled` before its window, `active` inside it (the
    /// site runs with it), `ended` after it, `cancelled` when withdrawn.
    pub enum BoostStatus {
        Scheduled = "scheduled",
        Active = "active",
        Ended = "ended",
        Cancelled = "cancelled",
    }
    else |name| format!("unknown boost status {name:?}")
}

/// An RFC 3339 instant, in milliseconds.
pub fn parse_instant(s: &str) -> Result<Millis, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| "must be an RFC 3339 time, like 2026-12-15T00:00:00Z".to_owned())
}

/// A change may be scheduled for any instant after now.
pub fn check_future(at: Millis, now: Millis) -> Result<Millis, String> {
    if at > now {
        Ok(at)
    } else {
        Err("must lie in the future".to_owned())
    }
}

/// How far in the past a boost may start: one that starts "now" reaches headcount a
/// moment later.
pub const BOOST_START_GRACE_MS: Millis = 60_000;

/// A boost's window `[from, until)`: `from` no earlier than a minute ago, `until`
/// after `from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: Millis,
    pub until: Millis,
}

impl Window {
    /// The window, or each field that is wrong with its message.
    pub fn parse(
        from: Millis, until: Millis, now: Millis,
    ) -> Result<Self, Vec<(&'static str, String)>> {
        let mut errors = Vec::new();
        if from < now - BOOST_START_GRACE_MS {
            errors.push(("from", "must not lie in the past".to_owned()));
        }
        if until <= from {
            errors.push(("until", "must be after from".to_owned()));
        }
        if errors.is_empty() {
            Ok(Self { from, until })
        } else {
            Err(errors)
        }
    }

    /// Half-open windows: one may end where the next begins.
    pub fn overlaps(self, other: Self) -> bool {
        self.from < other.until && other.from < self.until
    }
}

/// A boost raises what was sold; one below it would take places away.
pub fn check_boost_limit(limit: i64, sold: i64) -> Result<i64, String> {
    if limit >= sold {
        Ok(limit)
    } else {
        Err(format!(
            "a boost raises the limit: it may not be below the {sold} sold"
        ))
    }
}

/// The limit a site runs with while a boost is active: the boost's, or the site's own
/// where that is higher (the provider raised its deal during the window).
pub fn boosted(limit: i64, boost: Option<i64>) -> i64 {
    boost.map_or(limit, |b| b.max(limit))
}

/// What the runner does, in the order of [`due`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    /// A boost's window closes (first at an instant, so that a boost may follow
    /// another back to back).
    EndBoost,
    /// A scheduled change of a plan runs (before the sites' own at the same instant).
    PlanChange,
    /// A scheduled change of a site runs.
    SiteChange,
    /// A boost's window opens.
    StartBoost,
}

/// One thing to do at its instant: the step, the row's id and its owner (the site,
/// or the plan of a plan change).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Due {
    pub at: Millis,
    pub step: Step,
    pub id: i64,
    pub owner: i64,
}

/// A pending change as the runner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingChange {
    pub id: i64,
    /// The site, or the plan when `of_plan`.
    pub owner: i64,
    pub at: Millis,
    pub of_plan: bool,
}

/// A boost as the runner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingBoost {
    pub id: i64,
    pub site_id: i64,
    pub window: Window,
    /// Already active: only its end is left.
    pub active: bool,
}

/// Everything due at `now`, oldest first: pending changes and the edges of boosts. A
/// boost whose whole window passed while no process ran opens and closes, each at its
/// own instant, so the history shows it as it was meant.
pub fn due(changes: &[PendingChange], boosts: &[PendingBoost], now: Millis) -> Vec<Due> {
    let mut out: Vec<Due> = changes
        .iter()
        .filter(|c| c.at <= now)
        .map(|c| Due {
            at: c.at,
            step: if c.of_plan {
                Step::PlanChange
            } else {
                Step::SiteChange
            },
            id: c.id,
            owner: c.owner,
        })
        .collect();
    for b in boosts {
        let edge = |at, step| Due {
            at,
            step,
            id: b.id,
            owner: b.site_id,
        };
        if !b.active && b.window.from <= now {
            out.push(edge(b.window.from, Step::StartBoost));
        }
        if (b.active || b.window.from <= now) && b.window.until <= now {
            out.push(edge(b.window.until, Step::EndBoost));
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Millis = 3_600_000;

    #[test]
    fn instants_parse_from_rfc3339() {
        assert_eq!(parse_instant("1970-01-01T01:00:00Z"), Ok(H));
        assert_eq!(parse_instant("1970-01-01T02:00:00+01:00"), Ok(H));
        assert!(parse_instant("tomorrow").is_err());
    }

    #[test]
    fn a_change_lies_in_the_future() {
        assert_eq!(check_future(H + 1, H), Ok(H + 1));
        assert!(check_future(H, H).is_err());
        assert!(check_future(H - 1, H).is_err());
    }

    #[test]
    fn a_window_starts_now_or_later_and_ends_after_it_starts() {
        assert_eq!(
            Window::parse(9 * H, 17 * H, 8 * H),
            Ok(Window {
                from: 9 * H,
                until: 17 * H
            })
        );
        // Sent "now", received a moment later.
        assert!(Window::parse(8 * H - 1000, 17 * H, 8 * H).is_ok());
        fn fields(r: Result<Window, Vec<(&'static str, String)>>) -> Vec<&'static str> {
            r.unwrap_err().into_iter().map(|(f, _)| f).collect()
        }
        assert_eq!(fields(Window::parse(H, 17 * H, 8 * H)), ["from"]);
        assert_eq!(fields(Window::parse(17 * H, 9 * H, 8 * H)), ["until"]);
        assert_eq!(fields(Window::parse(9 * H, 9 * H, 8 * H)), ["until"]);
        assert_eq!(fields(Window::parse(H, 0, 8 * H)), ["from", "until"]);
    }

    #[test]
    fn windows_overlap_unless_one_ends_where_the_other_begins() {
        let w = |a, b| Window { from: a, until: b };
        assert!(w(9, 17).overlaps(w(16, 18)));
        assert!(w(9, 17).overlaps(w(10, 11)));
        assert!(w(10, 11).overlaps(w(9, 17)));
        assert!(!w(9, 17).overlaps(w(17, 18)));
        assert!(!w(17, 18).overlaps(w(9, 17)));
    }

    #[test]
    fn a_boost_is_never_below_what_was_sold() {
        assert_eq!(check_boost_limit(20, 10), Ok(20));
        assert_eq!(check_boost_limit(10, 10), Ok(10));
        assert!(check_boost_limit(9, 10).is_err());
        assert_eq!(boosted(10, Some(20)), 20);
        assert_eq!(boosted(30, Some(20)), 30);
        assert_eq!(boosted(10, None), 10);
    }

    fn change(id: i64, at: Millis, of_plan: bool) -> PendingChange {
        PendingChange {
            id,
            owner: 50,
            at,
            of_plan,
        }
    }

    fn boost(id: i64, from: Millis, until: Millis, active: bool) -> PendingBoost {
        PendingBoost {
            id,
            site_id: 50,
            window: Window { from, until },
            active,
        }
    }

    #[test]
    fn due_steps_come_in_time_order_ends_first() {
        let boosts = [
            boost(1, 9 * H, 17 * H, true),
            boost(2, 17 * H, 20 * H, false),
            boost(3, 30 * H, 31 * H, false),
        ];
        let changes = [
            change(7, 17 * H, false),
            change(8, 25 * H, false),
            change(7, 17 * H, true),
        ];
        let got: Vec<(Millis, Step, i64)> = due(&changes, &boosts, 17 * H)
            .iter()
            .map(|d| (d.at, d.step, d.id))
            .collect();
        assert_eq!(
            got,
            [
                (17 * H, Step::EndBoost, 1),
                (17 * H, Step::PlanChange, 7),
                (17 * H, Step::SiteChange, 7),
                (17 * H, Step::StartBoost, 2),
            ]
        );
        assert!(due(&changes, &boosts, 9 * H).is_empty());
    }

    #[test]
    fn a_missed_window_opens_and_closes_at_its_own_instants() {
        let boosts = [boost(4, 9 * H, 17 * H, false)];
        let got = due(&[change(5, 12 * H, false)], &boosts, 40 * H);
        let steps: Vec<(Millis, Step)> = got.iter().map(|d| (d.at, d.step)).collect();
        assert_eq!(
            steps,
            [
                (9 * H, Step::StartBoost),
                (12 * H, Step::SiteChange),
                (17 * H, Step::EndBoost)
            ]
        );
        assert!(got.iter().all(|d| d.owner == 50));
    }
}
