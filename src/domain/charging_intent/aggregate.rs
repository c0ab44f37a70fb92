use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use roampay_events::{
    ChargingIntentEvent as Event, ChargingSessionStarted, FreeSessionAuthorized, HoldDeadlineRead,
    HoldExpiryApproaching, HoldReleaseFailed, HoldReleaseRequested, HoldReleased, IntentRequest,
    PaymentAttemptFailed, SessionCaptureFailed, SessionCompletionRequested, StrayHoldReleased,
    StripeCallDeferred, StripeMode, WorkspacePaymentIntentAuthorizationReceived,
    WorkspacePaymentIntentCreated, WorkspacePaymentIntentCreationFailed,
    WorkspacePaymentIntentFailed, WorkspaceSessionPaymentCaptured,
};
use serde::{Deserialize, Serialize};

mod refunds;

use super::{
    stripe_idempotency_key, CancelIntent, ChargingIntentCommand, ChargingIntentError as Error,
    CompleteSession, FlagHoldExpiry, Hold, IntentStatus, PaidPreAuth,
    ProcessStripeAuthorizationWebhook, ReadHoldDeadline, ReleaseReason, ReleaseStrayHold,
    RequestRoamingPreAuth, SettleCall, SettlePayment, StartSession,
};
use crate::infra::stripe::{
    CallError, Capture, CreatePaymentIntent, PaymentIntentStatus, PaymentIntentView,
};
pub use refunds::{Refund, RefundStatus, Refunds};
pub use roampay_events::{Dispute, IntentFacts, Settlement};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChargingIntent {
    pub request: Option<IntentRequest>,
    pub payment: Option<Payment>,
    /// What the events say of it since (folded as the read model folds them).
    #[serde(flatten)]
    pub facts: IntentFacts,
    /// Stripe events already applied: a redelivery is recognised and changes nothing.
    pub applied_stripe_events: BTreeSet<String>,
    /// Stripe calls for the current settlement that ended without an answer.
    pub stripe_attempts: u32,
    /// A hold found after the intent ended was cancelled.
    #[serde(default)]
    pub stray_hold_released: bool,
    /// Refunds asked for or learnt from Stripe, by key.
    #[serde(default)]
    pub refunds: Refunds,
}

/// The facts read as the intent's own fields (`intent.status`, …).
impl std::ops::Deref for ChargingIntent {
    type Target = IntentFacts;

    fn deref(&self) -> &IntentFacts {
        &self.facts
    }
}

/// Recorded when Stripe refused the workspace's key (401) or a permission (403).
pub const KEY_REVOKED: &str = "key_revoked";
pub const PERMISSION_DENIED: &str = "permission_denied";

/// Stripe's code for a refusal that trying again will not change; `None` when the
/// failure is transient ([`CallError::is_transient`]).
fn refusal_code(e: &CallError) -> Option<String> {
    match e {
        // The workspace's key itself was refused (the credential set is made invalid).
        CallError::Api { status: 401, .. } => Some(KEY_REVOKED.into()),
        CallError::Api { status: 403, .. } => Some(PERMISSION_DENIED.into()),
        CallError::Api { status, code } if !e.is_transient() => {
            Some(code.clone().unwrap_or_else(|| format!("http_{status}")))
        }
        _ => None,
    }
}

/// What a failed settlement call is recorded with: the refusal's code, else the code
/// of the transient answer, else `stripe_unavailable`.
fn failure_code(e: &CallError) -> String {
    refusal_code(e)
        .or_else(|| e.code().map(str::to_string))
        .unwrap_or_else(|| STRIPE_UNAVAILABLE.to_string())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub payment_intent_id: String,
    pub authorization_reference: String,
    pub amount_cents: i64,
    pub credential_version: u32,
    pub livemode: bool,
    /// Connect mode: the connected account the PaymentIntent lives in.
    #[serde(default)]
    pub stripe_account_id: Option<String>,
    /// Connect mode: the platform's fee in basis points.
    #[serde(default)]
    pub application_fee_bps: Option<u32>,
}

impl Payment {
    /// The platform's fee on `amount_cents` (connect mode only).
    pub fn application_fee(&self, amount_cents: i64) -> Option<i64> {
        self.stripe_account_id.as_ref()?;
        self.application_fee_bps
            .map(|bps| crate::infra::stripe::application_fee(amount_cents, bps))
    }
}

/// The short reference shown to drivers and OCPI partners.
/// The PaymentIntent a paid pre-authorization asks for: a manual-capture hold of the
/// workspace's amount, with the metadata that ties it to its intent and a deterministic
/// idempotency key (the same after any retry or restart).
pub fn hold_request(request: &IntentRequest, paid: &PaidPreAuth) -> CreatePaymentIntent {
    let amount_cents = paid.amount_cents;
    CreatePaymentIntent {
        amount_cents,
        currency: request.currency.clone(),
        metadata: vec![
            ("workspace_id", request.workspace_id.clone()),
            ("charging_intent_id", request.charging_intent_id.clone()),
            ("credential_version", paid.credential_version.to_string()),
            ("location_id", request.location_id.clone()),
            ("evse_uid", request.evse_uid.clone()),
            ("connector_id", request.connector_id.clone()),
        ],
        receipt_email: paid.email.clone(),
        idempotency_key: stripe_idempotency_key(
            &request.workspace_id,
            &request.charging_intent_id,
            "create",
        ),
        application_fee_amount: fee_bps(paid)
            .map(|bps| crate::infra::stripe::application_fee(amount_cents, bps))
            .filter(|fee| *fee > 0),
    }
}

/// The platform's fee of a hold: only on a connected account.
fn fee_bps(paid: &PaidPreAuth) -> Option<u32> {
    paid.application_fee_bps
        .filter(|_| paid.on.connected.is_some())
}

pub fn authorization_reference(charging_intent_id: &str) -> String {
    let compact: String = charging_intent_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    format!(
        "RP{}",
        compact
            .get(compact.len().saturating_sub(14)..)
            .unwrap_or(&compact)
            .to_ascii_uppercase()
    )
}

/// How a failed creation is recorded: Stripe's code, or `stripe_unavailable`.
pub const STRIPE_UNAVAILABLE: &str = "stripe_unavailable";

impl ChargingIntent {
    pub fn payment_required(&self) -> bool {
        self.payment.is_some() || self.status == IntentStatus::PendingPayment
    }

    fn request_pre_auth(&self, cmd: RequestRoamingPreAuth) -> Result<Vec<Event>, Error> {
        if let Some(existing) = &self.request {
            // The same request again (a client retry, or a concurrent twin that lost
            // the race): nothing new happens.
            return if existing.request_hash == cmd.request.request_hash {
                Ok(vec![])
            } else {
                Err(Error::IdempotencyKeyReused)
            };
        }
        let request = cmd.request;
        let (paid, answer) = match cmd.hold {
            Hold::Free => {
                return Ok(vec![Event::FreeSessionAuthorized(FreeSessionAuthorized {
                    request,
                })])
            }
            Hold::Asked { paid, answer } => (paid, answer),
        };
        Ok(vec![match answer {
            Ok(payment_intent_id) => {
                Event::WorkspacePaymentIntentCreated(WorkspacePaymentIntentCreated {
                    authorization_reference: authorization_reference(&request.charging_intent_id),
                    payment_intent_id,
                    amount_cents: paid.amount_cents,
                    credential_version: paid.credential_version,
                    livemode: paid.mode == StripeMode::Live,
                    application_fee_bps: fee_bps(&paid),
                    stripe_account_id: paid.on.connected,
                    request,
                })
            }
            Err(e) => {
                Event::WorkspacePaymentIntentCreationFailed(WorkspacePaymentIntentCreationFailed {
                    failure_code: refusal_code(&e)
                        .unwrap_or_else(|| STRIPE_UNAVAILABLE.to_string()),
                    request,
                })
            }
        }])
    }

    pub(super) fn ids(&self) -> Result<(&IntentRequest, String, String), Error> {
        let r = self.request.as_ref().ok_or(Error::NotFound)?;
        Ok((r, r.charging_intent_id.clone(), r.workspace_id.clone()))
    }

    fn refuse(&self) -> Error {
        Error::InvalidTransition(self.status.as_str())
    }

    fn start_session(&self, cmd: StartSession) -> Result<Vec<Event>, Error> {
        let (_, id, ws) = self.ids()?;
        if self.status == IntentStatus::Charging
            && self.ocpi_session_id.as_deref() == Some(cmd.ocpi_session_id.as_str())
            && self.settlement.is_none()
        {
            return Ok(vec![]); // the same start again
        }
        if self.status != IntentStatus::Authorized || self.settlement.is_some() {
            return Err(self.refuse());
        }
        Ok(vec![Event::ChargingSessionStarted(
            ChargingSessionStarted {
                charging_intent_id: id,
                workspace_id: ws,
                ocpi_session_id: cmd.ocpi_session_id,
                started_at: cmd.at,
            },
        )])
    }

    fn complete_session(&self, cmd: CompleteSession) -> Result<Vec<Event>, Error> {
        let (_, id, ws) = self.ids()?;
        let same_amount = self.final_amount_cents == Some(cmd.final_amount_cents);
        // The same completion again (a retry): nothing new; the caller settles if needed.
        if same_amount
            && (self.status == IntentStatus::Completed
                || matches!(self.settlement, Some(Settlement::Capture { .. })))
        {
            return Ok(vec![]);
        }
        if self.settlement.is_some()
            || !matches!(
                self.status,
                IntentStatus::Authorized | IntentStatus::Charging
            )
        {
            return Err(self.refuse());
        }
        let ocpi_session_id = cmd.ocpi_session_id.or_else(|| self.ocpi_session_id.clone());
        let Some(payment) = &self.payment else {
            // A free session: nothing to capture.
            return Ok(vec![Event::WorkspaceSessionPaymentCaptured(
                WorkspaceSessionPaymentCaptured {
                    charging_intent_id: id,
                    workspace_id: ws,
                    ocpi_session_id,
                    payment_intent_id: None,
                    final_amount_cents: cmd.final_amount_cents,
                    captured_amount_cents: 0,
                    source: "free".into(),
                    captured_at: cmd.at,
                },
            )]);
        };
        let hold = self.authorized_amount_cents.unwrap_or(payment.amount_cents);
        Ok(vec![Event::SessionCompletionRequested(
            SessionCompletionRequested {
                charging_intent_id: id,
                workspace_id: ws,
                ocpi_session_id,
                final_amount_cents: cmd.final_amount_cents,
                capture_amount_cents: cmd.final_amount_cents.min(hold),
                requested_at: cmd.at,
            },
        )])
    }

    fn cancel_intent(&self, cmd: CancelIntent) -> Result<Vec<Event>, Error> {
        let (_, id, ws) = self.ids()?;
        let reason = cmd.reason.as_str();
        let ended_so = match cmd.reason {
            ReleaseReason::Cancelled => IntentStatus::Cancelled,
            ReleaseReason::Expired => IntentStatus::Expired,
        };
        if self.status == ended_so
            || matches!(&self.settlement, Some(Settlement::Release { reason: r }) if r == reason)
        {
            return Ok(vec![]); // already done, or under way
        }
        let open = match cmd.reason {
            ReleaseReason::Cancelled => matches!(
                self.status,
                IntentStatus::PendingPayment | IntentStatus::Authorized | IntentStatus::Charging
            ),
            ReleaseReason::Expired => matches!(
                self.status,
                IntentStatus::PendingPayment | IntentStatus::Authorized
            ),
        };
        if !open || self.settlement.is_some() {
            return Err(self.refuse());
        }
        if self.payment.is_none() {
            return Ok(vec![Event::HoldReleased(HoldReleased {
                charging_intent_id: id,
                workspace_id: ws,
                payment_intent_id: None,
                reason: reason.into(),
                released_at: cmd.at,
            })]);
        }
        Ok(vec![Event::HoldReleaseRequested(HoldReleaseRequested {
            charging_intent_id: id,
            workspace_id: ws,
            reason: reason.into(),
            requested_at: cmd.at,
        })])
    }

    fn flag_hold_expiry(&self, cmd: FlagHoldExpiry) -> Result<Vec<Event>, Error> {
        let (_, id, ws) = self.ids()?;
        if self.lapse_flagged
            || self.settlement.is_some()
            || !matches!(
                self.status,
                IntentStatus::Authorized | IntentStatus::Charging
            )
        {
            return Ok(vec![]);
        }
        Ok(vec![Event::HoldExpiryApproaching(HoldExpiryApproaching {
            charging_intent_id: id,
            workspace_id: ws,
            capture_before: cmd.capture_before,
            flagged_at: cmd.at,
        })])
    }

    /// Records when Stripe says the hold lapses (once), from a fresh read of the
    /// PaymentIntent with its charge.
    fn read_hold_deadline(&self, cmd: ReadHoldDeadline) -> Result<Vec<Event>, Error> {
        let (_, id, ws) = self.ids()?;
        let payment = self.payment.as_ref().ok_or(Error::NoPayment)?;
        let held = matches!(
            self.status,
            IntentStatus::Authorized | IntentStatus::Charging
        );
        if self.deadline_read || !held || cmd.payment_intent.id != payment.payment_intent_id {
            return Ok(vec![]);
        }
        Ok(vec![Event::HoldDeadlineRead(HoldDeadlineRead {
            charging_intent_id: id,
            workspace_id: ws,
            payment_intent_id: payment.payment_intent_id.clone(),
            capture_before: cmd.payment_intent.capture_before,
            read_at: cmd.at,
        })])
    }

    /// The event that ends the pending settlement, if the PaymentIntent's state shows
    /// Stripe has acted (by our call, an earlier attempt, or anyone else).
    fn settled_by(&self, pi: &PaymentIntentView, source: &str, at: DateTime<Utc>) -> Option<Event> {
        let (_, id, ws) = self.ids().ok()?;
        let settlement = self.settlement.as_ref()?;
        let payment = self.payment.as_ref()?;
        if pi.id != payment.payment_intent_id {
            return None;
        }
        let captured = |amount: i64, source: &str| {
            Event::WorkspaceSessionPaymentCaptured(WorkspaceSessionPaymentCaptured {
                charging_intent_id: id.clone(),
                workspace_id: ws.clone(),
                ocpi_session_id: self.ocpi_session_id.clone(),
                payment_intent_id: Some(pi.id.clone()),
                final_amount_cents: self.final_amount_cents.unwrap_or(amount),
                captured_amount_cents: amount,
                source: source.into(),
                captured_at: at,
            })
        };
        Some(match (settlement, pi.status) {
            (
                Settlement::Capture {
                    capture_amount_cents,
                    ..
                },
                PaymentIntentStatus::Succeeded,
            ) => {
                // Stripe's figure when it gives one (some peers leave it 0).
                let amount = if pi.amount_received > 0 {
                    pi.amount_received
                } else {
                    *capture_amount_cents
                };
                captured(amount, source)
            }
            (Settlement::Capture { .. }, PaymentIntentStatus::Canceled)
                if settlement.step() == "cancel" =>
            {
                captured(
                    0,
                    if source == "capture" {
                        "release"
                    } else {
                        source
                    },
                )
            }
            (Settlement::Capture { .. }, PaymentIntentStatus::Canceled) => {
                Event::SessionCaptureFailed(SessionCaptureFailed {
                    charging_intent_id: id,
                    workspace_id: ws,
                    payment_intent_id: pi.id.clone(),
                    failure_code: "payment_intent_canceled".into(),
                    failed_at: at,
                })
            }
            (Settlement::Release { reason }, PaymentIntentStatus::Canceled) => {
                Event::HoldReleased(HoldReleased {
                    charging_intent_id: id,
                    workspace_id: ws,
                    payment_intent_id: Some(pi.id.clone()),
                    reason: reason.clone(),
                    released_at: at,
                })
            }
            (Settlement::Release { reason }, PaymentIntentStatus::Succeeded) => {
                Event::HoldReleaseFailed(HoldReleaseFailed {
                    charging_intent_id: id,
                    workspace_id: ws,
                    payment_intent_id: pi.id.clone(),
                    reason: reason.clone(),
                    failure_code: "payment_intent_succeeded".into(),
                    failed_at: at,
                })
            }
            _ => return None,
        })
    }

    /// Carries out the pending capture or release in Stripe and records how it ended:
    /// done, refused for good, or deferred to the worker (no definite answer).
    /// The Stripe call that settles the intent now (capture or release), with the key of
    /// this attempt; `None` when nothing is pending.
    pub fn settle_call(&self) -> Option<SettleCall> {
        let (_, id, ws) = self.ids().ok()?;
        let (settlement, payment) = (self.settlement.as_ref()?, self.payment.as_ref()?);
        let step = settlement.step();
        let key_step = match self.stripe_attempts {
            0 => step.to_string(),
            n => format!("{step}-{n}"),
        };
        let capture = match settlement {
            Settlement::Capture {
                capture_amount_cents,
                ..
            } if step == "capture" => Some(Capture {
                amount_cents: *capture_amount_cents,
                application_fee_amount: payment.application_fee(*capture_amount_cents),
            }),
            _ => None,
        };
        Some(SettleCall {
            payment_intent_id: payment.payment_intent_id.clone(),
            capture,
            idempotency_key: stripe_idempotency_key(&ws, &id, &key_step),
        })
    }

    /// Records what the settlement call (and, when it did not succeed, a read of the
    /// PaymentIntent) answered. An answer to a call the intent no longer plans (settled
    /// meanwhile, or a later attempt) changes nothing.
    fn settle(&self, cmd: SettlePayment) -> Result<Vec<Event>, Error> {
        let (_, id, ws) = self.ids()?;
        let (Some(settlement), Some(payment)) = (&self.settlement, &self.payment) else {
            return Ok(vec![]); // nothing pending
        };
        if self.settle_call().as_ref() != Some(&cmd.call) {
            return Ok(vec![]);
        }
        let step = settlement.step();
        let pi_id = &payment.payment_intent_id;
        let answer = cmd.answer;
        let source = if step == "capture" {
            "capture"
        } else {
            "release"
        };
        let error = match answer {
            Ok(pi) => match self.settled_by(&pi, source, cmd.at) {
                Some(done) => return Ok(vec![done]),
                None => CallError::Api {
                    status: 502,
                    code: Some(format!("unexpected_status_{}", pi.status)),
                },
            },
            Err(e) => e,
        };
        // No success: Stripe may have acted anyway (an earlier attempt, a timeout after
        // it applied, "already captured"). Its PaymentIntent tells.
        let now = cmd
            .now
            .unwrap_or(Err(CallError::Unreachable("not read".into())));
        if let Ok(pi) = &now {
            if let Some(done) = self.settled_by(pi, "stripe_state", cmd.at) {
                return Ok(vec![done]);
            }
        }
        let code = failure_code(&error);
        if error.is_transient() || now.is_err() {
            return Ok(vec![Event::StripeCallDeferred(StripeCallDeferred {
                charging_intent_id: id,
                workspace_id: ws,
                step: step.into(),
                attempt: self.stripe_attempts,
                failure_code: code,
                deferred_at: cmd.at,
            })]);
        }
        Ok(vec![match settlement {
            Settlement::Release { reason } => Event::HoldReleaseFailed(HoldReleaseFailed {
                charging_intent_id: id,
                workspace_id: ws,
                payment_intent_id: pi_id.clone(),
                reason: reason.clone(),
                failure_code: code,
                failed_at: cmd.at,
            }),
            Settlement::Capture { .. } => Event::SessionCaptureFailed(SessionCaptureFailed {
                charging_intent_id: id,
                workspace_id: ws,
                payment_intent_id: pi_id.clone(),
                failure_code: code,
                failed_at: cmd.at,
            }),
        }])
    }

    /// Cancels a hold Stripe reports on the PaymentIntent of an intent that has ended
    /// (the driver retried the card after we recorded the failure): nobody will capture
    /// it, so it would only block the driver's money until it lapses.
    /// The idempotency key with which the hold Stripe reports (`reported`) is to be
    /// cancelled: `None` unless the intent ended without a capture, that is its
    /// PaymentIntent, Stripe holds money on it, and it was not released before.
    pub fn stray_hold_key(&self, reported: &PaymentIntentView) -> Option<String> {
        let (_, id, ws) = self.ids().ok()?;
        let payment = self.payment.as_ref()?;
        let stray = self.status.ended_without_capture()
            && !self.stray_hold_released
            && reported.id == payment.payment_intent_id
            && reported.status == PaymentIntentStatus::RequiresCapture;
        stray.then(|| stripe_idempotency_key(&ws, &id, "cancel-stray"))
    }

    /// Records that the payments service cancelled a stray hold (or could not: refused,
    /// to be tried again).
    fn release_stray_hold(&self, cmd: ReleaseStrayHold) -> Result<Vec<Event>, Error> {
        let (_, id, ws) = self.ids()?;
        self.payment.as_ref().ok_or(Error::NoPayment)?;
        let pi = &cmd.payment_intent;
        if self.stray_hold_key(pi).is_none() {
            return Ok(vec![]);
        }
        if !cmd.canceled {
            return Err(Error::StripeUnavailable);
        }
        Ok(vec![Event::StrayHoldReleased(StrayHoldReleased {
            charging_intent_id: id,
            workspace_id: ws,
            payment_intent_id: pi.id.clone(),
            amount_cents: pi.held_amount(),
            released_at: cmd.at,
        })])
    }

    fn apply_stripe_status(
        &self,
        cmd: ProcessStripeAuthorizationWebhook,
    ) -> Result<Vec<Event>, Error> {
        let request = self.request.as_ref().ok_or(Error::NotFound)?;
        let payment = self.payment.as_ref().ok_or(Error::OwnershipMismatch)?;
        let pi = &cmd.payment_intent;
        let owned = request.workspace_id == cmd.workspace_id
            && pi.id == payment.payment_intent_id
            && pi.metadata_workspace_id.as_deref() == Some(request.workspace_id.as_str())
            && pi.metadata_charging_intent_id.as_deref()
                == Some(request.charging_intent_id.as_str())
            && cmd
                .connect_account
                .as_ref()
                .is_none_or(|a| payment.stripe_account_id.as_ref() == Some(a));
        if !owned {
            return Err(Error::OwnershipMismatch);
        }
        if pi.livemode != payment.livemode {
            return Err(Error::LivemodeMismatch);
        }
        if let Some(id) = &cmd.stripe_event_id {
            if self.applied_stripe_events.contains(id) {
                return Err(Error::DuplicateStripeEvent);
            }
        }
        // A capture or release under way that Stripe reports done.
        if let Some(done) = self.settled_by(pi, cmd.source, cmd.at) {
            return Ok(vec![done]);
        }
        // Captured with no capture of ours pending: someone captured it in Stripe (the
        // dashboard, another integration). Stripe's amount is what the driver paid.
        let in_stripe = pi.intent_status();
        if in_stripe == Some(IntentStatus::Completed)
            && self.settlement.is_none()
            && matches!(
                self.status,
                IntentStatus::PendingPayment | IntentStatus::Authorized | IntentStatus::Charging
            )
        {
            return Ok(vec![Event::WorkspaceSessionPaymentCaptured(
                WorkspaceSessionPaymentCaptured {
                    charging_intent_id: request.charging_intent_id.clone(),
                    workspace_id: request.workspace_id.clone(),
                    ocpi_session_id: self.ocpi_session_id.clone(),
                    payment_intent_id: Some(pi.id.clone()),
                    final_amount_cents: pi.amount_received,
                    captured_amount_cents: pi.amount_received,
                    source: cmd.source.to_string(),
                    captured_at: cmd.at,
                },
            )]);
        }
        if in_stripe == Some(IntentStatus::PendingPayment) {
            return self.declined(cmd);
        }
        let target = match in_stripe {
            Some(t @ (IntentStatus::Authorized | IntentStatus::Cancelled)) => t,
            _ => return Err(Error::NoChange),
        };
        if target.rank() <= self.status.rank() {
            return Err(Error::NoChange); // late or out of order: never backwards
        }
        let base = (
            request.charging_intent_id.clone(),
            request.workspace_id.clone(),
            pi.id.clone(),
        );
        Ok(vec![match target {
            IntentStatus::Authorized => Event::WorkspacePaymentIntentAuthorizationReceived(
                WorkspacePaymentIntentAuthorizationReceived {
                    charging_intent_id: base.0,
                    workspace_id: base.1,
                    payment_intent_id: base.2,
                    stripe_event_id: cmd.stripe_event_id,
                    source: cmd.source.to_string(),
                    authorized_amount_cents: pi.held_amount(),
                    received_at: cmd.at,
                    capture_before: pi.capture_before,
                },
            ),
            _ => Event::WorkspacePaymentIntentFailed(WorkspacePaymentIntentFailed {
                charging_intent_id: base.0,
                workspace_id: base.1,
                payment_intent_id: base.2,
                stripe_event_id: cmd.stripe_event_id,
                source: cmd.source.to_string(),
                status: target.as_str().to_string(),
                failure_code: "canceled".into(),
                received_at: cmd.at,
            }),
        }])
    }

    /// A PaymentIntent still open after a declined attempt: the decline is recorded and
    /// the intent waits for the driver's next card. The same error read again (by the
    /// confirm call and then the webhook, or the sweep) is recorded once.
    fn declined(&self, cmd: ProcessStripeAuthorizationWebhook) -> Result<Vec<Event>, Error> {
        let pi = cmd.payment_intent;
        let Some(error) = pi
            .last_payment_error
            .filter(|_| self.status == IntentStatus::PendingPayment)
        else {
            return Err(Error::NoChange);
        };
        if self.last_payment_error.as_ref() == Some(&error) {
            return Err(Error::NoChange);
        }
        let (_, id, ws) = self.ids()?;
        Ok(vec![Event::PaymentAttemptFailed(PaymentAttemptFailed {
            charging_intent_id: id,
            workspace_id: ws,
            payment_intent_id: pi.id,
            stripe_event_id: cmd.stripe_event_id,
            source: cmd.source.to_string(),
            error,
            failed_at: cmd.at,
        })])
    }
}

#[cfg(test)]
impl ChargingIntent {
    pub(super) fn apply_stripe_status_for_test(
        &self,
        cmd: ProcessStripeAuthorizationWebhook,
    ) -> Result<Vec<Event>, Error> {
        self.apply_stripe_status(cmd)
    }
}

impl ChargingIntent {
    /// The refund under `key`, made when Stripe tells of one we did not ask for.
    fn refund_entry(&mut self, key: String, amount_cents: i64) -> &mut Refund {
        self.refunds.entry(key).or_insert(Refund {
            amount_cents,
            reason: None,
            refund_id: None,
            status: RefundStatus::Requested,
        })
    }
}

impl Aggregate for ChargingIntent {
    const TYPE: &'static str = "ChargingIntent";
    type Command = ChargingIntentCommand;
    type Event = Event;
    type Error = Error;
    /// None: `handle` decides from the state and the command alone (Stripe is called
    /// by the payments service, before the command that records its answer).
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Error> {
        let events = match command {
            ChargingIntentCommand::RequestRoamingPreAuth(cmd) => self.request_pre_auth(cmd)?,
            ChargingIntentCommand::ProcessStripeAuthorizationWebhook(cmd) => {
                self.apply_stripe_status(cmd)?
            }
            ChargingIntentCommand::StartSession(cmd) => self.start_session(cmd)?,
            ChargingIntentCommand::CompleteSession(cmd) => self.complete_session(cmd)?,
            ChargingIntentCommand::CancelIntent(cmd) => self.cancel_intent(cmd)?,
            ChargingIntentCommand::SettlePayment(cmd) => self.settle(cmd)?,
            ChargingIntentCommand::FlagHoldExpiry(cmd) => self.flag_hold_expiry(cmd)?,
            ChargingIntentCommand::ReleaseStrayHold(cmd) => self.release_stray_hold(cmd)?,
            ChargingIntentCommand::RequestRefund(cmd) => self.request_refund(cmd)?,
            ChargingIntentCommand::ExecuteRefund(cmd) => self.execute_refund(cmd)?,
            ChargingIntentCommand::RecordRefund(cmd) => self.record_refund(cmd)?,
            ChargingIntentCommand::RecordDispute(cmd) => self.record_dispute(cmd)?,
            ChargingIntentCommand::ReadHoldDeadline(cmd) => self.read_hold_deadline(cmd)?,
        };
        for e in events {
            sink.write(e, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Event) {
        // One fold of what the events say (shared with the `charging_intents` read
        // model); here only what the aggregate alone keeps.
        self.facts.apply(&event);
        match event {
            Event::FreeSessionAuthorized(e) => self.request = Some(e.request),
            Event::WorkspacePaymentIntentCreated(e) => {
                self.request = Some(e.request);
                self.payment = Some(Payment {
                    payment_intent_id: e.payment_intent_id,
                    authorization_reference: e.authorization_reference,
                    amount_cents: e.amount_cents,
                    credential_version: e.credential_version,
                    livemode: e.livemode,
                    stripe_account_id: e.stripe_account_id,
                    application_fee_bps: e.application_fee_bps,
                });
            }
            Event::WorkspacePaymentIntentCreationFailed(e) => self.request = Some(e.request),
            Event::WorkspacePaymentIntentAuthorizationReceived(e) => {
                self.applied_stripe_events.extend(e.stripe_event_id)
            }
            Event::WorkspacePaymentIntentFailed(e) => {
                self.applied_stripe_events.extend(e.stripe_event_id)
            }
            Event::PaymentAttemptFailed(e) => self.applied_stripe_events.extend(e.stripe_event_id),
            Event::SessionCompletionRequested(_) | Event::HoldReleaseRequested(_) => {
                self.stripe_attempts = 0
            }
            Event::StripeCallDeferred(e) => self.stripe_attempts = e.attempt + 1,
            Event::RefundRequested(e) => {
                let refund = Refund {
                    amount_cents: e.amount_cents,
                    reason: e.reason,
                    refund_id: None,
                    status: RefundStatus::Requested,
                };
                self.refunds.insert(e.refund_key, refund);
            }
            Event::RefundPending(e) => {
                self.applied_stripe_events.extend(e.stripe_event_id);
                let refund = self.refund_entry(e.refund_key, e.amount_cents);
                refund.refund_id = Some(e.refund_id);
                refund.status = RefundStatus::Pending;
            }
            Event::RefundSucceeded(e) => {
                self.applied_stripe_events.extend(e.stripe_event_id);
                let refund = self.refund_entry(e.refund_key, e.amount_cents);
                refund.refund_id = Some(e.refund_id);
                refund.status = RefundStatus::Succeeded;
            }
            Event::RefundFailed(e) => {
                self.applied_stripe_events.extend(e.stripe_event_id);
                let refund = self.refund_entry(e.refund_key, e.amount_cents);
                refund.refund_id = e.refund_id.or(refund.refund_id.take());
                refund.status = RefundStatus::Failed;
            }
            Event::DisputeOpened(d) | Event::DisputeUpdated(d) | Event::DisputeClosed(d) => {
                self.applied_stripe_events.extend(d.stripe_event_id)
            }
            Event::StrayHoldReleased(_) => self.stray_hold_released = true,
            Event::ChargingSessionStarted(_)
            | Event::WorkspaceSessionPaymentCaptured(_)
            | Event::SessionCaptureFailed(_)
            | Event::HoldReleased(_)
            | Event::HoldReleaseFailed(_)
            | Event::HoldExpiryApproaching(_)
            | Event::HoldDeadlineRead(_) => {}
        }
    }
}
