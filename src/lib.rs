//! roampay: event-sourced payment orchestration where each workspace owns its Stripe
//! account. The write side (aggregates, vault, Stripe gateway) and the HTTP service;
//! the read side lives in `roampay-projections`, the event contract in `roampay-events`.

pub mod app;
pub mod cli;
pub mod config;
pub mod http;
pub mod ids;
pub mod money;
pub mod store;
#[cfg(test)]
pub mod testing;
pub mod stripe;
pub mod vault;
pub mod workspace_stripe_profile;
