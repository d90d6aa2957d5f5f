//! headcount: the control plane that hosting providers run to sell web sites priced by
//! a sessions limit. See README.md and DESIGN.md for the contract.

pub mod api;
pub mod app;
pub mod auth;
pub mod backup;
pub mod billing;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod expensive;
pub mod idempotency;
pub mod jobs;
pub mod load;
pub mod manage;
pub mod metrics;
pub mod oidc;
pub mod openapi;
pub mod push;
pub mod ratelimit;
pub mod request_id;
pub mod state;
