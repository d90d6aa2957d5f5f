//! Integration tests: HTTP against a running headcount, on SQLite by default and on
//! PostgreSQL when `HEADCOUNT_TEST_DATABASE_URL` is set.

mod helpers;
mod receiver;

mod admission;
mod advice_bench;
mod backup;
mod billing;
mod citus;
mod cli;
mod control;
mod counts;
mod crash;
mod edges;
mod exempt;
mod fairness;
mod fairness_bench;
mod fleet_month;
mod foundation;
mod history;
mod insight;
mod limits;
mod load;
mod multiprocess;
mod oidc;
mod ops;
mod outage;
mod process;
mod push;
mod readme;
mod releases;
mod schedule;
mod security;
mod sessions;
mod statements;
mod targets;
mod ui;
mod upgrade;
mod usage_storage;
