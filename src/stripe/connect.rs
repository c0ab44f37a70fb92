//! Stripe Connect on the platform's account: connected accounts and their onboarding
//! links. (Payments on a connected account go through [`super::StripeGateway`] with a
//! [`super::StripeAccount`] naming it.)

use secrecy::SecretString;
use serde_json::Value;
use stripe_client_core::{RequestBuilder, StripeMethod};

use super::boundary::{checked, is_metadata_id, is_object_id, InvalidField};
use super::transport::{CallError, StripeTransport};

/// `express` or `standard`: who owns the dashboard and the relationship with Stripe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountType {
    Express,
    Standard,
}

impl AccountType {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "express" => Some(Self::Express),
            "standard" => Some(Self::Standard),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Express => "express",
            Self::Standard => "standard",
        }
    }
}

/// What we need to know of a connected account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountView {
    pub id: String,
    pub charges_enabled: bool,
    pub payouts_enabled: bool,
    pub details_submitted: bool,
    /// `requirements.currently_due`: what Stripe needs before it enables (or keeps
    /// enabling) charges.
    pub requirements_due: Vec<String>,
    pub metadata_workspace_id: Option<String>,
}

impl AccountView {
    /// An account from Stripe's JSON, ids and codes checked at the boundary; `None`
    /// when the object is not an account.
    pub fn from_json(v: &Value) -> Result<Option<Self>, InvalidField> {
        if v.get("object").and_then(Value::as_str) != Some("account") {
            return Ok(None);
        }
        let Some(id) = checked(v, "/id", "account.id", is_object_id)? else {
            return Ok(None);
        };
        let flag = |p: &str| v.pointer(p).and_then(Value::as_bool).unwrap_or(false);
        let mut requirements_due = Vec::new();
        let due = v
            .pointer("/requirements/currently_due")
            .and_then(Value::as_array);
        for item in due.into_iter().flatten().take(100) {
            match item.as_str() {
                Some(r) if is_requirement(r) => requirements_due.push(r.to_string()),
                _ => return Err(InvalidField("account.requirements.currently_due")),
            }
        }
        Ok(Some(Self {
            id,
            charges_enabled: flag("/charges_enabled"),
            payouts_enabled: flag("/payouts_enabled"),
            details_submitted: flag("/details_submitted"),
            requirements_due,
            metadata_workspace_id: v
                .pointer("/metadata/workspace_id")
                .and_then(Value::as_str)
                .filter(|s| is_metadata_id(s))
                .map(str::to_string),
        }))
    }
}

/// Requirement names: `individual.verification.document`, `external_account`,
/// `person_acct_1….dob.day`, …
fn is_requirement(s: &str) -> bool {
    (1..=200).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'[' | b']'))
}

/// A connected account to create for a workspace.
#[derive(Debug, Clone)]
pub struct CreateAccount {
    pub workspace_id: String,
    pub account_type: AccountType,
    /// Deterministic per workspace (and per account it ever had).
    pub idempotency_key: String,
}

/// An onboarding link for a connected account.
#[derive(Debug, Clone)]
pub struct CreateAccountLink {
    pub account_id: String,
    pub refresh_url: String,
    pub return_url: String,
}

/// An Account Link: where to send the admin, and until when it works.
#[derive(Debug, Clone)]
pub struct AccountLink {
    pub url: String,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[async_trait::async_trait]
pub trait ConnectGateway: Send + Sync {
    /// `POST /v1/accounts`.
    async fn create_account(
        &self,
        platform_key: &SecretString,
        req: &CreateAccount,
    ) -> Result<AccountView, CallError>;
    /// `POST /v1/account_links` (`type=account_onboarding`).
    async fn create_account_link(
        &self,
        platform_key: &SecretString,
        req: &CreateAccountLink,
    ) -> Result<AccountLink, CallError>;
    /// `GET /v1/accounts/{id}`.
    async fn retrieve_account(
        &self,
        platform_key: &SecretString,
        account_id: &str,
    ) -> Result<AccountView, CallError>;
}

fn account(body: Value) -> Result<AccountView, CallError> {
    match AccountView::from_json(&body) {
        Ok(Some(a)) => Ok(a),
        Ok(None) => Err(CallError::Unreachable(
            "Stripe answered without an account".into(),
        )),
        Err(e) => Err(CallError::Unreachable(e.to_string())),
    }
}

fn post(path: &str, form: &[(String, String)]) -> RequestBuilder {
    let mut builder = RequestBuilder::new(StripeMethod::Post, path);
    builder.body = Some(super::serde_urlencoded(form));
    builder
}

#[async_trait::async_trait]
impl ConnectGateway for StripeTransport {
    #[tracing::instrument(skip_all, fields(workspace_id = %req.workspace_id))]
    async fn create_account(
        &self,
        platform_key: &SecretString,
        req: &CreateAccount,
    ) -> Result<AccountView, CallError> {
        let form = vec![
            ("type".to_string(), req.account_type.as_str().to_string()),
            ("metadata[workspace_id]".into(), req.workspace_id.clone()),
        ];
        let body = self
            .send(
                platform_key,
                post("/accounts", &form),
                Some(&req.idempotency_key),
            )
            .await?;
        account(body)
    }

    #[tracing::instrument(skip_all, fields(account = %req.account_id))]
    async fn create_account_link(
        &self,
        platform_key: &SecretString,
        req: &CreateAccountLink,
    ) -> Result<AccountLink, CallError> {
        let form = vec![
            ("account".to_string(), req.account_id.clone()),
            ("refresh_url".into(), req.refresh_url.clone()),
            ("return_url".into(), req.return_url.clone()),
            ("type".into(), "account_onboarding".into()),
        ];
        // A link is single-use and short-lived: every request asks for a fresh one.
        let key = format!("roampay-account-link-{}", uuid::Uuid::now_v7());
        let body = self
            .send(platform_key, post("/account_links", &form), Some(&key))
            .await?;
        let url = body
            .get("url")
            .and_then(Value::as_str)
            .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
            .ok_or_else(|| CallError::Unreachable("Stripe answered without a link".into()))?;
        Ok(AccountLink {
            url: url.to_string(),
            expires_at: body
                .get("expires_at")
                .and_then(Value::as_i64)
                .and_then(|t| chrono::DateTime::from_timestamp(t, 0)),
        })
    }

    #[tracing::instrument(skip_all, fields(account = %account_id))]
    async fn retrieve_account(
        &self,
        platform_key: &SecretString,
        account_id: &str,
    ) -> Result<AccountView, CallError> {
        if !is_object_id(account_id) {
            return Err(CallError::Api {
                status: 400,
                code: Some("invalid_account_id".into()),
            });
        }
        let builder = RequestBuilder::new(StripeMethod::Get, format!("/accounts/{account_id}"));
        account(self.send(platform_key, builder, None).await?)
    }
}
