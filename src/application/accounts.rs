//! Which Stripe account a call acts on, and with which key: the workspace's own key of
//! a credential version (read from the vault), or the platform's key on the workspace's
//! connected account. Payments, webhooks, reconciliation and Connect ask here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use roampay_events::{StripeConnection, StripeMode};
use secrecy::SecretString;

use super::connect::{ConnectError, ConnectSettings};
use crate::domain::charging_intent::aggregate::Payment;
use crate::domain::charging_intent::ChargingIntent;
use crate::domain::workspace_stripe_profile::WorkspaceStripeProfile;
use crate::infra::stripe::{key_digest, StripeAccount};
use crate::infra::vault::{SecretField, SecretVault};

/// Which workspace and credential version each key read from the vault belongs to.
#[derive(Default)]
pub struct KeyOwners(Mutex<HashMap<[u8; 32], (String, u32)>>);

impl KeyOwners {
    pub fn remember(&self, key: &SecretString, workspace_id: &str, version: u32) {
        let mut owners = self.0.lock().expect("key owners");
        owners
            .entry(key_digest(key))
            .or_insert_with(|| (workspace_id.to_string(), version));
    }

    pub fn owner(&self, key: &SecretString) -> Option<(String, u32)> {
        self.0
            .lock()
            .expect("key owners")
            .get(&key_digest(key))
            .cloned()
    }
}

pub struct Accounts {
    vault: Arc<dyn SecretVault>,
    /// Which workspace each key read from the vault belongs to (for refused keys).
    owners: Arc<KeyOwners>,
    connect: Option<ConnectSettings>,
}

impl Accounts {
    pub fn new(
        vault: Arc<dyn SecretVault>,
        owners: Arc<KeyOwners>,
        connect: Option<ConnectSettings>,
    ) -> Self {
        Self {
            vault,
            owners,
            connect,
        }
    }

    /// The platform's Connect settings, or `NotEnabled`.
    pub fn connect_settings(&self) -> Result<&ConnectSettings, ConnectError> {
        self.connect.as_ref().ok_or(ConnectError::NotEnabled)
    }

    /// The secret key an intent must use: the one of the credential version it was
    /// created under (a rotation since then does not matter).
    pub async fn secret_key_for(
        &self,
        profile: &WorkspaceStripeProfile,
        workspace_id: &str,
        version: u32,
    ) -> Result<SecretString, String> {
        let k = profile
            .secret_key_for(version)
            .ok_or_else(|| format!("no secret key for credential version {version}"))?;
        let key = self
            .vault
            .get(
                workspace_id,
                SecretField::SecretKey,
                k.version,
                &k.secret.fingerprint,
            )
            .await
            .map_err(|e| e.to_string())?;
        self.owners.remember(&key, workspace_id, version);
        Ok(key)
    }

    /// The account an intent's payment lives in: the connected account it was created
    /// on, or the workspace's key of the credential version it was created under.
    pub async fn account_for_payment(
        &self,
        profile: &WorkspaceStripeProfile,
        ws: &str,
        payment: &Payment,
    ) -> Result<StripeAccount, String> {
        match &payment.stripe_account_id {
            Some(account) => {
                let connect = self
                    .connect_settings()
                    .map_err(|_| "a connect-mode intent, but Connect is off".to_string())?;
                Ok(StripeAccount::connected(
                    connect.platform_key.clone(),
                    account,
                ))
            }
            None => Ok(StripeAccount::own(
                self.secret_key_for(profile, ws, payment.credential_version)
                    .await?,
            )),
        }
    }

    /// The account a webhook's PaymentIntent is read from: the connected account the
    /// event came from, or the workspace's active key.
    pub async fn account_of_event(
        &self,
        profile: &WorkspaceStripeProfile,
        ws: &str,
        connect_account: Option<&str>,
    ) -> Result<StripeAccount, String> {
        match connect_account {
            Some(account) => {
                let connect = self.connect_settings().map_err(|e| e.to_string())?;
                Ok(StripeAccount::connected(
                    connect.platform_key.clone(),
                    account,
                ))
            }
            None => Ok(StripeAccount::own(
                self.secret_key_for(profile, ws, profile.active_version())
                    .await?,
            )),
        }
    }

    /// The account new payments of the workspace go to (its connection now).
    pub async fn workspace_account(
        &self,
        profile: &WorkspaceStripeProfile,
        ws: &str,
    ) -> Result<StripeAccount, String> {
        self.connection_account(profile, ws, None).await
    }

    /// The account of a connection of the workspace (`None`: the one in use).
    pub async fn connection_account(
        &self,
        profile: &WorkspaceStripeProfile,
        ws: &str,
        connection: Option<StripeConnection>,
    ) -> Result<StripeAccount, String> {
        match (connection.or(profile.connection()), &profile.connect) {
            (Some(StripeConnection::Connect), Some(a)) => {
                let connect = self.connect_settings().map_err(|_| {
                    "the workspace is in connect mode, but Connect is off".to_string()
                })?;
                Ok(StripeAccount::connected(
                    connect.platform_key.clone(),
                    &a.account_id,
                ))
            }
            (Some(StripeConnection::Connect), None) => {
                Err("the workspace has no connected account".to_string())
            }
            _ => Ok(StripeAccount::own(
                self.secret_key_for(profile, ws, profile.active_version())
                    .await?,
            )),
        }
    }

    /// Whether the workspace's payments are in live mode: the platform's mode in
    /// connect mode, the keys' otherwise.
    pub fn workspace_livemode(&self, profile: &WorkspaceStripeProfile) -> bool {
        match profile.connection() {
            Some(StripeConnection::Connect) => self
                .connect
                .as_ref()
                .is_some_and(|c| c.mode == StripeMode::Live),
            _ => profile
                .credentials
                .as_ref()
                .is_some_and(|c| c.mode == StripeMode::Live),
        }
    }

    /// The application fee a connect-mode payment of the workspace carries.
    pub fn application_fee_bps(&self, profile: &WorkspaceStripeProfile) -> Option<u32> {
        let connect = self.connect.as_ref()?;
        Some(
            profile
                .settings
                .application_fee_bps
                .unwrap_or(connect.default_fee_bps),
        )
    }

    /// The key Stripe.js starts with for this intent: the platform's for a PaymentIntent
    /// on a connected account (with `{stripeAccount}`), the workspace's own otherwise.
    pub fn publishable_key_for(
        &self,
        profile: &WorkspaceStripeProfile,
        intent: &ChargingIntent,
    ) -> Option<String> {
        let connected = intent
            .payment
            .as_ref()
            .is_some_and(|p| p.stripe_account_id.is_some());
        if connected {
            return self.connect.as_ref().map(|c| c.publishable_key.clone());
        }
        profile
            .credentials
            .as_ref()
            .map(|c| c.publishable_key.clone())
    }

    /// What Stripe.js on a driver's browser starts with for the workspace's new
    /// payments: the publishable key, and in connect mode the connected account.
    pub fn browser_keys(
        &self,
        profile: &WorkspaceStripeProfile,
    ) -> (Option<String>, Option<String>) {
        match profile.connected_account() {
            Some(a) => (
                self.connect.as_ref().map(|c| c.publishable_key.clone()),
                Some(a.account_id.clone()),
            ),
            None => (
                profile
                    .credentials
                    .as_ref()
                    .map(|c| c.publishable_key.clone()),
                None,
            ),
        }
    }
}
