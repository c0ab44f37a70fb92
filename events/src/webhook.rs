//! Refused webhook deliveries, kept for support as security warnings. One stream per
//! (workspace, hour), capped, so a flood of forged requests cannot grow the store
//! without bound: past the cap only a count is kept.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WebhookRejectionEvent {
    WebhookRejected(WebhookRejected),
}

impl WebhookRejectionEvent {
    pub fn event_type(&self) -> &'static str {
        "WebhookRejected"
    }
    pub fn workspace_id(&self) -> Option<&str> {
        match self {
            Self::WebhookRejected(e) => e.workspace_id.as_deref(),
        }
    }
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
