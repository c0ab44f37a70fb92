//! What `roampay reconcile --apply` records when Stripe holds a PaymentIntent that
//! carries a workspace's roampay metadata but that no charging intent of ours owns
//! (created behind roampay's back, or by a copy of it on another database). Recording
//! it makes the finding part of the audit trail; the hold itself is for a person to
//! release in Stripe.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReconciliationEvent {
    ForeignPaymentIntentRecorded(ForeignPaymentIntentRecorded),
}

impl ReconciliationEvent {
    pub fn event_type(&self) -> &'static str {
        "ForeignPaymentIntentRecorded"
    }
    pub fn workspace_id(&self) -> &str {
        match self {
            Self::ForeignPaymentIntentRecorded(e) => &e.workspace_id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignPaymentIntentRecorded {
    pub workspace_id: String,
    pub payment_intent_id: String,
    /// Stripe's status when found.
    pub status: String,
    pub amount_cents: i64,
    pub currency: String,
    pub livemode: bool,
    /// The charging intent its metadata names, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_charging_intent_id: Option<String>,
    pub recorded_by: String,
    pub recorded_at: DateTime<Utc>,
}
