//! The REST API: one module per resource. Handlers extract, parse into domain types,
//! run one transaction through `db`, and map the result to a response type.

pub mod advice;
pub mod audit;
pub mod auth;
pub mod billing;
pub mod boosts;
pub mod common;
pub mod deliveries;
pub mod denials;
pub mod events;
pub mod history;
pub mod ops;
pub mod plans;
pub mod problems;
pub mod schedule;
pub mod sessions;
pub mod shown_once;
pub mod sites;
pub mod tenants;
pub mod tokens;
pub mod ui;
pub mod usage;

use actix_web::web;

pub fn routes(cfg: &mut web::ServiceConfig) {
    // Routes are matched in the order they are registered, one pattern after the
    // other (and again for the metrics label), so the agents' hot endpoints come
    // first; no two patterns match the same path, so the order changes nothing else.
    events::routes(cfg);
    ops::routes(cfg);
    tokens::routes(cfg);
    plans::routes(cfg);
    tenants::routes(cfg);
    sites::routes(cfg);
    schedule::routes(cfg);
    boosts::routes(cfg);
    sessions::routes(cfg);
    usage::routes(cfg);
    denials::routes(cfg);
    history::routes(cfg);
    deliveries::routes(cfg);
    billing::routes(cfg);
    advice::routes(cfg);
    audit::routes(cfg);
    auth::routes(cfg);
    ui::routes(cfg);
}
