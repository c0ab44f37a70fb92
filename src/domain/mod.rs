//! The domain: one folder per aggregate (each decides from its state and a command
//! alone: `type Services = ()`), and the value types input is parsed into.

pub mod charging_intent;
pub mod connector_reservation;
pub mod foreign_payment_intent;
pub mod ids;
pub mod location;
pub mod money;
pub mod ocpi_connections;
pub mod ocpi_session;
pub mod ocpi_tariff;
pub mod webhook_rejections;
pub mod workspace_stripe_profile;
pub mod workspace_subscription;
