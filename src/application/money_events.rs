//! Webhooks about money already taken: refunds (`charge.refunded`,
//! `charge.refund.updated`, `refund.updated`, …) and disputes (`charge.dispute.*`).
//! Their objects carry the PaymentIntent's id but not its metadata, so the intent is
//! found through the PaymentIntent itself, read with the workspace's key (its metadata
//! names the intent), and then the same ownership rules as for payment events apply.

use serde_json::Value;

use super::payments::{Applied, PaymentError};
use super::refunds::Told;
use super::webhook_answers::{event_head, Refused, Via, WebhookOutcome, WebhookRefusal};
use super::webhooks::{refusal_of, Webhooks};
use crate::domain::ids::WorkspaceId;
use crate::domain::workspace_stripe_profile::WorkspaceStripeProfile;
use crate::infra::store::Metadata;
use crate::infra::stripe::boundary::{checked, is_object_id};
use crate::infra::stripe::{CallError, DisputeView, RefundView, StripeAccount};

/// What a verified refund or dispute event says.
pub(super) struct MoneyEvent {
    event_id: String,
    livemode: Option<bool>,
    payment_intent_id: Option<String>,
    about: About,
}

enum About {
    Refund(RefundView),
    /// `charge.refunded`: the charge's refunds are read from Stripe.
    ChargeRefunded,
    Dispute(DisputeView),
}

impl MoneyEvent {
    /// `None` when the event is about something else.
    pub(super) fn read(event: &Value) -> Result<Option<Self>, WebhookRefusal> {
        let invalid = |_| WebhookRefusal::InvalidPayload;
        let (event_id, kind) = event_head(event)?;
        let Some(object) = event.pointer("/data/object") else {
            return Ok(None);
        };
        let about = match object.get("object").and_then(Value::as_str) {
            Some("refund") => About::Refund(RefundView::from_json(object).map_err(invalid)?),
            Some("dispute") => About::Dispute(DisputeView::from_json(object).map_err(invalid)?),
            Some("charge") if kind.as_deref() == Some("charge.refunded") => About::ChargeRefunded,
            _ => return Ok(None),
        };
        let payment_intent_id =
            checked(object, "/payment_intent", "payment_intent", is_object_id).map_err(invalid)?;
        Ok(Some(Self {
            event_id,
            livemode: event.get("livemode").and_then(Value::as_bool),
            payment_intent_id,
            about,
        }))
    }
}

impl Webhooks {
    /// A refund, dispute or `charge.refunded` event applied to its intent; `None` for
    /// any other event.
    pub(super) async fn money_event(
        &self,
        ws: &WorkspaceId,
        profile: &WorkspaceStripeProfile,
        event: &Value,
        via: &Via,
        meta: &Metadata,
    ) -> Result<Option<WebhookOutcome>, Refused> {
        let read = MoneyEvent::read(event);
        let read = read.map_err(|why| Refused::from(why).in_workspace(ws))?;
        match read {
            Some(m) => Ok(Some(
                self.apply_money_event(ws, profile, m, via, meta).await?,
            )),
            None => Ok(None),
        }
    }

    async fn apply_money_event(
        &self,
        ws: &WorkspaceId,
        profile: &WorkspaceStripeProfile,
        m: MoneyEvent,
        via: &Via,
        meta: &Metadata,
    ) -> Result<WebhookOutcome, Refused> {
        let refuse = |why| Refused {
            why,
            workspace_id: Some(ws.to_string()),
            event_id: Some(m.event_id.clone()),
            payment_intent_id: m.payment_intent_id.clone(),
        };
        if m.livemode.is_some_and(|l| l != via.live) {
            return Err(refuse(WebhookRefusal::LivemodeMismatch));
        }
        let Some(pi_id) = m.payment_intent_id.clone() else {
            return Ok(WebhookOutcome::Ignored); // not about a PaymentIntent
        };
        let found = self
            .intent_of_payment_intent(ws, profile, &pi_id, via)
            .await;
        let (intent_id, key) = match found {
            Ok(Some(found)) => found,
            Ok(None) => return Ok(WebhookOutcome::Ignored), // not one of ours
            Err(e) => return Err(refuse(refusal_of(e))),
        };
        let webhook = Told {
            source: "webhook",
            stripe_event_id: Some(m.event_id.clone()),
        };
        let done = match m.about {
            About::Refund(r) => {
                self.payments
                    .record_refund(&intent_id, r, webhook, meta)
                    .await
            }
            About::Dispute(d) => {
                let event = webhook.stripe_event_id;
                self.payments
                    .record_dispute(&intent_id, d, event, meta)
                    .await
            }
            About::ChargeRefunded => {
                self.record_charge_refunds(&intent_id, &key, &pi_id, meta)
                    .await
            }
        };
        match done {
            Ok(Applied::Applied) => Ok(WebhookOutcome::Applied),
            Ok(Applied::Duplicate) => Ok(WebhookOutcome::Duplicate),
            Ok(Applied::Unchanged) => Ok(WebhookOutcome::Ignored),
            Err(e) => Err(refuse(refusal_of(e))),
        }
    }

    /// `charge.refunded`: the charge's refunds, read from Stripe, each recorded (by its
    /// own state: one event names several refunds, so its id cannot dedupe them).
    async fn record_charge_refunds(
        &self,
        intent_id: &str,
        key: &StripeAccount,
        pi_id: &str,
        meta: &Metadata,
    ) -> Result<Applied, PaymentError> {
        let refunds = self
            .stripe
            .list_refunds(key, pi_id)
            .await
            .map_err(|_| PaymentError::StripeUnavailable)?;
        let mut any = Applied::Unchanged;
        for r in refunds {
            let told = Told {
                source: "webhook",
                stripe_event_id: None,
            };
            if self
                .payments
                .record_refund(intent_id, r, told, meta)
                .await?
                == Applied::Applied
            {
                any = Applied::Applied;
            }
        }
        Ok(any)
    }

    /// The charging intent a PaymentIntent of this workspace belongs to, read from its
    /// metadata with the workspace's current key; `None` when it is not one of ours. An
    /// intent that exists in another workspace is an ownership mismatch.
    async fn intent_of_payment_intent(
        &self,
        ws: &WorkspaceId,
        profile: &WorkspaceStripeProfile,
        pi_id: &str,
        via: &Via,
    ) -> Result<Option<(String, StripeAccount)>, PaymentError> {
        // The account the event came from: the connected one on the Connect endpoint,
        // the workspace's own keys otherwise.
        let key = self
            .accounts
            .account_of_event(profile, ws.as_str(), via.connect_account.as_deref())
            .await
            .map_err(|e| PaymentError::Store(super::StoreFault::Internal(e)))?;
        let pi = match self.stripe.retrieve_payment_intent(&key, pi_id).await {
            Ok(pi) => pi,
            Err(CallError::Api { status: 404, .. }) => return Ok(None),
            Err(_) => return Err(PaymentError::StripeUnavailable),
        };
        let Some(intent_id) = pi.metadata_charging_intent_id else {
            return Ok(None);
        };
        let intent = match self.payments.load_intent(&intent_id).await {
            Ok(intent) => intent,
            Err(PaymentError::IntentNotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let owner = intent.request.as_ref().map(|r| r.workspace_id.as_str());
        let account = intent
            .payment
            .as_ref()
            .and_then(|p| p.stripe_account_id.as_ref());
        let same_account = via
            .connect_account
            .as_ref()
            .is_none_or(|a| account == Some(a));
        if owner != Some(ws.as_str()) || !same_account {
            return Err(PaymentError::OwnershipMismatch);
        }
        Ok(Some((intent_id, key)))
    }
}
