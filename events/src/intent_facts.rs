//! What an intent's events say of it, folded in one place: the `ChargingIntent`
//! aggregate decides from these facts and the `charging_intents` read model stores
//! them. (Identity — the request and the PaymentIntent — is kept by each in its own
//! shape; everything that changes after creation is folded here.)

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{ChargingIntentEvent as E, IntentStatus, LastPaymentError};

/// What is to happen to the hold: the one definition of "capture or cancel".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Settlement {
    /// Capture `capture_amount_cents` (0: release the hold, nothing to charge).
    Capture {
        final_amount_cents: i64,
        capture_amount_cents: i64,
    },
    /// Release the hold: `cancelled` or `expired`.
    Release { reason: String },
}

/// The Stripe call that settles a hold: capture an amount above 0, else cancel.
pub fn settlement_step(capture_amount_cents: i64) -> &'static str {
    if capture_amount_cents > 0 {
        "capture"
    } else {
        "cancel"
    }
}

impl Settlement {
    /// The Stripe call it takes.
    pub fn step(&self) -> &'static str {
        match self {
            Self::Capture {
                capture_amount_cents,
                ..
            } => settlement_step(*capture_amount_cents),
            Self::Release { .. } => settlement_step(0),
        }
    }
}

/// A dispute of the charge by the driver's bank.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispute {
    #[serde(default)]
    pub dispute_id: String,
    pub status: String,
    pub amount_cents: i64,
    pub reason: String,
}

impl Dispute {
    /// Whether Stripe may still change it (not won, lost or otherwise closed).
    pub fn is_open(&self) -> bool {
        !matches!(
            self.status.as_str(),
            "won" | "lost" | "warning_closed" | "charge_refunded"
        )
    }
}

/// The facts of an intent that its events change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentFacts {
    pub status: IntentStatus,
    pub authorized_amount_cents: Option<i64>,
    pub captured_amount_cents: Option<i64>,
    pub ocpi_session_id: Option<String>,
    pub failure_code: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub authorized_at: Option<DateTime<Utc>>,
    /// What the session cost, even when the capture was capped by the hold.
    pub final_amount_cents: Option<i64>,
    /// A capture or release decided and not yet confirmed by Stripe.
    pub settlement: Option<Settlement>,
    /// When the hold lapses: Stripe's `capture_before` once read, else the estimate
    /// recorded when the lapse was flagged.
    pub capture_before: Option<DateTime<Utc>>,
    /// Stripe was asked for `capture_before`.
    #[serde(default)]
    pub deadline_read: bool,
    /// The lapse was flagged for support (once).
    #[serde(default)]
    pub lapse_flagged: bool,
    /// Why the driver's last attempt to pay was declined (while `pending_payment`).
    #[serde(default)]
    pub last_payment_error: Option<LastPaymentError>,
    /// What refunds gave back (succeeded only).
    #[serde(default)]
    pub refunded_amount_cents: i64,
    #[serde(default)]
    pub dispute: Option<Dispute>,
}

impl IntentFacts {
    /// Folds one event in.
    pub fn apply(&mut self, event: &E) {
        if let Some(status) = event.status_after() {
            self.status = status;
        }
        match event {
            E::FreeSessionAuthorized(e) => self.created(e.request.requested_at),
            E::WorkspacePaymentIntentCreated(e) => self.created(e.request.requested_at),
            E::WorkspacePaymentIntentCreationFailed(e) => {
                self.created(e.request.requested_at);
                self.failure_code = Some(e.failure_code.clone());
            }
            E::WorkspacePaymentIntentAuthorizationReceived(e) => {
                self.last_payment_error = None;
                if e.capture_before.is_some() {
                    self.capture_before = e.capture_before;
                    self.deadline_read = true;
                }
                self.authorized_at = Some(e.received_at);
                self.authorized_amount_cents = Some(e.authorized_amount_cents);
                self.updated_at = Some(e.received_at);
            }
            E::WorkspacePaymentIntentFailed(e) => {
                // A PaymentIntent that failed has nothing left to capture or release.
                self.settlement = None;
                self.failure_code = Some(e.failure_code.clone());
                self.updated_at = Some(e.received_at);
            }
            E::ChargingSessionStarted(e) => {
                self.ocpi_session_id = Some(e.ocpi_session_id.clone());
                self.updated_at = Some(e.started_at);
            }
            E::SessionCompletionRequested(e) => {
                if e.ocpi_session_id.is_some() {
                    self.ocpi_session_id = e.ocpi_session_id.clone();
                }
                self.final_amount_cents = Some(e.final_amount_cents);
                self.settlement = Some(Settlement::Capture {
                    final_amount_cents: e.final_amount_cents,
                    capture_amount_cents: e.capture_amount_cents,
                });
                self.updated_at = Some(e.requested_at);
            }
            E::WorkspaceSessionPaymentCaptured(e) => {
                if e.ocpi_session_id.is_some() {
                    self.ocpi_session_id = e.ocpi_session_id.clone();
                }
                self.final_amount_cents = Some(e.final_amount_cents);
                self.captured_amount_cents = Some(e.captured_amount_cents);
                self.settlement = None;
                self.updated_at = Some(e.captured_at);
            }
            E::SessionCaptureFailed(e) => self.settled(Some(&e.failure_code), e.failed_at),
            E::HoldReleaseRequested(e) => {
                self.settlement = Some(Settlement::Release {
                    reason: e.reason.clone(),
                });
                self.updated_at = Some(e.requested_at);
            }
            E::HoldReleased(e) => self.settled(None, e.released_at),
            E::HoldReleaseFailed(e) => self.settled(Some(&e.failure_code), e.failed_at),
            E::StripeCallDeferred(e) => self.updated_at = Some(e.deferred_at),
            E::HoldExpiryApproaching(e) => {
                self.lapse_flagged = true;
                self.capture_before = Some(e.capture_before);
            }
            E::RefundRequested(e) => self.updated_at = Some(e.requested_at),
            E::RefundPending(e) => self.updated_at = Some(e.pending_at),
            E::RefundSucceeded(e) => {
                self.refunded_amount_cents += e.amount_cents;
                self.updated_at = Some(e.succeeded_at);
            }
            E::RefundFailed(e) => self.updated_at = Some(e.failed_at),
            E::DisputeOpened(d) | E::DisputeUpdated(d) | E::DisputeClosed(d) => {
                self.updated_at = Some(d.at);
                self.dispute = Some(Dispute {
                    dispute_id: d.dispute_id.clone(),
                    status: d.status.clone(),
                    amount_cents: d.amount_cents,
                    reason: d.reason.clone(),
                });
            }
            E::HoldDeadlineRead(e) => {
                self.deadline_read = true;
                self.capture_before = e.capture_before.or(self.capture_before);
            }
            E::PaymentAttemptFailed(e) => {
                self.last_payment_error = Some(e.error.clone());
                self.updated_at = Some(e.failed_at);
            }
            // The intent stays as it ended; only the hold is gone.
            E::StrayHoldReleased(e) => self.updated_at = Some(e.released_at),
        }
    }

    fn created(&mut self, at: DateTime<Utc>) {
        self.created_at = Some(at);
        self.updated_at = Some(at);
    }

    /// The settlement under way ended (a failure code when it failed).
    fn settled(&mut self, failure_code: Option<&String>, at: DateTime<Utc>) {
        if let Some(code) = failure_code {
            self.failure_code = Some(code.clone());
        }
        self.settlement = None;
        self.updated_at = Some(at);
    }
}
