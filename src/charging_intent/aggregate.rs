use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use roampay_events::{
    ChargingIntentEvent as Event, FreeSessionAuthorized, IntentRequest, StripeMode,
    WorkspacePaymentIntentAuthorizationReceived, WorkspacePaymentIntentCreated,
    WorkspacePaymentIntentCreationFailed, WorkspacePaymentIntentFailed,
};
use serde::{Deserialize, Serialize};

use super::{
    stripe_idempotency_key, ChargingIntentCommand, ChargingIntentError as Error, IntentServices,
    IntentStatus, PaidPreAuth, ProcessStripeAuthorizationWebhook, RequestRoamingPreAuth,
};
use crate::stripe::{CallError, CreatePaymentIntent};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChargingIntent {
    pub request: Option<IntentRequest>,
    pub status: IntentStatus,
    pub payment: Option<Payment>,
    pub authorized_amount_cents: Option<i64>,
    pub captured_amount_cents: Option<i64>,
    pub ocpi_session_id: Option<String>,
    pub failure_code: Option<String>,
    /// Stripe events already applied: a redelivery is recognised and changes nothing.
    pub applied_stripe_events: BTreeSet<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub payment_intent_id: String,
    pub authorization_reference: String,
    pub amount_cents: i64,
    pub credential_version: u32,
    pub livemode: bool,
}

/// The short reference shown to drivers and OCPI partners.
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

    async fn request_pre_auth(
        &self,
        cmd: RequestRoamingPreAuth,
        svc: &IntentServices,
    ) -> Result<Vec<Event>, Error> {
        if let Some(existing) = &self.request {
            // The same request again (a client retry): nothing new happens.
            return if existing.request_hash == cmd.request.request_hash {
                Ok(vec![])
            } else {
                Err(Error::IdempotencyKeyReused)
            };
        }
        let request = cmd.request;
        let Some(paid) = cmd.paid else {
            return Ok(vec![Event::FreeSessionAuthorized(FreeSessionAuthorized {
                request,
            })]);
        };
        let PaidPreAuth {
            amount_cents,
            credential_version,
            mode,
            secret_key,
            email,
        } = paid;
        let create = CreatePaymentIntent {
            amount_cents,
            currency: request.currency.clone(),
            metadata: vec![
                ("workspace_id", request.workspace_id.clone()),
                ("charging_intent_id", request.charging_intent_id.clone()),
                ("credential_version", credential_version.to_string()),
                ("location_id", request.location_id.clone()),
                ("evse_uid", request.evse_uid.clone()),
                ("connector_id", request.connector_id.clone()),
            ],
            receipt_email: email,
            idempotency_key: stripe_idempotency_key(
                &request.workspace_id,
                &request.charging_intent_id,
                "create",
            ),
        };
        Ok(vec![
            match svc.stripe.create_payment_intent(&secret_key, &create).await {
                Ok(pi) => {
                    if let Some(secret) = pi.client_secret {
                        svc.stash_client_secret(&request.charging_intent_id, secret);
                    }
                    Event::WorkspacePaymentIntentCreated(WorkspacePaymentIntentCreated {
                        authorization_reference: authorization_reference(
                            &request.charging_intent_id,
                        ),
                        payment_intent_id: pi.id,
                        amount_cents,
                        credential_version,
                        livemode: mode == StripeMode::Live,
                        request,
                    })
                }
                Err(e) => Event::WorkspacePaymentIntentCreationFailed(
                    WorkspacePaymentIntentCreationFailed {
                        failure_code: match e {
                            CallError::Api { status, code }
                                if !(status == 429 || status >= 500) =>
                            {
                                code.unwrap_or_else(|| format!("http_{status}"))
                            }
                            _ => STRIPE_UNAVAILABLE.to_string(),
                        },
                        request,
                    },
                ),
            },
        ])
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
                == Some(request.charging_intent_id.as_str());
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
        let target = match (pi.status.as_str(), &pi.last_error_code) {
            ("requires_capture", _) => IntentStatus::Authorized,
            ("canceled", _) => IntentStatus::Cancelled,
            ("requires_payment_method", Some(_)) => IntentStatus::Failed,
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
                    authorized_amount_cents: if pi.amount_capturable > 0 {
                        pi.amount_capturable
                    } else {
                        pi.amount
                    },
                    received_at: cmd.at,
                },
            ),
            _ => Event::WorkspacePaymentIntentFailed(WorkspacePaymentIntentFailed {
                charging_intent_id: base.0,
                workspace_id: base.1,
                payment_intent_id: base.2,
                stripe_event_id: cmd.stripe_event_id,
                source: cmd.source.to_string(),
                status: target.as_str().to_string(),
                failure_code: pi
                    .last_error_code
                    .clone()
                    .unwrap_or_else(|| "canceled".into()),
                received_at: cmd.at,
            }),
        }])
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

impl Aggregate for ChargingIntent {
    const TYPE: &'static str = "ChargingIntent";
    type Command = ChargingIntentCommand;
    type Event = Event;
    type Error = Error;
    type Services = IntentServices;

    async fn handle(
        &mut self,
        command: Self::Command,
        svc: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Error> {
        let events = match command {
            ChargingIntentCommand::RequestRoamingPreAuth(cmd) => {
                self.request_pre_auth(cmd, svc).await?
            }
            ChargingIntentCommand::ProcessStripeAuthorizationWebhook(cmd) => {
                self.apply_stripe_status(cmd)?
            }
        };
        for e in events {
            sink.write(e, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Event) {
        match event {
            Event::FreeSessionAuthorized(e) => {
                self.created_at = Some(e.request.requested_at);
                self.updated_at = Some(e.request.requested_at);
                self.request = Some(e.request);
                self.status = IntentStatus::Authorized;
            }
            Event::WorkspacePaymentIntentCreated(e) => {
                self.created_at = Some(e.request.requested_at);
                self.updated_at = Some(e.request.requested_at);
                self.request = Some(e.request);
                self.payment = Some(Payment {
                    payment_intent_id: e.payment_intent_id,
                    authorization_reference: e.authorization_reference,
                    amount_cents: e.amount_cents,
                    credential_version: e.credential_version,
                    livemode: e.livemode,
                });
                self.status = IntentStatus::PendingPayment;
            }
            Event::WorkspacePaymentIntentCreationFailed(e) => {
                self.created_at = Some(e.request.requested_at);
                self.updated_at = Some(e.request.requested_at);
                self.request = Some(e.request);
                self.failure_code = Some(e.failure_code);
                self.status = IntentStatus::Failed;
            }
            Event::WorkspacePaymentIntentAuthorizationReceived(e) => {
                self.authorized_amount_cents = Some(e.authorized_amount_cents);
                self.status = IntentStatus::Authorized;
                self.updated_at = Some(e.received_at);
                if let Some(id) = e.stripe_event_id {
                    self.applied_stripe_events.insert(id);
                }
            }
            Event::WorkspacePaymentIntentFailed(e) => {
                self.status = if e.status == "cancelled" {
                    IntentStatus::Cancelled
                } else {
                    IntentStatus::Failed
                };
                self.failure_code = Some(e.failure_code);
                self.updated_at = Some(e.received_at);
                if let Some(id) = e.stripe_event_id {
                    self.applied_stripe_events.insert(id);
                }
            }
        }
    }
}
