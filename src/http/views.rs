//! What the API answers: typed bodies that both serialize the response and describe it
//! in the OpenAPI document, so the two cannot drift apart.

use chrono::{DateTime, Utc};
use roampay_events::{HealthStatus, IntentStatus, LastPaymentError};
use roampay_projections::audit_log::Entry;
use roampay_projections::charging_intents::Row;
use serde::Serialize;
use utoipa::ToSchema;

use crate::application::credentials::WorkspaceConfig;
use crate::domain::charging_intent::aggregate::authorization_reference;
use crate::domain::charging_intent::ChargingIntent;
use crate::domain::workspace_stripe_profile::aggregate::WebhookStatus;
use crate::domain::workspace_stripe_profile::WorkspaceStripeProfile;

/// A charging intent, as drivers, the session module and support see it (one shape for
/// every endpoint that shows one).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChargingIntentView {
    pub charging_intent_id: String,
    pub workspace_id: String,
    pub status: IntentStatus,
    pub payment_required: bool,
    pub amount_cents: Option<i64>,
    pub currency: String,
    pub authorized_amount_cents: Option<i64>,
    pub captured_amount_cents: Option<i64>,
    pub payment_intent_id: Option<String>,
    /// The short reference shown to drivers and OCPI partners (paid intents).
    pub authorization_reference: Option<String>,
    pub location_id: String,
    pub evse_uid: String,
    pub connector_id: String,
    pub ocpi_session_id: Option<String>,
    pub failure_code: Option<String>,
    /// Why the driver's last attempt to pay was declined (the intent stays
    /// `pending_payment`: the driver may retry on the same PaymentIntent).
    pub last_payment_error: Option<LastPaymentError>,
    /// When the hold lapses, once known.
    pub capture_before: Option<DateTime<Utc>>,
    /// What the session cost, even when the capture was capped by the hold.
    pub final_amount_cents: Option<i64>,
    /// What refunds gave back (0 when none).
    pub refunded_amount_cents: i64,
    pub dispute: Option<DisputeView>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl ChargingIntentView {
    /// From the aggregate (read-your-writes answers).
    pub fn of(id: &str, i: &ChargingIntent) -> Self {
        let r = i.request.as_ref();
        let p = i.payment.as_ref();
        let text = |f: fn(&roampay_events::IntentRequest) -> &String| {
            r.map(|r| f(r).clone()).unwrap_or_default()
        };
        Self {
            charging_intent_id: id.to_string(),
            workspace_id: text(|r| &r.workspace_id),
            status: i.status,
            payment_required: i.payment_required(),
            amount_cents: p.map(|p| p.amount_cents),
            currency: text(|r| &r.currency),
            authorized_amount_cents: i.authorized_amount_cents,
            captured_amount_cents: i.captured_amount_cents,
            payment_intent_id: p.map(|p| p.payment_intent_id.clone()),
            authorization_reference: p.map(|p| p.authorization_reference.clone()),
            location_id: text(|r| &r.location_id),
            evse_uid: text(|r| &r.evse_uid),
            connector_id: text(|r| &r.connector_id),
            ocpi_session_id: i.ocpi_session_id.clone(),
            failure_code: i.failure_code.clone(),
            last_payment_error: i.last_payment_error.clone(),
            capture_before: i.capture_before,
            final_amount_cents: i.final_amount_cents,
            refunded_amount_cents: i.refunded_amount_cents,
            dispute: i.dispute.as_ref().map(|d| DisputeView {
                status: d.status.clone(),
                amount_cents: d.amount_cents,
                reason: d.reason.clone(),
            }),
            created_at: i.created_at,
            updated_at: i.updated_at,
        }
    }

    /// From the read model (support lists).
    pub fn of_row(id: String, r: Row) -> Self {
        Self {
            authorization_reference: r
                .payment_intent_id
                .as_ref()
                .map(|_| authorization_reference(&id)),
            charging_intent_id: id,
            workspace_id: r.workspace_id,
            status: r.status,
            payment_required: r.payment_required,
            amount_cents: r.amount_cents,
            currency: r.currency,
            authorized_amount_cents: r.authorized_amount_cents,
            captured_amount_cents: r.captured_amount_cents,
            payment_intent_id: r.payment_intent_id,
            location_id: r.location_id,
            evse_uid: r.evse_uid,
            connector_id: r.connector_id,
            ocpi_session_id: r.ocpi_session_id,
            failure_code: r.failure_code,
            last_payment_error: r
                .last_payment_error
                .as_deref()
                .and_then(|e| serde_json::from_str(e).ok()),
            capture_before: r.capture_before,
            final_amount_cents: r.final_amount_cents,
            refunded_amount_cents: r.refunded_amount_cents,
            dispute: r
                .dispute
                .as_deref()
                .and_then(|d| serde_json::from_str(d).ok()),
            created_at: Some(r.created_at),
            updated_at: Some(r.updated_at),
        }
    }
}

/// A dispute of the charge by the driver's bank.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct DisputeView {
    /// Stripe's: `warning_needs_response`, `needs_response`, `under_review`, `won`, `lost`, …
    pub status: String,
    pub amount_cents: i64,
    pub reason: String,
}

/// A new pre-authorization; the Stripe fields are absent for a free connector.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreatedPaymentIntent {
    pub charging_intent_id: String,
    pub authorization_reference: Option<String>,
    pub workspace_id: String,
    pub payment_required: bool,
    pub status: IntentStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount_cents: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_intent_id: Option<String>,
    /// For Stripe.js `confirmCardPayment`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publishable_key: Option<Option<String>>,
    /// Connect mode: the connected account the PaymentIntent lives in (Stripe.js takes
    /// `{stripeAccount}`); null for the workspace's own keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stripe_account_id: Option<Option<String>>,
}

/// A page of charging intents, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChargingIntentPage {
    pub data: Vec<ChargingIntentView>,
    pub has_more: bool,
}

/// One audit entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    /// The cursor for `starting_after`.
    pub id: String,
    pub recorded_at: DateTime<Utc>,
    pub workspace_id: Option<String>,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub event_type: String,
    pub actor: Option<String>,
    pub request_id: Option<String>,
    pub summary: String,
}

impl From<Entry> for AuditEntry {
    fn from(e: Entry) -> Self {
        Self {
            id: e.id.to_string(),
            recorded_at: e.recorded_at,
            workspace_id: e.workspace_id,
            aggregate_type: e.aggregate_type,
            aggregate_id: e.aggregate_id,
            event_type: e.event_type,
            actor: e.actor,
            request_id: e.request_id,
            summary: e.summary,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub data: Vec<AuditEntry>,
    pub has_more: bool,
}

/// What Stripe's webhook delivery is answered with.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAck {
    pub received: bool,
    pub outcome: WebhookOutcomeName,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookOutcomeName {
    Applied,
    Duplicate,
    /// Verified, but an event type or object this service does not track.
    Ignored,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SecretState {
    pub configured: bool,
    /// `secret` (sk_) or `restricted` (rk_); absent for the webhook signing secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<Option<roampay_events::SecretKeyKind>>,
    /// The last four characters; the only part of a secret ever shown.
    pub last4: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: HealthStatus,
    pub checked_at: Option<DateTime<Utc>>,
    /// `authentication_failed` | `permission_denied` | `livemode_mismatch` | `stripe_unreachable`
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StripeConfig {
    pub publishable_key: Option<String>,
    pub secret_key: SecretState,
    pub webhook_signing_secret: SecretState,
    pub mode: Option<roampay_events::StripeMode>,
    pub account_id: Option<String>,
    pub credential_version: u32,
    pub health: Health,
    pub updated_at: Option<DateTime<Utc>>,
    pub updated_by: Option<String>,
    /// The per-workspace endpoint to register in Stripe.
    pub webhook_url: String,
    /// Whether deliveries signed with the workspace's secret arrive.
    pub webhook: WebhookHealthView,
    /// A set saved but not proven yet; `credential_version` and `health` above
    /// describe the active set, the one payments use.
    pub candidate: Option<CandidateView>,
    /// How new payments are taken: `keys` (the set above), `connect` (the connected
    /// account below), or null (nothing connected). `health` is that connection's.
    pub connection: Option<roampay_events::StripeConnection>,
    /// The workspace's connected account, in connect mode.
    pub connect: Option<ConnectView>,
}

/// A connected account as Stripe last reported it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectView {
    pub account_id: String,
    pub charges_enabled: bool,
    pub payouts_enabled: bool,
    pub details_submitted: bool,
    /// What Stripe needs (`requirements.currently_due`).
    pub requirements_due: Vec<String>,
    /// The platform's fee on each payment, in basis points.
    pub application_fee_bps: u32,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookStatusView {
    Unverified,
    Verified,
    Failing,
}

impl From<WebhookStatus> for WebhookStatusView {
    fn from(s: WebhookStatus) -> Self {
        match s {
            WebhookStatus::Unverified => Self::Unverified,
            WebhookStatus::Verified => Self::Verified,
            WebhookStatus::Failing => Self::Failing,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookHealthView {
    pub status: WebhookStatusView,
    pub last_verified_at: Option<DateTime<Utc>>,
    /// Deliveries refused in the last 24 h.
    pub rejected_24h: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CandidateView {
    pub credential_version: u32,
    pub health: Health,
}

/// The workspace OCPI config: settings, and the credential set with secrets reduced to
/// `last4`.
#[derive(Debug, Serialize, ToSchema)]
pub struct OcpiConfig {
    pub workspace_id: String,
    pub allow_guest_access: bool,
    pub allow_user_registration: bool,
    pub pre_auth_cents: i64,
    pub currency: String,
    pub stripe: StripeConfig,
}

impl OcpiConfig {
    pub fn of(ws: &str, config: &WorkspaceConfig, public_url: &str) -> Self {
        let mut stripe = StripeConfig::of(ws, config, public_url);
        stripe.connection = config.profile.connection();
        stripe.connect = config.profile.connected_account().map(|a| ConnectView {
            account_id: a.account_id.clone(),
            charges_enabled: a.charges_enabled,
            payouts_enabled: a.payouts_enabled,
            details_submitted: a.details_submitted,
            requirements_due: a.requirements_due.clone(),
            application_fee_bps: config.application_fee_bps.unwrap_or(0),
        });
        let p = &config.profile;
        let s = &p.settings;
        Self {
            workspace_id: ws.to_string(),
            allow_guest_access: s.allow_guest_access,
            allow_user_registration: s.allow_user_registration,
            pre_auth_cents: s.pre_auth_cents.cents(),
            currency: s.currency.as_str().to_string(),
            stripe,
        }
    }
}

impl StripeConfig {
    fn of(ws: &str, config: &WorkspaceConfig, public_url: &str) -> Self {
        let p = &config.profile;
        let c = p.credentials.as_ref();
        Self {
            publishable_key: c.map(|c| c.publishable_key.clone()),
            secret_key: SecretState {
                configured: c.is_some(),
                kind: Some(c.map(|c| c.secret_key.kind)),
                last4: c.map(|c| c.secret_key.secret.last4.clone()),
            },
            webhook_signing_secret: SecretState {
                configured: c.is_some(),
                kind: None,
                last4: c.map(|c| c.current_webhook_secret().secret.last4.clone()),
            },
            mode: c.map(|c| c.mode),
            account_id: c.and_then(|c| c.account_id.clone()),
            credential_version: p.active_version(),
            health: Health::of(p),
            updated_at: c.map(|c| c.updated_at),
            updated_by: c.map(|c| c.updated_by.clone()),
            webhook_url: format!("{public_url}/ocpi/stripe/webhook/{ws}"),
            webhook: WebhookHealthView {
                status: p.webhook.status(config.webhook_rejected_24h).into(),
                last_verified_at: p.webhook.verified_at,
                rejected_24h: config.webhook_rejected_24h,
            },
            candidate: p.candidate.as_ref().map(|c| CandidateView {
                credential_version: c.version,
                health: Health::from(&c.health),
            }),
            connection: None,
            connect: None,
        }
    }
}

impl From<&crate::domain::workspace_stripe_profile::Health> for Health {
    fn from(h: &crate::domain::workspace_stripe_profile::Health) -> Self {
        Self {
            status: h.status,
            checked_at: h.checked_at,
            failure_code: h.failure_code.clone(),
            failure_message: h.failure_message.clone(),
        }
    }
}

impl Health {
    /// The health of the connection new payments use.
    fn of(p: &WorkspaceStripeProfile) -> Self {
        Self::from(&p.health())
    }
}

/// Any subset; `"stripe": null` removes the credential set. (Read field by field, so
/// that every problem is reported at once.)
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(example = json!({"allow_guest_access": true, "pre_auth_cents": 5000, "currency": "aud", "stripe": {"publishable_key": "pk_test_51Hx…", "secret_key": "rk_test_51Hx…", "webhook_signing_secret": "whsec_…"}}))]
pub struct OcpiConfigPatch {
    pub allow_guest_access: Option<bool>,
    pub allow_user_registration: Option<bool>,
    /// 50..=1000000
    pub pre_auth_cents: Option<i64>,
    pub currency: Option<String>,
    pub stripe: Option<StripeCredentialsPatch>,
}

/// Any subset (one secret can be rotated alone); the first save carries all three.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct StripeCredentialsPatch {
    pub publishable_key: Option<String>,
    /// `sk_…` or `rk_…`; write-only.
    pub secret_key: Option<String>,
    /// `whsec_…`; write-only.
    pub webhook_signing_secret: Option<String>,
}

/// `/healthz` and `/readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<&'static str>,
}

/// The payment-health view of one workspace.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentHealth {
    pub workspace_id: String,
    /// The credential-health row of the workspace (status, version, checks).
    #[schema(value_type = HashMap<String, serde_json::Value>)]
    pub credential_health: serde_json::Value,
    pub last_webhook_received_at: Option<DateTime<Utc>>,
    pub webhooks_rejected_24h: i64,
    /// Intents of the workspace by status.
    #[schema(value_type = HashMap<String, i64>)]
    pub intents_by_status: std::collections::BTreeMap<String, i64>,
    pub settlements_pending: i64,
    pub holds_lapsing_soon: i64,
    /// Completed sessions that cost more than the hold let roampay capture.
    pub captured_below_cost: i64,
    /// What those sessions left uncollected, in minor units.
    pub uncollected_cents: i64,
    pub recent_failures: Vec<RecentFailure>,
    /// The workspace's subscription to the platform; `null` when billing is off.
    pub billing: Option<BillingView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecentFailure {
    pub charging_intent_id: String,
    pub status: String,
    pub failure_code: Option<String>,
    pub payment_intent_id: Option<String>,
    pub at: DateTime<Utc>,
}

/// A workspace in the support list: can it take payments, and does its webhook work.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkspaceSummary {
    pub workspace_id: String,
    pub health: Health,
    pub webhook: WebhookHealthView,
    pub payment_ready: bool,
}

impl From<crate::application::credentials::WorkspaceListing> for WorkspaceSummary {
    fn from(l: crate::application::credentials::WorkspaceListing) -> Self {
        let h = l.health;
        let status = HealthStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == h.status)
            .unwrap_or(HealthStatus::Unconfigured);
        let webhook = crate::domain::workspace_stripe_profile::aggregate::WebhookHealth {
            verified_at: h.webhook_verified_at,
            failing_since: h.webhook_failing_since,
        };
        Self {
            workspace_id: h.workspace_id,
            health: Health {
                status,
                checked_at: h.checked_at,
                failure_code: h.failure_code,
                failure_message: h.failure_message,
            },
            webhook: WebhookHealthView {
                status: webhook.status(l.webhook_rejected_24h).into(),
                last_verified_at: webhook.verified_at,
                rejected_24h: l.webhook_rejected_24h,
            },
            payment_ready: status == HealthStatus::Valid,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkspacePage {
    pub data: Vec<WorkspaceSummary>,
    pub has_more: bool,
}

/// Where the workspace's subscription stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct BillingView {
    pub workspace_id: String,
    pub status: roampay_events::BillingStatus,
    pub plan: Option<String>,
    pub stripe_customer_id: Option<String>,
    pub stripe_subscription_id: Option<String>,
    pub current_period_end: Option<DateTime<Utc>>,
    pub grace_until: Option<DateTime<Utc>>,
    pub cancel_at_period_end: bool,
    pub payment_action_required: bool,
}

impl BillingView {
    pub fn of(ws: &str, s: crate::domain::workspace_subscription::WorkspaceSubscription) -> Self {
        Self {
            workspace_id: ws.to_string(),
            status: s.status,
            plan: s.plan,
            stripe_customer_id: s.stripe_customer_id,
            stripe_subscription_id: s.stripe_subscription_id,
            current_period_end: s.current_period_end,
            grace_until: s.grace_until,
            cancel_at_period_end: s.cancel_at_period_end,
            payment_action_required: s.payment_action_required,
        }
    }
}
