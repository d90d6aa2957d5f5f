//! Pure rules: no I/O, no database, no HTTP. Everything here is tested on plain values.

pub mod admission;
pub mod advice;
pub mod billing;
pub mod chart;
pub mod config;
pub mod forecast;
pub mod history;
pub mod ids;
pub mod session;
pub mod targets;
