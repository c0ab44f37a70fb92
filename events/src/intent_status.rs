//! Where a charging intent is, and which status each event leaves it in: one
//! definition for the aggregate (write side) and the `charging_intents` projection.

use serde::{Deserialize, Serialize};

use crate::ChargingIntentEvent;

/// Where an intent is. Transitions only go forward (see `rank`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum IntentStatus {
    /// Not requested yet (no events); never shown by the API.
    #[default]
    New,
    PendingPayment,
    Authorized,
    Charging,
    Completed,
    Cancelled,
    Failed,
    Expired,
    CaptureFailed,
}

impl IntentStatus {
    /// Every status the API can show.
    pub const VISIBLE: [IntentStatus; 8] = [
        Self::PendingPayment,
        Self::Authorized,
        Self::Charging,
        Self::Completed,
        Self::Cancelled,
        Self::Failed,
        Self::Expired,
        Self::CaptureFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::PendingPayment => "pending_payment",
            Self::Authorized => "authorized",
            Self::Charging => "charging",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
            Self::Expired => "expired",
            Self::CaptureFailed => "capture_failed",
        }
    }

    /// The status named `s` (as stored in read models and shown by the API).
    pub fn parse(s: &str) -> Option<Self> {
        Self::VISIBLE.into_iter().find(|v| v.as_str() == s)
    }

    /// Forward order; every end state shares the top rank, so none replaces another.
    pub fn rank(self) -> u8 {
        match self {
            Self::New => 0,
            Self::PendingPayment => 1,
            Self::Authorized => 2,
            Self::Charging => 3,
            Self::Completed
            | Self::Cancelled
            | Self::Failed
            | Self::Expired
            | Self::CaptureFailed => 4,
        }
    }

    pub fn is_final(self) -> bool {
        self.rank() == 4
    }

    /// Ended without a capture: a hold Stripe still reports on it is nobody's.
    pub fn ended_without_capture(self) -> bool {
        matches!(self, Self::Failed | Self::Cancelled | Self::Expired)
    }
}

impl std::fmt::Display for IntentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ChargingIntentEvent {
    /// The status this event leaves the intent in; `None` when it does not move it.
    pub fn status_after(&self) -> Option<IntentStatus> {
        use ChargingIntentEvent as E;
        Some(match self {
            E::FreeSessionAuthorized(_) => IntentStatus::Authorized,
            E::WorkspacePaymentIntentCreated(_) => IntentStatus::PendingPayment,
            E::WorkspacePaymentIntentCreationFailed(_) => IntentStatus::Failed,
            E::WorkspacePaymentIntentAuthorizationReceived(_) => IntentStatus::Authorized,
            E::WorkspacePaymentIntentFailed(e) if e.status == "cancelled" => {
                IntentStatus::Cancelled
            }
            E::WorkspacePaymentIntentFailed(_) => IntentStatus::Failed,
            E::ChargingSessionStarted(_) => IntentStatus::Charging,
            E::WorkspaceSessionPaymentCaptured(_) => IntentStatus::Completed,
            E::SessionCaptureFailed(_) => IntentStatus::CaptureFailed,
            E::HoldReleased(e) if e.reason == "expired" => IntentStatus::Expired,
            E::HoldReleased(_) => IntentStatus::Cancelled,
            E::HoldReleaseFailed(_) => IntentStatus::Failed,
            E::SessionCompletionRequested(_)
            | E::HoldReleaseRequested(_)
            | E::StripeCallDeferred(_)
            | E::HoldExpiryApproaching(_)
            | E::StrayHoldReleased(_)
            | E::PaymentAttemptFailed(_)
            | E::RefundRequested(_)
            | E::RefundPending(_)
            | E::RefundSucceeded(_)
            | E::RefundFailed(_)
            | E::DisputeOpened(_)
            | E::DisputeUpdated(_)
            | E::DisputeClosed(_)
            | E::HoldDeadlineRead(_) => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::IntentStatus;

    #[test]
    fn every_visible_status_parses_back_from_its_name() {
        for s in IntentStatus::VISIBLE {
            assert_eq!(IntentStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(IntentStatus::parse("new"), None);
        assert_eq!(IntentStatus::parse("nonsense"), None);
    }
}
