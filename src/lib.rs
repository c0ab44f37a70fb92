//! roampay: event-sourced payment orchestration where each workspace owns its Stripe
//! account. The folders are the layers: `http` (parse, authorize, serialize) →
//! `application` (one service per area; every side effect is a step it takes) →
//! `domain` (aggregates that decide from state and command alone, and the value types)
//! and `infra` (the event store, Stripe, the vault, the clock). Background `jobs` and
//! the command line (`cli`, `reconcile`) call the services; `startup` wires
//! everything. The read side lives in `roampay-projections`, the event contract in
//! `roampay-events`.

pub mod application;
pub mod cli;
pub mod config;
pub mod domain;
pub mod http;
pub mod infra;
pub mod jobs;
pub mod metrics;
pub mod reconcile;
pub mod startup;
pub mod telemetry;
#[cfg(test)]
pub mod testing;
