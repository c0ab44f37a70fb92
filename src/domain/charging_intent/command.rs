use chrono::{DateTime, Utc};
use roampay_events::{IntentRequest, StripeMode};

use crate::infra::stripe::{
    CallError, Capture, DisputeView, PaymentIntentView, RefundView, StripeAccount,
};

#[derive(Debug, Clone)]
pub enum ChargingIntentCommand {
    RequestRoamingPreAuth(RequestRoamingPreAuth),
    ProcessStripeAuthorizationWebhook(ProcessStripeAuthorizationWebhook),
    StartSession(StartSession),
    CompleteSession(CompleteSession),
    CancelIntent(CancelIntent),
    SettlePayment(SettlePayment),
    FlagHoldExpiry(FlagHoldExpiry),
    ReleaseStrayHold(ReleaseStrayHold),
    RequestRefund(RequestRefund),
    ExecuteRefund(ExecuteRefund),
    RecordRefund(RecordRefund),
    RecordDispute(RecordDispute),
    ReadHoldDeadline(ReadHoldDeadline),
}

/// Start a charging intent: the request, and the hold the application asked Stripe
/// for (none for a free connector) with Stripe's answer. The aggregate only records:
/// Stripe was called before, once, with [`super::aggregate::hold_request`].
#[derive(Debug, Clone)]
pub struct RequestRoamingPreAuth {
    pub request: IntentRequest,
    pub hold: Hold,
}

/// The hold of a pre-authorization.
#[derive(Debug, Clone)]
pub enum Hold {
    /// A free connector: no hold, Stripe not called.
    Free,
    /// The hold asked in the workspace's account, and the id of the PaymentIntent
    /// Stripe created (or why it did not).
    Asked {
        paid: PaidPreAuth,
        answer: Result<String, CallError>,
    },
}

/// Everything needed to create the hold in the workspace's own account.
#[derive(Debug, Clone)]
pub struct PaidPreAuth {
    pub amount_cents: i64,
    pub credential_version: u32,
    pub mode: StripeMode,
    /// The workspace's own key, or the platform's on its connected account.
    pub on: StripeAccount,
    /// Connect mode: the platform's fee in basis points.
    pub application_fee_bps: Option<u32>,
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
    /// Told on the platform's Connect endpoint about this connected account: the
    /// intent's PaymentIntent must live in it.
    pub connect_account: Option<String>,
    pub at: DateTime<Utc>,
}

/// The OCPI session began: authorized → charging.
#[derive(Debug, Clone)]
pub struct StartSession {
    pub ocpi_session_id: String,
    pub at: DateTime<Utc>,
}

/// The session ended with this amount: capture it (capped by the hold), or release the
/// hold when it is 0. Only records the decision; [`SettlePayment`] talks to Stripe.
#[derive(Debug, Clone)]
pub struct CompleteSession {
    pub final_amount_cents: i64,
    pub ocpi_session_id: Option<String>,
    pub at: DateTime<Utc>,
}

/// Why a hold is released without a capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseReason {
    /// Asked for (`POST …/cancel`).
    Cancelled,
    /// No session started in time (the worker).
    Expired,
}

impl ReleaseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
        }
    }
}

/// Release the hold (or, for a free session, just end it).
#[derive(Debug, Clone)]
pub struct CancelIntent {
    pub reason: ReleaseReason,
    pub at: DateTime<Utc>,
}

/// Carry out the capture or release recorded before, in the workspace's own account,
/// with the secret key of the credential version the intent was created under.
#[derive(Debug, Clone)]
pub struct SettlePayment {
    /// The call made ([`super::ChargingIntent::settle_call`] before it).
    pub call: SettleCall,
    /// Its answer.
    pub answer: Result<PaymentIntentView, CallError>,
    /// The PaymentIntent read afterwards when the answer was no success (Stripe may
    /// have acted all the same); `None` when it was not read.
    pub now: Option<Result<PaymentIntentView, CallError>>,
    pub at: DateTime<Utc>,
}

/// A capture (`capture` set) or a release of the intent's hold, with this attempt's
/// idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettleCall {
    pub payment_intent_id: String,
    pub capture: Option<Capture>,
    pub idempotency_key: String,
}

impl SettleCall {
    /// Whether `pi` shows the call done (else the PaymentIntent is read again).
    pub fn done_by(&self, pi: &PaymentIntentView) -> bool {
        use crate::infra::stripe::PaymentIntentStatus as S;
        pi.status
            == match self.capture {
                Some(_) => S::Succeeded,
                None => S::Canceled,
            }
    }
}

/// Stripe reported a hold on the PaymentIntent of an intent that has already ended, and
/// the payments service cancelled it (with the key of [`super::ChargingIntent::stray_hold_key`]).
#[derive(Debug, Clone)]
pub struct ReleaseStrayHold {
    /// The PaymentIntent as Stripe reported it before the cancel.
    pub payment_intent: PaymentIntentView,
    /// Whether Stripe shows it cancelled now (by this call or an earlier one).
    pub canceled: bool,
    pub at: DateTime<Utc>,
}

/// Record that the hold lapses at `capture_before` (once).
#[derive(Debug, Clone)]
pub struct FlagHoldExpiry {
    pub capture_before: DateTime<Utc>,
    pub at: DateTime<Utc>,
}

/// Support asks for a refund; `amount_cents` `None` is the whole refundable rest. Only
/// records the request (reserving the amount); [`ExecuteRefund`] talks to Stripe.
#[derive(Debug, Clone)]
pub struct RequestRefund {
    /// The client's `Idempotency-Key`: the same key again is the same refund.
    pub refund_key: String,
    pub amount_cents: Option<i64>,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

/// Ask Stripe for a requested refund, with the key of the intent's credential version.
#[derive(Debug, Clone)]
pub struct ExecuteRefund {
    pub refund_key: String,
    /// What Stripe answered the refund call ([`super::ChargingIntent::refund_call`]),
    /// made by the payments service.
    pub answer: Result<RefundView, CallError>,
    pub at: DateTime<Utc>,
}

/// What Stripe says of a refund on the intent's PaymentIntent (webhook, reconcile).
#[derive(Debug, Clone)]
pub struct RecordRefund {
    pub refund: RefundView,
    pub source: &'static str,
    /// The webhook's event id (a redelivery is recognised by it).
    pub stripe_event_id: Option<String>,
    pub at: DateTime<Utc>,
}

/// What Stripe says of a dispute on the intent's PaymentIntent.
#[derive(Debug, Clone)]
pub struct RecordDispute {
    pub dispute: DisputeView,
    /// The webhook's event id (a redelivery is recognised by it).
    pub stripe_event_id: Option<String>,
    pub at: DateTime<Utc>,
}

/// A fresh read of the intent's PaymentIntent (with its charge), to learn when the hold
/// lapses.
#[derive(Debug, Clone)]
pub struct ReadHoldDeadline {
    pub payment_intent: PaymentIntentView,
    pub at: DateTime<Utc>,
}
