//! Events of the `WorkspaceStripeProfile` aggregate: one stream per workspace.
//!
//! No secret value is ever carried here: secret keys and webhook signing secrets sit
//! encrypted in the vault, and events refer to them by credential version and a keyed
//! fingerprint (HMAC) that cannot be reversed into the secret.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Everything that can happen to a workspace's roaming payment configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkspaceStripeProfileEvent {
    WorkspaceOcpiConfigUpdated(WorkspaceOcpiConfigUpdated),
    WorkspaceStripeCredentialsUpdated(WorkspaceStripeCredentialsUpdated),
    WorkspaceStripeCredentialsValidated(WorkspaceStripeCredentialsValidated),
    WorkspaceStripeCredentialsValidationFailed(WorkspaceStripeCredentialsValidationFailed),
    WorkspaceStripeCredentialsRemoved(WorkspaceStripeCredentialsRemoved),
    WorkspaceStripeCandidateSaved(WorkspaceStripeCandidateSaved),
    WorkspaceStripeCandidatePromoted(WorkspaceStripeCandidatePromoted),
    WorkspaceStripeCandidateRejected(WorkspaceStripeCandidateRejected),
    WorkspaceStripeCredentialsRevoked(WorkspaceStripeCredentialsRevoked),
    WorkspaceWebhookVerified(WorkspaceWebhookVerified),
    WorkspaceWebhookFailing(WorkspaceWebhookFailing),
    WorkspaceOcpiConfigPurged(WorkspaceOcpiConfigPurged),
    WorkspaceStripeConnectAccountCreated(WorkspaceStripeConnectAccountCreated),
    WorkspaceStripeOnboardingLinkIssued(WorkspaceStripeOnboardingLinkIssued),
    WorkspaceStripeConnectAccountUpdated(WorkspaceStripeConnectAccountUpdated),
    WorkspaceStripeConnectDeauthorized(WorkspaceStripeConnectDeauthorized),
    WorkspaceStripeConnectionSwitched(WorkspaceStripeConnectionSwitched),
}

impl WorkspaceStripeProfileEvent {
    /// The stable name stored in the `event_type` column.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::WorkspaceOcpiConfigUpdated(_) => "WorkspaceOcpiConfigUpdated",
            Self::WorkspaceStripeCredentialsUpdated(_) => "WorkspaceStripeCredentialsUpdated",
            Self::WorkspaceStripeCredentialsValidated(_) => "WorkspaceStripeCredentialsValidated",
            Self::WorkspaceStripeCredentialsValidationFailed(_) => {
                "WorkspaceStripeCredentialsValidationFailed"
            }
            Self::WorkspaceStripeCredentialsRemoved(_) => "WorkspaceStripeCredentialsRemoved",
            Self::WorkspaceStripeCandidateSaved(_) => "WorkspaceStripeCandidateSaved",
            Self::WorkspaceStripeCandidatePromoted(_) => "WorkspaceStripeCandidatePromoted",
            Self::WorkspaceStripeCandidateRejected(_) => "WorkspaceStripeCandidateRejected",
            Self::WorkspaceStripeCredentialsRevoked(_) => "WorkspaceStripeCredentialsRevoked",
            Self::WorkspaceWebhookVerified(_) => "WorkspaceWebhookVerified",
            Self::WorkspaceWebhookFailing(_) => "WorkspaceWebhookFailing",
            Self::WorkspaceOcpiConfigPurged(_) => "WorkspaceOcpiConfigPurged",
            Self::WorkspaceStripeConnectAccountCreated(_) => "WorkspaceStripeConnectAccountCreated",
            Self::WorkspaceStripeOnboardingLinkIssued(_) => "WorkspaceStripeOnboardingLinkIssued",
            Self::WorkspaceStripeConnectAccountUpdated(_) => "WorkspaceStripeConnectAccountUpdated",
            Self::WorkspaceStripeConnectDeauthorized(_) => "WorkspaceStripeConnectDeauthorized",
            Self::WorkspaceStripeConnectionSwitched(_) => "WorkspaceStripeConnectionSwitched",
        }
    }

    pub fn workspace_id(&self) -> &str {
        match self {
            Self::WorkspaceOcpiConfigUpdated(e) => &e.workspace_id,
            Self::WorkspaceStripeCredentialsUpdated(e) => &e.workspace_id,
            Self::WorkspaceStripeCredentialsValidated(e) => &e.workspace_id,
            Self::WorkspaceStripeCredentialsValidationFailed(e) => &e.workspace_id,
            Self::WorkspaceStripeCredentialsRemoved(e) => &e.workspace_id,
            Self::WorkspaceStripeCandidateSaved(e) => &e.workspace_id,
            Self::WorkspaceStripeCandidatePromoted(e) => &e.workspace_id,
            Self::WorkspaceStripeCandidateRejected(e) => &e.workspace_id,
            Self::WorkspaceStripeCredentialsRevoked(e) => &e.workspace_id,
            Self::WorkspaceWebhookVerified(e) => &e.workspace_id,
            Self::WorkspaceWebhookFailing(e) => &e.workspace_id,
            Self::WorkspaceOcpiConfigPurged(e) => &e.workspace_id,
            Self::WorkspaceStripeConnectAccountCreated(e) => &e.workspace_id,
            Self::WorkspaceStripeOnboardingLinkIssued(e) => &e.workspace_id,
            Self::WorkspaceStripeConnectAccountUpdated(e) => &e.workspace_id,
            Self::WorkspaceStripeConnectDeauthorized(e) => &e.workspace_id,
            Self::WorkspaceStripeConnectionSwitched(e) => &e.workspace_id,
        }
    }
}

/// Roaming settings that changed; a field left out did not change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceOcpiConfigUpdated {
    pub workspace_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_guest_access: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_user_registration: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_auth_cents: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Connect mode: the platform's fee in basis points (0..=2000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_fee_bps: Option<u32>,
    pub updated_by: String,
    pub updated_at: DateTime<Utc>,
}

/// `sk_` keys are full-access secret keys, `rk_` keys restricted ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SecretKeyKind {
    Secret,
    Restricted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum StripeMode {
    Test,
    Live,
}

impl StripeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Test => "test",
            Self::Live => "live",
        }
    }
}

/// A reference to a secret stored in the vault at `credential_version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRef {
    /// HMAC-SHA256 of the secret under a key derived from the master key (hex, 32 chars).
    pub fingerprint: String,
    pub last4: String,
}

/// A new credential set, or a rotation of some of its parts. Fields left out keep the
/// value of the previous version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceStripeCredentialsUpdated {
    pub workspace_id: String,
    pub credential_version: u32,
    pub mode: StripeMode,
    /// Publishable keys are public by design (they go to browsers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publishable_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_kind: Option<SecretKeyKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_signing_secret: Option<SecretRef>,
    pub updated_by: String,
    pub updated_at: DateTime<Utc>,
}

/// The credential set at `credential_version` passed the Stripe round trip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceStripeCredentialsValidated {
    pub workspace_id: String,
    pub credential_version: u32,
    pub mode: StripeMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    pub validated_at: DateTime<Utc>,
}

/// The credential set at `credential_version` could not be used. `stripe_unreachable`
/// leaves the set `pending` (it is retried); every other code makes it `invalid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceStripeCredentialsValidationFailed {
    pub workspace_id: String,
    pub credential_version: u32,
    pub failure_code: String,
    pub failure_message: String,
    pub validated_at: DateTime<Utc>,
}

/// The workspace's roaming settings and credentials are gone (its data was purged after
/// its subscription ended): the OCPI config reads as never configured. Credential
/// versions are never handed out again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceOcpiConfigPurged {
    pub workspace_id: String,
    pub purged_by: String,
    pub purged_at: DateTime<Utc>,
}

/// The workspace no longer takes paid roaming sessions. Older secret-key versions stay
/// in the vault so intents created under them can still be settled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceStripeCredentialsRemoved {
    pub workspace_id: String,
    pub credential_version: u32,
    pub removed_by: String,
    pub removed_at: DateTime<Utc>,
}

/// A changed secret or publishable key saved while a valid set serves payments: it is
/// proven with Stripe before it replaces the active set, which keeps serving meanwhile.
/// The event names the whole candidate set (a key left unchanged is the active one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceStripeCandidateSaved {
    pub workspace_id: String,
    /// The candidate's version, handed out now.
    pub credential_version: u32,
    pub mode: StripeMode,
    pub publishable_key: String,
    pub secret_key: SecretRef,
    pub secret_key_kind: SecretKeyKind,
    /// The version under which the secret key sits in the vault (the candidate's own
    /// when it brings a new key, the active set's otherwise).
    pub secret_key_version: u32,
    pub updated_by: String,
    pub updated_at: DateTime<Utc>,
}

/// The candidate passed the Stripe round trip and is now the active set, at
/// `credential_version`: new payments use it; intents made earlier keep their key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceStripeCandidatePromoted {
    pub workspace_id: String,
    pub candidate_version: u32,
    pub credential_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    pub promoted_at: DateTime<Utc>,
}

/// Stripe refused the candidate: it stays visible with its failure and changes nothing
/// for payments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceStripeCandidateRejected {
    pub workspace_id: String,
    pub candidate_version: u32,
    pub failure_code: String,
    pub failure_message: String,
    pub rejected_at: DateTime<Utc>,
}

/// Stripe refused the active set on a payment call or a periodic check (a key rolled or
/// deleted, a permission taken away): the set is `invalid` from now on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceStripeCredentialsRevoked {
    pub workspace_id: String,
    pub credential_version: u32,
    /// `key_revoked` (HTTP 401) or `permission_denied` (HTTP 403).
    pub failure_code: String,
    pub failure_message: String,
    /// The Stripe call that was refused, e.g. `POST /v1/payment_intents`.
    pub stripe_operation: String,
    pub revoked_at: DateTime<Utc>,
}

/// A delivery signed with the workspace's webhook secret arrived and was accepted.
/// Recorded on the first one, on the first after refusals, and at most hourly besides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceWebhookVerified {
    pub workspace_id: String,
    pub stripe_event_id: String,
    pub event_type: String,
    pub verified_at: DateTime<Utc>,
}

/// Deliveries started being refused for their signature or ownership (recorded once,
/// until a verified delivery arrives).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceWebhookFailing {
    pub workspace_id: String,
    /// The refusal's code, e.g. `signature_mismatch`.
    pub code: String,
    pub failing_since: DateTime<Utc>,
}

/// How a workspace takes payments: its own stored keys, or Stripe Connect (the
/// platform's key acting on the workspace's connected account).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum StripeConnection {
    Keys,
    Connect,
}

impl StripeConnection {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Keys => "keys",
            Self::Connect => "connect",
        }
    }
}

/// The workspace's connected account was created on the platform (once; a new one only
/// after the previous one was deauthorized).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceStripeConnectAccountCreated {
    pub workspace_id: String,
    pub account_id: String,
    /// `express` or `standard`.
    pub account_type: String,
    pub charges_enabled: bool,
    pub payouts_enabled: bool,
    pub details_submitted: bool,
    #[serde(default)]
    pub requirements_due: Vec<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// An onboarding link was handed to the workspace's admin (the link itself, a bearer
/// URL, is not kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceStripeOnboardingLinkIssued {
    pub workspace_id: String,
    pub account_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    pub issued_by: String,
    pub issued_at: DateTime<Utc>,
}

/// Stripe reported the connected account with another status (`account.updated`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceStripeConnectAccountUpdated {
    pub workspace_id: String,
    pub account_id: String,
    pub charges_enabled: bool,
    pub payouts_enabled: bool,
    pub details_submitted: bool,
    #[serde(default)]
    pub requirements_due: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe_event_id: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// The platform lost access to the connected account: the workspace disconnected it
/// (`account.application.deauthorized`), or Stripe refused a call on it (403
/// `account_invalid`). New paid sessions are refused until it connects again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceStripeConnectDeauthorized {
    pub workspace_id: String,
    pub account_id: String,
    /// `webhook` or the refused call, e.g. `POST /v1/payment_intents`.
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe_event_id: Option<String>,
    pub deauthorized_at: DateTime<Utc>,
}

/// New payments of the workspace go through this connection from now on; intents made
/// earlier keep the one they were created with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceStripeConnectionSwitched {
    pub workspace_id: String,
    pub connection: StripeConnection,
    pub switched_by: String,
    pub switched_at: DateTime<Utc>,
}

/// A connected account's health: `valid` once Stripe enables charges, `pending` while
/// onboarding is unfinished, `invalid` (with a code and what to do) when access was lost
/// or Stripe needs more before it charges again. The one rule, for the aggregate and the
/// read models.
pub fn connect_health(
    charges_enabled: bool,
    details_submitted: bool,
    deauthorized: bool,
) -> (HealthStatus, Option<(&'static str, &'static str)>) {
    if deauthorized {
        return (
            HealthStatus::Invalid,
            Some((
                "account_deauthorized",
                "The Stripe account was disconnected from the platform: connect it again (onboarding) or switch to your own keys.",
            )),
        );
    }
    if charges_enabled {
        return (HealthStatus::Valid, None);
    }
    if !details_submitted {
        return (HealthStatus::Pending, None);
    }
    (
        HealthStatus::Invalid,
        Some((
            "connect_requirements_due",
            "Stripe needs more information before the account may take payments: finish the requirements listed (a fresh onboarding link leads there).",
        )),
    )
}

/// Credential health as Manage Web and the payment path see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Unconfigured,
    Pending,
    Valid,
    Invalid,
}

impl HealthStatus {
    pub const ALL: [HealthStatus; 4] = [
        Self::Unconfigured,
        Self::Pending,
        Self::Valid,
        Self::Invalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unconfigured => "unconfigured",
            Self::Pending => "pending",
            Self::Valid => "valid",
            Self::Invalid => "invalid",
        }
    }
}

/// The failure code that means "Stripe did not answer", as opposed to "Stripe said no".
pub const STRIPE_UNREACHABLE: &str = "stripe_unreachable";

impl WorkspaceStripeCredentialsValidationFailed {
    /// An unreachable Stripe leaves the set `pending` (retried in the background);
    /// any answer from Stripe that refuses the set makes it `invalid`.
    pub fn health_status(&self) -> HealthStatus {
        if self.failure_code == STRIPE_UNREACHABLE {
            HealthStatus::Pending
        } else {
            HealthStatus::Invalid
        }
    }
}
