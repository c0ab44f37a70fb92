//! roampay: event-sourced payment orchestration where each workspace owns its Stripe
//! account. The write side (aggregates, vault, Stripe gateway) and the HTTP service;
//! the read side lives in `roampay-projections`, the event contract in `roampay-events`.

pub mod app;
pub mod charging_intent;
pub mod cli;
pub mod config;
pub mod connector_reservation;
pub mod http;
pub mod ids;
pub mod location;
pub mod metrics;
pub mod money;
pub mod reconcile;
pub mod session_worker;
pub mod store;
pub mod stripe;
pub mod sweep;
pub mod telemetry;
#[cfg(test)]
pub mod testing;
pub mod vault;
pub mod webhook_rejections;
pub mod workspace_stripe_profile;
