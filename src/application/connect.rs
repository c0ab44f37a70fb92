//! Stripe Connect: a workspace connects its Stripe account to the platform instead of
//! pasting keys. Onboarding (the connected account, created once, and fresh Account
//! Links), switching between keys and Connect, what Stripe reports of the account, and
//! which account each payment call acts on.

use std::sync::Arc;

use cqrs_es::AggregateError;
use roampay_events::{StripeConnection, StripeMode};
use secrecy::SecretString;

use roampay_projections::Db;

use super::StoreFault;
use crate::domain::workspace_stripe_profile::{
    DeauthorizeConnectAccount, RecordConnectAccount, RecordOnboardingLink, RefreshConnectAccount,
    SwitchStripeConnection, WorkspaceStripeProfile, WorkspaceStripeProfileCommand as Cmd,
    WorkspaceStripeProfileError as E,
};
use crate::infra::clock::Clock;
use crate::infra::store::{Aggregates, Metadata};
use crate::infra::stripe::connect::{
    AccountType, AccountView, ConnectGateway, CreateAccount, CreateAccountLink,
};
use crate::infra::stripe::CallError;

/// The platform's Connect settings; Connect is off without them.
#[derive(Clone)]
pub struct ConnectSettings {
    /// The platform's secret key: it acts on every connected account.
    pub platform_key: SecretString,
    /// Stripe.js on the driver's browser starts with it and `{stripeAccount}`.
    pub publishable_key: String,
    pub mode: StripeMode,
    /// Sign the platform's "events on connected accounts" endpoint: the current secret,
    /// then the one before a roll; none = not configured.
    pub webhook_secrets: Vec<SecretString>,
    /// The application fee of workspaces that did not set their own.
    pub default_fee_bps: u32,
    pub gateway: Arc<dyn ConnectGateway>,
}

impl std::fmt::Debug for ConnectSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectSettings")
            .field("publishable_key", &self.publishable_key)
            .field("mode", &self.mode)
            .field("default_fee_bps", &self.default_fee_bps)
            .finish_non_exhaustive()
    }
}

/// The largest application fee a workspace may set: 20 %.
pub const MAX_FEE_BPS: u32 = 2000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("Stripe Connect is not enabled on this platform")]
    NotEnabled,
    /// The connection to switch to cannot take payments: its health.
    #[error("the connection to switch to is {0}, not valid")]
    NotReady(&'static str),
    /// Stripe refused the request (its HTTP status and code).
    #[error("Stripe refused: {code}")]
    StripeRefused { status: u16, code: String },
    #[error("Stripe did not answer")]
    StripeUnavailable,
    #[error("the configuration was changed by someone else at the same moment")]
    Conflict,
    #[error(transparent)]
    Store(#[from] StoreFault),
}

impl From<AggregateError<E>> for ConnectError {
    fn from(e: AggregateError<E>) -> Self {
        match e {
            AggregateError::UserError(E::ConnectionNotReady(h)) => Self::NotReady(h),
            AggregateError::AggregateConflict => Self::Conflict,
            other => Self::Store(StoreFault::of(other)),
        }
    }
}

fn stripe_error(e: CallError) -> ConnectError {
    match e {
        e if e.is_transient() => ConnectError::StripeUnavailable,
        CallError::Api { status, code } => ConnectError::StripeRefused {
            status,
            code: code.unwrap_or_else(|| format!("http_{status}")),
        },
        CallError::Unreachable(_) => ConnectError::StripeUnavailable,
    }
}

/// What onboarding needs from the admin's app.
#[derive(Debug, Clone)]
pub struct OnboardingRequest {
    pub return_url: String,
    pub refresh_url: String,
    pub account_type: AccountType,
}

/// Where to send the admin.
#[derive(Debug, Clone)]
pub struct Onboarding {
    pub account_id: String,
    pub url: String,
}

/// Connect's use cases: onboarding, switching, and what Stripe reports of accounts.
pub struct Connect {
    pub(super) profiles: Arc<Aggregates<WorkspaceStripeProfile>>,
    pub(super) db: Db,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) settings: Option<ConnectSettings>,
}

impl Connect {
    pub(super) fn connect_settings(&self) -> Result<&ConnectSettings, ConnectError> {
        self.settings.as_ref().ok_or(ConnectError::NotEnabled)
    }

    /// The connected account (created once per workspace; again only after the last
    /// one was deauthorized), then a fresh onboarding link for it.
    pub async fn start_onboarding(
        &self,
        ws: &str,
        req: OnboardingRequest,
        meta: &Metadata,
    ) -> Result<Onboarding, ConnectError> {
        let connect = self.connect_settings()?;
        let profile = self.profiles.load(ws).await?;
        let account_id = match profile.onboarding_account() {
            Some(a) => a.account_id.clone(),
            None => {
                let create = CreateAccount {
                    workspace_id: ws.to_string(),
                    account_type: req.account_type,
                    idempotency_key: profile.next_account_key(ws),
                };
                let account = connect
                    .gateway
                    .create_account(&connect.platform_key, &create)
                    .await
                    .map_err(stripe_error)?;
                let id = account.id.clone();
                let cmd = Cmd::RecordConnectAccount(RecordConnectAccount {
                    workspace_id: ws.to_string(),
                    account,
                    account_type: req.account_type,
                    actor: meta.actor.clone(),
                    at: self.clock.now(),
                });
                self.profiles.execute(ws, cmd, meta).await?;
                id
            }
        };
        let link = CreateAccountLink {
            account_id: account_id.clone(),
            refresh_url: req.refresh_url,
            return_url: req.return_url,
        };
        let link = connect
            .gateway
            .create_account_link(&connect.platform_key, &link)
            .await
            .map_err(stripe_error)?;
        let cmd = Cmd::RecordOnboardingLink(RecordOnboardingLink {
            workspace_id: ws.to_string(),
            account_id: account_id.clone(),
            expires_at: link.expires_at,
            actor: meta.actor.clone(),
            at: self.clock.now(),
        });
        self.profiles.execute(ws, cmd, meta).await?;
        Ok(Onboarding {
            account_id,
            url: link.url,
        })
    }

    /// New payments go through `to` (which must be ready).
    pub async fn switch_connection(
        &self,
        ws: &str,
        to: StripeConnection,
        meta: &Metadata,
    ) -> Result<(), ConnectError> {
        if to == StripeConnection::Connect {
            self.connect_settings()?;
        }
        let cmd = Cmd::SwitchStripeConnection(SwitchStripeConnection {
            workspace_id: ws.to_string(),
            to,
            actor: meta.actor.clone(),
            at: self.clock.now(),
        });
        self.profiles.execute(ws, cmd, meta).await?;
        Ok(())
    }

    /// Stripe's word on a workspace's connected account (`account.updated`).
    pub(super) async fn refresh_connect_account(
        &self,
        ws: &str,
        account: AccountView,
        stripe_event_id: Option<String>,
        meta: &Metadata,
    ) -> Result<bool, StoreFault> {
        let cmd = Cmd::RefreshConnectAccount(RefreshConnectAccount {
            workspace_id: ws.to_string(),
            account,
            stripe_event_id,
            at: self.clock.now(),
        });
        self.record_connect(ws, cmd, meta).await
    }

    /// The platform lost access to the workspace's connected account.
    pub(super) async fn deauthorize_connect_account(
        &self,
        ws: &str,
        account_id: &str,
        source: &str,
        stripe_event_id: Option<String>,
        meta: &Metadata,
    ) -> Result<bool, StoreFault> {
        let cmd = Cmd::DeauthorizeConnectAccount(DeauthorizeConnectAccount {
            workspace_id: ws.to_string(),
            account_id: account_id.to_string(),
            source: source.to_string(),
            stripe_event_id,
            at: self.clock.now(),
        });
        self.record_connect(ws, cmd, meta).await
    }

    /// Whether the command recorded anything.
    async fn record_connect(
        &self,
        ws: &str,
        cmd: Cmd,
        meta: &Metadata,
    ) -> Result<bool, StoreFault> {
        let before = self
            .profiles
            .load_recent(ws)
            .await
            .map_err(StoreFault::of)?;
        let after = self
            .profiles
            .execute(ws, cmd, meta)
            .await
            .map_err(StoreFault::of)?;
        Ok(before != after)
    }

    /// Stripe refused a call on a connected account with 403 `account_invalid`: the
    /// platform no longer has access to it.
    pub async fn connect_access_lost(&self, account_id: &str, operation: &str) {
        let meta = super::system("system:stripe");
        let ws = match roampay_projections::credential_health::workspace_of_account(
            &self.db, account_id,
        )
        .await
        {
            Ok(Some(ws)) => ws,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(account = %account_id, error = %e, "could not find the workspace of a connected account Stripe refused");
                return;
            }
        };
        match self
            .deauthorize_connect_account(&ws, account_id, operation, None, &meta)
            .await
        {
            Ok(true) => {
                tracing::warn!(workspace_id = %ws, account = %account_id, "Stripe refused access to the workspace's connected account: paid sessions are refused until it connects again");
                crate::metrics::credential_revoked("account_deauthorized");
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(workspace_id = %ws, error = %e, "could not record a lost connected account")
            }
        }
    }
}
