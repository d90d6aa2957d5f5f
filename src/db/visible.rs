//! What a caller may see, as a type. Tenant scope is checked once, where a site is
//! read for a caller, and carried from there: the scoped getters in [`super::sites`]
//! are the only makers of a [`Visible`] site, and every query on a site's own rows
//! (sessions, refusals, deliveries, boosts, scheduled changes, history) that a
//! handler reaches takes its [`SiteKey`] rather than a bare id. A handler therefore
//! cannot name a site it was not shown; the unscoped getters by id are storage's and
//! the background jobs', which act for the provider.

use std::ops::Deref;

use super::site_full::SiteFull;

/// A record the caller's scope lets it see. Read-only through `Deref`; only storage
/// makes one.
#[derive(Debug, Clone)]
pub struct Visible<T>(T);

impl<T> Visible<T> {
    pub(in crate::db) fn new(inner: T) -> Self {
        Self(inner)
    }

    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Visible<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl Visible<SiteFull> {
    /// The key its child queries take.
    pub fn key(&self) -> SiteKey {
        SiteKey(self.0.site.id)
    }
}

/// A visible site's key: `Copy` and `Send`, what a closure on the blocking pool
/// carries to storage. Made only from a [`Visible`] site (or by storage itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SiteKey(i64);

impl SiteKey {
    pub(in crate::db) fn of(id: i64) -> Self {
        Self(id)
    }

    /// The id, for what storage reads with it and for logs; no query a handler
    /// reaches takes it back.
    pub fn id(self) -> i64 {
        self.0
    }
}
