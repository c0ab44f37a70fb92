//! roampay: event-sourced payment orchestration where each workspace owns its Stripe
//! account. Three layers: HTTP (`http`: parse, authorize, serialize) → application
//! services (`application`: one use case each, all side effects in one place) →
//! aggregates and gateways (one folder per aggregate, `stripe`, `vault`, `store`).
//! Background `jobs` and the command line (`cli`, `reconcile`) call the services;
//! `startup` wires everything. The read side lives in `roampay-projections`, the event
//! contract in `roampay-events`.

pub mod application;
pub mod charging_intent;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connector_reservation;
pub mod foreign_payment_intent;
pub mod http;
pub mod ids;
pub mod jobs;
pub mod location;
pub mod metrics;
pub mod money;
pub mod reconcile;
pub mod startup;
pub mod store;
pub mod stripe;
pub mod telemetry;
#[cfg(test)]
pub mod testing;
pub mod vault;
pub mod webhook_rejections;
pub mod workspace_stripe_profile;
pub mod workspace_subscription;
