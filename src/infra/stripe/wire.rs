//! What goes to Stripe and what comes back, typed: each request is a struct encoded as
//! Stripe's form by `StripeTransport::post` / `get` (`serde_qs`: `metadata[k]`,
//! `line_items[0][price]`), and each answer is read into a struct. Objects whose fields
//! are checked at the boundary (PaymentIntents, refunds, disputes, accounts) are read
//! by their views in `stripe::boundary`'s terms.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `metadata[key]=value`, in key order (none at all when empty: an empty `metadata=`
/// would tell Stripe to clear it).
pub type Metadata<'a> = BTreeMap<&'a str, &'a str>;

/// `POST /v1/payment_intents`: a manual-capture hold paid by card.
#[derive(Debug, Serialize)]
pub struct PaymentIntentForm<'a> {
    pub amount: i64,
    pub currency: &'a str,
    pub capture_method: &'static str,
    pub payment_method_types: [&'static str; 1],
    #[serde(skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt_email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub application_fee_amount: Option<i64>,
}

impl<'a> PaymentIntentForm<'a> {
    pub fn hold(amount: i64, currency: &'a str, metadata: Metadata<'a>) -> Self {
        Self {
            amount,
            currency,
            capture_method: "manual",
            payment_method_types: ["card"],
            metadata,
            receipt_email: None,
            application_fee_amount: None,
        }
    }
}

/// A request with nothing to say (`POST …/cancel`): no body at all.
#[derive(Debug, Serialize)]
pub struct Empty {}

/// `POST /v1/payment_intents/{id}/capture`.
#[derive(Debug, Serialize)]
pub struct CaptureForm {
    pub amount_to_capture: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub application_fee_amount: Option<i64>,
}

/// `POST /v1/refunds`.
#[derive(Debug, Serialize)]
pub struct RefundForm<'a> {
    pub payment_intent: &'a str,
    pub amount: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub refund_application_fee: bool,
    #[serde(skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata<'a>,
}

/// `GET /v1/payment_intents/{id}?expand[]=…`.
#[derive(Debug, Serialize)]
pub struct Expand {
    pub expand: [&'static str; 1],
}

/// `GET /v1/payment_intents/{id}?client_secret=…` (as Stripe.js reads it).
#[derive(Debug, Serialize)]
pub struct ClientSecretQuery {
    pub client_secret: String,
}

/// A list query: `limit`, and what filters it.
#[derive(Debug, Default, Serialize)]
pub struct ListQuery<'a> {
    pub limit: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_intent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<CreatedRange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starting_after: Option<&'a str>,
}

/// `created[gte]=…`.
#[derive(Debug, Serialize)]
pub struct CreatedRange {
    pub gte: i64,
}

/// `POST /v1/customers`.
#[derive(Debug, Serialize)]
pub struct CustomerForm<'a> {
    pub description: String,
    #[serde(skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata<'a>,
}

/// `POST /v1/checkout/sessions` in subscription mode.
#[derive(Debug, Serialize)]
pub struct CheckoutForm<'a> {
    pub mode: &'static str,
    pub line_items: [LineItem<'a>; 1],
    pub customer: &'a str,
    pub client_reference_id: &'a str,
    pub success_url: &'a str,
    pub cancel_url: &'a str,
    pub subscription_data: SubscriptionData<'a>,
}

#[derive(Debug, Serialize)]
pub struct LineItem<'a> {
    pub price: &'a str,
    pub quantity: u32,
}

#[derive(Debug, Serialize)]
pub struct SubscriptionData<'a> {
    #[serde(skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata<'a>,
}

/// `POST /v1/billing_portal/sessions`.
#[derive(Debug, Serialize)]
pub struct PortalForm<'a> {
    pub customer: &'a str,
    pub return_url: &'a str,
}

/// `POST /v1/accounts`.
#[derive(Debug, Serialize)]
pub struct AccountForm<'a> {
    #[serde(rename = "type")]
    pub account_type: &'static str,
    #[serde(skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata<'a>,
}

/// `POST /v1/account_links`.
#[derive(Debug, Serialize)]
pub struct AccountLinkForm<'a> {
    pub account: &'a str,
    pub refresh_url: &'a str,
    pub return_url: &'a str,
    #[serde(rename = "type")]
    pub link_type: &'static str,
}

/// An error answer: `{"error": {"code", "type", …}}`.
#[derive(Debug, Deserialize)]
pub struct ErrorAnswer {
    pub error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
pub struct ErrorDetail {
    pub code: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

impl ErrorAnswer {
    /// Stripe's code, else its error type.
    pub fn code(self) -> Option<String> {
        self.error
            .code
            .filter(|c| !c.is_empty())
            .or(self.error.kind.filter(|k| !k.is_empty()))
    }
}

/// A list answer; its items are read by their views.
#[derive(Debug, Deserialize)]
pub struct List<T> {
    pub data: Vec<T>,
    #[serde(default)]
    pub has_more: bool,
}

/// An object of which only the id matters (a customer, the account).
#[derive(Debug, Deserialize)]
pub struct Created {
    pub id: String,
}

/// A Checkout Session.
#[derive(Debug, Deserialize)]
pub struct CheckoutSession {
    pub id: String,
    pub url: String,
}

/// A Billing Portal session.
#[derive(Debug, Deserialize)]
pub struct PortalSession {
    pub url: String,
}

/// An Account Link.
#[derive(Debug, Deserialize)]
pub struct AccountLinkAnswer {
    pub url: String,
    pub expires_at: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form<T: Serialize>(t: &T) -> String {
        let b =
            stripe_client_core::RequestBuilder::new(stripe_client_core::StripeMethod::Post, "/x")
                .form(t);
        let body = b.body.unwrap();
        url::form_urlencoded::parse(body.as_bytes())
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    }

    #[test]
    fn forms_are_encoded_as_stripe_reads_them() {
        let mut hold = PaymentIntentForm::hold(5000, "aud", [("workspace_id", "ws-1")].into());
        hold.receipt_email = Some("d+1@example.com");
        assert_eq!(
            form(&hold),
            "amount=5000&currency=aud&capture_method=manual&payment_method_types[0]=card\
             &metadata[workspace_id]=ws-1&receipt_email=d+1@example.com"
        );
        let checkout = CheckoutForm {
            mode: "subscription",
            line_items: [LineItem {
                price: "price_1",
                quantity: 1,
            }],
            customer: "cus_1",
            client_reference_id: "ws-1",
            success_url: "https://a/ok?x=1&y=2",
            cancel_url: "https://a/no",
            subscription_data: SubscriptionData {
                metadata: [("workspace_id", "ws-1")].into(),
            },
        };
        assert_eq!(
            form(&checkout),
            "mode=subscription&line_items[0][price]=price_1&line_items[0][quantity]=1\
             &customer=cus_1&client_reference_id=ws-1&success_url=https://a/ok?x=1&y=2\
             &cancel_url=https://a/no&subscription_data[metadata][workspace_id]=ws-1"
        );
        let refund = RefundForm {
            payment_intent: "pi_1",
            amount: 100,
            reason: None,
            refund_application_fee: false,
            metadata: Metadata::new(),
        };
        assert_eq!(form(&refund), "payment_intent=pi_1&amount=100");
        let list = ListQuery {
            limit: 100,
            created: Some(CreatedRange { gte: 7 }),
            ..Default::default()
        };
        assert_eq!(form(&list), "limit=100&created[gte]=7");
        assert_eq!(form(&Empty {}), "", "nothing to send");
    }

    #[test]
    fn an_error_answer_gives_its_code_or_else_its_type() {
        let e: ErrorAnswer = serde_json::from_str(r#"{"error": {"type": "api_error"}}"#).unwrap();
        assert_eq!(e.code().as_deref(), Some("api_error"));
        let e: ErrorAnswer =
            serde_json::from_str(r#"{"error": {"code": "card_declined", "type": "card_error"}}"#)
                .unwrap();
        assert_eq!(e.code().as_deref(), Some("card_declined"));
    }
}
