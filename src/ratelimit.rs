//! Per-token rate limits: one GCRA state per token id, in this process, all under
//! the one quota of `HEADCOUNT_RATE_LIMIT`.

use std::num::NonZeroU32;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::config::RateLimit;

/// Beyond this many tokens the limiter forgets those back at a full burst, which
/// behave as a token never seen.
const TRACKED_TOKENS: usize = 100_000;

#[derive(Debug)]
pub struct RateLimiter {
    per_second: u32,
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        // The settings refuse 0 for either; 1 keeps a hand-made limit usable.
        let nonzero = |n| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(nonzero(limit.per_second)).allow_burst(nonzero(limit.burst));
        Self {
            per_second: limit.per_second,
            limiter: DefaultKeyedRateLimiter::keyed(quota),
            clock: DefaultClock::default(),
        }
    }

    pub fn per_second(&self) -> u32 {
        self.per_second
    }

    /// Takes one request's worth for `key`; on refusal says how many whole seconds
    /// until the next is allowed (at least 1).
    pub fn take(&self, key: &str) -> Result<(), u64> {
        if self.limiter.len() > TRACKED_TOKENS {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&key.to_owned()).map_err(|refused| {
            let wait = refused.wait_time_from(self.clock.now());
            wait.as_secs_f64().ceil().max(1.0) as u64
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_burst_passes_then_refuses() {
        let r = RateLimiter::new(RateLimit {
            per_second: 1,
            burst: 3,
        });
        assert!(r.take("a").is_ok());
        assert!(r.take("a").is_ok());
        assert!(r.take("a").is_ok());
        assert_eq!(r.take("a"), Err(1));
        assert!(r.take("b").is_ok());
    }
}
