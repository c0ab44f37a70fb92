//! The platform's own Stripe account: customers, Checkout Sessions and Billing Portal
//! sessions for workspace subscriptions (the platform bills its workspaces).

use secrecy::SecretString;
use serde_json::Value;
use stripe_client_core::{RequestBuilder, StripeMethod};

use super::transport::{CallError, StripeTransport};

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

fn text(v: &Value, field: &str) -> Result<String, CallError> {
    v.get(field)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| CallError::Unreachable(format!("Stripe answered without {field}")))
}

fn post(path: &str, form: &[(String, String)]) -> RequestBuilder {
    let mut builder = RequestBuilder::new(StripeMethod::Post, path);
    builder.body = Some(super::serde_urlencoded(form));
    builder
}

#[async_trait::async_trait]
impl BillingGateway for StripeTransport {
    async fn create_customer(
        &self,
        key: &SecretString,
        workspace_id: &str,
    ) -> Result<String, CallError> {
        let form = vec![
            (
                "metadata[workspace_id]".to_string(),
                workspace_id.to_string(),
            ),
            (
                "description".to_string(),
                format!("roampay workspace {workspace_id}"),
            ),
        ];
        // The same workspace always gets the same customer, even when asked twice.
        let idempotency = format!("roampay-billing-customer-{workspace_id}");
        let body = self
            .send(key, post("/customers", &form), Some(&idempotency))
            .await?;
        text(&body, "id")
    }

    async fn create_checkout_session(
        &self,
        key: &SecretString,
        req: &CheckoutRequest,
    ) -> Result<(String, String), CallError> {
        let form: Vec<(String, String)> = [
            ("mode", "subscription"),
            ("line_items[0][price]", req.price_id.as_str()),
            ("line_items[0][quantity]", "1"),
            ("customer", req.customer_id.as_str()),
            ("client_reference_id", req.workspace_id.as_str()),
            ("success_url", req.success_url.as_str()),
            ("cancel_url", req.cancel_url.as_str()),
            (
                "subscription_data[metadata][workspace_id]",
                req.workspace_id.as_str(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let body = self
            .send(key, post("/checkout/sessions", &form), None)
            .await?;
        Ok((text(&body, "url")?, text(&body, "id")?))
    }

    async fn create_portal_session(
        &self,
        key: &SecretString,
        customer_id: &str,
        return_url: &str,
    ) -> Result<String, CallError> {
        let form = vec![
            ("customer".to_string(), customer_id.to_string()),
            ("return_url".to_string(), return_url.to_string()),
        ];
        let body = self
            .send(key, post("/billing_portal/sessions", &form), None)
            .await?;
        text(&body, "url")
    }
}
