//! How long queries waited for a pooled connection: counted here on every checkout,
//! rendered by `metrics` for `headcount_db_pool_wait_seconds`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Pool checkout waits; lock-free, observed on every query.
#[derive(Debug, Default)]
pub struct WaitHistogram {
    counts: [AtomicU64; WAIT_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

/// The pool gives up after 3 s (a 503).
const WAIT_BUCKETS: [f64; 10] = [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 3.0];

impl WaitHistogram {
    pub fn observe(&self, seconds: f64) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
        for (i, b) in WAIT_BUCKETS.iter().enumerate() {
            if seconds <= *b {
                self.counts[i].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The cumulative count at each bucket's upper bound, the count and the sum in
    /// seconds. A bucket never shows more than the count read first.
    pub fn snapshot(&self) -> (Vec<(f64, u64)>, u64, f64) {
        let count = self.count.load(Ordering::Relaxed);
        let buckets = WAIT_BUCKETS
            .iter()
            .enumerate()
            .map(|(i, b)| (*b, self.counts[i].load(Ordering::Relaxed).min(count)))
            .collect();
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        (buckets, count, sum)
    }
}
