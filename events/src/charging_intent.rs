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
    ChargingSessionStarted(ChargingSessionStarted),
    SessionCompletionRequested(SessionCompletionRequested),
    WorkspaceSessionPaymentCaptured(WorkspaceSessionPaymentCaptured),
    SessionCaptureFailed(SessionCaptureFailed),
    HoldReleaseRequested(HoldReleaseRequested),
    HoldReleased(HoldReleased),
    HoldReleaseFailed(HoldReleaseFailed),
    StripeCallDeferred(StripeCallDeferred),
    HoldExpiryApproaching(HoldExpiryApproaching),
    StrayHoldReleased(StrayHoldReleased),
    PaymentAttemptFailed(PaymentAttemptFailed),
    RefundRequested(RefundRequested),
    RefundPending(RefundPending),
    RefundSucceeded(RefundSucceeded),
    RefundFailed(RefundFailed),
    DisputeOpened(DisputeChanged),
    DisputeUpdated(DisputeChanged),
    DisputeClosed(DisputeChanged),
    HoldDeadlineRead(HoldDeadlineRead),
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
            Self::ChargingSessionStarted(_) => "ChargingSessionStarted",
            Self::SessionCompletionRequested(_) => "SessionCompletionRequested",
            Self::WorkspaceSessionPaymentCaptured(_) => "WorkspaceSessionPaymentCaptured",
            Self::SessionCaptureFailed(_) => "SessionCaptureFailed",
            Self::HoldReleaseRequested(_) => "HoldReleaseRequested",
            Self::HoldReleased(_) => "HoldReleased",
            Self::HoldReleaseFailed(_) => "HoldReleaseFailed",
            Self::StripeCallDeferred(_) => "StripeCallDeferred",
            Self::HoldExpiryApproaching(_) => "HoldExpiryApproaching",
            Self::StrayHoldReleased(_) => "StrayHoldReleased",
            Self::PaymentAttemptFailed(_) => "PaymentAttemptFailed",
            Self::RefundRequested(_) => "RefundRequested",
            Self::RefundPending(_) => "RefundPending",
            Self::RefundSucceeded(_) => "RefundSucceeded",
            Self::RefundFailed(_) => "RefundFailed",
            Self::DisputeOpened(_) => "DisputeOpened",
            Self::DisputeUpdated(_) => "DisputeUpdated",
            Self::DisputeClosed(_) => "DisputeClosed",
            Self::HoldDeadlineRead(_) => "HoldDeadlineRead",
        }
    }
    pub fn workspace_id(&self) -> &str {
        match self {
            Self::FreeSessionAuthorized(e) => &e.request.workspace_id,
            Self::WorkspacePaymentIntentCreated(e) => &e.request.workspace_id,
            Self::WorkspacePaymentIntentCreationFailed(e) => &e.request.workspace_id,
            Self::WorkspacePaymentIntentAuthorizationReceived(e) => &e.workspace_id,
            Self::WorkspacePaymentIntentFailed(e) => &e.workspace_id,
            Self::ChargingSessionStarted(e) => &e.workspace_id,
            Self::SessionCompletionRequested(e) => &e.workspace_id,
            Self::WorkspaceSessionPaymentCaptured(e) => &e.workspace_id,
            Self::SessionCaptureFailed(e) => &e.workspace_id,
            Self::HoldReleaseRequested(e) => &e.workspace_id,
            Self::HoldReleased(e) => &e.workspace_id,
            Self::HoldReleaseFailed(e) => &e.workspace_id,
            Self::StripeCallDeferred(e) => &e.workspace_id,
            Self::HoldExpiryApproaching(e) => &e.workspace_id,
            Self::StrayHoldReleased(e) => &e.workspace_id,
            Self::PaymentAttemptFailed(e) => &e.workspace_id,
            Self::RefundRequested(e) => &e.workspace_id,
            Self::RefundPending(e) => &e.workspace_id,
            Self::RefundSucceeded(e) => &e.workspace_id,
            Self::RefundFailed(e) => &e.workspace_id,
            Self::DisputeOpened(e) => &e.workspace_id,
            Self::DisputeUpdated(e) => &e.workspace_id,
            Self::DisputeClosed(e) => &e.workspace_id,
            Self::HoldDeadlineRead(e) => &e.workspace_id,
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
    /// The driver token's `sub` that asked (none for a guest): a replay of the same
    /// `Idempotency-Key` by anyone else is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
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
    /// Connect mode: the connected account the PaymentIntent lives in (the platform's
    /// key acts on it); `None` for the workspace's own keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe_account_id: Option<String>,
    /// Connect mode: the platform's fee in basis points, applied to what is captured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_fee_bps: Option<u32>,
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
    /// When Stripe says the hold lapses (the charge's `capture_before`), when the
    /// PaymentIntent read carried it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture_before: Option<DateTime<Utc>>,
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

/// The OCPI session began on the authorized connector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargingSessionStarted {
    pub charging_intent_id: String,
    pub workspace_id: String,
    pub ocpi_session_id: String,
    pub started_at: DateTime<Utc>,
}

/// The session ended with this amount; the hold is to be captured (`capture_amount_cents`,
/// the final amount capped by the hold) or, when that is 0, released. Stored before
/// Stripe is called, so a crash after Stripe acted is finished by the worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCompletionRequested {
    pub charging_intent_id: String,
    pub workspace_id: String,
    pub ocpi_session_id: Option<String>,
    pub final_amount_cents: i64,
    pub capture_amount_cents: i64,
    pub requested_at: DateTime<Utc>,
}

/// The session is paid: `captured_amount_cents` was captured in the workspace's own
/// account (0 when the hold was released instead, or for a free session).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceSessionPaymentCaptured {
    pub charging_intent_id: String,
    pub workspace_id: String,
    pub ocpi_session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_intent_id: Option<String>,
    pub final_amount_cents: i64,
    pub captured_amount_cents: i64,
    /// `capture`, `release` (a zero amount), `free`, or `webhook` / `worker` when
    /// Stripe's state told us after the fact.
    pub source: String,
    pub captured_at: DateTime<Utc>,
}

/// Stripe refused the capture for good (its error code).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCaptureFailed {
    pub charging_intent_id: String,
    pub workspace_id: String,
    pub payment_intent_id: String,
    pub failure_code: String,
    pub failed_at: DateTime<Utc>,
}

/// The hold is to be released: `cancelled` (asked for) or `expired` (no session in
/// time). Stored before Stripe is called.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldReleaseRequested {
    pub charging_intent_id: String,
    pub workspace_id: String,
    pub reason: String,
    pub requested_at: DateTime<Utc>,
}

/// The hold is released (the PaymentIntent is canceled in Stripe), or there was none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldReleased {
    pub charging_intent_id: String,
    pub workspace_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_intent_id: Option<String>,
    pub reason: String,
    pub released_at: DateTime<Utc>,
}

/// Stripe refused to cancel the PaymentIntent for good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldReleaseFailed {
    pub charging_intent_id: String,
    pub workspace_id: String,
    pub payment_intent_id: String,
    pub reason: String,
    pub failure_code: String,
    pub failed_at: DateTime<Utc>,
}

/// A capture or cancel did not reach a definite answer (timeout, 429, 5xx); the worker
/// tries again with the next attempt's idempotency key after reading the PaymentIntent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StripeCallDeferred {
    pub charging_intent_id: String,
    pub workspace_id: String,
    /// `capture` or `cancel`.
    pub step: String,
    pub attempt: u32,
    pub failure_code: String,
    pub deferred_at: DateTime<Utc>,
}

/// An intent that had already ended (failed, cancelled, expired) found its PaymentIntent
/// authorized after all — the driver retried the card on it — and the hold was
/// cancelled so that the card is not held for a session that will not happen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StrayHoldReleased {
    pub charging_intent_id: String,
    pub workspace_id: String,
    pub payment_intent_id: String,
    /// What the hold was for.
    pub amount_cents: i64,
    pub released_at: DateTime<Utc>,
}

/// The hold will lapse soon (`capture_before`), and the session has not been settled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldExpiryApproaching {
    pub charging_intent_id: String,
    pub workspace_id: String,
    pub capture_before: DateTime<Utc>,
    pub flagged_at: DateTime<Utc>,
}

/// Why Stripe declined an attempt to pay (the PaymentIntent's `last_payment_error`):
/// Stripe's `code` and `decline_code`, and its message for the driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LastPaymentError {
    pub code: Option<String>,
    pub decline_code: Option<String>,
    pub message: Option<String>,
}

/// An attempt to pay the PaymentIntent was declined. Stripe leaves the PaymentIntent
/// `requires_payment_method` and the driver may retry on it, so the intent stays
/// `pending_payment` with this error until a retry authorizes it or the intent ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentAttemptFailed {
    pub charging_intent_id: String,
    pub workspace_id: String,
    pub payment_intent_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe_event_id: Option<String>,
    pub source: String,
    pub error: LastPaymentError,
    pub failed_at: DateTime<Utc>,
}

/// Support asked for a refund (`refund_key` identifies the request: the client's
/// `Idempotency-Key`, or `stripe:<refund id>` for one made in the Stripe Dashboard).
/// The amount is reserved against what is still refundable until Stripe answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRequested {
    pub charging_intent_id: String,
    pub workspace_id: String,
    pub payment_intent_id: String,
    pub refund_key: String,
    pub amount_cents: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub requested_at: DateTime<Utc>,
}

/// Stripe accepted the refund and has not settled it yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundPending {
    pub charging_intent_id: String,
    pub workspace_id: String,
    pub refund_key: String,
    pub refund_id: String,
    pub amount_cents: i64,
    pub pending_at: DateTime<Utc>,
    /// The Stripe event that told us, when a webhook did (a redelivery is recognised).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe_event_id: Option<String>,
}

/// Money went back to the driver: by our request, or (`source` `webhook` /
/// `reconcile`) a refund made in the Stripe Dashboard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundSucceeded {
    pub charging_intent_id: String,
    pub workspace_id: String,
    pub refund_key: String,
    pub refund_id: String,
    pub amount_cents: i64,
    pub source: String,
    pub succeeded_at: DateTime<Utc>,
    /// The Stripe event that told us, when a webhook did (a redelivery is recognised).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe_event_id: Option<String>,
}

/// Stripe refused the refund, or it failed or was canceled later: nothing went back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundFailed {
    pub charging_intent_id: String,
    pub workspace_id: String,
    pub refund_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<String>,
    pub amount_cents: i64,
    pub failure_code: String,
    pub failed_at: DateTime<Utc>,
    /// The Stripe event that told us, when a webhook did (a redelivery is recognised).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe_event_id: Option<String>,
}

/// A dispute of the charge by the driver's bank, as Stripe reports it: opened
/// (`DisputeOpened`), moved (`DisputeUpdated`: evidence submitted, under review, …) or
/// ended (`DisputeClosed`: `won`, `lost`, `warning_closed`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisputeChanged {
    pub charging_intent_id: String,
    pub workspace_id: String,
    pub dispute_id: String,
    pub amount_cents: i64,
    pub reason: String,
    pub status: String,
    pub at: DateTime<Utc>,
    /// The Stripe event that told us, when a webhook did (a redelivery is recognised).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe_event_id: Option<String>,
}

/// Stripe was asked when the hold lapses (the charge's `capture_before`): its answer,
/// or none when Stripe did not say (then the configured hold lifetime stands in).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldDeadlineRead {
    pub charging_intent_id: String,
    pub workspace_id: String,
    pub payment_intent_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture_before: Option<DateTime<Utc>>,
    pub read_at: DateTime<Utc>,
}
