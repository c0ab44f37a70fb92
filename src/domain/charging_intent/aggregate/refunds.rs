//! Refunds and disputes of a completed intent: decided here (the refundable rest is
//! enforced by the aggregate, so concurrent refunds cannot add up to more than was
//! captured), carried out in Stripe with deterministic idempotency keys, and learnt
//! from Stripe when made in the Dashboard.

use std::collections::BTreeMap;

use roampay_events::{
    ChargingIntentEvent as Event, DisputeChanged, RefundFailed, RefundPending, RefundRequested,
    RefundSucceeded,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::super::{
    stripe_idempotency_key, ChargingIntentError as Error, ExecuteRefund, IntentStatus,
    RecordDispute, RecordRefund, RequestRefund,
};
use super::ChargingIntent;
use crate::infra::stripe::{CallError, CreateRefund, RefundView};

/// Where one refund is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    /// Decided, Stripe not asked (or not answered) yet.
    Requested,
    Pending,
    Succeeded,
    Failed,
}

impl RefundStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested | Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub amount_cents: i64,
    #[serde(default)]
    pub reason: Option<String>,
    pub refund_id: Option<String>,
    pub status: RefundStatus,
}

/// Refunds by key (the client's key, or `stripe:<id>` for the Dashboard's).
pub type Refunds = BTreeMap<String, Refund>;

/// Stripe's idempotency keys are at most 255 characters: the client's key is hashed in.
fn stripe_key(ws: &str, id: &str, refund_key: &str) -> String {
    let digest = hex::encode(&Sha256::digest(refund_key.as_bytes())[..12]);
    stripe_idempotency_key(ws, id, &format!("refund-{digest}"))
}

impl ChargingIntent {
    /// What may still be refunded: the capture less every refund not failed.
    pub fn refundable_cents(&self) -> i64 {
        let reserved: i64 = self
            .refunds
            .values()
            .filter(|r| r.status != RefundStatus::Failed)
            .map(|r| r.amount_cents)
            .sum();
        self.captured_amount_cents.unwrap_or(0) - reserved
    }

    pub(super) fn request_refund(&self, cmd: RequestRefund) -> Result<Vec<Event>, Error> {
        let (_, id, ws) = self.ids()?;
        if let Some(existing) = self.refunds.get(&cmd.refund_key) {
            return match cmd.amount_cents {
                Some(a) if a != existing.amount_cents => Err(Error::IdempotencyKeyReused),
                _ => Ok(vec![]), // the same request again
            };
        }
        let captured = self.captured_amount_cents.unwrap_or(0);
        let payment = self.payment.as_ref().filter(|_| captured > 0);
        let (Some(payment), IntentStatus::Completed) = (payment, self.status) else {
            return Err(Error::InvalidTransition(self.status.as_str()));
        };
        let refundable = self.refundable_cents();
        let amount = cmd.amount_cents.unwrap_or(refundable);
        if amount <= 0 || amount > refundable {
            return Err(Error::RefundExceedsCaptured { refundable });
        }
        Ok(vec![Event::RefundRequested(RefundRequested {
            charging_intent_id: id,
            workspace_id: ws,
            payment_intent_id: payment.payment_intent_id.clone(),
            refund_key: cmd.refund_key,
            amount_cents: amount,
            reason: cmd.reason,
            requested_at: cmd.at,
        })])
    }

    /// The refund call a requested refund takes (`None` once it was answered): its amount
    /// and reason, the intent's metadata, and a key derived from the client's.
    pub fn refund_call(&self, refund_key: &str) -> Option<CreateRefund> {
        let (_, id, ws) = self.ids().ok()?;
        let refund = self
            .refunds
            .get(refund_key)
            .filter(|r| r.status == RefundStatus::Requested)?;
        let payment = self.payment.as_ref()?;
        Some(CreateRefund {
            payment_intent_id: payment.payment_intent_id.clone(),
            amount_cents: refund.amount_cents,
            reason: refund.reason.clone(),
            metadata: vec![
                ("workspace_id", ws.clone()),
                ("charging_intent_id", id.clone()),
            ],
            idempotency_key: stripe_key(&ws, &id, refund_key),
            // A connect-mode refund gives back the platform's fee in proportion: the
            // workspace does not pay a fee on money it returned.
            refund_application_fee: payment.application_fee_bps.is_some_and(|b| b > 0)
                && payment.stripe_account_id.is_some(),
        })
    }

    /// Records Stripe's answer to the refund call (a refund already answered stays as
    /// it is).
    pub(super) fn execute_refund(&self, cmd: ExecuteRefund) -> Result<Vec<Event>, Error> {
        let (_, id, ws) = self.ids()?;
        let Some(refund) = self
            .refunds
            .get(&cmd.refund_key)
            .filter(|r| r.status == RefundStatus::Requested)
        else {
            return Ok(vec![]); // answered already
        };
        self.payment.as_ref().ok_or(Error::NoPayment)?;
        match cmd.answer {
            Ok(answer) => {
                let told = Told {
                    source: "api",
                    stripe_event_id: None,
                    at: cmd.at,
                };
                Ok(self.refund_answered(&cmd.refund_key, refund, &answer, &told))
            }
            Err(e) if e.is_transient() => Err(Error::StripeUnavailable),
            Err(e) => {
                let code = match &e {
                    CallError::Api { status, code } => {
                        code.clone().unwrap_or_else(|| format!("http_{status}"))
                    }
                    CallError::Unreachable(_) => "stripe_unavailable".into(),
                };
                Ok(vec![Event::RefundFailed(RefundFailed {
                    charging_intent_id: id,
                    workspace_id: ws,
                    refund_key: cmd.refund_key,
                    refund_id: None,
                    amount_cents: refund.amount_cents,
                    failure_code: code,
                    failed_at: cmd.at,
                    stripe_event_id: None,
                })])
            }
        }
    }

    /// The event Stripe's word on a known refund calls for (none when it says nothing new).
    fn refund_answered(
        &self,
        key: &str,
        refund: &Refund,
        answer: &RefundView,
        told: &Told,
    ) -> Vec<Event> {
        let (source, at, stripe_event_id) = (told.source, told.at, told.stripe_event_id.clone());
        let Ok((_, id, ws)) = self.ids() else {
            return vec![];
        };
        let settled = matches!(
            refund.status,
            RefundStatus::Succeeded | RefundStatus::Failed
        );
        let event = match answer.status.as_str() {
            _ if settled => return vec![],
            "succeeded" => Event::RefundSucceeded(RefundSucceeded {
                charging_intent_id: id,
                workspace_id: ws,
                refund_key: key.to_string(),
                refund_id: answer.id.clone(),
                amount_cents: refund.amount_cents,
                source: source.to_string(),
                succeeded_at: at,
                stripe_event_id,
            }),
            "failed" | "canceled" => Event::RefundFailed(RefundFailed {
                charging_intent_id: id,
                workspace_id: ws,
                refund_key: key.to_string(),
                refund_id: Some(answer.id.clone()),
                amount_cents: refund.amount_cents,
                failure_code: answer
                    .failure_reason
                    .clone()
                    .unwrap_or_else(|| answer.status.clone()),
                failed_at: at,
                stripe_event_id,
            }),
            _ if refund.status == RefundStatus::Pending => return vec![],
            _ => Event::RefundPending(RefundPending {
                charging_intent_id: id,
                workspace_id: ws,
                refund_key: key.to_string(),
                refund_id: answer.id.clone(),
                amount_cents: refund.amount_cents,
                pending_at: at,
                stripe_event_id,
            }),
        };
        vec![event]
    }

    /// A refund Stripe reports on this intent's PaymentIntent: one of ours moving on, or
    /// one made in the Dashboard (recorded under `stripe:<id>`).
    pub(super) fn record_refund(&self, cmd: RecordRefund) -> Result<Vec<Event>, Error> {
        self.ids()?;
        let payment = self.payment.as_ref().ok_or(Error::OwnershipMismatch)?;
        let r = &cmd.refund;
        if r.payment_intent_id.as_deref() != Some(payment.payment_intent_id.as_str()) {
            return Err(Error::OwnershipMismatch);
        }
        self.not_seen(&cmd.stripe_event_id)?;
        let told = Told {
            source: cmd.source,
            stripe_event_id: cmd.stripe_event_id.clone(),
            at: cmd.at,
        };
        let known = self
            .refunds
            .iter()
            .find(|(_, x)| x.refund_id.as_deref() == Some(r.id.as_str()));
        let events = match known {
            Some((key, refund)) => self.refund_answered(key, refund, r, &told),
            None if matches!(r.status.as_str(), "failed" | "canceled") => vec![],
            None => {
                let refund = Refund {
                    amount_cents: r.amount,
                    reason: None,
                    refund_id: None,
                    status: RefundStatus::Requested,
                };
                self.refund_answered(&format!("stripe:{}", r.id), &refund, r, &told)
            }
        };
        if events.is_empty() {
            return Err(Error::NoChange);
        }
        Ok(events)
    }

    /// A dispute Stripe reports on this intent's PaymentIntent.
    pub(super) fn record_dispute(&self, cmd: RecordDispute) -> Result<Vec<Event>, Error> {
        let (_, id, ws) = self.ids()?;
        let payment = self.payment.as_ref().ok_or(Error::OwnershipMismatch)?;
        let d = cmd.dispute;
        if d.payment_intent_id.as_deref() != Some(payment.payment_intent_id.as_str()) {
            return Err(Error::OwnershipMismatch);
        }
        self.not_seen(&cmd.stripe_event_id)?;
        let change = DisputeChanged {
            charging_intent_id: id,
            workspace_id: ws,
            dispute_id: d.id.clone(),
            amount_cents: d.amount,
            reason: d.reason.clone(),
            status: d.status.clone(),
            at: cmd.at,
            stripe_event_id: cmd.stripe_event_id,
        };
        Ok(vec![match &self.dispute {
            Some(now) if now.status == d.status || !now.is_open() => return Err(Error::NoChange),
            Some(_) if d.is_closed() => Event::DisputeClosed(change),
            Some(_) => Event::DisputeUpdated(change),
            None => Event::DisputeOpened(change),
        }])
    }
}

/// Where Stripe's word on a refund came from.
struct Told<'a> {
    source: &'a str,
    stripe_event_id: Option<String>,
    at: chrono::DateTime<chrono::Utc>,
}

impl ChargingIntent {
    /// A Stripe event already applied is a redelivery.
    fn not_seen(&self, stripe_event_id: &Option<String>) -> Result<(), Error> {
        match stripe_event_id {
            Some(id) if self.applied_stripe_events.contains(id) => Err(Error::DuplicateStripeEvent),
            _ => Ok(()),
        }
    }
}
