//! `ChargingIntent`: one driver's request to charge at one connector, and its payment
//! in the workspace's own Stripe account.

pub mod aggregate;
pub mod command;
pub mod error;
pub mod refunds;
#[cfg(test)]
mod tests;

pub use aggregate::{ChargingIntent, Payment};
pub use command::*;
pub use error::ChargingIntentError;
pub use roampay_events::IntentStatus;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use secrecy::SecretString;

use crate::stripe::StripeGateway;

#[derive(Clone)]
pub struct IntentServices {
    pub stripe: Arc<dyn StripeGateway>,
    /// Client secrets of PaymentIntents just created, handed to the HTTP answer once and
    /// never stored (Stripe: pass it to the client, keep it out of logs and storage).
    client_secrets: Arc<Mutex<HashMap<String, SecretString>>>,
}

impl IntentServices {
    pub fn new(stripe: Arc<dyn StripeGateway>) -> Self {
        Self {
            stripe,
            client_secrets: Arc::default(),
        }
    }

    fn stash_client_secret(&self, charging_intent_id: &str, secret: SecretString) {
        let mut map = self.client_secrets.lock().expect("client secret stash");
        if map.len() > 10_000 {
            map.clear(); // answers that were never collected (failed requests)
        }
        map.insert(charging_intent_id.to_string(), secret);
    }

    pub fn take_client_secret(&self, charging_intent_id: &str) -> Option<SecretString> {
        self.client_secrets
            .lock()
            .expect("client secret stash")
            .remove(charging_intent_id)
    }
}

/// The Stripe idempotency key of one step of one intent: the same after any retry or
/// restart, different for every workspace, intent and step.
pub fn stripe_idempotency_key(workspace_id: &str, charging_intent_id: &str, step: &str) -> String {
    format!("roampay:{workspace_id}:{charging_intent_id}:{step}")
}
