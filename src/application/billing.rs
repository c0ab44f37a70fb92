//! Workspace billing: the platform's Stripe account sells plans to workspaces, and its
//! subscription and invoice webhooks drive each workspace's `WorkspaceSubscription`.
//! Off (and invisible to everything else) when no platform key is configured.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use roampay_events::BillingStatus;
use secrecy::SecretString;
use serde_json::Value;

use roampay_projections::Db;

use super::credentials::Credentials;
use super::delivery_log::{DeliveryLog, Endpoint, Seen};
use super::locations::Locations;
use super::webhook_answers::{PlatformEndpoints, WebhookOutcome, WebhookRefusal};
use super::StoreFault;
use crate::domain::workspace_subscription::{
    StripeFact, WorkspaceSubscription, WorkspaceSubscriptionCommand as Cmd,
};
use crate::infra::clock::Clock;
use crate::infra::store::{billing_customers, Aggregates, Metadata};
use crate::infra::stripe::billing::{BillingGateway, CheckoutRequest};
use crate::infra::stripe::CallError;

/// Billing's settings, present only when a platform key is configured.
#[derive(Clone)]
pub struct BillingSettings {
    pub platform_key: SecretString,
    /// The billing endpoint's secrets: the current one, then the one before a roll.
    pub webhook_secrets: Vec<SecretString>,
    /// (plan name, Stripe price id), in the configured order.
    pub plans: Vec<(String, String)>,
    pub grace: chrono::Duration,
    pub retention: chrono::Duration,
    /// Only workspaces in good standing may open new charging intents.
    pub required: bool,
    pub gateway: Arc<dyn BillingGateway>,
}

impl std::fmt::Debug for BillingSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BillingSettings")
            .field("plans", &self.plans)
            .field("grace", &self.grace)
            .field("retention", &self.retention)
            .field("required", &self.required)
            .finish_non_exhaustive()
    }
}

/// `ROAMPAY_PLANS`: `starter=price_…,standard=price_…`.
pub fn parse_plans(list: &str) -> Result<Vec<(String, String)>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| match item.split_once('=') {
            Some((name, price))
                if !name.trim().is_empty() && price.trim().starts_with("price_") =>
            {
                Ok((name.trim().to_string(), price.trim().to_string()))
            }
            _ => Err(format!("ROAMPAY_PLANS: {item:?} is not name=price_…")),
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BillingError {
    #[error("workspace billing is not enabled on this service")]
    NotEnabled,
    #[error("no such plan; the plans are {0}")]
    UnknownPlan(String),
    #[error("this workspace already has a subscription")]
    AlreadySubscribed,
    #[error("this workspace has no billing customer yet: subscribe first")]
    NoBillingCustomer,
    #[error("Stripe did not answer")]
    StripeUnavailable,
    #[error("Stripe refused: {0}")]
    StripeRefused(String),
    #[error(transparent)]
    Store(#[from] StoreFault),
}

fn stripe_error(e: CallError) -> BillingError {
    match e {
        CallError::Api { status, code } if !(status >= 500 || status == 429) => {
            BillingError::StripeRefused(code.unwrap_or_else(|| format!("http_{status}")))
        }
        _ => BillingError::StripeUnavailable,
    }
}

/// Workspace billing's use cases.
pub struct Billing {
    pub(super) subscriptions: Aggregates<WorkspaceSubscription>,
    /// A purge forgets the workspace's credentials and locations.
    pub(super) credentials: Arc<Credentials>,
    pub(super) locations: Arc<Locations>,
    pub(super) deliveries: Arc<DeliveryLog>,
    pub(super) endpoints: PlatformEndpoints,
    pub(super) db: Db,
    pub(super) clock: Arc<dyn Clock>,
    /// `None`: billing is off.
    pub(super) settings: Option<BillingSettings>,
}

/// The settings of a configured billing, or `NotEnabled`.
fn enabled(s: &Billing) -> Result<&BillingSettings, BillingError> {
    s.settings.as_ref().ok_or(BillingError::NotEnabled)
}

impl Billing {
    /// Whether billing is configured.
    pub fn enabled(&self) -> bool {
        self.settings.is_some()
    }

    /// The workspace's subscription as it is now.
    pub async fn billing_of(&self, ws: &str) -> Result<WorkspaceSubscription, BillingError> {
        let s = self.subscriptions.load(ws).await;
        Ok(s.map_err(StoreFault::of)?)
    }

    /// Whether the workspace may open new charging intents (always, unless billing is
    /// required and it is not in good standing).
    pub async fn may_open_intents(&self, ws: &str) -> Result<bool, StoreFault> {
        match self.settings.as_ref().filter(|b| b.required) {
            None => Ok(true),
            Some(_) => {
                let s = self
                    .subscriptions
                    .load_recent(ws)
                    .await
                    .map_err(StoreFault::of)?;
                Ok(s.status.in_good_standing())
            }
        }
    }

    /// A Checkout Session for `plan` (the workspace's customer created once).
    pub async fn start_checkout(
        &self,
        ws: &str,
        plan: &str,
        success_url: &str,
        cancel_url: &str,
        meta: &Metadata,
    ) -> Result<(String, String), BillingError> {
        let billing = enabled(self)?;
        let names = || {
            billing
                .plans
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let price = billing
            .plans
            .iter()
            .find(|(n, _)| n == plan)
            .map(|(_, p)| p.clone())
            .ok_or_else(|| BillingError::UnknownPlan(names()))?;
        let current = self.billing_of(ws).await?;
        if current.status.in_good_standing() {
            return Err(BillingError::AlreadySubscribed);
        }
        let customer_id = self.billing_customer(ws, &current, meta).await?;
        let req = CheckoutRequest {
            workspace_id: ws.to_string(),
            customer_id,
            price_id: price,
            success_url: success_url.to_string(),
            cancel_url: cancel_url.to_string(),
        };
        let session = billing
            .gateway
            .create_checkout_session(&billing.platform_key, &req);
        session.await.map_err(stripe_error)
    }

    async fn billing_customer(
        &self,
        ws: &str,
        current: &WorkspaceSubscription,
        meta: &Metadata,
    ) -> Result<String, BillingError> {
        if let Some(id) = &current.stripe_customer_id {
            return Ok(id.clone());
        }
        let billing = enabled(self)?;
        let created = billing
            .gateway
            .create_customer(&billing.platform_key, ws)
            .await;
        let customer_id = created.map_err(stripe_error)?;
        billing_customers::link(&self.db, &customer_id, ws)
            .await
            .map_err(StoreFault::of_sqlx)?;
        let cmd = Cmd::RecordCustomer {
            workspace_id: ws.to_string(),
            customer_id: customer_id.clone(),
            at: self.clock.now(),
        };
        self.subscriptions
            .execute(ws, cmd, meta)
            .await
            .map_err(StoreFault::of)?;
        Ok(customer_id)
    }

    /// A Billing Portal session of the workspace's customer.
    pub async fn open_portal(&self, ws: &str, return_url: &str) -> Result<String, BillingError> {
        let billing = enabled(self)?;
        let current = self.billing_of(ws).await?;
        let customer = current
            .stripe_customer_id
            .ok_or(BillingError::NoBillingCustomer)?;
        let session =
            billing
                .gateway
                .create_portal_session(&billing.platform_key, &customer, return_url);
        session.await.map_err(stripe_error)
    }

    /// A delivery to the platform's billing webhook: verified with the platform secret,
    /// then applied to the workspace it is about (once per event id).
    pub async fn receive_billing_webhook(
        &self,
        body: &[u8],
        signature: Option<&str>,
        client: std::net::IpAddr,
        meta: &Metadata,
    ) -> Result<WebhookOutcome, WebhookRefusal> {
        let mut seen = Seen {
            client: Some(client),
            ..Seen::default()
        };
        let answer = self
            .process_billing_webhook(body, signature, meta, &mut seen)
            .await;
        let at = self.clock.now();
        self.deliveries
            .answered(Endpoint::Billing, seen, &answer, body, meta, at);
        answer
    }

    async fn process_billing_webhook(
        &self,
        body: &[u8],
        signature: Option<&str>,
        meta: &Metadata,
        seen: &mut Seen,
    ) -> Result<WebhookOutcome, WebhookRefusal> {
        let Some(billing) = self.settings.as_ref() else {
            return Err(WebhookRefusal::WebhookSecretNotConfigured);
        };
        self.endpoints
            .verify(body, signature, &billing.webhook_secrets, "billing")?;
        seen.verified = true;
        let event: Value =
            serde_json::from_slice(body).map_err(|_| WebhookRefusal::InvalidPayload)?;
        seen.read_head(&event);
        let Some(told) = read_billing_event(&event, billing)? else {
            return Ok(WebhookOutcome::Ignored);
        };
        let Some(told) = self.placed(told).await? else {
            return Ok(WebhookOutcome::Ignored);
        };
        seen.workspace_id = told.workspace_id.clone();
        self.apply_billing_fact(told, billing, meta).await
    }

    /// The event with its workspace: the one its customer is linked to, else the one
    /// its metadata names (a customer not linked yet, e.g. from Checkout). `None` when
    /// they disagree or neither is known: the event is about someone else.
    async fn placed(&self, mut told: Told) -> Result<Option<Told>, WebhookRefusal> {
        let linked = match &told.customer_id {
            Some(c) => billing_customers::workspace_of(&self.db, c)
                .await
                .map_err(|_| WebhookRefusal::StoreUnavailable)?,
            None => None,
        };
        match (linked, &told.workspace_id) {
            (Some(linked), Some(named)) if &linked != named => Ok(None),
            (Some(linked), _) => {
                told.workspace_id = Some(linked);
                Ok(Some(told))
            }
            (None, Some(_)) => Ok(Some(told)),
            (None, None) => Ok(None),
        }
    }

    async fn apply_billing_fact(
        &self,
        told: Told,
        billing: &BillingSettings,
        meta: &Metadata,
    ) -> Result<WebhookOutcome, WebhookRefusal> {
        let store = |_| WebhookRefusal::StoreUnavailable;
        let ws = told.workspace_id.clone().unwrap_or_default();
        let current = self.subscriptions.load(&ws).await.map_err(store)?;
        // Only the workspace's own customer speaks for it.
        if current.stripe_customer_id.is_some() && current.stripe_customer_id != told.customer_id {
            return Ok(WebhookOutcome::Ignored);
        }
        if current.seen_events.contains(&told.event_id) {
            return Ok(WebhookOutcome::Duplicate);
        }
        if let (None, Some(customer)) = (&current.stripe_customer_id, &told.customer_id) {
            billing_customers::link(&self.db, customer, &ws)
                .await
                .map_err(|_| WebhookRefusal::StoreUnavailable)?;
            let cmd = Cmd::RecordCustomer {
                workspace_id: ws.clone(),
                customer_id: customer.clone(),
                at: told.created,
            };
            self.subscriptions
                .execute(&ws, cmd, meta)
                .await
                .map_err(store)?;
        }
        let cmd = Cmd::ApplyStripeFact {
            workspace_id: ws.clone(),
            stripe_event_id: told.event_id,
            created: told.created,
            fact: told.fact,
            grace_until: self.clock.now() + billing.grace,
            purge_after: self.clock.now() + billing.retention,
        };
        let before = current.status;
        let after = self
            .subscriptions
            .execute(&ws, cmd, meta)
            .await
            .map_err(store)?;
        if after.status != before {
            tracing::info!(workspace_id = %ws, from = before.as_str(), to = after.status.as_str(), "billing status changed");
        }
        Ok(WebhookOutcome::Applied)
    }
}

impl Billing {
    /// The grace of a past-due workspace is over: suspended.
    pub async fn end_grace(&self, ws: &str, meta: &Metadata) -> Result<(), BillingError> {
        let cmd = Cmd::ExpireGrace {
            at: self.clock.now(),
        };
        let after = self
            .subscriptions
            .execute(ws, cmd, meta)
            .await
            .map_err(StoreFault::of)?;
        if after.status == BillingStatus::Suspended {
            tracing::warn!(workspace_id = %ws, "workspace suspended: its subscription's grace ended unpaid");
        }
        Ok(())
    }

    /// The retention of a cancelled workspace is over: its secrets are made
    /// unrecoverable (the vault's data key destroyed), its credentials, roaming settings,
    /// locations and webhook deliveries (their payloads name drivers) removed, and the
    /// purge recorded last (a crash before it purges again next round; every step is
    /// idempotent). Charging intents and the audit trail are financial records and stay.
    pub async fn purge_workspace(&self, ws: &str, meta: &Metadata) -> Result<(), BillingError> {
        let current = self.billing_of(ws).await?;
        let due = current.purge_after.is_some_and(|p| p <= self.clock.now());
        if current.status != BillingStatus::Cancelled || current.purged || !due {
            return Ok(());
        }
        self.credentials.purge(ws, meta).await?;
        self.locations.remove_all_of(ws, meta).await?;
        let log = self.deliveries.db().await.map_err(StoreFault::of_sqlx)?;
        roampay_projections::webhook_deliveries::forget_workspace(log, ws)
            .await
            .map_err(StoreFault::of_sqlx)?;
        let cmd = Cmd::Purge {
            at: self.clock.now(),
        };
        self.subscriptions
            .execute(ws, cmd, meta)
            .await
            .map_err(StoreFault::of)?;
        tracing::warn!(workspace_id = %ws, "workspace data purged: secrets unrecoverable, credentials removed");
        Ok(())
    }
}

/// What a billing event tells, and about which workspace.
struct Told {
    /// The workspace its metadata or `client_reference_id` names (invoices often name
    /// none: their customer places them).
    workspace_id: Option<String>,
    event_id: String,
    created: DateTime<Utc>,
    customer_id: Option<String>,
    fact: StripeFact,
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// Reads a billing event; `None` for an event type billing does not follow.
fn read_billing_event(
    event: &Value,
    billing: &BillingSettings,
) -> Result<Option<Told>, WebhookRefusal> {
    let (event_id, kind) = super::webhook_answers::event_head(event)?;
    let created = event
        .get("created")
        .and_then(Value::as_i64)
        .and_then(|t| DateTime::from_timestamp(t, 0))
        .ok_or(WebhookRefusal::InvalidPayload)?;
    let object = event.pointer("/data/object").unwrap_or(&Value::Null);
    let workspace = str_at(object, "/metadata/workspace_id")
        .or_else(|| str_at(object, "/subscription_details/metadata/workspace_id"))
        .or_else(|| str_at(object, "/client_reference_id"))
        .filter(|w| crate::domain::ids::WorkspaceId::parse(w).is_some());
    let Some(kind) = kind else {
        return Ok(None);
    };
    let id = str_at(object, "/id").map(str::to_string);
    let fact = match kind.as_str() {
        "checkout.session.completed" => StripeFact::CheckoutCompleted { session_id: id },
        "customer.subscription.created" | "customer.subscription.updated" => {
            subscription_fact(object, billing)
        }
        "customer.subscription.deleted" => StripeFact::SubscriptionDeleted,
        "invoice.payment_succeeded" | "invoice.paid" => StripeFact::InvoicePaid { invoice_id: id },
        "invoice.payment_failed" => StripeFact::InvoicePaymentFailed { invoice_id: id },
        "invoice.payment_action_required" => StripeFact::PaymentActionRequired { invoice_id: id },
        _ => return Ok(None),
    };
    Ok(Some(Told {
        workspace_id: workspace.map(str::to_string),
        event_id,
        created,
        customer_id: str_at(object, "/customer").map(str::to_string),
        fact,
    }))
}

fn subscription_fact(object: &Value, billing: &BillingSettings) -> StripeFact {
    let price = str_at(object, "/items/data/0/price/id").or_else(|| str_at(object, "/plan/id"));
    let plan = price.and_then(|p| {
        billing
            .plans
            .iter()
            .find(|(_, id)| id == p)
            .map(|(n, _)| n.clone())
    });
    StripeFact::Subscription {
        subscription_id: str_at(object, "/id").unwrap_or_default().to_string(),
        status: str_at(object, "/status").unwrap_or_default().to_string(),
        plan,
        current_period_end: object
            .get("current_period_end")
            .and_then(Value::as_i64)
            .and_then(|t| DateTime::from_timestamp(t, 0)),
        cancel_at_period_end: object
            .get("cancel_at_period_end")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    }
}
