//! Refused webhook deliveries, kept for support as security warnings, and verified
//! ones about intents this service does not know, kept as information. One stream per
//! (workspace, hour), capped, so a flood cannot grow the store without bound: past the
//! cap only a count is kept.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WebhookRejectionEvent {
    WebhookRejected(WebhookRejected),
    WebhookIgnored(WebhookIgnored),
}

impl WebhookRejectionEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::WebhookRejected(_) => "WebhookRejected",
            Self::WebhookIgnored(_) => "WebhookIgnored",
        }
    }
    pub fn workspace_id(&self) -> Option<&str> {
        match self {
            Self::WebhookRejected(e) => e.workspace_id.as_deref(),
            Self::WebhookIgnored(e) => Some(&e.workspace_id),
        }
    }
}

/// A verified event about a PaymentIntent or charging intent this service does not know
/// (another deployment sharing the Stripe account, data from before a restore):
/// answered 200 and kept as information, not as a warning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookIgnored {
    pub workspace_id: String,
    pub stripe_event_id: String,
    pub payment_intent_id: String,
    /// `unknown_charging_intent`.
    pub reason: String,
    pub received_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookRejected {
    /// The workspace named by the URL or the payload, when it is a known one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<String>,
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe_event_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_intent_id: Option<String>,
    pub source_ip: String,
    pub rejected_at: DateTime<Utc>,
}
