//! Events of the `ChargingIntent` aggregate: one driver's request to charge at one
//! connector, and its payment in the workspace's own Stripe account.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChargingIntentEvent {
    FreeSessionAuthorized(FreeSessionAuthorized),
    WorkspacePaymentIntentCreated(WorkspacePaymentIntentCreated),
    WorkspacePaymentIntentCreationFailed(WorkspacePaymentIntentCreationFailed),
    WorkspacePaymentIntentAuthorizationReceived(WorkspacePaymentIntentAuthorizationReceived),
    WorkspacePaymentIntentFailed(WorkspacePaymentIntentFailed),
}

impl ChargingIntentEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::FreeSessionAuthorized(_) => "FreeSessionAuthorized",
            Self::WorkspacePaymentIntentCreated(_) => "WorkspacePaymentIntentCreated",
            Self::WorkspacePaymentIntentCreationFailed(_) => "WorkspacePaymentIntentCreationFailed",
            Self::WorkspacePaymentIntentAuthorizationReceived(_) => {
                "WorkspacePaymentIntentAuthorizationReceived"
            }
            Self::WorkspacePaymentIntentFailed(_) => "WorkspacePaymentIntentFailed",
        }
    }
    pub fn workspace_id(&self) -> &str {
        match self {
            Self::FreeSessionAuthorized(e) => &e.request.workspace_id,
            Self::WorkspacePaymentIntentCreated(e) => &e.request.workspace_id,
            Self::WorkspacePaymentIntentCreationFailed(e) => &e.request.workspace_id,
            Self::WorkspacePaymentIntentAuthorizationReceived(e) => &e.workspace_id,
            Self::WorkspacePaymentIntentFailed(e) => &e.workspace_id,
        }
    }
}

/// What the driver asked for, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentRequest {
    pub charging_intent_id: String,
    pub workspace_id: String,
    pub location_id: String,
    pub evse_uid: String,
    pub connector_id: String,
    pub currency: String,
    /// SHA-256 of the request body fields, to tell a retry from a reused key.
    pub request_hash: String,
    pub requested_at: DateTime<Utc>,
}

/// A free connector: authorized at once, Stripe never involved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreeSessionAuthorized {
    pub request: IntentRequest,
}

/// The pre-authorization exists in the workspace's own Stripe account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspacePaymentIntentCreated {
    pub request: IntentRequest,
    pub authorization_reference: String,
    pub payment_intent_id: String,
    pub amount_cents: i64,
    pub credential_version: u32,
    pub livemode: bool,
}

/// Stripe refused to create the PaymentIntent, or never answered with one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspacePaymentIntentCreationFailed {
    pub request: IntentRequest,
    pub failure_code: String,
}

/// Stripe reports the hold in place (`requires_capture`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspacePaymentIntentAuthorizationReceived {
    pub charging_intent_id: String,
    pub workspace_id: String,
    pub payment_intent_id: String,
    /// The Stripe event that told us, when a webhook did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe_event_id: Option<String>,
    /// `webhook`, `confirm` or `sweep`.
    pub source: String,
    pub authorized_amount_cents: i64,
    pub received_at: DateTime<Utc>,
}

/// Stripe reports the PaymentIntent canceled or its payment failed before a hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspacePaymentIntentFailed {
    pub charging_intent_id: String,
    pub workspace_id: String,
    pub payment_intent_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe_event_id: Option<String>,
    pub source: String,
    /// `cancelled` when Stripe canceled it, else `failed`.
    pub status: String,
    pub failure_code: String,
    pub received_at: DateTime<Utc>,
}
