use chrono::{DateTime, Utc};

use roampay_events::{StripeConnection, StripeMode};

use crate::infra::stripe::connect::{AccountType, AccountView};
use crate::infra::stripe::CredentialCheck;

use super::credentials::{PublishableKey, StripeSecretKey, WebhookSigningSecret};
use crate::domain::money::{Currency, PreAuthAmount};

#[derive(Debug, Clone)]
pub enum WorkspaceStripeProfileCommand {
    SaveWorkspaceStripeCredentials(SaveWorkspaceStripeCredentials),
    ValidateWorkspaceStripeCredentials(ValidateWorkspaceStripeCredentials),
    UpdateWorkspaceOcpiConfig(UpdateWorkspaceOcpiConfig),
    RemoveWorkspaceStripeCredentials(RemoveWorkspaceStripeCredentials),
    RevokeWorkspaceStripeCredentials(RevokeWorkspaceStripeCredentials),
    RecordWebhookDelivery(RecordWebhookDelivery),
    PurgeWorkspaceStripeProfile(PurgeWorkspaceStripeProfile),
    RecordConnectAccount(RecordConnectAccount),
    RecordOnboardingLink(RecordOnboardingLink),
    RefreshConnectAccount(RefreshConnectAccount),
    DeauthorizeConnectAccount(DeauthorizeConnectAccount),
    SwitchStripeConnection(SwitchStripeConnection),
}

/// Save a new credential set, or rotate any part of the current one.
#[derive(Debug, Clone)]
pub struct SaveWorkspaceStripeCredentials {
    pub workspace_id: String,
    pub publishable_key: Option<PublishableKey>,
    pub secret_key: Option<StripeSecretKey>,
    pub webhook_signing_secret: Option<WebhookSigningSecret>,
    /// The vault's fingerprints of the given secrets (made by the credentials service:
    /// equal secrets, equal fingerprints).
    pub fingerprints: SecretFingerprints,
    /// The credential version the service stored the new secrets under, as the
    /// profile's [`super::WorkspaceStripeProfile::save_plan`] named it.
    pub stored_as: u32,
    pub actor: String,
    pub at: DateTime<Utc>,
}

/// Fingerprints of the secrets a save carries.
#[derive(Debug, Clone, Default)]
pub struct SecretFingerprints {
    pub secret_key: Option<String>,
    pub webhook_signing_secret: Option<String>,
}

/// Run the Stripe round trip for the current credential set.
#[derive(Debug, Clone)]
pub struct ValidateWorkspaceStripeCredentials {
    pub workspace_id: String,
    pub scope: ValidationScope,
    /// The set checked ([`super::WorkspaceStripeProfile::validation_target`]) and what
    /// Stripe said of it; `None` when nothing was checked.
    pub checked: Option<(CheckTarget, CredentialCheck)>,
    pub at: DateTime<Utc>,
}

/// Which credential set a validation run looks at: the candidate when there is one
/// (except for `Recheck`), else the active set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidationScope {
    /// An explicit request: always ask Stripe.
    Always,
    /// After a save: a set already `valid` (the same values saved again) is left alone;
    /// an `invalid` one is checked again, since the fix may have been made in Stripe.
    UnlessValid,
    /// Background retries: only sets still `pending`.
    OnlyPending,
    /// The periodic re-validation: the active set, when it is `valid`.
    Recheck,
}

/// Stripe refused the key of `credential_version` on a payment call (401 or 403).
/// Only the active set's own key is revoked: an older key rolled after a rotation
/// refusing to settle an old intent says nothing about the active set.
#[derive(Debug, Clone)]
pub struct RevokeWorkspaceStripeCredentials {
    pub workspace_id: String,
    pub credential_version: u32,
    pub http_status: u16,
    pub stripe_operation: String,
    pub at: DateTime<Utc>,
}

/// What became of a webhook delivery to this workspace: verified and accepted, or
/// refused for its signature or ownership (`refused` names the code).
#[derive(Debug, Clone)]
pub struct RecordWebhookDelivery {
    pub workspace_id: String,
    pub stripe_event_id: Option<String>,
    pub event_type: Option<String>,
    pub refused: Option<String>,
    pub at: DateTime<Utc>,
}

/// Change roaming settings; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default)]
pub struct UpdateWorkspaceOcpiConfig {
    pub workspace_id: String,
    pub allow_guest_access: Option<bool>,
    pub allow_user_registration: Option<bool>,
    pub pre_auth_cents: Option<PreAuthAmount>,
    pub currency: Option<Currency>,
    pub application_fee_bps: Option<u32>,
    pub actor: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct RemoveWorkspaceStripeCredentials {
    pub workspace_id: String,
    pub actor: String,
    pub at: DateTime<Utc>,
}

/// Forget the workspace's roaming settings and credentials (its data is purged).
#[derive(Debug, Clone)]
pub struct PurgeWorkspaceStripeProfile {
    pub workspace_id: String,
    pub actor: String,
    pub at: DateTime<Utc>,
}

/// Record the connected account Stripe created (or gave back, for the same idempotency
/// key) for the workspace.
#[derive(Debug, Clone)]
pub struct RecordConnectAccount {
    pub workspace_id: String,
    pub account: AccountView,
    pub account_type: AccountType,
    pub actor: String,
    pub at: DateTime<Utc>,
}

/// Record that an onboarding link was handed out.
#[derive(Debug, Clone)]
pub struct RecordOnboardingLink {
    pub workspace_id: String,
    pub account_id: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub actor: String,
    pub at: DateTime<Utc>,
}

/// Stripe's current word on the connected account (`account.updated`).
#[derive(Debug, Clone)]
pub struct RefreshConnectAccount {
    pub workspace_id: String,
    pub account: AccountView,
    pub stripe_event_id: Option<String>,
    pub at: DateTime<Utc>,
}

/// The platform lost access to the connected account.
#[derive(Debug, Clone)]
pub struct DeauthorizeConnectAccount {
    pub workspace_id: String,
    pub account_id: String,
    pub source: String,
    pub stripe_event_id: Option<String>,
    pub at: DateTime<Utc>,
}

/// New payments go through `to` from now on (it must be ready).
#[derive(Debug, Clone)]
pub struct SwitchStripeConnection {
    pub workspace_id: String,
    pub to: StripeConnection,
    pub actor: String,
    pub at: DateTime<Utc>,
}

/// The secrets a save stores in the vault before it is recorded: under which credential
/// version, and which (field and fingerprint) are new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavePlan {
    pub version: u32,
    pub store: Vec<(crate::infra::vault::SecretField, String)>,
}

/// The credential set a validation run checks.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckTarget {
    /// The candidate (else the active set).
    pub candidate: bool,
    pub version: u32,
    /// The vault version of its secret key, and the key's fingerprint there.
    pub secret_key_version: u32,
    pub secret_key: roampay_events::SecretRef,
    pub publishable_key: String,
    pub mode: StripeMode,
}
