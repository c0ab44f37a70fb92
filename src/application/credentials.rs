//! Workspace Stripe credentials and roaming settings: read, change (save, rotate,
//! remove), and validate with Stripe — waiting a bounded time, then in the background.

use std::sync::Arc;

use cqrs_es::AggregateError;
use roampay_events::HealthStatus;

use roampay_projections::Db;

use super::accounts::Accounts;
use super::connect::Connect;
use super::StoreFault;
use crate::domain::workspace_stripe_profile::credentials::{
    PublishableKey, StripeSecretKey, WebhookSigningSecret,
};
use crate::domain::workspace_stripe_profile::{
    CheckTarget, PurgeWorkspaceStripeProfile, RemoveWorkspaceStripeCredentials,
    RevokeWorkspaceStripeCredentials, SaveWorkspaceStripeCredentials, UpdateWorkspaceOcpiConfig,
    ValidateWorkspaceStripeCredentials, ValidationScope, WorkspaceStripeProfile,
    WorkspaceStripeProfileCommand as Cmd, WorkspaceStripeProfileError as E,
};
use crate::infra::clock::Clock;
use crate::infra::store::{Aggregates, Metadata};
use crate::infra::stripe::{CredentialCheck, CredentialProbe, StripeGateway};
use crate::infra::vault::{SecretField, SecretVault};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The first save (or the first after a removal) must carry all three values.
    #[error("{0}")]
    IncompleteCredentials(String),
    #[error("{0}")]
    CredentialModeMismatch(String),
    #[error("this workspace has no Stripe credentials to validate")]
    NotConfigured,
    #[error("the configuration was changed by someone else at the same moment")]
    Conflict,
    #[error(transparent)]
    Connect(#[from] super::connect::ConnectError),
    #[error(transparent)]
    Store(#[from] StoreFault),
}

impl From<AggregateError<E>> for CredentialError {
    fn from(err: AggregateError<E>) -> Self {
        match err {
            AggregateError::UserError(e @ E::IncompleteCredentials) => {
                Self::IncompleteCredentials(e.to_string())
            }
            AggregateError::UserError(e @ E::CredentialModeMismatch { .. }) => {
                Self::CredentialModeMismatch(e.to_string())
            }
            AggregateError::UserError(E::CredentialsNotConfigured) => Self::NotConfigured,
            // Every retry of a save found its version taken again.
            AggregateError::UserError(E::StaleSave { .. }) => Self::Conflict,
            AggregateError::AggregateConflict => Self::Conflict,
            other => Self::Store(StoreFault::of(other)),
        }
    }
}

/// A change of the OCPI config, already parsed; `None` leaves a part as it is.
#[derive(Debug, Default)]
pub struct ConfigChange {
    pub settings: UpdateWorkspaceOcpiConfig,
    /// `Some(None)`: remove the credential set.
    pub stripe: Option<Option<CredentialChange>>,
    /// Switch new payments to the stored keys or the connected account.
    pub connection: Option<roampay_events::StripeConnection>,
}

/// Any subset of a credential set (one secret can be rotated alone).
#[derive(Debug, Default)]
pub struct CredentialChange {
    pub publishable_key: Option<PublishableKey>,
    pub secret_key: Option<StripeSecretKey>,
    pub webhook_signing_secret: Option<WebhookSigningSecret>,
}

impl ConfigChange {
    fn has_settings(&self) -> bool {
        let s = &self.settings;
        s.allow_guest_access.is_some()
            || s.allow_user_registration.is_some()
            || s.pre_auth_cents.is_some()
            || s.currency.is_some()
            || s.application_fee_bps.is_some()
    }
}

/// The workspace's configuration as its admin sees it: the profile, and how many
/// webhook deliveries were refused in the last 24 h.
pub struct WorkspaceConfig {
    pub profile: WorkspaceStripeProfile,
    pub webhook_rejected_24h: i64,
    /// Connect mode: the fee its payments carry (`None` with Connect off).
    pub application_fee_bps: Option<u32>,
}

/// Credentials and roaming settings: the profile's use cases.
pub struct Credentials {
    pub(super) profiles: Arc<Aggregates<WorkspaceStripeProfile>>,
    pub(super) vault: Arc<dyn SecretVault>,
    /// Stripe itself, not watched: a refused key here is the check's answer.
    pub(super) stripe: Arc<dyn StripeGateway>,
    pub(super) db: Db,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) connect: Arc<Connect>,
    pub(super) accounts: Arc<Accounts>,
    /// How long a credential save waits for the Stripe round trip before answering.
    pub(super) validation_wait: std::time::Duration,
}

impl Credentials {
    /// The profile now (read-your-writes) and the webhook refusals of the last day.
    pub async fn workspace_config(&self, ws: &str) -> Result<WorkspaceConfig, CredentialError> {
        let profile = self.workspace_profile(ws).await?;
        let day_ago = self.clock.now() - chrono::Duration::hours(24);
        let rejected = roampay_projections::audit_log::rejected_since(&self.db, ws, day_ago).await;
        Ok(WorkspaceConfig {
            application_fee_bps: self.accounts.application_fee_bps(&profile),
            profile,
            webhook_rejected_24h: rejected.map_err(StoreFault::of_sqlx)?,
        })
    }

    /// The workspace's profile as it is now (read-your-writes).
    pub async fn workspace_profile(
        &self,
        ws: &str,
    ) -> Result<WorkspaceStripeProfile, CredentialError> {
        Ok(self.profiles.load(ws).await?)
    }

    /// Credentials first: they are the only part the aggregate can still refuse, so a
    /// refusal leaves the whole change unsaved. New credentials are then validated.
    pub async fn change_config(
        self: &Arc<Self>,
        ws: &str,
        change: ConfigChange,
        meta: &Metadata,
    ) -> Result<WorkspaceConfig, CredentialError> {
        let now = self.clock.now();
        let has_settings = change.has_settings();
        let validate = matches!(change.stripe, Some(Some(_)));
        if change.settings.application_fee_bps.is_some() {
            self.connect.connect_settings()?; // a fee means nothing without Connect
        }
        match change.stripe {
            Some(Some(c)) => {
                let cmd = SaveWorkspaceStripeCredentials {
                    workspace_id: ws.to_string(),
                    publishable_key: c.publishable_key,
                    secret_key: c.secret_key,
                    webhook_signing_secret: c.webhook_signing_secret,
                    fingerprints: Default::default(),
                    stored_as: 0,
                    actor: meta.actor.clone(),
                    at: now,
                };
                self.save_credentials(cmd, meta).await?;
            }
            Some(None) => {
                let cmd = Cmd::RemoveWorkspaceStripeCredentials(RemoveWorkspaceStripeCredentials {
                    workspace_id: ws.to_string(),
                    actor: meta.actor.clone(),
                    at: now,
                });
                self.profiles.execute(ws, cmd, meta).await?;
            }
            None => {}
        }
        if has_settings {
            let mut cmd = change.settings;
            cmd.workspace_id = ws.to_string();
            cmd.actor = meta.actor.clone();
            cmd.at = now;
            self.profiles
                .execute(ws, Cmd::UpdateWorkspaceOcpiConfig(cmd), meta)
                .await?;
        }
        if validate {
            self.validate_credentials(ws, ValidationScope::UnlessValid, meta)
                .await?;
        }
        // Last: the keys saved above may be the target, proven by now.
        if let Some(to) = change.connection {
            self.connect.switch_connection(ws, to, meta).await?;
        }
        self.workspace_config(ws).await
    }

    /// `ValidateWorkspaceStripeCredentials`, waiting at most `validation_wait`; past
    /// that the check goes on in the background and the set stays `pending`.
    pub async fn validate_credentials(
        self: &Arc<Self>,
        ws: &str,
        scope: ValidationScope,
        meta: &Metadata,
    ) -> Result<WorkspaceConfig, CredentialError> {
        let services = self.clone();
        let (id, meta) = (ws.to_string(), meta.clone());
        let task = tokio::spawn(async move { services.run_validation(&id, scope, &meta).await });
        match tokio::time::timeout(self.validation_wait, task).await {
            Ok(Ok(result)) => result?,
            Ok(Err(join)) => return Err(StoreFault::Internal(join.to_string()).into()),
            Err(_) => {} // still running: the answer shows `pending`
        }
        self.workspace_config(ws).await
    }

    /// Saves a credential set: the secrets' fingerprints made, the new ones stored in
    /// the vault under the version the profile hands out, then the save recorded. A
    /// concurrent save that took the version makes it plan and store again.
    async fn save_credentials(
        &self,
        mut cmd: SaveWorkspaceStripeCredentials,
        meta: &Metadata,
    ) -> Result<(), CredentialError> {
        let ws = cmd.workspace_id.clone();
        let vault_failed = |e: crate::infra::vault::VaultError| StoreFault::Internal(e.to_string());
        if let Some(sk) = &cmd.secret_key {
            let fp = self
                .vault
                .fingerprint(&ws, SecretField::SecretKey, sk.secret());
            cmd.fingerprints.secret_key = Some(fp.await.map_err(vault_failed)?);
        }
        if let Some(wh) = &cmd.webhook_signing_secret {
            let field = SecretField::WebhookSigningSecret;
            let fp = self.vault.fingerprint(&ws, field, wh.secret());
            cmd.fingerprints.webhook_signing_secret = Some(fp.await.map_err(vault_failed)?);
        }
        const TRIES: usize = 5;
        for attempt in 1..=TRIES {
            let profile = self.profiles.load(&ws).await?;
            let Some(plan) = profile.save_plan(&cmd).map_err(AggregateError::UserError)? else {
                return Ok(()); // the same values again
            };
            for (field, fp) in &plan.store {
                let secret = match field {
                    SecretField::SecretKey => cmd.secret_key.as_ref().map(|k| k.secret()),
                    SecretField::WebhookSigningSecret => {
                        cmd.webhook_signing_secret.as_ref().map(|k| k.secret())
                    }
                    // Never a credential set's.
                    SecretField::OcpiPartnerToken | SecretField::OcpiIssuedToken => None,
                };
                let secret = secret.expect("a planned secret was given");
                let put = self.vault.put(&ws, *field, plan.version, fp, secret);
                put.await.map_err(vault_failed)?;
            }
            cmd.stored_as = plan.version;
            let save = Cmd::SaveWorkspaceStripeCredentials(cmd.clone());
            match self.profiles.execute(&ws, save, meta).await {
                Err(AggregateError::UserError(E::StaleSave { .. })) if attempt < TRIES => continue,
                done => return done.map(|_| ()).map_err(Into::into),
            }
        }
        unreachable!("the last try returns")
    }

    async fn run_validation(
        &self,
        ws: &str,
        scope: ValidationScope,
        meta: &Metadata,
    ) -> Result<(), CredentialError> {
        let profile = self.profiles.load(ws).await?;
        let checked = match profile
            .validation_target(scope)
            .map_err(AggregateError::UserError)?
        {
            None => None,
            Some(target) => {
                let check = self.check_credentials(ws, &profile, &target).await?;
                Some((target, check))
            }
        };
        let cmd = Cmd::ValidateWorkspaceStripeCredentials(ValidateWorkspaceStripeCredentials {
            workspace_id: ws.to_string(),
            scope,
            checked,
            at: self.clock.now(),
        });
        let after = self.profiles.execute(ws, cmd, meta).await?;
        count_revocation(ws, Some(&profile), &after);
        Ok(())
    }

    /// Proves again the valid sets last proven more than `every` ago (a key rolled or
    /// deleted in the Dashboard shows without any request). Stripe not answering
    /// leaves a valid set valid.
    pub async fn revalidate_valid(
        &self,
        every: chrono::Duration,
    ) -> Result<usize, CredentialError> {
        let meta = super::system("system:revalidator");
        let cutoff = self.clock.now() - every;
        let due = roampay_projections::credential_health::due_for_recheck(&self.db, cutoff, 100)
            .await
            .map_err(StoreFault::of_sqlx)?;
        for ws in &due {
            if let Err(e) = self
                .run_validation(ws, ValidationScope::Recheck, &meta)
                .await
            {
                tracing::warn!(workspace_id = %ws, error = %e, "periodic validation failed");
            }
        }
        Ok(due.len())
    }

    /// Checks again the credential sets left `pending` (Stripe was unreachable).
    pub async fn revalidate_pending(&self) -> Result<usize, CredentialError> {
        let meta = super::system("system:revalidator");
        let pending = roampay_projections::credential_health::pending(&self.db, 100)
            .await
            .map_err(|e| StoreFault::Internal(e.to_string()))?;
        for ws in &pending {
            if let Err(e) = self
                .run_validation(ws, ValidationScope::OnlyPending, &meta)
                .await
            {
                tracing::warn!(workspace_id = %ws, error = %e, "background validation failed");
            }
        }
        Ok(pending.len())
    }
}

/// A workspace in the support list: its credential health and how many webhook
/// deliveries were refused in the last 24 h.
pub struct WorkspaceListing {
    pub health: roampay_projections::credential_health::WorkspaceHealth,
    pub webhook_rejected_24h: i64,
}

impl Credentials {
    /// Workspaces by id (optionally of one health status), with their webhook refusals.
    pub async fn workspaces_by_health(
        &self,
        scope: &roampay_projections::db::WorkspaceScope,
        health: Option<&str>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<(Vec<WorkspaceListing>, bool), sqlx::Error> {
        use roampay_projections::{audit_log, credential_health};
        let (rows, has_more) =
            credential_health::list_workspaces(&self.db, scope, health, after, limit).await?;
        let ids: Vec<String> = rows.iter().map(|r| r.workspace_id.clone()).collect();
        let since = self.clock.now() - chrono::Duration::hours(24);
        let rejected = audit_log::rejected_since_by_workspace(&self.db, &ids, since).await?;
        let listed = rows
            .into_iter()
            .map(|health| WorkspaceListing {
                webhook_rejected_24h: rejected.get(&health.workspace_id).copied().unwrap_or(0),
                health,
            })
            .collect();
        Ok((listed, has_more))
    }
}

impl Credentials {
    /// The Stripe round trip for one credential set, its secret key read from the vault.
    async fn check_credentials(
        &self,
        ws: &str,
        profile: &WorkspaceStripeProfile,
        target: &CheckTarget,
    ) -> Result<CredentialCheck, CredentialError> {
        let key = self
            .vault
            .get(
                ws,
                SecretField::SecretKey,
                target.secret_key_version,
                &target.secret_key.fingerprint,
            )
            .await
            .map_err(|e| StoreFault::Internal(e.to_string()))?;
        let probe = CredentialProbe {
            workspace_id: ws,
            secret_key: &key,
            publishable_key: &target.publishable_key,
            mode: target.mode,
            currency: profile.settings.currency.as_str(),
            amount: crate::domain::money::PreAuthAmount::MIN,
        };
        Ok(self.stripe.check_credentials(&probe).await)
    }
}

impl Credentials {
    /// Stripe refused the key of `credential_version` with `http_status` (401 or 403):
    /// the workspace's active set becomes invalid if that key is the active one.
    pub async fn revoke_credentials(
        &self,
        ws: &str,
        credential_version: u32,
        http_status: u16,
        operation: &str,
    ) {
        let meta = super::system("system:stripe");
        let cmd = Cmd::RevokeWorkspaceStripeCredentials(RevokeWorkspaceStripeCredentials {
            workspace_id: ws.to_string(),
            credential_version,
            http_status,
            stripe_operation: operation.to_string(),
            at: self.clock.now(),
        });
        let before = self.profiles.load_recent(ws).await.ok();
        match self.profiles.execute(ws, cmd, &meta).await {
            Ok(after) => count_revocation(ws, before.as_ref(), &after),
            Err(e) => {
                tracing::error!(workspace_id = %ws, error = %e, "could not record that Stripe refused the workspace's key")
            }
        }
    }

    /// The workspace's secrets made unrecoverable (the vault's data key destroyed),
    /// then its credentials and roaming settings forgotten. Idempotent.
    pub async fn purge(&self, ws: &str, meta: &Metadata) -> Result<(), StoreFault> {
        self.vault
            .destroy(ws)
            .await
            .map_err(|e| StoreFault::Internal(e.to_string()))?;
        let forget = Cmd::PurgeWorkspaceStripeProfile(PurgeWorkspaceStripeProfile {
            workspace_id: ws.to_string(),
            actor: meta.actor.clone(),
            at: self.clock.now(),
        });
        self.profiles
            .execute(ws, forget, meta)
            .await
            .map_err(|e| StoreFault::Internal(e.to_string()))?;
        Ok(())
    }
}

/// Counts (and logs) an active set that a command made invalid because Stripe refused it.
fn count_revocation(
    ws: &str,
    before: Option<&WorkspaceStripeProfile>,
    after: &WorkspaceStripeProfile,
) {
    let was_invalid = before.is_some_and(|p| p.health_status() == HealthStatus::Invalid);
    let Some(c) = after.credentials.as_ref() else {
        return;
    };
    let code = c.health.failure_code.as_deref().unwrap_or_default();
    let revoked = matches!(code, "key_revoked" | "permission_denied");
    if !was_invalid && c.health.status == HealthStatus::Invalid && revoked {
        tracing::warn!(workspace_id = %ws, code, "Stripe refused the workspace's active key: paid sessions are refused until the credentials are fixed");
        crate::metrics::credential_revoked(code);
    }
}
