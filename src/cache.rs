//! A small bounded map that forgets the least recently used entry: for results that
//! are expensive to compute and cheap to recognise (plan advice by site, period and
//! data version). Linear in its capacity per call, which stays in the hundreds.

use std::sync::{Arc, Mutex};

use crate::db::advice::Version;
use crate::db::visible::SiteKey;
use crate::domain::advice::{Advice, Offer};
use crate::domain::billing::Period;

/// What a plan advice is kept under: the site, the period, the version of the rows it
/// was computed from, and everything else it was computed from (the site's plan and
/// overrides as offers, the part of the period it existed in, the currency).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdviceKey {
    pub site: SiteKey,
    pub period: Period,
    pub version: Version,
    pub current: Offer,
    pub plans: Vec<Offer>,
    pub billed_ms: i64,
    pub currency: String,
}

/// Computed advice (`HEADCOUNT_ADVICE_CACHE_ENTRIES` of them), so that a dashboard
/// asking again costs one small read.
pub type AdviceCache = Lru<AdviceKey, Arc<Advice>>;

#[derive(Debug)]
pub struct Lru<K, V> {
    capacity: usize,
    inner: Mutex<Inner<K, V>>,
}

#[derive(Debug)]
struct Inner<K, V> {
    /// `(key, value, last use)`.
    entries: Vec<(K, V, u64)>,
    tick: u64,
}

impl<K: PartialEq, V: Clone> Lru<K, V> {
    /// A map of at most `capacity` entries; 0 keeps nothing.
    pub fn new(capacity: usize) -> Self {
        Lru {
            capacity,
            inner: Mutex::new(Inner {
                entries: Vec::new(),
                tick: 0,
            }),
        }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.tick += 1;
        let tick = inner.tick;
        let e = inner.entries.iter_mut().find(|(k, _, _)| k == key)?;
        e.2 = tick;
        Some(e.1.clone())
    }

    /// Keeps `value` under `key`, forgetting the least recently used entry when full.
    pub fn insert(&self, key: K, value: V) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.tick += 1;
        let tick = inner.tick;
        if let Some(e) = inner.entries.iter_mut().find(|(k, _, _)| *k == key) {
            e.1 = value;
            e.2 = tick;
            return;
        }
        if inner.entries.len() >= self.capacity
            && let Some(oldest) = (0..inner.entries.len()).min_by_key(|&i| inner.entries[i].2)
        {
            inner.entries.swap_remove(oldest);
        }
        inner.entries.push((key, value, tick));
    }

    pub fn clear(&self) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entries
            .clear();
    }

    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entries
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_entry_goes_first() {
        let c = Lru::new(2);
        c.insert(1, "a");
        c.insert(2, "b");
        assert_eq!(c.get(&1), Some("a"));
        c.insert(3, "c");
        assert_eq!(
            (c.get(&1), c.get(&2), c.get(&3)),
            (Some("a"), None, Some("c"))
        );
        c.insert(3, "d");
        assert_eq!((c.len(), c.get(&3)), (2, Some("d")));
        let none = Lru::new(0);
        none.insert(1, 1);
        assert!(none.is_empty());
    }
}
