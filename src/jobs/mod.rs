//! Background work in every `serve` process: the usage sampler and retention.

pub mod retention;
pub mod sampler;
