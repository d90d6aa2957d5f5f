//! Billing export (not yet built).

use actix_web::web;

pub fn routes(_cfg: &mut web::ServiceConfig) {}
