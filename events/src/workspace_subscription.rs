//! Events of the `WorkspaceSubscription` aggregate: the platform bills its workspaces
//! (one stream per workspace). Stripe's facts carry the id and `created` time of the
//! Stripe event that told them, so each applies once and in order.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a workspace's subscription to the platform stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum BillingStatus {
    /// No subscription yet.
    #[default]
    None,
    Trialing,
    Active,
    /// A renewal failed: the workspace keeps working until `grace_until`.
    PastDue,
    /// Grace ran out unpaid: no new charging intents while billing is required.
    Suspended,
    Cancelled,
}

impl BillingStatus {
    pub const ALL: [BillingStatus; 6] = [
        Self::None,
        Self::Trialing,
        Self::Active,
        Self::PastDue,
        Self::Suspended,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Trialing => "trialing",
            Self::Active => "active",
            Self::PastDue => "past_due",
            Self::Suspended => "suspended",
            Self::Cancelled => "cancelled",
        }
    }

    /// May open new charging intents when billing is required.
    pub fn in_good_standing(self) -> bool {
        matches!(self, Self::Trialing | Self::Active | Self::PastDue)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkspaceSubscriptionEvent {
    WorkspaceBillingCustomerCreated(WorkspaceBillingCustomerCreated),
    WorkspaceCheckoutCompleted(WorkspaceCheckoutCompleted),
    WorkspaceSubscriptionActivated(WorkspaceSubscriptionActivated),
    WorkspaceSubscriptionUpdated(WorkspaceSubscriptionUpdated),
    WorkspacePlanChanged(WorkspacePlanChanged),
    WorkspaceInvoicePaymentFailed(WorkspaceInvoicePaymentFailed),
    WorkspacePaymentActionRequired(WorkspacePaymentActionRequired),
    WorkspacePaymentActionCompleted(WorkspacePaymentActionCompleted),
    WorkspaceSuspended(WorkspaceSuspended),
    WorkspaceReinstated(WorkspaceReinstated),
    WorkspaceSubscriptionCancelled(WorkspaceSubscriptionCancelled),
    WorkspaceDataPurged(WorkspaceDataPurged),
}

impl WorkspaceSubscriptionEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::WorkspaceBillingCustomerCreated(_) => "WorkspaceBillingCustomerCreated",
            Self::WorkspaceCheckoutCompleted(_) => "WorkspaceCheckoutCompleted",
            Self::WorkspaceSubscriptionActivated(_) => "WorkspaceSubscriptionActivated",
            Self::WorkspaceSubscriptionUpdated(_) => "WorkspaceSubscriptionUpdated",
            Self::WorkspacePlanChanged(_) => "WorkspacePlanChanged",
            Self::WorkspaceInvoicePaymentFailed(_) => "WorkspaceInvoicePaymentFailed",
            Self::WorkspacePaymentActionRequired(_) => "WorkspacePaymentActionRequired",
            Self::WorkspacePaymentActionCompleted(_) => "WorkspacePaymentActionCompleted",
            Self::WorkspaceSuspended(_) => "WorkspaceSuspended",
            Self::WorkspaceReinstated(_) => "WorkspaceReinstated",
            Self::WorkspaceSubscriptionCancelled(_) => "WorkspaceSubscriptionCancelled",
            Self::WorkspaceDataPurged(_) => "WorkspaceDataPurged",
        }
    }

    pub fn workspace_id(&self) -> &str {
        match self {
            Self::WorkspaceBillingCustomerCreated(e) => &e.workspace_id,
            Self::WorkspaceCheckoutCompleted(e) => &e.workspace_id,
            Self::WorkspaceSubscriptionActivated(e) => &e.workspace_id,
            Self::WorkspaceSubscriptionUpdated(e) => &e.workspace_id,
            Self::WorkspacePlanChanged(e) => &e.workspace_id,
            Self::WorkspaceInvoicePaymentFailed(e) => &e.workspace_id,
            Self::WorkspacePaymentActionRequired(e) => &e.workspace_id,
            Self::WorkspacePaymentActionCompleted(e) => &e.workspace_id,
            Self::WorkspaceSuspended(e) => &e.workspace_id,
            Self::WorkspaceReinstated(e) => &e.workspace_id,
            Self::WorkspaceSubscriptionCancelled(e) => &e.workspace_id,
            Self::WorkspaceDataPurged(e) => &e.workspace_id,
        }
    }

    /// The Stripe event that told it, when one did.
    pub fn stripe_event_id(&self) -> Option<&str> {
        match self {
            Self::WorkspaceSubscriptionActivated(e) => Some(&e.stripe_event_id),
            Self::WorkspaceSubscriptionUpdated(e) => Some(&e.stripe_event_id),
            Self::WorkspacePlanChanged(e) => Some(&e.stripe_event_id),
            Self::WorkspaceInvoicePaymentFailed(e) => Some(&e.stripe_event_id),
            Self::WorkspacePaymentActionRequired(e) => Some(&e.stripe_event_id),
            Self::WorkspacePaymentActionCompleted(e) => Some(&e.stripe_event_id),
            Self::WorkspaceCheckoutCompleted(e) => Some(&e.stripe_event_id),
            Self::WorkspaceReinstated(e) => Some(&e.stripe_event_id),
            Self::WorkspaceSubscriptionCancelled(e) => Some(&e.stripe_event_id),
            _ => None,
        }
    }
}

/// The workspace's customer in the platform's Stripe account (created once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceBillingCustomerCreated {
    pub workspace_id: String,
    pub stripe_customer_id: String,
    pub created_at: DateTime<Utc>,
}

/// The subscription started (`trialing` or `active`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceSubscriptionActivated {
    pub workspace_id: String,
    pub stripe_event_id: String,
    pub stripe_subscription_id: String,
    pub status: BillingStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_period_end: Option<DateTime<Utc>>,
    #[serde(default)]
    pub cancel_at_period_end: bool,
    /// Stripe's `created` of the event.
    pub occurred_at: DateTime<Utc>,
}

/// The subscription's period or cancellation at period end changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceSubscriptionUpdated {
    pub workspace_id: String,
    pub stripe_event_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_period_end: Option<DateTime<Utc>>,
    pub cancel_at_period_end: bool,
    pub occurred_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspacePlanChanged {
    pub workspace_id: String,
    pub stripe_event_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_plan: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    pub occurred_at: DateTime<Utc>,
}

/// A renewal was not paid: past due, working until `grace_until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceInvoicePaymentFailed {
    pub workspace_id: String,
    pub stripe_event_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe_invoice_id: Option<String>,
    pub grace_until: DateTime<Utc>,
    pub occurred_at: DateTime<Utc>,
}

/// The customer must act (3-D Secure) for the invoice to be paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspacePaymentActionRequired {
    pub workspace_id: String,
    pub stripe_event_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe_invoice_id: Option<String>,
    pub occurred_at: DateTime<Utc>,
}

/// The workspace completed a Checkout Session (Stripe's `checkout.session.completed`):
/// the subscription itself follows in its own events. Recorded so that a redelivery is
/// known as one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceCheckoutCompleted {
    pub workspace_id: String,
    pub stripe_event_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe_checkout_session_id: Option<String>,
    pub occurred_at: DateTime<Utc>,
}

/// The invoice that needed the customer's action was paid while the workspace stayed in
/// good standing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspacePaymentActionCompleted {
    pub workspace_id: String,
    pub stripe_event_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe_invoice_id: Option<String>,
    pub occurred_at: DateTime<Utc>,
}

/// Grace ran out unpaid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceSuspended {
    pub workspace_id: String,
    pub grace_until: DateTime<Utc>,
    pub suspended_at: DateTime<Utc>,
}

/// Paid again after a failure: active.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceReinstated {
    pub workspace_id: String,
    pub stripe_event_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe_invoice_id: Option<String>,
    pub occurred_at: DateTime<Utc>,
}

/// The subscription ended; the workspace's data is purged after `purge_after`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceSubscriptionCancelled {
    pub workspace_id: String,
    pub stripe_event_id: String,
    pub purge_after: DateTime<Utc>,
    pub occurred_at: DateTime<Utc>,
}

/// The workspace's secrets were made unrecoverable (its vault data key destroyed) and
/// its credentials, OCPI config and locations removed. Intents and the audit stay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceDataPurged {
    pub workspace_id: String,
    pub purged_at: DateTime<Utc>,
}
