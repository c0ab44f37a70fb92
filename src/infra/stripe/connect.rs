//! Stripe Connect on the platform's account: connected accounts and their onboarding
//! links. (Payments on a connected account go through [`super::StripeGateway`] with a
//! [`super::StripeAccount`] naming it.)

use secrecy::SecretString;
use serde_json::Value;

use super::boundary::{checked, is_metadata_id, is_object_id, InvalidField};
use super::transport::{read, CallError, StripeTransport};
use super::wire::{AccountForm, AccountLinkAnswer, AccountLinkForm};

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

#[async_trait::async_trait]
impl ConnectGateway for StripeTransport {
    #[tracing::instrument(skip_all, fields(workspace_id = %req.workspace_id))]
    async fn create_account(
        &self,
        platform_key: &SecretString,
        req: &CreateAccount,
    ) -> Result<AccountView, CallError> {
        let form = AccountForm {
            account_type: req.account_type.as_str(),
            metadata: [("workspace_id", req.workspace_id.as_str())].into(),
        };
        let key = Some(req.idempotency_key.as_str());
        account(self.post(platform_key, "/accounts", &form, key).await?)
    }

    #[tracing::instrument(skip_all, fields(account = %req.account_id))]
    async fn create_account_link(
        &self,
        platform_key: &SecretString,
        req: &CreateAccountLink,
    ) -> Result<AccountLink, CallError> {
        let form = AccountLinkForm {
            account: &req.account_id,
            refresh_url: &req.refresh_url,
            return_url: &req.return_url,
            link_type: "account_onboarding",
        };
        // A link is single-use and short-lived: every request asks for a fresh one.
        let key = format!("roampay-account-link-{}", uuid::Uuid::now_v7());
        let body = self
            .post(platform_key, "/account_links", &form, Some(&key))
            .await?;
        let link: AccountLinkAnswer = read(body, "Account Link")?;
        if !(link.url.starts_with("https://") || link.url.starts_with("http://")) {
            return Err(CallError::Unreachable(
                "Stripe answered without a link".into(),
            ));
        }
        Ok(AccountLink {
            url: link.url,
            expires_at: link
                .expires_at
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
        let path = format!("/accounts/{account_id}");
        account(self.get(platform_key, &path, None::<&()>).await?)
    }
}
