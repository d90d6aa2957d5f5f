//! Pure rules: no I/O, no database, no HTTP. Everything here is tested on plain values.

pub mod admission;
pub mod advice;
pub mod billing;
pub mod chart;
pub mod config;
pub mod forecast;
pub mod history;
pub mod ids;
pub mod plan_terms;
pub mod scope;
pub mod session;
pub mod targets;

/// Milliseconds since the Unix epoch, UTC: the unit of every stored instant.
pub type Millis = i64;
