//! Background work in every `serve` process: the usage sampler, retention and the
//! runner of scheduled changes and boosts.

pub mod retention;
pub mod sampler;
pub mod schedule;
