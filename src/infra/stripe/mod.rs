//! The Stripe gateway: the only way the domain reaches Stripe.
//!
//! Requests are described with async-stripe's request builder and sent by our own
//! transport (`transport.rs`), which keeps one deterministic `Idempotency-Key` across
//! every retry and honours `Stripe-Should-Retry` (async-stripe's retrying strategies
//! draw a fresh random key per call, which could charge twice after a crash). Every
//! answer is mapped to our own codes and messages: Stripe's messages can quote part of
//! a key, so they are never passed on.

pub mod billing;
pub mod boundary;
pub mod connect;
pub mod transport;
pub mod webhook;
pub mod wire;

use roampay_events::{IntentStatus, LastPaymentError, StripeMode, STRIPE_UNREACHABLE};

use boundary::{checked, is_code, is_metadata_id, is_object_id, InvalidField};
use secrecy::SecretString;
use serde_json::Value;
use wire::{
    CaptureForm, ClientSecretQuery, CreatedRange, Expand, List, ListQuery, PaymentIntentForm,
    RefundForm,
};

pub use transport::{
    client_secret_for_browser, key_digest, key_mode, read, CallError, Caller, StripeTransport,
};

/// Whose Stripe account a payment call acts on: the workspace's own key (keys mode), or
/// the platform's key acting on a connected account (connect mode: Stripe's
/// `Stripe-Account` header). One gateway serves both; the mode is part of each call.
#[derive(Debug, Clone)]
pub struct StripeAccount {
    pub key: SecretString,
    /// `acct_…` in connect mode; `None` for the workspace's own keys.
    pub connected: Option<String>,
}

impl StripeAccount {
    /// The workspace's own secret key.
    pub fn own(key: SecretString) -> Self {
        Self {
            key,
            connected: None,
        }
    }

    /// The platform's key acting on a connected account.
    pub fn connected(platform_key: SecretString, account_id: &str) -> Self {
        Self {
            key: platform_key,
            connected: Some(account_id.to_string()),
        }
    }
}

/// The outcome of the credential round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialCheck {
    Valid { account_id: Option<String> },
    Failed { code: &'static str, message: String },
}

/// A PaymentIntent's `status`, as Stripe documents it. A status Stripe adds later reads
/// as `Unknown` and moves nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentIntentStatus {
    RequiresPaymentMethod,
    RequiresConfirmation,
    RequiresAction,
    Processing,
    RequiresCapture,
    Canceled,
    Succeeded,
    #[serde(other)]
    Unknown,
}

impl PaymentIntentStatus {
    pub fn parse(s: &str) -> Self {
        serde_json::from_value(Value::String(s.to_string())).unwrap_or(Self::Unknown)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequiresPaymentMethod => "requires_payment_method",
            Self::RequiresConfirmation => "requires_confirmation",
            Self::RequiresAction => "requires_action",
            Self::Processing => "processing",
            Self::RequiresCapture => "requires_capture",
            Self::Canceled => "canceled",
            Self::Succeeded => "succeeded",
            Self::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for PaymentIntentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What we need to know of a PaymentIntent.
#[derive(Debug, Clone)]
pub struct PaymentIntentView {
    pub id: String,
    pub status: PaymentIntentStatus,
    pub amount: i64,
    pub amount_capturable: i64,
    pub amount_received: i64,
    pub currency: String,
    pub livemode: bool,
    pub client_secret: Option<SecretString>,
    pub metadata_workspace_id: Option<String>,
    pub metadata_charging_intent_id: Option<String>,
    /// Why the last attempt to pay was declined, when it was.
    pub last_payment_error: Option<LastPaymentError>,
    /// When the hold lapses: the charge's `payment_method_details.card.capture_before`,
    /// present when `latest_charge` was expanded.
    pub capture_before: Option<chrono::DateTime<chrono::Utc>>,
    /// Made by a credential check (`metadata[roampay_purpose]=credential_check`):
    /// webhooks, the sweep and `reconcile` pass over it.
    pub credential_check: bool,
}

impl PaymentIntentView {
    /// A PaymentIntent from Stripe's JSON, every id and code checked at the boundary;
    /// `None` when the object is not a PaymentIntent.
    pub fn from_json(v: &Value) -> Result<Option<Self>, InvalidField> {
        if v.get("object")
            .and_then(Value::as_str)
            .is_some_and(|o| o != "payment_intent")
        {
            return Ok(None);
        }
        let int_at = |p: &str| v.pointer(p).and_then(Value::as_i64).unwrap_or(0);
        let Some(id) = checked(v, "/id", "id", is_object_id)? else {
            return Ok(None);
        };
        let Some(status) = checked(v, "/status", "status", is_code)? else {
            return Ok(None);
        };
        let currency = checked(v, "/currency", "currency", is_code)?;
        let error = v.pointer("/last_payment_error").filter(|e| !e.is_null());
        let last_payment_error = match error {
            None => None,
            Some(e) => Some(LastPaymentError {
                code: checked(e, "/code", "last_payment_error.code", is_code)?,
                decline_code: checked(
                    e,
                    "/decline_code",
                    "last_payment_error.decline_code",
                    is_code,
                )?,
                message: boundary::text(e, "/message"),
            }),
        };
        Ok(Some(Self {
            id,
            status: PaymentIntentStatus::parse(&status),
            amount: int_at("/amount"),
            amount_capturable: int_at("/amount_capturable"),
            amount_received: int_at("/amount_received"),
            currency: currency.unwrap_or_default(),
            livemode: v.get("livemode").and_then(Value::as_bool).unwrap_or(false),
            client_secret: v
                .pointer("/client_secret")
                .and_then(Value::as_str)
                .map(|s| SecretString::from(s.to_string())),
            // Metadata is ours; a value that is not one of our ids is another
            // integration's, so the PaymentIntent is simply not ours (never a refusal).
            metadata_workspace_id: ours(v, "/metadata/workspace_id"),
            metadata_charging_intent_id: ours(v, "/metadata/charging_intent_id"),
            last_payment_error,
            capture_before: v
                .pointer("/latest_charge/payment_method_details/card/capture_before")
                .and_then(Value::as_i64)
                .and_then(|t| chrono::DateTime::from_timestamp(t, 0)),
            credential_check: v
                .pointer(&format!("/metadata/{}", CHECK_PURPOSE.0))
                .and_then(Value::as_str)
                == Some(CHECK_PURPOSE.1),
        }))
    }
}

fn ours(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| is_metadata_id(s))
        .map(str::to_string)
}

impl PaymentIntentView {
    /// The one mapping from Stripe's PaymentIntent state to a charging intent's status
    /// (`None` for a status this build does not know: it moves nothing).
    pub fn intent_status(&self) -> Option<IntentStatus> {
        use PaymentIntentStatus as S;
        Some(match self.status {
            S::RequiresCapture => IntentStatus::Authorized,
            S::Succeeded => IntentStatus::Completed,
            S::Canceled => IntentStatus::Cancelled,
            // A decline leaves the PaymentIntent open: the driver may try another card.
            S::RequiresPaymentMethod
            | S::RequiresConfirmation
            | S::RequiresAction
            | S::Processing => IntentStatus::PendingPayment,
            S::Unknown => return None,
        })
    }

    /// What the hold is worth: Stripe's capturable amount once it reports one.
    pub fn held_amount(&self) -> i64 {
        if self.amount_capturable > 0 {
            self.amount_capturable
        } else {
            self.amount
        }
    }
}

/// What we need to know of a Refund (`refund` object, or one listed on a charge).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundView {
    pub id: String,
    pub payment_intent_id: Option<String>,
    pub amount: i64,
    /// `pending`, `requires_action`, `succeeded`, `failed`, `canceled`.
    pub status: String,
    pub failure_reason: Option<String>,
}

impl RefundView {
    pub fn from_json(v: &Value) -> Result<Self, InvalidField> {
        Ok(Self {
            id: checked(v, "/id", "refund.id", is_object_id)?.ok_or(InvalidField("refund.id"))?,
            payment_intent_id: checked(
                v,
                "/payment_intent",
                "refund.payment_intent",
                is_object_id,
            )?,
            amount: v.pointer("/amount").and_then(Value::as_i64).unwrap_or(0),
            status: checked(v, "/status", "refund.status", is_code)?
                .ok_or(InvalidField("refund.status"))?,
            failure_reason: checked(v, "/failure_reason", "refund.failure_reason", is_code)?,
        })
    }
}

/// What we need to know of a Dispute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisputeView {
    pub id: String,
    pub payment_intent_id: Option<String>,
    pub amount: i64,
    pub reason: String,
    /// `warning_needs_response`, `needs_response`, `under_review`, `won`, `lost`, …
    pub status: String,
}

impl DisputeView {
    pub fn from_json(v: &Value) -> Result<Self, InvalidField> {
        let code = |p, f| checked(v, p, f, is_code);
        Ok(Self {
            id: checked(v, "/id", "dispute.id", is_object_id)?.ok_or(InvalidField("dispute.id"))?,
            payment_intent_id: checked(
                v,
                "/payment_intent",
                "dispute.payment_intent",
                is_object_id,
            )?,
            amount: v.pointer("/amount").and_then(Value::as_i64).unwrap_or(0),
            reason: code("/reason", "dispute.reason")?.unwrap_or_else(|| "general".into()),
            status: code("/status", "dispute.status")?.ok_or(InvalidField("dispute.status"))?,
        })
    }

    /// Stripe will not change a dispute in these statuses any more.
    pub fn is_closed(&self) -> bool {
        matches!(
            self.status.as_str(),
            "won" | "lost" | "warning_closed" | "charge_refunded"
        )
    }
}

/// What to capture of a hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capture {
    pub amount_cents: i64,
    /// Connect mode: the platform's fee on the captured amount.
    pub application_fee_amount: Option<i64>,
}

/// The platform's fee on `amount_cents` at `bps` basis points, rounded down.
pub fn application_fee(amount_cents: i64, bps: u32) -> i64 {
    amount_cents.max(0) * i64::from(bps) / 10_000
}

/// A refund to ask Stripe for.
#[derive(Debug, Clone)]
pub struct CreateRefund {
    pub payment_intent_id: String,
    pub amount_cents: i64,
    pub reason: Option<String>,
    pub metadata: Vec<(&'static str, String)>,
    /// Deterministic: (workspace, charging intent, the client's key).
    pub idempotency_key: String,
    /// Connect mode: the platform gives back its fee in proportion.
    pub refund_application_fee: bool,
}

/// A manual-capture PaymentIntent to create in the workspace's account.
#[derive(Debug, Clone)]
pub struct CreatePaymentIntent {
    pub amount_cents: i64,
    pub currency: String,
    pub metadata: Vec<(&'static str, String)>,
    /// The driver's email: Stripe's `receipt_email` (the receipt goes there once the
    /// session is captured).
    pub receipt_email: Option<String>,
    /// Deterministic: (workspace, charging intent, step).
    pub idempotency_key: String,
    /// Connect mode: the platform's fee, in minor units (`application_fee_amount`).
    pub application_fee_amount: Option<i64>,
}

#[async_trait::async_trait]
pub trait StripeGateway: Send + Sync {
    /// Proves a credential set can take payments (see [`CredentialProbe`]).
    async fn check_credentials(&self, probe: &CredentialProbe<'_>) -> CredentialCheck;
    async fn create_payment_intent(
        &self,
        on: &StripeAccount,
        req: &CreatePaymentIntent,
    ) -> Result<PaymentIntentView, CallError>;
    async fn retrieve_payment_intent(
        &self,
        on: &StripeAccount,
        id: &str,
    ) -> Result<PaymentIntentView, CallError>;
    /// Captures `amount_cents` of a manual-capture PaymentIntent's hold (Stripe releases
    /// the rest); in connect mode with the platform's fee on what is captured.
    async fn capture_payment_intent(
        &self,
        on: &StripeAccount,
        id: &str,
        amount: Capture,
        idempotency_key: &str,
    ) -> Result<PaymentIntentView, CallError>;
    /// Cancels a PaymentIntent, releasing its hold.
    async fn cancel_payment_intent(
        &self,
        on: &StripeAccount,
        id: &str,
        idempotency_key: &str,
    ) -> Result<PaymentIntentView, CallError>;
    /// `POST /v1/refunds` on a PaymentIntent.
    async fn create_refund(
        &self,
        on: &StripeAccount,
        req: &CreateRefund,
    ) -> Result<RefundView, CallError>;
    /// `GET /v1/refunds?payment_intent=…`: the PaymentIntent's refunds (up to 100).
    async fn list_refunds(
        &self,
        on: &StripeAccount,
        payment_intent_id: &str,
    ) -> Result<Vec<RefundView>, CallError>;
    /// `GET /v1/disputes?payment_intent=…`: the PaymentIntent's disputes.
    async fn list_disputes(
        &self,
        on: &StripeAccount,
        payment_intent_id: &str,
    ) -> Result<Vec<DisputeView>, CallError>;
    /// `GET /v1/payment_intents`: up to 100, newest first, created at or after
    /// `created_gte` (Unix seconds) when given, after `starting_after` when given.
    async fn list_payment_intents(
        &self,
        on: &StripeAccount,
        created_gte: Option<i64>,
        starting_after: Option<&str>,
    ) -> Result<PaymentIntentPage, CallError>;
}

/// Only Stripe object ids go into a path.
fn checked_id(id: &str) -> Result<&str, CallError> {
    if !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Ok(id)
    } else {
        Err(CallError::Api {
            status: 400,
            code: Some("invalid_payment_intent_id".into()),
        })
    }
}

/// One page of the account's PaymentIntents, newest first.
pub struct PaymentIntentPage {
    pub data: Vec<Value>,
    pub has_more: bool,
}

/// What a credential check needs: the set to prove and the workspace's currency.
pub struct CredentialProbe<'a> {
    pub workspace_id: &'a str,
    pub secret_key: &'a SecretString,
    pub publishable_key: &'a str,
    pub mode: StripeMode,
    pub currency: &'a str,
    /// The test PaymentIntent's amount, in minor units (the smallest the service
    /// would ask for in `currency`).
    pub amount: i64,
}

/// The metadata that marks a PaymentIntent made by a credential check: webhooks, the
/// sweep and `reconcile` pass over it.
pub const CHECK_PURPOSE: (&str, &str) = ("roampay_purpose", "credential_check");

fn failed(code: &'static str, message: impl Into<String>) -> CredentialCheck {
    CredentialCheck::Failed {
        code,
        message: message.into(),
    }
}

impl StripeTransport {
    /// Proves the secret key may create PaymentIntents: an unconfirmed one of the
    /// smallest amount, tagged as a check (no card, so nobody is charged).
    async fn create_check_intent(
        &self,
        probe: &CredentialProbe<'_>,
    ) -> Result<PaymentIntentView, CredentialCheck> {
        let metadata = [
            (CHECK_PURPOSE.0, CHECK_PURPOSE.1),
            ("workspace_id", probe.workspace_id),
        ];
        let form = PaymentIntentForm::hold(probe.amount, probe.currency, metadata.into());
        let key = format!("roampay-check-{}", uuid::Uuid::now_v7());
        let created = self
            .post(probe.secret_key, "/payment_intents", &form, Some(&key))
            .await;
        let pi = match created.and_then(view) {
            Ok(pi) => pi,
            Err(CallError::Api { status: 401, .. }) => return Err(failed(
                "authentication_failed",
                "Stripe did not accept the secret key: check that it was copied whole and has not been rolled or deleted.",
            )),
            Err(CallError::Api { status: 403, .. }) => return Err(failed(
                "permission_denied",
                "The key may not create PaymentIntents: give the restricted key the PaymentIntents write permission.",
            )),
            Err(CallError::Api { status, code }) => return Err(failed(
                STRIPE_UNREACHABLE,
                format!("Stripe answered HTTP {status} ({}) to a test PaymentIntent; the check will be retried.", code.as_deref().unwrap_or("no code")),
            )),
            Err(CallError::Unreachable(reason)) => {
                return Err(failed(STRIPE_UNREACHABLE, format!("{reason}; the check will be retried.")))
            }
        };
        if pi.livemode != (probe.mode == StripeMode::Live) {
            self.cancel_check_intent(probe.secret_key, &pi.id).await;
            return Err(failed(
                "livemode_mismatch",
                format!(
                    "The key is a {} key but Stripe answered for the other mode.",
                    probe.mode.as_str()
                ),
            ));
        }
        Ok(pi)
    }

    /// Reads the check's PaymentIntent with the publishable key and its client secret,
    /// as Stripe.js does in the driver's browser: another account's key cannot see it.
    async fn read_as_browser(
        &self,
        probe: &CredentialProbe<'_>,
        pi: &PaymentIntentView,
    ) -> Option<CredentialCheck> {
        let Some(client_secret) = pi.client_secret.as_ref() else {
            return Some(failed(
                STRIPE_UNREACHABLE,
                "Stripe answered without a client secret; the check will be retried.",
            ));
        };
        let id = checked_id(&pi.id).ok()?;
        let query = ClientSecretQuery {
            client_secret: client_secret_for_browser(client_secret),
        };
        let publishable = SecretString::from(probe.publishable_key.to_string());
        let path = format!("/payment_intents/{id}");
        match self.get(&publishable, &path, Some(&query)).await {
            Ok(_) => None,
            Err(CallError::Api { status: 404, .. }) => Some(failed(
                "account_mismatch",
                "The publishable key belongs to another Stripe account than the secret key: copy both from the same account (Developers → API keys).",
            )),
            Err(CallError::Api { status: 401 | 403, .. }) => Some(failed(
                "authentication_failed",
                "Stripe did not accept the publishable key: check that it was copied whole and has not been rolled.",
            )),
            Err(CallError::Api { status, .. }) => Some(failed(
                STRIPE_UNREACHABLE,
                format!("Stripe answered HTTP {status} to the publishable key's read; the check will be retried."),
            )),
            Err(CallError::Unreachable(reason)) => {
                Some(failed(STRIPE_UNREACHABLE, format!("{reason}; the check will be retried.")))
            }
        }
    }

    /// The check's PaymentIntent is cancelled at once; a failure is logged (it holds
    /// no card and charges nobody).
    async fn cancel_check_intent(&self, secret_key: &SecretString, id: &str) {
        let Ok(id) = checked_id(id) else { return };
        let key = format!("roampay-check-cancel-{id}");
        let path = format!("/payment_intents/{id}/cancel");
        if let Err(e) = self
            .post(secret_key, &path, &wire::Empty {}, Some(&key))
            .await
        {
            tracing::warn!(payment_intent = %id, error = ?e, "a credential check's PaymentIntent could not be cancelled");
        }
    }

    /// The first page (up to 100) of a list filtered by PaymentIntent.
    async fn list_of(
        &self,
        on: &StripeAccount,
        path: &str,
        payment_intent_id: &str,
    ) -> Result<Vec<Value>, CallError> {
        let query = ListQuery {
            limit: 100,
            payment_intent: Some(checked_id(payment_intent_id)?),
            ..ListQuery::default()
        };
        let list: List<Value> = read(self.get(on, path, Some(&query)).await?, "list")?;
        Ok(list.data)
    }
}

fn view(body: Value) -> Result<PaymentIntentView, CallError> {
    match PaymentIntentView::from_json(&body) {
        Ok(Some(pi)) => Ok(pi),
        Ok(None) => Err(CallError::Unreachable(
            "Stripe answered without a PaymentIntent".into(),
        )),
        // Stored nowhere: treated as no usable answer.
        Err(e) => Err(CallError::Unreachable(e.to_string())),
    }
}

#[async_trait::async_trait]
impl StripeGateway for StripeTransport {
    #[tracing::instrument(skip_all, fields(mode = probe.mode.as_str()))]
    async fn check_credentials(&self, probe: &CredentialProbe<'_>) -> CredentialCheck {
        let created = match self.create_check_intent(probe).await {
            Ok(pi) => pi,
            Err(refusal) => return refusal,
        };
        let verdict = self.read_as_browser(probe, &created).await;
        self.cancel_check_intent(probe.secret_key, &created.id)
            .await;
        if let Some(refusal) = verdict {
            return refusal;
        }
        // The account id is a courtesy: restricted keys often may not read it, and
        // Stripe-compatible peers may not serve it.
        let account = self.get(probe.secret_key, "/account", None::<&()>).await;
        let account_id = account
            .and_then(|body| read::<wire::Created>(body, "account"))
            .ok()
            .map(|a| a.id);
        CredentialCheck::Valid { account_id }
    }

    #[tracing::instrument(skip_all, fields(amount = req.amount_cents, currency = %req.currency))]
    async fn create_payment_intent(
        &self,
        on: &StripeAccount,
        req: &CreatePaymentIntent,
    ) -> Result<PaymentIntentView, CallError> {
        let metadata = req.metadata.iter().map(|(k, v)| (*k, v.as_str()));
        let mut form = PaymentIntentForm::hold(req.amount_cents, &req.currency, metadata.collect());
        form.receipt_email = req.receipt_email.as_deref();
        form.application_fee_amount = req.application_fee_amount;
        let key = Some(req.idempotency_key.as_str());
        view(self.post(on, "/payment_intents", &form, key).await?)
    }

    #[tracing::instrument(skip_all, fields(payment_intent = %id))]
    async fn retrieve_payment_intent(
        &self,
        on: &StripeAccount,
        id: &str,
    ) -> Result<PaymentIntentView, CallError> {
        let path = format!("/payment_intents/{}", checked_id(id)?);
        // The charge tells when the hold lapses (`capture_before`).
        let expand = Expand {
            expand: ["latest_charge"],
        };
        view(self.get(on, &path, Some(&expand)).await?)
    }

    #[tracing::instrument(skip_all, fields(payment_intent = %id, amount = amount.amount_cents))]
    async fn capture_payment_intent(
        &self,
        on: &StripeAccount,
        id: &str,
        amount: Capture,
        idempotency_key: &str,
    ) -> Result<PaymentIntentView, CallError> {
        let path = format!("/payment_intents/{}/capture", checked_id(id)?);
        let form = CaptureForm {
            amount_to_capture: amount.amount_cents,
            application_fee_amount: amount.application_fee_amount,
        };
        view(self.post(on, &path, &form, Some(idempotency_key)).await?)
    }

    #[tracing::instrument(skip_all, fields(payment_intent = %id))]
    async fn cancel_payment_intent(
        &self,
        on: &StripeAccount,
        id: &str,
        idempotency_key: &str,
    ) -> Result<PaymentIntentView, CallError> {
        let path = format!("/payment_intents/{}/cancel", checked_id(id)?);
        view(
            self.post(on, &path, &wire::Empty {}, Some(idempotency_key))
                .await?,
        )
    }

    #[tracing::instrument(skip_all, fields(payment_intent = %req.payment_intent_id, amount = req.amount_cents))]
    async fn create_refund(
        &self,
        on: &StripeAccount,
        req: &CreateRefund,
    ) -> Result<RefundView, CallError> {
        let form = RefundForm {
            payment_intent: checked_id(&req.payment_intent_id)?,
            amount: req.amount_cents,
            reason: req.reason.as_deref(),
            refund_application_fee: req.refund_application_fee,
            metadata: req.metadata.iter().map(|(k, v)| (*k, v.as_str())).collect(),
        };
        let key = Some(req.idempotency_key.as_str());
        let body = self.post(on, "/refunds", &form, key).await?;
        RefundView::from_json(&body).map_err(|e| CallError::Unreachable(e.to_string()))
    }

    #[tracing::instrument(skip_all, fields(payment_intent = %payment_intent_id))]
    async fn list_refunds(
        &self,
        on: &StripeAccount,
        payment_intent_id: &str,
    ) -> Result<Vec<RefundView>, CallError> {
        let data = self.list_of(on, "/refunds", payment_intent_id).await?;
        data.iter()
            .map(|r| RefundView::from_json(r).map_err(|e| CallError::Unreachable(e.to_string())))
            .collect()
    }

    #[tracing::instrument(skip_all, fields(payment_intent = %payment_intent_id))]
    async fn list_disputes(
        &self,
        on: &StripeAccount,
        payment_intent_id: &str,
    ) -> Result<Vec<DisputeView>, CallError> {
        let data = self.list_of(on, "/disputes", payment_intent_id).await?;
        data.iter()
            .map(|d| DisputeView::from_json(d).map_err(|e| CallError::Unreachable(e.to_string())))
            .collect()
    }

    #[tracing::instrument(skip_all)]
    async fn list_payment_intents(
        &self,
        on: &StripeAccount,
        created_gte: Option<i64>,
        starting_after: Option<&str>,
    ) -> Result<PaymentIntentPage, CallError> {
        let query = ListQuery {
            limit: 100,
            created: created_gte.map(|gte| CreatedRange { gte }),
            starting_after: starting_after.map(checked_id).transpose()?,
            ..ListQuery::default()
        };
        let page: List<Value> = read(
            self.get(on, "/payment_intents", Some(&query)).await?,
            "list",
        )?;
        Ok(PaymentIntentPage {
            data: page.data,
            has_more: page.has_more,
        })
    }
}
