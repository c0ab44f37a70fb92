use chrono::{DateTime, Utc};
use roampay_events::{IntentRequest, StripeMode};
use secrecy::SecretString;

use crate::stripe::PaymentIntentView;

#[derive(Debug, Clone)]
pub enum ChargingIntentCommand {
    RequestRoamingPreAuth(RequestRoamingPreAuth),
    ProcessStripeAuthorizationWebhook(ProcessStripeAuthorizationWebhook),
}

/// Start a charging intent; `paid` is `None` for a free connector.
#[derive(Debug, Clone)]
pub struct RequestRoamingPreAuth {
    pub request: IntentRequest,
    pub paid: Option<PaidPreAuth>,
}

/// Everything needed to create the hold in the workspace's own account.
#[derive(Debug, Clone)]
pub struct PaidPreAuth {
    pub amount_cents: i64,
    pub credential_version: u32,
    pub mode: StripeMode,
    pub secret_key: SecretString,
    pub email: Option<String>,
}

/// Apply what Stripe says of the intent's PaymentIntent: from a verified webhook, the
/// confirm call, or the background sweep.
#[derive(Debug, Clone)]
pub struct ProcessStripeAuthorizationWebhook {
    pub charging_intent_id: String,
    pub workspace_id: String,
    pub payment_intent: PaymentIntentView,
    pub stripe_event_id: Option<String>,
    pub source: &'static str,
    pub at: DateTime<Utc>,
}
