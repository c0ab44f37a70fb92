//! `ChargingIntent`: one driver's request to charge at one connector, and its payment
//! in the workspace's own Stripe account.

pub mod aggregate;
pub mod command;
pub mod error;
#[cfg(test)]
mod tests;

pub use aggregate::{ChargingIntent, Payment};
pub use command::*;
pub use error::ChargingIntentError;
pub use roampay_events::IntentStatus;

/// The Stripe idempotency key of one step of one intent: the same after any retry or
/// restart, different for every workspace, intent and step.
pub fn stripe_idempotency_key(workspace_id: &str, charging_intent_id: &str, step: &str) -> String {
    format!("roampay:{workspace_id}:{charging_intent_id}:{step}")
}
