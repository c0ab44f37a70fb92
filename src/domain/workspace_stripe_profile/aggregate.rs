use chrono::{DateTime, Duration, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use roampay_events::{
    HealthStatus, SecretKeyKind, SecretRef, StripeConnection, StripeMode,
    WorkspaceOcpiConfigPurged, WorkspaceOcpiConfigUpdated, WorkspaceStripeCandidatePromoted,
    WorkspaceStripeCandidateRejected, WorkspaceStripeCandidateSaved,
    WorkspaceStripeCredentialsRemoved, WorkspaceStripeCredentialsRevoked,
    WorkspaceStripeCredentialsUpdated, WorkspaceStripeCredentialsValidated,
    WorkspaceStripeCredentialsValidationFailed, WorkspaceStripeProfileEvent as Event,
    WorkspaceWebhookFailing, WorkspaceWebhookVerified, STRIPE_UNREACHABLE,
};
use serde::{Deserialize, Serialize};

use super::command::*;
mod connect;

use super::error::WorkspaceStripeProfileError as Error;
use crate::domain::money::{Currency, PreAuthAmount};
use crate::infra::stripe::CredentialCheck;
use crate::infra::vault::SecretField;
pub use connect::ConnectAccount;

/// What a refusal of a set that was valid means: the key was revoked, or a permission
/// taken away.
fn revocation_code(check_code: &str) -> &'static str {
    if check_code == "permission_denied" {
        "permission_denied"
    } else {
        "key_revoked"
    }
}

/// How many replaced webhook signing secrets are remembered for the overlap window.
const WEBHOOK_SECRET_HISTORY: usize = 4;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceStripeProfile {
    pub workspace_id: Option<String>,
    pub settings: RoamingSettings,
    /// The last credential version handed out; never reused, also across removals.
    pub credential_version: u32,
    /// The active set: the one payments use.
    pub credentials: Option<Credentials>,
    /// A changed set saved while the active one is valid, not proven yet.
    pub candidate: Option<Candidate>,
    /// Every secret key that was ever active, so an intent can be settled with the key
    /// it was created under even after a rotation or a removal.
    pub secret_key_history: Vec<SecretKeyVersion>,
    pub webhook: WebhookHealth,
    /// Stripe Connect: the workspace's connected account, if it ever started onboarding.
    #[serde(default)]
    pub connect: Option<ConnectAccount>,
    /// The connection the admin chose (`None`: the keys, when there are some).
    #[serde(default)]
    pub connection_choice: Option<StripeConnection>,
    /// Connected accounts created so far (names the next one's idempotency key).
    #[serde(default)]
    pub connect_accounts_created: u32,
}

/// A credential set waiting for Stripe's word before it replaces the active one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub version: u32,
    pub mode: StripeMode,
    pub publishable_key: String,
    pub secret_key: SecretKeyVersion,
    /// `pending` or `invalid` (a valid candidate is promoted at once).
    pub health: Health,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

/// What the workspace's webhook deliveries showed (transitions only).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WebhookHealth {
    pub verified_at: Option<DateTime<Utc>>,
    /// Set by the first refused delivery after the last verified one.
    pub failing_since: Option<DateTime<Utc>>,
}

/// A "still verified" fact is recorded at most this often.
const WEBHOOK_VERIFIED_EVERY: Duration = Duration::hours(1);

/// Whether the admin's webhook endpoint works, as Manage Web shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookStatus {
    Unverified,
    Verified,
    Failing,
}

impl WebhookStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unverified => "unverified",
            Self::Verified => "verified",
            Self::Failing => "failing",
        }
    }
}

impl WebhookHealth {
    /// `failing` while refusals of the last 24 h (`rejected_24h`) came after the last
    /// verified delivery.
    pub fn status(&self, rejected_24h: i64) -> WebhookStatus {
        if self.failing_since.is_some() && rejected_24h > 0 {
            WebhookStatus::Failing
        } else if self.verified_at.is_some() {
            WebhookStatus::Verified
        } else {
            WebhookStatus::Unverified
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoamingSettings {
    pub allow_guest_access: bool,
    pub allow_user_registration: bool,
    pub pre_auth_cents: PreAuthAmount,
    pub currency: Currency,
    /// Connect mode: the platform's fee in basis points (`None`: the platform default).
    #[serde(default)]
    pub application_fee_bps: Option<u32>,
}

impl Default for RoamingSettings {
    fn default() -> Self {
        Self {
            allow_guest_access: false,
            allow_user_registration: false,
            pre_auth_cents: PreAuthAmount::DEFAULT,
            currency: Currency::default(),
            application_fee_bps: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Credentials {
    /// The active set's credential version: intents created now carry it.
    pub version: u32,
    pub mode: StripeMode,
    pub publishable_key: String,
    pub secret_key: SecretKeyVersion,
    /// The current secret last; earlier ones carry when they were replaced.
    pub webhook_secrets: Vec<WebhookSecretVersion>,
    pub account_id: Option<String>,
    pub health: Health,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretKeyVersion {
    /// The version under which the key sits in the vault.
    pub version: u32,
    pub kind: SecretKeyKind,
    pub mode: StripeMode,
    pub secret: SecretRef,
    /// The credential version from which it was the active key.
    #[serde(default)]
    pub active_from: u32,
}

impl SecretKeyVersion {
    fn is_same_key(&self, other: &SecretKeyVersion) -> bool {
        self.version == other.version && self.secret.fingerprint == other.secret.fingerprint
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookSecretVersion {
    pub version: u32,
    pub secret: SecretRef,
    pub replaced_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub status: HealthStatus,
    pub checked_at: Option<DateTime<Utc>>,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
}

impl Health {
    pub fn unconfigured() -> Self {
        Self {
            status: HealthStatus::Unconfigured,
            checked_at: None,
            failure_code: None,
            failure_message: None,
        }
    }

    fn valid(at: DateTime<Utc>) -> Self {
        Self {
            status: HealthStatus::Valid,
            checked_at: Some(at),
            failure_code: None,
            failure_message: None,
        }
    }

    fn pending() -> Self {
        Self {
            status: HealthStatus::Pending,
            checked_at: None,
            failure_code: None,
            failure_message: None,
        }
    }
}

impl Credentials {
    pub fn current_webhook_secret(&self) -> &WebhookSecretVersion {
        self.webhook_secrets
            .last()
            .expect("a credential set always has a webhook secret")
    }

    /// The webhook secrets that verify at `now`: the current one, and any replaced less
    /// than `overlap` ago.
    pub fn active_webhook_secrets(
        &self,
        now: DateTime<Utc>,
        overlap: Duration,
    ) -> Vec<&WebhookSecretVersion> {
        self.webhook_secrets
            .iter()
            .filter(|s| s.replaced_at.is_none_or(|at| now < at + overlap))
            .collect()
    }
}

impl WorkspaceStripeProfile {
    /// The health of the connection new payments use.
    pub fn health(&self) -> Health {
        match self.connection() {
            Some(StripeConnection::Connect) => self
                .connect
                .as_ref()
                .map_or_else(Health::unconfigured, ConnectAccount::health),
            _ => self
                .credentials
                .as_ref()
                .map_or_else(Health::unconfigured, |c| c.health.clone()),
        }
    }

    pub fn health_status(&self) -> HealthStatus {
        self.health().status
    }

    /// The health of the stored keys, whichever connection is in use.
    pub fn keys_health_status(&self) -> HealthStatus {
        self.credentials
            .as_ref()
            .map_or(HealthStatus::Unconfigured, |c| c.health.status)
    }

    /// The secret key to use for an intent created under `credential_version`.
    pub fn secret_key_for(&self, credential_version: u32) -> Option<&SecretKeyVersion> {
        self.secret_key_history
            .iter()
            .rev()
            .find(|k| k.active_from <= credential_version)
    }

    /// The active set's credential version (the last handed out when nothing is active).
    pub fn active_version(&self) -> u32 {
        self.credentials
            .as_ref()
            .map_or(self.credential_version, |c| c.version)
    }

    /// The active set, when it may take new payments.
    pub fn serving(&self) -> Option<&Credentials> {
        self.credentials
            .as_ref()
            .filter(|c| c.health.status == HealthStatus::Valid)
    }

    /// What saving `cmd` would store in the vault: the credential version the new
    /// secrets go under and which of them are new (`None`: nothing changes). The
    /// credentials service stores them, then records the save with that version.
    pub fn save_plan(
        &self,
        cmd: &SaveWorkspaceStripeCredentials,
    ) -> Result<Option<SavePlan>, Error> {
        Ok(self.decide_save(cmd)?.map(|(plan, _)| plan))
    }

    fn save(&self, cmd: SaveWorkspaceStripeCredentials) -> Result<Vec<Event>, Error> {
        match self.decide_save(&cmd)? {
            None => Ok(vec![]), // the same values again: nothing changes
            Some((plan, _)) if plan.version != cmd.stored_as => Err(Error::StaleSave {
                stored_as: cmd.stored_as,
            }),
            Some((_, events)) => Ok(events),
        }
    }

    /// The save's plan and events, from the state and the command alone.
    fn decide_save(
        &self,
        cmd: &SaveWorkspaceStripeCredentials,
    ) -> Result<Option<(SavePlan, Vec<Event>)>, Error> {
        let current = self.credentials.as_ref();
        if current.is_none()
            && (cmd.publishable_key.is_none()
                || cmd.secret_key.is_none()
                || cmd.webhook_signing_secret.is_none())
        {
            return Err(Error::IncompleteCredentials);
        }
        // A valid active set keeps serving: key changes are made against the candidate
        // (the admin's latest word), or the active set when there is none.
        let serving = self.serving();
        let (base_pk, base_sk, base_mode) = match (serving.and(self.candidate.as_ref()), current) {
            (Some(c), _) => (Some(&c.publishable_key), Some(&c.secret_key), Some(c.mode)),
            (None, Some(c)) => (Some(&c.publishable_key), Some(&c.secret_key), Some(c.mode)),
            (None, None) => (None, None, None),
        };
        // The mode of the resulting set: every key in it must agree.
        let pk_mode = cmd.publishable_key.as_ref().map(|k| k.mode()).or(base_mode);
        let sk_mode = cmd
            .secret_key
            .as_ref()
            .map(|k| k.mode())
            .or(base_sk.map(|k| k.mode));
        let (Some(pk_mode), Some(sk_mode)) = (pk_mode, sk_mode) else {
            return Err(Error::IncompleteCredentials);
        };
        if pk_mode != sk_mode {
            return Err(Error::CredentialModeMismatch {
                publishable: pk_mode.as_str(),
                secret: sk_mode.as_str(),
            });
        }
        let ws = &cmd.workspace_id;
        let fingerprint =
            |given: &Option<String>| given.clone().ok_or(Error::IncompleteCredentials);

        let publishable_key = cmd
            .publishable_key
            .as_ref()
            .filter(|k| base_pk.is_none_or(|pk| pk != k.as_str()))
            .map(|k| k.as_str().to_string());
        let mut secret_key = None;
        if let Some(sk) = &cmd.secret_key {
            let fp = fingerprint(&cmd.fingerprints.secret_key)?;
            if base_sk.is_none_or(|k| k.secret.fingerprint != fp) {
                secret_key = Some((sk, fp));
            }
        }
        let mut webhook = None;
        if let Some(wh) = &cmd.webhook_signing_secret {
            let fp = fingerprint(&cmd.fingerprints.webhook_signing_secret)?;
            if current.is_none_or(|c| c.current_webhook_secret().secret.fingerprint != fp) {
                webhook = Some((wh, fp));
            }
        }
        let keys_change = publishable_key.is_some() || secret_key.is_some();
        if !keys_change && webhook.is_none() {
            return Ok(None);
        }

        let version = self.credential_version + 1;
        let mut plan = SavePlan {
            version,
            store: vec![],
        };
        let mut event = WorkspaceStripeCredentialsUpdated {
            workspace_id: ws.clone(),
            credential_version: version,
            mode: pk_mode,
            publishable_key: None,
            secret_key: None,
            secret_key_kind: None,
            webhook_signing_secret: None,
            updated_by: cmd.actor.clone(),
            updated_at: cmd.at,
        };
        if let Some((wh, fp)) = webhook {
            plan.store
                .push((SecretField::WebhookSigningSecret, fp.clone()));
            event.webhook_signing_secret = Some(SecretRef {
                fingerprint: fp,
                last4: wh.last4().to_string(),
            });
        }
        if let Some((_, fp)) = &secret_key {
            plan.store.push((SecretField::SecretKey, fp.clone()));
        }
        let (Some(active), Some(base_pk), Some(base_sk), true) =
            (serving, base_pk, base_sk, keys_change)
        else {
            // Nothing serves (or only the webhook secret changes): the set applies at once.
            if let Some((sk, fp)) = secret_key {
                event.secret_key = Some(SecretRef {
                    fingerprint: fp,
                    last4: sk.last4().to_string(),
                });
                event.secret_key_kind = Some(sk.kind());
            }
            event.publishable_key = publishable_key;
            return Ok(Some((
                plan,
                vec![Event::WorkspaceStripeCredentialsUpdated(event)],
            )));
        };
        let (secret, kind, secret_key_version) = match secret_key {
            Some((sk, fp)) => {
                let secret = SecretRef {
                    fingerprint: fp,
                    last4: sk.last4().to_string(),
                };
                (secret, sk.kind(), version)
            }
            None => (base_sk.secret.clone(), base_sk.kind, base_sk.version),
        };
        // The candidate first: a new webhook secret saved with it then applies at once
        // without changing the version payments use (the candidate's comes next).
        let mut events = vec![Event::WorkspaceStripeCandidateSaved(
            WorkspaceStripeCandidateSaved {
                workspace_id: ws.clone(),
                credential_version: version,
                mode: pk_mode,
                publishable_key: publishable_key.unwrap_or_else(|| base_pk.clone()),
                secret_key: secret,
                secret_key_kind: kind,
                secret_key_version,
                updated_by: cmd.actor.clone(),
                updated_at: cmd.at,
            },
        )];
        if event.webhook_signing_secret.is_some() {
            event.mode = active.mode;
            events.push(Event::WorkspaceStripeCredentialsUpdated(event));
        }
        Ok(Some((plan, events)))
    }

    /// The set a validation run with `scope` checks: the candidate when there is one
    /// (except for the periodic re-check), else the active set; `None` when `scope`
    /// leaves it alone. The credentials service reads its key from the vault, asks
    /// Stripe, and records the answer with `ValidateWorkspaceStripeCredentials`.
    pub fn validation_target(&self, scope: ValidationScope) -> Result<Option<CheckTarget>, Error> {
        let Some(creds) = &self.credentials else {
            return if scope != ValidationScope::Always {
                Ok(None)
            } else {
                Err(Error::CredentialsNotConfigured)
            };
        };
        if let Some(candidate) = self
            .candidate
            .as_ref()
            .filter(|_| scope != ValidationScope::Recheck)
        {
            if scope == ValidationScope::OnlyPending
                && candidate.health.status != HealthStatus::Pending
            {
                return Ok(None);
            }
            return Ok(Some(CheckTarget {
                candidate: true,
                version: candidate.version,
                secret_key_version: candidate.secret_key.version,
                secret_key: candidate.secret_key.secret.clone(),
                publishable_key: candidate.publishable_key.clone(),
                mode: candidate.mode,
            }));
        }
        let status = creds.health.status;
        let skip = match scope {
            ValidationScope::Always => false,
            ValidationScope::UnlessValid => status == HealthStatus::Valid,
            ValidationScope::OnlyPending => status != HealthStatus::Pending,
            ValidationScope::Recheck => status != HealthStatus::Valid,
        };
        Ok((!skip).then(|| CheckTarget {
            candidate: false,
            version: creds.version,
            secret_key_version: creds.secret_key.version,
            secret_key: creds.secret_key.secret.clone(),
            publishable_key: creds.publishable_key.clone(),
            mode: creds.mode,
        }))
    }

    /// Records Stripe's answer about the set the run checked (an answer about a set the
    /// profile no longer means changes nothing).
    fn validate(&self, mut cmd: ValidateWorkspaceStripeCredentials) -> Result<Vec<Event>, Error> {
        let Some(target) = self.validation_target(cmd.scope)? else {
            return Ok(vec![]);
        };
        let Some((checked, check)) = cmd.checked.take() else {
            return Ok(vec![]);
        };
        if checked != target {
            return Ok(vec![]);
        }
        match (&self.candidate, &self.credentials) {
            (Some(candidate), _) if target.candidate => {
                Ok(self.record_candidate_check(candidate, check, cmd.workspace_id, cmd.at))
            }
            (_, Some(creds)) => Ok(Self::record_active_check(creds, check, &cmd)),
            _ => Ok(vec![]),
        }
    }

    fn record_active_check(
        creds: &Credentials,
        check: CredentialCheck,
        cmd: &ValidateWorkspaceStripeCredentials,
    ) -> Vec<Event> {
        let status = creds.health.status;
        let version = creds.version;
        let ws = cmd.workspace_id.clone();
        match check {
            CredentialCheck::Valid { account_id } => {
                vec![Event::WorkspaceStripeCredentialsValidated(
                    WorkspaceStripeCredentialsValidated {
                        workspace_id: ws,
                        credential_version: version,
                        mode: creds.mode,
                        account_id,
                        validated_at: cmd.at,
                    },
                )]
            }
            CredentialCheck::Failed { code, message } => {
                // Still unreachable: already recorded, nothing new to say. A valid set
                // re-checked while Stripe is down stays valid.
                let already_pending = status == HealthStatus::Pending
                    && creds.health.failure_code.as_deref() == Some(STRIPE_UNREACHABLE);
                let keeps_serving = cmd.scope == ValidationScope::Recheck;
                if code == STRIPE_UNREACHABLE && (already_pending || keeps_serving) {
                    return vec![];
                }
                let was_valid = status == HealthStatus::Valid;
                match (was_valid, code) {
                    (true, "authentication_failed" | "permission_denied") => {
                        vec![Event::WorkspaceStripeCredentialsRevoked(
                            WorkspaceStripeCredentialsRevoked {
                                workspace_id: ws,
                                credential_version: version,
                                failure_code: revocation_code(code).into(),
                                failure_message: message,
                                stripe_operation: "credential check".into(),
                                revoked_at: cmd.at,
                            },
                        )]
                    }
                    _ => vec![Event::WorkspaceStripeCredentialsValidationFailed(
                        WorkspaceStripeCredentialsValidationFailed {
                            workspace_id: ws,
                            credential_version: version,
                            failure_code: code.to_string(),
                            failure_message: message,
                            validated_at: cmd.at,
                        },
                    )],
                }
            }
        }
    }

    fn record_candidate_check(
        &self,
        candidate: &Candidate,
        check: CredentialCheck,
        ws: String,
        at: DateTime<Utc>,
    ) -> Vec<Event> {
        match check {
            CredentialCheck::Valid { account_id } => {
                // A version handed out after the candidate's (a webhook secret saved
                // meanwhile) makes the promotion a new version again.
                let credential_version = if candidate.version == self.credential_version {
                    candidate.version
                } else {
                    self.credential_version + 1
                };
                vec![Event::WorkspaceStripeCandidatePromoted(
                    WorkspaceStripeCandidatePromoted {
                        workspace_id: ws,
                        candidate_version: candidate.version,
                        credential_version,
                        account_id,
                        promoted_at: at,
                    },
                )]
            }
            CredentialCheck::Failed { code, message } if code == STRIPE_UNREACHABLE => {
                if candidate.health.failure_code.as_deref() == Some(STRIPE_UNREACHABLE) {
                    return vec![];
                }
                vec![Event::WorkspaceStripeCredentialsValidationFailed(
                    WorkspaceStripeCredentialsValidationFailed {
                        workspace_id: ws,
                        credential_version: candidate.version,
                        failure_code: code.to_string(),
                        failure_message: message,
                        validated_at: at,
                    },
                )]
            }
            CredentialCheck::Failed { code, message } => {
                vec![Event::WorkspaceStripeCandidateRejected(
                    WorkspaceStripeCandidateRejected {
                        workspace_id: ws,
                        candidate_version: candidate.version,
                        failure_code: code.to_string(),
                        failure_message: message,
                        rejected_at: at,
                    },
                )]
            }
        }
    }

    /// A payment call was refused with the key of `cmd.credential_version`.
    fn revoke(&self, cmd: RevokeWorkspaceStripeCredentials) -> Vec<Event> {
        let Some(active) = self
            .credentials
            .as_ref()
            .filter(|c| c.health.status != HealthStatus::Invalid)
        else {
            return vec![];
        };
        let used = self.secret_key_for(cmd.credential_version);
        if !used.is_some_and(|k| k.is_same_key(&active.secret_key)) {
            return vec![]; // an older key: the active set is not concerned
        }
        let (code, message) = if cmd.http_status == 401 {
            (
                "key_revoked",
                "Stripe no longer accepts the secret key (it was rolled or deleted in the Dashboard): save a new one.",
            )
        } else {
            (
                "permission_denied",
                "Stripe refused the key a permission payments need: give the restricted key the PaymentIntents write permission, or save a new key.",
            )
        };
        vec![Event::WorkspaceStripeCredentialsRevoked(
            WorkspaceStripeCredentialsRevoked {
                workspace_id: cmd.workspace_id,
                credential_version: active.version,
                failure_code: code.into(),
                failure_message: message.into(),
                stripe_operation: cmd.stripe_operation,
                revoked_at: cmd.at,
            },
        )]
    }

    /// Transitions only: unverified/failing → verified, verified → failing, and a
    /// "still verified" fact at most hourly.
    fn record_webhook(&self, cmd: RecordWebhookDelivery) -> Vec<Event> {
        let w = &self.webhook;
        match cmd.refused {
            Some(code) if w.failing_since.is_none() => {
                vec![Event::WorkspaceWebhookFailing(WorkspaceWebhookFailing {
                    workspace_id: cmd.workspace_id,
                    code,
                    failing_since: cmd.at,
                })]
            }
            Some(_) => vec![],
            None if self.webhook_verification_due(cmd.at) => {
                vec![Event::WorkspaceWebhookVerified(WorkspaceWebhookVerified {
                    workspace_id: cmd.workspace_id,
                    stripe_event_id: cmd.stripe_event_id.unwrap_or_default(),
                    event_type: cmd.event_type.unwrap_or_default(),
                    verified_at: cmd.at,
                })]
            }
            None => vec![],
        }
    }

    /// Whether a verified delivery at `at` is worth recording.
    pub fn webhook_verification_due(&self, at: DateTime<Utc>) -> bool {
        let w = &self.webhook;
        w.failing_since.is_some()
            || w.verified_at
                .is_none_or(|v| at - v >= WEBHOOK_VERIFIED_EVERY)
    }

    fn update_config(&self, cmd: UpdateWorkspaceOcpiConfig) -> Vec<Event> {
        let s = &self.settings;
        let changed = |new: Option<_>, old| new.filter(|n| *n != old);
        let event = WorkspaceOcpiConfigUpdated {
            workspace_id: cmd.workspace_id,
            allow_guest_access: changed(cmd.allow_guest_access, s.allow_guest_access),
            allow_user_registration: changed(
                cmd.allow_user_registration,
                s.allow_user_registration,
            ),
            pre_auth_cents: cmd
                .pre_auth_cents
                .filter(|a| *a != s.pre_auth_cents)
                .map(PreAuthAmount::cents),
            currency: cmd
                .currency
                .filter(|c| *c != s.currency)
                .map(|c| c.as_str().to_string()),
            application_fee_bps: cmd
                .application_fee_bps
                .filter(|b| Some(*b) != s.application_fee_bps),
            updated_by: cmd.actor,
            updated_at: cmd.at,
        };
        let any = event.allow_guest_access.is_some()
            || event.allow_user_registration.is_some()
            || event.pre_auth_cents.is_some()
            || event.currency.is_some()
            || event.application_fee_bps.is_some();
        if any {
            vec![Event::WorkspaceOcpiConfigUpdated(event)]
        } else {
            vec![]
        }
    }

    /// The credentials removed (as an admin would), then everything else forgotten;
    /// nothing when there is nothing to forget.
    fn purge(&self, cmd: PurgeWorkspaceStripeProfile) -> Vec<Event> {
        let pristine = Self {
            workspace_id: self.workspace_id.clone(),
            credential_version: self.credential_version,
            connect_accounts_created: self.connect_accounts_created,
            ..Self::default()
        };
        if self.workspace_id.is_none() || *self == pristine {
            return vec![];
        }
        let mut events = self.remove(RemoveWorkspaceStripeCredentials {
            workspace_id: cmd.workspace_id.clone(),
            actor: cmd.actor.clone(),
            at: cmd.at,
        });
        events.push(Event::WorkspaceOcpiConfigPurged(
            WorkspaceOcpiConfigPurged {
                workspace_id: cmd.workspace_id,
                purged_by: cmd.actor,
                purged_at: cmd.at,
            },
        ));
        events
    }

    fn remove(&self, cmd: RemoveWorkspaceStripeCredentials) -> Vec<Event> {
        if self.credentials.is_none() {
            return vec![];
        }
        vec![Event::WorkspaceStripeCredentialsRemoved(
            WorkspaceStripeCredentialsRemoved {
                workspace_id: cmd.workspace_id,
                credential_version: self.credential_version + 1,
                removed_by: cmd.actor,
                removed_at: cmd.at,
            },
        )]
    }
}

impl WorkspaceStripeProfile {
    fn apply_updated(&mut self, e: WorkspaceStripeCredentialsUpdated) {
        self.credential_version = e.credential_version;
        let keys_change = e.secret_key.is_some() || e.publishable_key.is_some();
        let secret_key = e.secret_key.map(|secret| SecretKeyVersion {
            version: e.credential_version,
            kind: e.secret_key_kind.unwrap_or(SecretKeyKind::Secret),
            mode: e.mode,
            secret,
            active_from: e.credential_version,
        });
        if let Some(k) = &secret_key {
            self.secret_key_history.push(k.clone());
        }
        let new_webhook = e.webhook_signing_secret.map(|secret| WebhookSecretVersion {
            version: e.credential_version,
            secret,
            replaced_at: None,
        });
        if keys_change {
            self.candidate = None; // saved over: the keys apply at once
        }
        match (
            self.credentials.as_mut(),
            secret_key,
            e.publishable_key,
            new_webhook,
        ) {
            (Some(c), sk, pk, wh) => {
                if let Some(sk) = sk {
                    c.secret_key = sk;
                }
                if let Some(pk) = pk {
                    c.publishable_key = pk;
                }
                if let Some(wh) = wh {
                    if let Some(prev) = c.webhook_secrets.last_mut() {
                        prev.replaced_at = Some(e.updated_at);
                    }
                    c.webhook_secrets.push(wh);
                    let excess = c
                        .webhook_secrets
                        .len()
                        .saturating_sub(WEBHOOK_SECRET_HISTORY);
                    c.webhook_secrets.drain(..excess);
                }
                // While a candidate waits, a new webhook secret alone leaves the version
                // payments use as it is (the candidate's promotion makes the next one).
                if keys_change || self.candidate.is_none() {
                    c.version = e.credential_version;
                }
                c.mode = e.mode;
                // New keys are unproven; a new webhook secret alone changes nothing
                // Stripe checks.
                if keys_change {
                    c.account_id = None;
                    c.health = Health::pending();
                }
                c.updated_at = e.updated_at;
                c.updated_by = e.updated_by;
            }
            (None, Some(sk), Some(pk), Some(wh)) => {
                self.credentials = Some(Credentials {
                    version: e.credential_version,
                    mode: e.mode,
                    publishable_key: pk,
                    secret_key: sk,
                    webhook_secrets: vec![wh],
                    account_id: None,
                    health: Health::pending(),
                    updated_at: e.updated_at,
                    updated_by: e.updated_by,
                });
            }
            // A first save always carries all three (enforced in `save`).
            (None, ..) => {}
        }
    }

    fn apply_promoted(&mut self, e: WorkspaceStripeCandidatePromoted) {
        let Some(candidate) = self.candidate.take_if(|c| c.version == e.candidate_version) else {
            return;
        };
        self.credential_version = self.credential_version.max(e.credential_version);
        let Some(c) = self.credentials.as_mut() else {
            return;
        };
        let mut key = candidate.secret_key;
        if key.is_same_key(&c.secret_key) {
            key.active_from = c.secret_key.active_from;
        } else {
            key.active_from = e.credential_version;
            self.secret_key_history.push(key.clone());
        }
        c.version = e.credential_version;
        c.mode = candidate.mode;
        c.publishable_key = candidate.publishable_key;
        c.secret_key = key;
        c.account_id = e.account_id;
        c.health = Health::valid(e.promoted_at);
        c.updated_at = candidate.updated_at;
        c.updated_by = candidate.updated_by;
    }
}

impl Aggregate for WorkspaceStripeProfile {
    const TYPE: &'static str = "WorkspaceStripeProfile";
    type Command = WorkspaceStripeProfileCommand;
    type Event = Event;
    type Error = Error;
    /// None: `handle` decides from the state and the command alone (the credentials
    /// service reaches the vault and Stripe around it: ADR 0008).
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        use WorkspaceStripeProfileCommand as C;
        let events = match command {
            C::SaveWorkspaceStripeCredentials(cmd) => self.save(cmd)?,
            C::ValidateWorkspaceStripeCredentials(cmd) => self.validate(cmd)?,
            C::UpdateWorkspaceOcpiConfig(cmd) => self.update_config(cmd),
            C::RemoveWorkspaceStripeCredentials(cmd) => self.remove(cmd),
            C::RevokeWorkspaceStripeCredentials(cmd) => self.revoke(cmd),
            C::RecordWebhookDelivery(cmd) => self.record_webhook(cmd),
            C::PurgeWorkspaceStripeProfile(cmd) => self.purge(cmd),
            C::RecordConnectAccount(cmd) => self.record_account(cmd),
            C::RecordOnboardingLink(cmd) => self.record_link(cmd)?,
            C::RefreshConnectAccount(cmd) => self.refresh_account(cmd),
            C::DeauthorizeConnectAccount(cmd) => self.deauthorize(cmd),
            C::SwitchStripeConnection(cmd) => self.switch(cmd)?,
        };
        for event in events {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.workspace_id = Some(event.workspace_id().to_string());
        match event {
            Event::WorkspaceOcpiConfigUpdated(e) => {
                let s = &mut self.settings;
                if let Some(v) = e.allow_guest_access {
                    s.allow_guest_access = v;
                }
                if let Some(v) = e.allow_user_registration {
                    s.allow_user_registration = v;
                }
                if let Some(v) = e.pre_auth_cents.and_then(PreAuthAmount::parse) {
                    s.pre_auth_cents = v;
                }
                if let Some(v) = e.currency.as_deref().and_then(Currency::parse) {
                    s.currency = v;
                }
                if let Some(v) = e.application_fee_bps {
                    s.application_fee_bps = Some(v);
                }
            }
            Event::WorkspaceOcpiConfigPurged(_) => {
                *self = Self {
                    workspace_id: self.workspace_id.take(),
                    credential_version: self.credential_version,
                    connect_accounts_created: self.connect_accounts_created,
                    ..Self::default()
                };
            }
            Event::WorkspaceStripeCredentialsUpdated(e) => self.apply_updated(e),
            Event::WorkspaceStripeCredentialsValidated(e) => {
                if let Some(c) = self
                    .credentials
                    .as_mut()
                    .filter(|c| e.credential_version == c.version)
                {
                    c.account_id = e.account_id;
                    c.health = Health::valid(e.validated_at);
                }
            }
            Event::WorkspaceStripeCredentialsValidationFailed(e) => {
                let health = Health {
                    status: e.health_status(),
                    checked_at: Some(e.validated_at),
                    failure_code: Some(e.failure_code),
                    failure_message: Some(e.failure_message),
                };
                if let Some(c) = self
                    .candidate
                    .as_mut()
                    .filter(|c| c.version == e.credential_version)
                {
                    c.health = health;
                } else if let Some(c) = self
                    .credentials
                    .as_mut()
                    .filter(|c| c.version == e.credential_version)
                {
                    c.health = health;
                }
            }
            Event::WorkspaceStripeCredentialsRemoved(e) => {
                self.credential_version = e.credential_version;
                self.credentials = None;
                self.candidate = None;
            }
            Event::WorkspaceStripeCandidateSaved(e) => {
                self.credential_version = e.credential_version;
                self.candidate = Some(Candidate {
                    version: e.credential_version,
                    mode: e.mode,
                    publishable_key: e.publishable_key,
                    secret_key: SecretKeyVersion {
                        version: e.secret_key_version,
                        kind: e.secret_key_kind,
                        mode: e.mode,
                        secret: e.secret_key,
                        active_from: 0,
                    },
                    health: Health::pending(),
                    updated_at: e.updated_at,
                    updated_by: e.updated_by,
                });
            }
            Event::WorkspaceStripeCandidatePromoted(e) => self.apply_promoted(e),
            Event::WorkspaceStripeCandidateRejected(e) => {
                if let Some(c) = self
                    .candidate
                    .as_mut()
                    .filter(|c| c.version == e.candidate_version)
                {
                    c.health = Health {
                        status: HealthStatus::Invalid,
                        checked_at: Some(e.rejected_at),
                        failure_code: Some(e.failure_code),
                        failure_message: Some(e.failure_message),
                    };
                }
            }
            Event::WorkspaceStripeCredentialsRevoked(e) => {
                if let Some(c) = self
                    .credentials
                    .as_mut()
                    .filter(|c| c.version == e.credential_version)
                {
                    c.health = Health {
                        status: HealthStatus::Invalid,
                        checked_at: Some(e.revoked_at),
                        failure_code: Some(e.failure_code),
                        failure_message: Some(e.failure_message),
                    };
                }
            }
            Event::WorkspaceWebhookVerified(e) => {
                self.webhook.verified_at = Some(e.verified_at);
                self.webhook.failing_since = None;
            }
            Event::WorkspaceWebhookFailing(e) => {
                self.webhook.failing_since = Some(e.failing_since);
            }
            e @ (Event::WorkspaceStripeConnectAccountCreated(_)
            | Event::WorkspaceStripeOnboardingLinkIssued(_)
            | Event::WorkspaceStripeConnectAccountUpdated(_)
            | Event::WorkspaceStripeConnectDeauthorized(_)
            | Event::WorkspaceStripeConnectionSwitched(_)) => self.apply_connect(e),
        }
    }
}
