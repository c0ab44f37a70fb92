//! Health that stays true: a Stripe answer of 401 to any call, or 403 to a PaymentIntent
//! call, made with a workspace's active key marks its credential set invalid at once
//! (`key_revoked` / `permission_denied`), audited and counted.
//!
//! The watch sits between the use cases and Stripe: every payment call goes through
//! it, so no use case can forget to report a refused key. Keys are told apart by a
//! digest recorded when the service reads a key from the vault (never the key itself).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use roampay_events::HealthStatus;
use secrecy::SecretString;

use super::Services;
use crate::stripe::{
    key_digest, CallError, Capture, CreatePaymentIntent, CreateRefund, CredentialCheck,
    CredentialProbe, DisputeView, PaymentIntentPage, PaymentIntentView, RefundView, StripeAccount,
    StripeGateway,
};
use crate::workspace_stripe_profile::{
    RevokeWorkspaceStripeCredentials, WorkspaceStripeProfileCommand as Cmd,
};

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

    fn owner(&self, key: &SecretString) -> Option<(String, u32)> {
        self.0
            .lock()
            .expect("key owners")
            .get(&key_digest(key))
            .cloned()
    }
}

/// The Stripe gateway the use cases see: the real one, watched for refused keys.
pub struct Watched {
    inner: Arc<dyn StripeGateway>,
    owners: Arc<KeyOwners>,
    services: Weak<Services>,
}

impl Watched {
    pub fn new(
        inner: Arc<dyn StripeGateway>,
        owners: Arc<KeyOwners>,
        services: Weak<Services>,
    ) -> Self {
        Self {
            inner,
            owners,
            services,
        }
    }

    /// A 401 refuses the key itself, on any call; a 403 counts only on the
    /// PaymentIntent calls payments need (a key without, say, the Disputes permission
    /// still takes payments).
    async fn watch<T>(
        &self,
        on: &StripeAccount,
        operation: &str,
        result: Result<T, CallError>,
    ) -> Result<T, CallError> {
        // Connect mode: the platform's key is not the workspace's to revoke (a 401 stops
        // every connect-mode workspace: the operator's alert); a 403 `account_invalid`
        // says the platform lost access to the connected account.
        if let Some(account) = &on.connected {
            if matches!(&result, Err(CallError::Api { status: 401, .. })) {
                tracing::error!(operation, "Stripe refused the platform's key (401): connect-mode payments fail until ROAMPAY_PLATFORM_STRIPE_SECRET_KEY holds a valid key");
                crate::metrics::platform_key_refused();
            }
            if matches!(&result, Err(CallError::Api { status: 403, code: Some(c) }) if c == "account_invalid")
            {
                if let Some(services) = self.services.upgrade() {
                    services.connect_access_lost(account, operation).await;
                }
            }
            return result;
        }
        let key = &on.key;
        let refused = match &result {
            Err(CallError::Api { status: 401, .. }) => Some(401),
            Err(CallError::Api { status: 403, .. }) if operation.contains("/payment_intents") => {
                Some(403)
            }
            _ => None,
        };
        if let Some(status) = refused {
            let owner = self.owners.owner(key);
            if let (Some((ws, version)), Some(services)) = (owner, self.services.upgrade()) {
                services
                    .revoke_credentials(&ws, version, status, operation)
                    .await;
            }
        }
        result
    }
}

#[async_trait::async_trait]
impl StripeGateway for Watched {
    async fn check_credentials(&self, probe: &CredentialProbe<'_>) -> CredentialCheck {
        self.inner.check_credentials(probe).await
    }

    async fn create_payment_intent(
        &self,
        on: &StripeAccount,
        req: &CreatePaymentIntent,
    ) -> Result<PaymentIntentView, CallError> {
        let r = self.inner.create_payment_intent(on, req).await;
        self.watch(on, "POST /v1/payment_intents", r).await
    }

    async fn retrieve_payment_intent(
        &self,
        on: &StripeAccount,
        id: &str,
    ) -> Result<PaymentIntentView, CallError> {
        let r = self.inner.retrieve_payment_intent(on, id).await;
        self.watch(on, "GET /v1/payment_intents/{id}", r).await
    }

    async fn capture_payment_intent(
        &self,
        on: &StripeAccount,
        id: &str,
        amount: Capture,
        idempotency_key: &str,
    ) -> Result<PaymentIntentView, CallError> {
        let r = self
            .inner
            .capture_payment_intent(on, id, amount, idempotency_key)
            .await;
        self.watch(on, "POST /v1/payment_intents/{id}/capture", r)
            .await
    }

    async fn cancel_payment_intent(
        &self,
        on: &StripeAccount,
        id: &str,
        idempotency_key: &str,
    ) -> Result<PaymentIntentView, CallError> {
        let r = self
            .inner
            .cancel_payment_intent(on, id, idempotency_key)
            .await;
        self.watch(on, "POST /v1/payment_intents/{id}/cancel", r)
            .await
    }

    async fn create_refund(
        &self,
        on: &StripeAccount,
        req: &CreateRefund,
    ) -> Result<RefundView, CallError> {
        let r = self.inner.create_refund(on, req).await;
        self.watch(on, "POST /v1/refunds", r).await
    }

    async fn list_refunds(
        &self,
        on: &StripeAccount,
        payment_intent_id: &str,
    ) -> Result<Vec<RefundView>, CallError> {
        let r = self.inner.list_refunds(on, payment_intent_id).await;
        self.watch(on, "GET /v1/refunds", r).await
    }

    async fn list_disputes(
        &self,
        on: &StripeAccount,
        payment_intent_id: &str,
    ) -> Result<Vec<DisputeView>, CallError> {
        let r = self.inner.list_disputes(on, payment_intent_id).await;
        self.watch(on, "GET /v1/disputes", r).await
    }

    async fn list_payment_intents(
        &self,
        on: &StripeAccount,
        created_gte: Option<i64>,
        starting_after: Option<&str>,
    ) -> Result<PaymentIntentPage, CallError> {
        let r = self
            .inner
            .list_payment_intents(on, created_gte, starting_after)
            .await;
        self.watch(on, "GET /v1/payment_intents", r).await
    }
}

impl Services {
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
}

/// Counts (and logs) an active set that a command made invalid because Stripe refused it.
pub(super) fn count_revocation(
    ws: &str,
    before: Option<&crate::workspace_stripe_profile::WorkspaceStripeProfile>,
    after: &crate::workspace_stripe_profile::WorkspaceStripeProfile,
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
