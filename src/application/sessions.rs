//! Sessions (the OCPI session module): start, complete with the final amount (capture,
//! or release for 0), cancel; and what the session worker finishes: expiry of unused
//! holds, settlements Stripe did not answer definitely, lapsing holds. Each step is
//! decided and stored first, then carried out in the workspace's own Stripe account.

use super::payments::Payments;
use super::payments::{store_error, PaymentError};
use super::StoreFault;
use crate::domain::charging_intent::{
    CancelIntent, ChargingIntent, ChargingIntentCommand, CompleteSession, FlagHoldExpiry,
    ReadHoldDeadline, ReleaseReason, SettlePayment, StartSession,
};
use crate::infra::store::Metadata;
use roampay_events::IntentStatus;
use secrecy::SecretString;

/// How a driver proves the intent is theirs.
#[derive(Debug, Clone)]
pub enum DriverProof {
    /// The driver token's `sub` (the one that created the intent).
    Token(String),
    /// A guest: the PaymentIntent's `client_secret` their browser was given.
    ClientSecret(SecretString),
}

/// A session step carried out: the intent after it, and whether Stripe still owes a
/// definite answer (the worker finishes it).
#[derive(Debug, Clone)]
pub struct StepDone {
    pub intent: ChargingIntent,
    pub settling: bool,
}

/// A step of a charging session.
#[derive(Debug, Clone)]
pub enum SessionStep {
    /// Charging started (authorized → charging).
    Start { ocpi_session_id: String },
    /// Charging ended: capture what it cost (0 releases the hold).
    Complete {
        final_amount_cents: i64,
        ocpi_session_id: Option<String>,
    },
    /// The hold released.
    Cancel(ReleaseReason),
}

impl Payments {
    /// A session step for a caller admitted at the intent's workspace by `admit`
    /// (given the workspace id; it answers the step's metadata).
    pub async fn session_step_for<E: From<PaymentError>>(
        &self,
        id: &str,
        step: SessionStep,
        admit: impl FnOnce(&str) -> Result<Metadata, E>,
    ) -> Result<StepDone, E> {
        let before = self.load_intent(id).await?;
        let meta = admit(&before.request.as_ref().expect("loaded").workspace_id)?;
        let at = self.clock.now();
        let cmd = match step {
            SessionStep::Start { ocpi_session_id } => {
                ChargingIntentCommand::StartSession(StartSession {
                    ocpi_session_id,
                    at,
                })
            }
            SessionStep::Complete {
                final_amount_cents,
                ocpi_session_id,
            } => ChargingIntentCommand::CompleteSession(CompleteSession {
                final_amount_cents,
                ocpi_session_id,
                at,
            }),
            SessionStep::Cancel(reason) => {
                ChargingIntentCommand::CancelIntent(CancelIntent { reason, at })
            }
        };
        Ok(self.run_step(id, before, Some(cmd), &meta).await?)
    }

    pub async fn cancel_intent(
        &self,
        id: &str,
        reason: ReleaseReason,
        meta: &Metadata,
    ) -> Result<StepDone, PaymentError> {
        let step = SessionStep::Cancel(reason);
        self.session_step_for(id, step, |_| Ok::<_, PaymentError>(meta.clone()))
            .await
    }

    /// The driver abandons the intent before charging started (`pending_payment` or
    /// `authorized`): the hold is released and the connector freed.
    pub async fn cancel_by_driver<E: From<PaymentError>>(
        &self,
        id: &str,
        proof: DriverProof,
        admit: impl FnOnce(&str) -> Result<(), E>,
        meta: &Metadata,
    ) -> Result<StepDone, E> {
        let intent = self.load_intent(id).await?;
        admit(&intent.request.as_ref().expect("loaded").workspace_id)?;
        let theirs = match &proof {
            DriverProof::Token(sub) => {
                intent.request.as_ref().and_then(|r| r.driver.as_deref()) == Some(sub.as_str())
            }
            DriverProof::ClientSecret(given) => match self.current_payment_intent(&intent).await? {
                Some(pi) => pi.client_secret_is(given),
                None => false, // a free intent has no client secret
            },
        };
        if !theirs {
            return Err(PaymentError::NotTheDriver.into());
        }
        if !matches!(
            intent.status,
            IntentStatus::PendingPayment | IntentStatus::Authorized
        ) {
            return Err(PaymentError::InvalidTransition(intent.status.as_str()).into());
        }
        let cmd = ChargingIntentCommand::CancelIntent(CancelIntent {
            reason: ReleaseReason::Cancelled,
            at: self.clock.now(),
        });
        Ok(self.run_step(id, intent, Some(cmd), meta).await?)
    }

    /// Finishes a capture or release decided earlier (the worker's retry).
    pub async fn finish_settlement(
        &self,
        id: &str,
        meta: &Metadata,
    ) -> Result<StepDone, PaymentError> {
        let before = self.load_intent(id).await?;
        self.run_step(id, before, None, meta).await
    }

    /// Runs a step (if any), carries out in Stripe what it decided, and frees the
    /// connector once the intent has ended. A Stripe call that fails here is left to
    /// the worker: the decision is stored.
    async fn run_step(
        &self,
        id: &str,
        before: ChargingIntent,
        cmd: Option<ChargingIntentCommand>,
        meta: &Metadata,
    ) -> Result<StepDone, PaymentError> {
        let was_final = before.status.is_final();
        let decided = match cmd {
            Some(cmd) => self.intents.execute(id, cmd, meta).await?,
            None => before,
        };
        let after = match self.settle(decided.clone(), meta).await {
            Ok(after) => after,
            Err(e) => {
                tracing::warn!(charging_intent_id = %id, error = %e, "settlement left to the worker");
                decided
            }
        };
        self.intent_changed(was_final, &after, meta).await;
        Ok(StepDone {
            settling: after.settlement.is_some(),
            intent: after,
        })
    }

    /// `SettlePayment` with the secret key of the credential version the intent was
    /// created under.
    async fn settle(
        &self,
        intent: ChargingIntent,
        meta: &Metadata,
    ) -> Result<ChargingIntent, PaymentError> {
        let (Some(r), Some(_)) = (&intent.request, &intent.payment) else {
            return Ok(intent);
        };
        if intent.settlement.is_none() {
            return Ok(intent);
        }
        // A twin may have settled it while this one waited: decide from what it recorded.
        let _step = self.steps.lock(&r.charging_intent_id).await;
        let intent = self
            .intents
            .load_recent(&r.charging_intent_id)
            .await
            .map_err(store_error)?;
        let (Some(r), Some(p)) = (&intent.request, &intent.payment) else {
            return Ok(intent);
        };
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
        let Some(call) = intent.settle_call() else {
            return Ok(intent);
        };
        // Stripe is called here, once per attempt (its key names the attempt); the
        // command records the answers, however often it is retried.
        let stripe = &self.stripe;
        let pi_id = &call.payment_intent_id;
        let key = &call.idempotency_key;
        let answer = match call.capture {
            Some(amount) => stripe.capture_payment_intent(&on, pi_id, amount, key).await,
            None => stripe.cancel_payment_intent(&on, pi_id, key).await,
        };
        let now = match &answer {
            Ok(pi) if call.done_by(pi) => None,
            _ => Some(stripe.retrieve_payment_intent(&on, pi_id).await),
        };
        let cmd = ChargingIntentCommand::SettlePayment(SettlePayment {
            call,
            answer,
            now,
            at: self.clock.now(),
        });
        Ok(self
            .intents
            .execute(&r.charging_intent_id, cmd, meta)
            .await?)
    }

    /// `ReadHoldDeadline`: asks Stripe when the hold lapses (the charge's
    /// `capture_before`; Visa holds for merchant-initiated payments lapse after about
    /// 4 days 18 hours, most others after 7 days).
    pub async fn read_hold_deadline(&self, id: &str, meta: &Metadata) -> Result<(), PaymentError> {
        let intent = self.load_intent(id).await?;
        let Some(pi) = self.current_payment_intent(&intent).await? else {
            return Ok(());
        };
        let cmd = ChargingIntentCommand::ReadHoldDeadline(ReadHoldDeadline {
            payment_intent: pi,
            at: self.clock.now(),
        });
        self.intents.execute(id, cmd, meta).await?;
        Ok(())
    }

    /// `FlagHoldExpiry`: records when the hold lapses (once), so support sees it.
    pub async fn flag_lapsing_hold(
        &self,
        id: &str,
        capture_before: chrono::DateTime<chrono::Utc>,
        meta: &Metadata,
    ) -> Result<(), PaymentError> {
        let cmd = ChargingIntentCommand::FlagHoldExpiry(FlagHoldExpiry {
            capture_before,
            at: self.clock.now(),
        });
        let flagged = self.intents.execute(id, cmd, meta).await?;
        if flagged.lapse_flagged {
            crate::metrics::hold_lapsing();
        }
        Ok(())
    }
}
