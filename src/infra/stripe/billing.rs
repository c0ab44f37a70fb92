//! The platform's own Stripe account: customers, Checkout Sessions and Billing Portal
//! sessions for workspace subscriptions (the platform bills its workspaces).

use secrecy::SecretString;

use super::transport::{read, CallError, StripeTransport};
use super::wire::{
    CheckoutForm, CheckoutSession, Created, CustomerForm, LineItem, PortalForm, PortalSession,
    SubscriptionData,
};

/// A Checkout Session in subscription mode for one workspace.
#[derive(Debug, Clone)]
pub struct CheckoutRequest {
    pub workspace_id: String,
    pub customer_id: String,
    pub price_id: String,
    pub success_url: String,
    pub cancel_url: String,
}

#[async_trait::async_trait]
pub trait BillingGateway: Send + Sync {
    /// `POST /v1/customers` with `metadata[workspace_id]`, idempotent per workspace.
    async fn create_customer(
        &self,
        key: &SecretString,
        workspace_id: &str,
    ) -> Result<String, CallError>;
    /// `POST /v1/checkout/sessions`: (url, session id).
    async fn create_checkout_session(
        &self,
        key: &SecretString,
        req: &CheckoutRequest,
    ) -> Result<(String, String), CallError>;
    /// `POST /v1/billing_portal/sessions`: the url.
    async fn create_portal_session(
        &self,
        key: &SecretString,
        customer_id: &str,
        return_url: &str,
    ) -> Result<String, CallError>;
}

#[async_trait::async_trait]
impl BillingGateway for StripeTransport {
    async fn create_customer(
        &self,
        key: &SecretString,
        workspace_id: &str,
    ) -> Result<String, CallError> {
        let form = CustomerForm {
            description: format!("roampay workspace {workspace_id}"),
            metadata: [("workspace_id", workspace_id)].into(),
        };
        // The same workspace always gets the same customer, even when asked twice.
        let idempotency = format!("roampay-billing-customer-{workspace_id}");
        let body = self
            .post(key, "/customers", &form, Some(&idempotency))
            .await?;
        Ok(read::<Created>(body, "customer")?.id)
    }

    async fn create_checkout_session(
        &self,
        key: &SecretString,
        req: &CheckoutRequest,
    ) -> Result<(String, String), CallError> {
        let form = CheckoutForm {
            mode: "subscription",
            line_items: [LineItem {
                price: &req.price_id,
                quantity: 1,
            }],
            customer: &req.customer_id,
            client_reference_id: &req.workspace_id,
            success_url: &req.success_url,
            cancel_url: &req.cancel_url,
            subscription_data: SubscriptionData {
                metadata: [("workspace_id", req.workspace_id.as_str())].into(),
            },
        };
        let body = self.post(key, "/checkout/sessions", &form, None).await?;
        let session: CheckoutSession = read(body, "Checkout Session")?;
        Ok((session.url, session.id))
    }

    async fn create_portal_session(
        &self,
        key: &SecretString,
        customer_id: &str,
        return_url: &str,
    ) -> Result<String, CallError> {
        let form = PortalForm {
            customer: customer_id,
            return_url,
        };
        let body = self
            .post(key, "/billing_portal/sessions", &form, None)
            .await?;
        Ok(read::<PortalSession>(body, "Billing Portal session")?.url)
    }
}
