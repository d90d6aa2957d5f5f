//! The admission decision at the limit, as a pure function of counts and config.

use serde::Serialize;
use utoipa::ToSchema;

use super::config::OverLimit;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    WithinLimit,
    EvictedDangling,
    Overage,
    LimitReached,
    SessionEnded,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WithinLimit => "within_limit",
            Self::EvictedDangling => "evicted_dangling",
            Self::Overage => "overage",
            Self::LimitReached => "limit_reached",
            Self::SessionEnded => "session_ended",
        }
    }

    pub fn admitted(self) -> bool {
        matches!(
            self,
            Self::WithinLimit | Self::EvictedDangling | Self::Overage
        )
    }
}

/// The most sessions `allow_overage` admits: `ceil(limit * (1 + percent / 100))`.
pub fn overage_ceiling(limit: i64, overage_percent: i64) -> i64 {
    let num = limit * (100 + overage_percent);
    (num + 99).div_euclid(100)
}

/// Decides a new session's admission. `counted` is the number of sessions that count
/// now (by the site's count mode); `can_evict` says whether a dangling session exists
/// whose eviction frees a counted place.
pub fn decide(
    counted: i64,
    limit: i64,
    over_limit: OverLimit,
    overage_percent: i64,
    can_evict: bool,
) -> Outcome {
    if counted < limit {
        return Outcome::WithinLimit;
    }
    match over_limit {
        OverLimit::Reject => Outcome::LimitReached,
        OverLimit::EvictDangling if can_evict && limit > 0 => Outcome::EvictedDangling,
        OverLimit::EvictDangling => Outcome::LimitReached,
        OverLimit::AllowOverage if counted < overage_ceiling(limit, overage_percent) => {
            Outcome::Overage
        }
        OverLimit::AllowOverage => Outcome::LimitReached,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_of_n_admits_n() {
        assert_eq!(
            decide(2, 3, OverLimit::Reject, 0, false),
            Outcome::WithinLimit
        );
        assert_eq!(
            decide(3, 3, OverLimit::Reject, 0, false),
            Outcome::LimitReached
        );
    }

    #[test]
    fn zero_refuses_everything() {
        for mode in [
            OverLimit::Reject,
            OverLimit::EvictDangling,
            OverLimit::AllowOverage,
        ] {
            assert_eq!(decide(0, 0, mode, 50, true), Outcome::LimitReached);
        }
    }

    #[test]
    fn eviction_needs_a_dangling_session() {
        assert_eq!(
            decide(3, 3, OverLimit::EvictDangling, 0, true),
            Outcome::EvictedDangling
        );
        assert_eq!(
            decide(3, 3, OverLimit::EvictDangling, 0, false),
            Outcome::LimitReached
        );
    }

    #[test]
    fn overage_stops_at_the_ceiling() {
        assert_eq!(overage_ceiling(10, 25), 13);
        assert_eq!(overage_ceiling(10, 20), 12);
        assert_eq!(overage_ceiling(3, 10), 4);
        assert_eq!(overage_ceiling(10, 0), 10);
        assert_eq!(
            decide(12, 10, OverLimit::AllowOverage, 25, false),
            Outcome::Overage
        );
        assert_eq!(
            decide(13, 10, OverLimit::AllowOverage, 25, false),
            Outcome::LimitReached
        );
    }
}
