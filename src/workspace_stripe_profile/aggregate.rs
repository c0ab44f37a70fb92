use chrono::{DateTime, Duration, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use roampay_events::{
    HealthStatus, SecretKeyKind, SecretRef, StripeMode, WorkspaceOcpiConfigUpdated,
    WorkspaceStripeCredentialsRemoved, WorkspaceStripeCredentialsUpdated,
    WorkspaceStripeCredentialsValidated, WorkspaceStripeCredentialsValidationFailed,
    WorkspaceStripeProfileEvent as Event, STRIPE_UNREACHABLE,
};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::command::*;
use super::error::WorkspaceStripeProfileError as Error;
use super::ProfileServices;
use crate::money::{Currency, PreAuthAmount};
use crate::stripe::CredentialCheck;
use crate::vault::SecretField;

/// How many replaced webhook signing secrets are remembered for the overlap window.
const WEBHOOK_SECRET_HISTORY: usize = 4;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceStripeProfile {
    pub workspace_id: Option<String>,
    pub settings: RoamingSettings,
    /// The last credential version handed out; never reused, also across removals.
    pub credential_version: u32,
    pub credentials: Option<Credentials>,
    /// Every secret key ever saved, so an intent can be settled with the key it was
    /// created under even after a rotation or a removal.
    pub secret_key_history: Vec<SecretKeyVersion>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoamingSettings {
    pub allow_guest_access: bool,
    pub allow_user_registration: bool,
    pub pre_auth_cents: PreAuthAmount,
    pub currency: Currency,
}

impl Default for RoamingSettings {
    fn default() -> Self {
        Self {
            allow_guest_access: false,
            allow_user_registration: false,
            pre_auth_cents: PreAuthAmount::DEFAULT,
            currency: Currency::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Credentials {
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
    pub version: u32,
    pub kind: SecretKeyKind,
    pub mode: StripeMode,
    pub secret: SecretRef,
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
    pub fn health_status(&self) -> HealthStatus {
        self.credentials
            .as_ref()
            .map_or(HealthStatus::Unconfigured, |c| c.health.status)
    }

    /// The secret key to use for an intent created under `credential_version`.
    pub fn secret_key_for(&self, credential_version: u32) -> Option<&SecretKeyVersion> {
        self.secret_key_history
            .iter()
            .rev()
            .find(|k| k.version <= credential_version)
    }

    async fn save(
        &self,
        cmd: SaveWorkspaceStripeCredentials,
        svc: &ProfileServices,
    ) -> Result<Vec<Event>, Error> {
        let current = self.credentials.as_ref();
        if current.is_none()
            && (cmd.publishable_key.is_none()
                || cmd.secret_key.is_none()
                || cmd.webhook_signing_secret.is_none())
        {
            return Err(Error::IncompleteCredentials);
        }
        // The mode of the resulting set: every key in it must agree.
        let pk_mode = cmd
            .publishable_key
            .as_ref()
            .map(|k| k.mode())
            .or(current.map(|c| c.mode));
        let sk_mode = cmd
            .secret_key
            .as_ref()
            .map(|k| k.mode())
            .or(current.map(|c| c.secret_key.mode));
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
        let vault_err = |e: crate::vault::VaultError| Error::Vault(e.to_string());

        let publishable_key = cmd
            .publishable_key
            .filter(|k| current.is_none_or(|c| c.publishable_key != k.as_str()))
            .map(|k| k.as_str().to_string());
        let mut secret_key = None;
        if let Some(sk) = &cmd.secret_key {
            let fp = svc
                .vault
                .fingerprint(ws, SecretField::SecretKey, sk.secret())
                .await
                .map_err(vault_err)?;
            if current.is_none_or(|c| c.secret_key.secret.fingerprint != fp) {
                secret_key = Some((sk, fp));
            }
        }
        let mut webhook = None;
        if let Some(wh) = &cmd.webhook_signing_secret {
            let fp = svc
                .vault
                .fingerprint(ws, SecretField::WebhookSigningSecret, wh.secret())
                .await
                .map_err(vault_err)?;
            if current.is_none_or(|c| c.current_webhook_secret().secret.fingerprint != fp) {
                webhook = Some((wh, fp));
            }
        }
        if publishable_key.is_none() && secret_key.is_none() && webhook.is_none() {
            return Ok(vec![]); // the same values again: nothing changes
        }

        let version = self.credential_version + 1;
        let mut event = WorkspaceStripeCredentialsUpdated {
            workspace_id: ws.clone(),
            credential_version: version,
            mode: pk_mode,
            publishable_key,
            secret_key: None,
            secret_key_kind: None,
            webhook_signing_secret: None,
            updated_by: cmd.actor,
            updated_at: cmd.at,
        };
        if let Some((sk, fp)) = secret_key {
            svc.vault
                .put(ws, SecretField::SecretKey, version, &fp, sk.secret())
                .await
                .map_err(vault_err)?;
            event.secret_key = Some(SecretRef {
                fingerprint: fp,
                last4: sk.last4().to_string(),
            });
            event.secret_key_kind = Some(sk.kind());
        }
        if let Some((wh, fp)) = webhook {
            svc.vault
                .put(
                    ws,
                    SecretField::WebhookSigningSecret,
                    version,
                    &fp,
                    wh.secret(),
                )
                .await
                .map_err(vault_err)?;
            event.webhook_signing_secret = Some(SecretRef {
                fingerprint: fp,
                last4: wh.last4().to_string(),
            });
        }
        Ok(vec![Event::WorkspaceStripeCredentialsUpdated(event)])
    }

    async fn validate(
        &self,
        cmd: ValidateWorkspaceStripeCredentials,
        svc: &ProfileServices,
    ) -> Result<Vec<Event>, Error> {
        let Some(creds) = &self.credentials else {
            return if cmd.scope != ValidationScope::Always {
                Ok(vec![])
            } else {
                Err(Error::CredentialsNotConfigured)
            };
        };
        let skip = match cmd.scope {
            ValidationScope::Always => false,
            ValidationScope::UnlessValid => creds.health.status == HealthStatus::Valid,
            ValidationScope::OnlyPending => creds.health.status != HealthStatus::Pending,
        };
        if skip {
            return Ok(vec![]);
        }
        let key_ref = &creds.secret_key;
        let key: SecretString = svc
            .vault
            .get(
                &cmd.workspace_id,
                SecretField::SecretKey,
                key_ref.version,
                &key_ref.secret.fingerprint,
            )
            .await
            .map_err(|e| Error::Vault(e.to_string()))?;
        let version = self.credential_version;
        Ok(match svc.stripe.check_credentials(&key, creds.mode).await {
            CredentialCheck::Valid { account_id } => {
                vec![Event::WorkspaceStripeCredentialsValidated(
                    WorkspaceStripeCredentialsValidated {
                        workspace_id: cmd.workspace_id,
                        credential_version: version,
                        mode: creds.mode,
                        account_id,
                        validated_at: cmd.at,
                    },
                )]
            }
            CredentialCheck::Failed { code, message } => {
                // Still unreachable: already recorded, nothing new to say.
                let already_pending = creds.health.status == HealthStatus::Pending
                    && creds.health.failure_code.as_deref() == Some(STRIPE_UNREACHABLE);
                if code == STRIPE_UNREACHABLE && already_pending {
                    return Ok(vec![]);
                }
                vec![Event::WorkspaceStripeCredentialsValidationFailed(
                    WorkspaceStripeCredentialsValidationFailed {
                        workspace_id: cmd.workspace_id,
                        credential_version: version,
                        failure_code: code.to_string(),
                        failure_message: message,
                        validated_at: cmd.at,
                    },
                )]
            }
        })
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
            updated_by: cmd.actor,
            updated_at: cmd.at,
        };
        let any = event.allow_guest_access.is_some()
            || event.allow_user_registration.is_some()
            || event.pre_auth_cents.is_some()
            || event.currency.is_some();
        if any {
            vec![Event::WorkspaceOcpiConfigUpdated(event)]
        } else {
            vec![]
        }
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

impl Aggregate for WorkspaceStripeProfile {
    const TYPE: &'static str = "WorkspaceStripeProfile";
    type Command = WorkspaceStripeProfileCommand;
    type Event = Event;
    type Error = Error;
    type Services = ProfileServices;

    async fn handle(
        &mut self,
        command: Self::Command,
        services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        use WorkspaceStripeProfileCommand as C;
        let events = match command {
            C::SaveWorkspaceStripeCredentials(cmd) => self.save(cmd, services).await?,
            C::ValidateWorkspaceStripeCredentials(cmd) => self.validate(cmd, services).await?,
            C::UpdateWorkspaceOcpiConfig(cmd) => self.update_config(cmd),
            C::RemoveWorkspaceStripeCredentials(cmd) => self.remove(cmd),
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
            }
            Event::WorkspaceStripeCredentialsUpdated(e) => {
                self.credential_version = e.credential_version;
                let secret_key = e.secret_key.map(|secret| SecretKeyVersion {
                    version: e.credential_version,
                    kind: e.secret_key_kind.unwrap_or(SecretKeyKind::Secret),
                    mode: e.mode,
                    secret,
                });
                if let Some(k) = &secret_key {
                    self.secret_key_history.push(k.clone());
                }
                let new_webhook = e.webhook_signing_secret.map(|secret| WebhookSecretVersion {
                    version: e.credential_version,
                    secret,
                    replaced_at: None,
                });
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
                        c.mode = e.mode;
                        c.account_id = None;
                        c.health = Health::pending();
                        c.updated_at = e.updated_at;
                        c.updated_by = e.updated_by;
                    }
                    (None, Some(sk), Some(pk), Some(wh)) => {
                        self.credentials = Some(Credentials {
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
            Event::WorkspaceStripeCredentialsValidated(e) => {
                if let Some(c) = self
                    .credentials
                    .as_mut()
                    .filter(|_| e.credential_version == self.credential_version)
                {
                    c.account_id = e.account_id;
                    c.health = Health {
                        status: HealthStatus::Valid,
                        checked_at: Some(e.validated_at),
                        failure_code: None,
                        failure_message: None,
                    };
                }
            }
            Event::WorkspaceStripeCredentialsValidationFailed(e) => {
                let status = e.health_status();
                if let Some(c) = self
                    .credentials
                    .as_mut()
                    .filter(|_| e.credential_version == self.credential_version)
                {
                    c.health = Health {
                        status,
                        checked_at: Some(e.validated_at),
                        failure_code: Some(e.failure_code),
                        failure_message: Some(e.failure_message),
                    };
                }
            }
            Event::WorkspaceStripeCredentialsRemoved(e) => {
                self.credential_version = e.credential_version;
                self.credentials = None;
            }
        }
    }
}
