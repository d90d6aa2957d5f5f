//! Background work in every `serve` process: the usage sampler, retention, the
//! runner of scheduled changes and boosts, and SQLite's checkpoints.

pub mod checkpoint;
pub mod retention;
pub mod sampler;
pub mod schedule;
