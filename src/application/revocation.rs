//! Health that stays true: a Stripe answer of 401 to any call, or 403 to a PaymentIntent
//! call, made with a workspace's active key marks its credential set invalid at once
//! (`key_revoked` / `permission_denied`), audited and counted.
//!
//! The watch sits between the use cases and Stripe: every payment call goes through
//! it, so no use case can forget to report a refused key. Keys are told apart by a
//! digest recorded when the service reads a key from the vault (never the key itself).

use std::sync::Arc;

use super::accounts::KeyOwners;
use super::connect::Connect;
use super::credentials::Credentials;
use crate::infra::stripe::{
    CallError, Capture, CreatePaymentIntent, CreateRefund, CredentialCheck, CredentialProbe,
    DisputeView, PaymentIntentPage, PaymentIntentView, RefundView, StripeAccount, StripeGateway,
};

/// The Stripe gateway the use cases see: the real one, watched for refused keys.
pub struct Watched {
    inner: Arc<dyn StripeGateway>,
    owners: Arc<KeyOwners>,
    /// Told of a refused workspace key.
    credentials: Arc<Credentials>,
    /// Told of a connected account the platform lost.
    connect: Arc<Connect>,
}

impl Watched {
    pub fn new(
        inner: Arc<dyn StripeGateway>,
        owners: Arc<KeyOwners>,
        credentials: Arc<Credentials>,
        connect: Arc<Connect>,
    ) -> Self {
        Self {
            inner,
            owners,
            credentials,
            connect,
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
                self.connect.connect_access_lost(account, operation).await;
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
            if let Some((ws, version)) = self.owners.owner(key) {
                self.credentials
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
