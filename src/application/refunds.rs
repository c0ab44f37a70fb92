//! Refunds (support, scope `refunds:write`) and what Stripe tells of refunds and
//! disputes made elsewhere (the Dashboard): one path each into the intent.

use super::payments::Payments;
use super::payments::{store_error, Applied, PaymentError};
use super::StoreFault;
use crate::domain::charging_intent::{
    ChargingIntentCommand, ChargingIntentError, ExecuteRefund, RecordDispute, RecordRefund,
    RequestRefund,
};
use crate::infra::store::Metadata;
use crate::infra::stripe::{DisputeView, RefundView};

/// A refund as support asked for it (shape already checked).
#[derive(Debug, Clone)]
pub struct RefundAsk {
    /// The client's `Idempotency-Key`.
    pub key: String,
    /// `None`: the whole refundable rest.
    pub amount_cents: Option<i64>,
    pub reason: Option<String>,
}

/// A refund and where it stands.
#[derive(Debug, Clone)]
pub struct RefundDone {
    pub refund_id: Option<String>,
    /// `succeeded`, `pending` or `failed`.
    pub status: &'static str,
    pub amount_cents: i64,
}

impl Payments {
    /// `RequestRefund` then `ExecuteRefund` with the key of the intent's credential
    /// version. The same `Idempotency-Key` again answers the same refund; a Stripe that
    /// does not answer leaves it requested (503), and the same key carries it out.
    pub async fn refund<E: From<PaymentError>>(
        &self,
        id: &str,
        ask: RefundAsk,
        admit: impl FnOnce(&str) -> Result<Metadata, E>,
    ) -> Result<RefundDone, E> {
        let intent = self.load_intent(id).await?;
        let meta = &admit(&intent.request.as_ref().expect("loaded").workspace_id)?;
        // A twin (same key) waits, then finds Stripe's answer recorded.
        let _step = self.steps.lock(id).await;
        Ok(self.refund_admitted(id, intent, ask, meta).await?)
    }

    async fn refund_admitted(
        &self,
        id: &str,
        intent: crate::domain::charging_intent::ChargingIntent,
        ask: RefundAsk,
        meta: &Metadata,
    ) -> Result<RefundDone, PaymentError> {
        let request = ChargingIntentCommand::RequestRefund(RequestRefund {
            refund_key: ask.key.clone(),
            amount_cents: ask.amount_cents,
            reason: ask.reason,
            at: self.clock.now(),
        });
        let requested = self.intents.execute(id, request, meta).await?;
        let r = intent.request.as_ref().expect("loaded");
        let p = intent
            .payment
            .as_ref()
            .ok_or(PaymentError::InvalidTransition("completed"))?;
        let profile = self
            .profiles
            .load_recent(&r.workspace_id)
            .await
            .map_err(store_error)?;
        let on = self
            .accounts
            .account_for_payment(&profile, &r.workspace_id, p)
            .await
            .map_err(|e| PaymentError::Store(StoreFault::Internal(e)))?;
        // Stripe is called here, once; the command records its answer however often
        // it is retried. A refund answered before is not asked again.
        let after = match requested.refund_call(&ask.key) {
            None => requested,
            Some(call) => {
                let answer = self.stripe.create_refund(&on, &call).await;
                let execute = ChargingIntentCommand::ExecuteRefund(ExecuteRefund {
                    refund_key: ask.key.clone(),
                    answer,
                    at: self.clock.now(),
                });
                self.intents.execute(id, execute, meta).await?
            }
        };
        let refund = after.refunds.get(&ask.key).expect("just requested");
        Ok(RefundDone {
            refund_id: refund.refund_id.clone(),
            status: refund.status.as_str(),
            amount_cents: refund.amount_cents,
        })
    }

    /// A refund Stripe reports (webhook, reconcile) on the intent's PaymentIntent.
    pub async fn record_refund(
        &self,
        id: &str,
        refund: RefundView,
        told: Told,
        meta: &Metadata,
    ) -> Result<Applied, PaymentError> {
        let cmd = ChargingIntentCommand::RecordRefund(RecordRefund {
            refund,
            source: told.source,
            stripe_event_id: told.stripe_event_id,
            at: self.clock.now(),
        });
        outcome(self.intents.execute(id, cmd, meta).await)
    }

    /// A dispute Stripe reports on the intent's PaymentIntent.
    pub async fn record_dispute(
        &self,
        id: &str,
        dispute: DisputeView,
        stripe_event_id: Option<String>,
        meta: &Metadata,
    ) -> Result<Applied, PaymentError> {
        let cmd = ChargingIntentCommand::RecordDispute(RecordDispute {
            dispute,
            stripe_event_id,
            at: self.clock.now(),
        });
        outcome(self.intents.execute(id, cmd, meta).await)
    }
}

/// Who told of a refund: `webhook` (with its event id) or `reconcile`.
#[derive(Debug, Clone)]
pub struct Told {
    pub source: &'static str,
    pub stripe_event_id: Option<String>,
}

/// What a record did: a change, a redelivery, or nothing new.
fn outcome<T>(
    r: Result<T, cqrs_es::AggregateError<ChargingIntentError>>,
) -> Result<Applied, PaymentError> {
    use cqrs_es::AggregateError::UserError;
    match r {
        Ok(_) => Ok(Applied::Applied),
        Err(UserError(ChargingIntentError::DuplicateStripeEvent)) => Ok(Applied::Duplicate),
        Err(UserError(ChargingIntentError::NoChange)) => Ok(Applied::Unchanged),
        Err(e) => Err(e.into()),
    }
}
