//! Limits on what one caller may ask of this process: per-token rate limits (one
//! GCRA state per token id, all under the one quota of `HEADCOUNT_RATE_LIMIT`), and
//! how many expensive reads one tenant may have running at a time
//! (`HEADCOUNT_EXPENSIVE_READS_PER_TENANT`), so that no tenant slows another.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};

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

/// How many requests of one key may run at once, in this process. A request over it
/// is refused at once rather than queued: a queue would hold its connection and, while
/// the earlier ones run, keep the caller waiting as long as the work it asked for.
#[derive(Debug)]
pub struct ConcurrencyLimiter {
    per_key: u32,
    /// Requests running per key; a key leaves the map with its last request, so the
    /// map holds only the keys busy now.
    running: Arc<Mutex<HashMap<String, u32>>>,
}

/// One request's place under a [`ConcurrencyLimiter`], given back when dropped.
#[derive(Debug)]
pub struct Slot {
    running: Arc<Mutex<HashMap<String, u32>>>,
    key: String,
}

impl ConcurrencyLimiter {
    pub fn new(per_key: u32) -> Self {
        Self {
            per_key: per_key.max(1),
            running: Arc::default(),
        }
    }

    pub fn per_key(&self) -> u32 {
        self.per_key
    }

    /// A place for `key`, or `None` when `per_key` requests of it are running.
    pub fn try_acquire(&self, key: &str) -> Option<Slot> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let n = running.entry(key.to_owned()).or_insert(0);
        if *n >= self.per_key {
            return None;
        }
        *n += 1;
        Some(Slot {
            running: self.running.clone(),
            key: key.to_owned(),
        })
    }

    /// Keys with a request running (for tests: idle keys must not pile up).
    pub fn busy_keys(&self) -> usize {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = running.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                running.remove(&self.key);
            }
        }
    }
}

/// How long a refused expensive read is told to wait: the reads it waits for take
/// from a fraction of a second to seconds, so one second is a fair first retry.
pub const BUSY_RETRY_AFTER_SECONDS: u64 = 1;

/// The refusal of an expensive read over its caller's concurrency limit: a 429
/// problem naming the limit, with `Retry-After`.
#[derive(Debug, thiserror::Error)]
#[error(
    "{who} already has {limit} expensive reads running (usage history and charts, advice, \
     billing export), the most allowed at a time (HEADCOUNT_EXPENSIVE_READS_PER_TENANT); \
     retry after {BUSY_RETRY_AFTER_SECONDS} s"
)]
pub struct TooManyReads {
    /// Whose reads: "tenant acme" or "the provider".
    pub who: String,
    pub limit: u32,
}

impl ResponseError for TooManyReads {
    fn status_code(&self) -> StatusCode {
        StatusCode::TOO_MANY_REQUESTS
    }

    fn error_response(&self) -> HttpResponse {
        let problem = crate::error::Problem {
            kind: "https://headcount.invalid/problems/too-many-concurrent-reads".to_owned(),
            title: "Too many requests".to_owned(),
            status: self.status_code().as_u16(),
            detail: self.to_string(),
            errors: Vec::new(),
            request_id: crate::request_id::current(),
        };
        HttpResponse::build(self.status_code())
            .insert_header((
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/problem+json"),
            ))
            .insert_header((header::RETRY_AFTER, BUSY_RETRY_AFTER_SECONDS.to_string()))
            .body(serde_json::to_string(&problem).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_is_limited_per_key_and_idle_keys_are_forgotten() {
        let l = ConcurrencyLimiter::new(2);
        let a1 = l.try_acquire("a").unwrap();
        let a2 = l.try_acquire("a").unwrap();
        assert!(l.try_acquire("a").is_none());
        // Another key is not held up by the first.
        let b = l.try_acquire("b").unwrap();
        assert_eq!(l.busy_keys(), 2);
        drop(a1);
        let a3 = l.try_acquire("a").unwrap();
        assert!(l.try_acquire("a").is_none());
        drop((a2, a3, b));
        assert_eq!(l.busy_keys(), 0);
    }

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
