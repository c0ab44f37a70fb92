//! Stripe webhooks: verified with the workspace's own signing secrets, checked for
//! ownership, applied once through the one Stripe-state path, refusals kept for support.

use roampay_events::{StripeMode, WebhookIgnored, WebhookRejected, WebhookRejectionEvent};
use secrecy::SecretString;
use serde_json::Value;

use super::delivery_log::{Endpoint, Seen};
use super::payments::{Applied, PaymentError, StripeReport};
use super::webhook_answers::{event_head, Refused, Via};
pub use super::webhook_answers::{WebhookOutcome, WebhookRefusal};
use std::sync::Arc;

use roampay_projections::Db;

use super::accounts::Accounts;
use super::connect::Connect;
use super::delivery_log::DeliveryLog;
use super::payments::Payments;
use super::webhook_answers::PlatformEndpoints;
use crate::domain::ids::WorkspaceId;
use crate::domain::webhook_rejections::{stream_id, stream_id_of, WebhookRejections};
use crate::domain::workspace_stripe_profile::{
    Credentials, RecordWebhookDelivery, WorkspaceStripeProfile,
    WorkspaceStripeProfileCommand as Cmd,
};
use crate::infra::clock::Clock;
use crate::infra::store::{Aggregates, Metadata};
use crate::infra::stripe::webhook::verify;
use crate::infra::stripe::{PaymentIntentView, StripeGateway};
use crate::infra::vault::{SecretField, SecretVault};

/// A delivery as it arrived.
#[derive(Debug, Clone)]
pub struct Delivery<'a> {
    /// `Workspace`, `Shared` or `Connect` (billing has its own use case).
    pub endpoint: Endpoint,
    /// The workspace of a per-workspace URL; `None` on the shared URL.
    pub url_workspace: Option<&'a str>,
    pub body: &'a [u8],
    /// `Stripe-Signature`; `Some("")`-like garbage is the verifier's to judge.
    pub signature: Option<&'a str>,
    pub source_ip: String,
}

/// A verified event about a PaymentIntent.
struct Verified {
    event_id: String,
    livemode: Option<bool>,
    payment_intent: PaymentIntentView,
}

/// Stripe's webhooks to the workspaces' endpoints and the platform's Connect endpoint:
/// verified, recorded, and applied to the payments they are about.
pub struct Webhooks {
    /// Webhook secrets, and the endpoint's health.
    pub(super) profiles: Arc<Aggregates<WorkspaceStripeProfile>>,
    pub(super) rejections: Aggregates<WebhookRejections>,
    pub(super) deliveries: Arc<DeliveryLog>,
    pub(super) vault: Arc<dyn SecretVault>,
    pub(super) payments: Arc<Payments>,
    pub(super) connect: Arc<Connect>,
    pub(super) accounts: Arc<Accounts>,
    /// Watched: a refused key reaches the credentials.
    pub(super) stripe: Arc<dyn StripeGateway>,
    pub(super) endpoints: PlatformEndpoints,
    pub(super) db: Db,
    pub(super) clock: Arc<dyn Clock>,
    /// How long a replaced webhook signing secret keeps verifying.
    pub(super) overlap: chrono::Duration,
}

impl Webhooks {
    /// `ProcessStripeAuthorizationWebhook` from a delivery. A refusal changes no state
    /// and is recorded as a `WebhookRejected` security warning.
    pub async fn receive_webhook(
        &self,
        delivery: Delivery<'_>,
        meta: &Metadata,
    ) -> Result<WebhookOutcome, WebhookRefusal> {
        let mut seen = Seen {
            workspace_id: delivery
                .url_workspace
                .and_then(WorkspaceId::parse)
                .map(|w| w.to_string()),
            client: delivery.source_ip.parse().ok(),
            ..Seen::default()
        };
        let processed = match delivery.endpoint {
            Endpoint::Connect => {
                self.process_connect_webhook(&delivery, meta, &mut seen)
                    .await
            }
            _ => self.process_webhook(&delivery, meta, &mut seen).await,
        };
        let answer = match processed {
            Ok(outcome) => Ok(outcome),
            Err(refused) => {
                self.record_refusal(&refused, &delivery, meta).await;
                let endpoint_fails = refused.why.says_endpoint_fails();
                match &refused.workspace_id {
                    Some(ws) if endpoint_fails && delivery.endpoint != Endpoint::Connect => {
                        self.note_webhook_failing(ws, refused.why, meta).await
                    }
                    _ => {}
                }
                Err(refused.why)
            }
        };
        let at = self.clock.now();
        self.deliveries
            .answered(delivery.endpoint, seen, &answer, delivery.body, meta, at);
        answer
    }

    /// The delivery and its answer in the delivery log.
    async fn note_webhook_verified(
        &self,
        ws: &WorkspaceId,
        profile: &WorkspaceStripeProfile,
        event: &Value,
        meta: &Metadata,
    ) {
        let at = self.clock.now();
        if !profile.webhook_verification_due(at) {
            return;
        }
        let head = event_head(event).ok();
        let cmd = Cmd::RecordWebhookDelivery(RecordWebhookDelivery {
            workspace_id: ws.to_string(),
            stripe_event_id: head.as_ref().map(|(id, _)| id.clone()),
            event_type: head.and_then(|(_, kind)| kind),
            refused: None,
            at,
        });
        if let Err(e) = self.profiles.execute(ws.as_str(), cmd, meta).await {
            tracing::warn!(workspace_id = %ws, error = %e, "could not record a verified webhook delivery");
        }
    }

    /// Deliveries to the workspace are refused for their signature or ownership.
    async fn note_webhook_failing(&self, ws: &str, why: WebhookRefusal, meta: &Metadata) {
        let Ok(profile) = self.profiles.load_recent(ws).await else {
            return;
        };
        if profile.workspace_id.is_none() || profile.webhook.failing_since.is_some() {
            return;
        }
        let cmd = Cmd::RecordWebhookDelivery(RecordWebhookDelivery {
            workspace_id: ws.to_string(),
            stripe_event_id: None,
            event_type: None,
            refused: Some(why.code().to_string()),
            at: self.clock.now(),
        });
        if let Err(e) = self.profiles.execute(ws, cmd, meta).await {
            tracing::warn!(workspace_id = %ws, error = %e, "could not record failing webhook deliveries");
        }
    }

    async fn record_refusal(&self, r: &Refused, delivery: &Delivery<'_>, meta: &Metadata) {
        tracing::warn!(code = r.why.code(), workspace_id = ?r.workspace_id, stripe.event = ?r.event_id, "webhook refused");
        let rejection = WebhookRejected {
            workspace_id: r.workspace_id.clone(),
            code: r.why.code().to_string(),
            stripe_event_id: r.event_id.clone(),
            payment_intent_id: r.payment_intent_id.clone(),
            source_ip: delivery.source_ip.clone(),
            rejected_at: self.clock.now(),
        };
        if let Err(e) = self
            .rejections
            .execute(
                &stream_id(&rejection),
                WebhookRejectionEvent::WebhookRejected(rejection),
                meta,
            )
            .await
        {
            tracing::error!(error = %e, "could not record a refused webhook");
        }
    }

    /// Keeps a verified event about an unknown intent for support, as information.
    async fn record_ignored(&self, ws: &WorkspaceId, event_id: &str, pi: &str, meta: &Metadata) {
        tracing::info!(workspace_id = %ws, stripe.event = %event_id, "verified event about an unknown charging intent ignored");
        let at = self.clock.now();
        let ignored = WebhookIgnored {
            workspace_id: ws.to_string(),
            stripe_event_id: event_id.to_string(),
            payment_intent_id: pi.to_string(),
            reason: "unknown_charging_intent".into(),
            received_at: at,
        };
        let stream = stream_id_of(Some(ws.as_str()), at);
        let event = WebhookRejectionEvent::WebhookIgnored(ignored);
        if let Err(e) = self.rejections.execute(&stream, event, meta).await {
            tracing::error!(error = %e, "could not record an ignored webhook");
        }
    }

    async fn process_webhook(
        &self,
        delivery: &Delivery<'_>,
        meta: &Metadata,
        seen: &mut Seen,
    ) -> Result<WebhookOutcome, Refused> {
        let parsed: Option<Value> = serde_json::from_slice(delivery.body).ok();
        let ws = webhook_workspace(delivery.url_workspace, parsed.as_ref())?;
        let profile = self
            .profiles
            .load_recent(ws.as_str())
            .await
            .map_err(|_| Refused::from(WebhookRefusal::StoreUnavailable))?;
        if profile.workspace_id.is_none() {
            return Err(WebhookRefusal::UnknownWorkspace.into());
        }
        let in_ws = |why: WebhookRefusal| Refused::from(why).in_workspace(&ws);
        let creds = profile
            .credentials
            .as_ref()
            .ok_or_else(|| in_ws(WebhookRefusal::WebhookSecretNotConfigured))?;
        self.verify_signature(&ws, creds, delivery)
            .await
            .map_err(in_ws)?;
        seen.verified = true;
        seen.workspace_id = Some(ws.to_string());
        tracing::Span::current().record("workspace_id", ws.as_str());
        let event = parsed.ok_or_else(|| in_ws(WebhookRefusal::InvalidPayload))?;
        seen.read_head(&event);
        self.note_webhook_verified(&ws, &profile, &event, meta)
            .await;
        let via = Via {
            live: creds.mode == StripeMode::Live,
            connect_account: None,
        };
        self.apply_payment_event(&ws, &profile, &event, &via, meta)
            .await
    }

    /// A verified event about a payment, a refund or a dispute (others are ignored).
    pub(super) async fn apply_payment_event(
        &self,
        ws: &WorkspaceId,
        profile: &WorkspaceStripeProfile,
        event: &Value,
        via: &Via,
        meta: &Metadata,
    ) -> Result<WebhookOutcome, Refused> {
        let in_ws = |why: WebhookRefusal| Refused::from(why).in_workspace(ws);
        if let Some(outcome) = self.money_event(ws, profile, event, via, meta).await? {
            return Ok(outcome); // a refund or a dispute
        }
        match read_event(event).map_err(in_ws)? {
            Some(verified) => self.apply_verified(ws, verified, via, meta).await,
            None => Ok(WebhookOutcome::Ignored), // another kind of event
        }
    }

    /// The signature, over the raw bytes, with every secret active now.
    async fn verify_signature(
        &self,
        ws: &WorkspaceId,
        creds: &Credentials,
        delivery: &Delivery<'_>,
    ) -> Result<(), WebhookRefusal> {
        let now = self.clock.now();
        let mut secrets: Vec<SecretString> = Vec::new();
        for s in creds.active_webhook_secrets(now, self.overlap) {
            let field = SecretField::WebhookSigningSecret;
            match self
                .vault
                .get(ws.as_str(), field, s.version, &s.secret.fingerprint)
                .await
            {
                Ok(secret) => secrets.push(secret),
                Err(e) => {
                    tracing::error!(error = %e, workspace_id = %ws, "a webhook signing secret did not decrypt")
                }
            }
        }
        let refs: Vec<&SecretString> = secrets.iter().collect();
        verify(
            delivery.body,
            delivery.signature,
            &refs,
            self.endpoints.tolerance,
            now.timestamp(),
        )
        .map(|_| ())
        .map_err(WebhookRefusal::of_signature)
    }

    /// A delivery to one of the platform's own endpoints (billing, Connect): its secret,
    /// or the one before a roll while both are configured; none configured = refused.
    async fn apply_verified(
        &self,
        ws: &WorkspaceId,
        v: Verified,
        via: &Via,
        meta: &Metadata,
    ) -> Result<WebhookOutcome, Refused> {
        let span = tracing::Span::current();
        span.record("stripe.event_id", v.event_id.as_str());
        span.record("stripe.payment_intent_id", v.payment_intent.id.as_str());
        let refuse = |why| Refused {
            why,
            workspace_id: Some(ws.to_string()),
            event_id: Some(v.event_id.clone()),
            payment_intent_id: Some(v.payment_intent.id.clone()),
        };
        let pi = &v.payment_intent;
        let Some(intent_id) = pi
            .metadata_charging_intent_id
            .clone()
            .filter(|_| !pi.credential_check)
        else {
            // A credential check's, or a PaymentIntent this service did not create.
            return Ok(WebhookOutcome::Ignored);
        };
        span.record("charging_intent_id", intent_id.as_str());
        let event_live = v.livemode.unwrap_or(pi.livemode);
        if event_live != via.live || pi.livemode != event_live {
            return Err(refuse(WebhookRefusal::LivemodeMismatch));
        }
        let report = StripeReport {
            charging_intent_id: intent_id,
            workspace_id: ws.to_string(),
            payment_intent: v.payment_intent.clone(),
            stripe_event_id: Some(v.event_id.clone()),
            source: "webhook",
            connect_account: via.connect_account.clone(),
        };
        match self.payments.apply_stripe_state(report, meta).await {
            Ok(Applied::Applied) => Ok(WebhookOutcome::Applied),
            Ok(Applied::Duplicate) => Ok(WebhookOutcome::Duplicate),
            Ok(Applied::Unchanged) => Ok(WebhookOutcome::Ignored),
            // Verified, about an intent this service does not know (another deployment
            // on the same account, data from before a restore): a 4xx would make Stripe
            // retry for days and then disable the endpoint.
            Err(PaymentError::IntentNotFound) => {
                self.record_ignored(ws, &v.event_id, &v.payment_intent.id, meta)
                    .await;
                Ok(WebhookOutcome::Ignored)
            }
            Err(e) => Err(refuse(refusal_of(e))),
        }
    }
}

impl Seen {
    /// The verified event's id and type.
    pub(super) fn read_head(&mut self, event: &Value) {
        if let Ok((id, kind)) = event_head(event) {
            self.event_id = Some(id);
            self.event_type = kind;
        }
    }
}

/// The workspace: from the URL, or on the shared URL from the PaymentIntent's metadata.
/// How a payment use case's failure answers a webhook delivery.
pub(super) fn refusal_of(e: PaymentError) -> WebhookRefusal {
    match e {
        PaymentError::OwnershipMismatch => WebhookRefusal::OwnershipMismatch,
        PaymentError::LivemodeMismatch => WebhookRefusal::LivemodeMismatch,
        PaymentError::StripeUnavailable => WebhookRefusal::StripeUnavailable,
        other => {
            tracing::error!(error = %other, "webhook could not be applied");
            WebhookRefusal::StoreUnavailable
        }
    }
}

fn webhook_workspace(
    url_workspace: Option<&str>,
    parsed: Option<&Value>,
) -> Result<WorkspaceId, Refused> {
    let named = match url_workspace {
        Some(w) => w,
        None => parsed
            .and_then(|v| v.pointer("/data/object/metadata/workspace_id"))
            .and_then(Value::as_str)
            .ok_or(if parsed.is_some() {
                WebhookRefusal::UnknownWorkspace
            } else {
                WebhookRefusal::InvalidPayload
            })?,
    };
    Ok(WorkspaceId::parse(named).ok_or(WebhookRefusal::UnknownWorkspace)?)
}

/// A verified event: its id, and the PaymentIntent it is about (`None`: not about one).
fn read_event(event: &Value) -> Result<Option<Verified>, WebhookRefusal> {
    let invalid = |_| WebhookRefusal::InvalidPayload;
    let (event_id, _) = event_head(event)?;
    let object = event
        .pointer("/data/object")
        .ok_or(WebhookRefusal::InvalidPayload)?;
    if object.get("object").and_then(Value::as_str) != Some("payment_intent") {
        return Ok(None); // another kind of event (balance.available, charge.*, …)
    }
    let Some(payment_intent) = PaymentIntentView::from_json(object).map_err(invalid)? else {
        return Ok(None);
    };
    Ok(Some(Verified {
        event_id,
        livemode: event.get("livemode").and_then(Value::as_bool),
        payment_intent,
    }))
}

#[cfg(test)]
mod fuzz {
    //! The webhook body parser takes random bytes and random JSON without panicking;
    //! what it refuses, it refuses with a refusal code (`make fuzz`: 1,000,000 cases).
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::{event_head, read_event, webhook_workspace};
    use crate::application::money_events::MoneyEvent;

    fn parse_all(v: &Value) {
        let _ = webhook_workspace(None, Some(v));
        let _ = event_head(v);
        let _ = MoneyEvent::read(v);
        let _ = read_event(v);
    }

    proptest! {
        #[test]
        fn the_webhook_body_parser_takes_any_bytes(bytes in any::<Vec<u8>>()) {
            if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
                parse_all(&v);
            }
        }

        #[test]
        fn the_webhook_body_parser_takes_any_event_shaped_json(
            object in crate::http::fuzz::arb_json(),
            kind in prop::sample::select(vec![
                "payment_intent.succeeded", "payment_intent.amount_capturable_updated",
                "payment_intent.payment_failed", "payment_intent.canceled", "charge.refunded",
                "refund.updated", "charge.refund.updated", "charge.dispute.created",
                "charge.dispute.closed", "balance.available",
            ]),
            id in any::<String>(),
        ) {
            // A PaymentIntent (or refund, dispute) whose fields are random.
            let mut shaped = json!({"id": "pi_1", "object": "payment_intent", "status": "requires_capture",
                "amount": 5000, "currency": "aud", "livemode": false,
                "metadata": {"workspace_id": "ws-1", "charging_intent_id": "ci-1"}});
            if let Value::Object(fields) = &object {
                for (k, v) in fields {
                    shaped[k] = v.clone();
                }
            }
            for event in [
                json!({"id": "evt_1", "object": "event", "type": kind, "data": {"object": shaped}}),
                json!({"id": id, "object": "event", "type": kind, "data": {"object": object}}),
                json!({"id": "evt_1", "object": "event", "type": kind, "data": {"object": object}}),
                object.clone(),
            ] {
                parse_all(&event);
            }
        }
    }
}
