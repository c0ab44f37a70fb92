//! The Stripe gateway: the only way the domain reaches Stripe. Every call is made
//! with the workspace's own key, through async-stripe's client, and every answer is
//! mapped to our own codes and messages (Stripe's messages can echo part of a key, so
//! they are never passed on).

pub mod webhook;

use std::time::Duration;

use roampay_events::{StripeMode, STRIPE_UNREACHABLE};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use stripe_client_core::{RequestBuilder, StripeMethod};

/// The outcome of the credential round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialCheck {
    Valid { account_id: Option<String> },
    Failed { code: &'static str, message: String },
}

#[async_trait::async_trait]
pub trait StripeGateway: Send + Sync {
    /// Can this key read PaymentIntents, in the mode it claims? Also reads the account
    /// id where the key may.
    async fn check_credentials(
        &self,
        secret_key: &SecretString,
        mode: StripeMode,
    ) -> CredentialCheck;
}

/// How a call to Stripe failed, stripped of anything Stripe echoed back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// Stripe answered with this HTTP status and error code.
    Api { status: u16, code: Option<String> },
    /// No usable answer: connection refused, timeout, garbage.
    Unreachable(String),
}

/// async-stripe's hyper client against `STRIPE_API_BASE`.
pub struct StripeApi {
    base: String,
    timeout: Duration,
}

#[derive(serde::Serialize)]
struct ListParams {
    limit: u8,
}

impl StripeApi {
    pub fn new(base: &str, timeout: Duration) -> Self {
        let mut base = base.trim_end_matches('/').to_string();
        base.push('/');
        Self { base, timeout }
    }

    fn client(&self, key: &SecretString) -> Result<stripe::Client, CallError> {
        stripe::ClientBuilder::new(key.expose_secret())
            .url(self.base.clone())
            .timeout(self.timeout)
            .build()
            .map_err(|_| CallError::Unreachable("the Stripe client could not be configured".into()))
    }

    /// Sends one request and returns the JSON body (parsed by us, not by the typed
    /// bindings, so a Stripe-compatible peer that omits fields still works).
    async fn call(
        &self,
        client: &stripe::Client,
        request: RequestBuilder,
    ) -> Result<Value, CallError> {
        let path = request.path.clone();
        let started = std::time::Instant::now();
        let result = request
            .customize::<miniserde::json::Value>()
            .send(client)
            .await;
        let outcome = match result {
            Ok(body) => serde_json::from_str(&miniserde::json::to_string(&body))
                .map_err(|_| CallError::Unreachable("Stripe sent a body that is not JSON".into())),
            Err(stripe::StripeError::Stripe(err, status)) => Err(CallError::Api {
                status,
                code: err.code.map(|c| c.as_str().to_string()),
            }),
            Err(stripe::StripeError::Timeout) => Err(CallError::Unreachable(
                "Stripe did not answer in time".into(),
            )),
            Err(stripe::StripeError::JSONDeserialize(_)) => Err(CallError::Unreachable(
                "Stripe sent an answer that could not be read".into(),
            )),
            Err(_) => Err(CallError::Unreachable("Stripe could not be reached".into())),
        };
        tracing::debug!(
            stripe.path = %path,
            elapsed_ms = started.elapsed().as_millis() as u64,
            ok = outcome.is_ok(),
            "stripe call"
        );
        outcome
    }
}

#[async_trait::async_trait]
impl StripeGateway for StripeApi {
    #[tracing::instrument(skip_all, fields(mode = mode.as_str()))]
    async fn check_credentials(
        &self,
        secret_key: &SecretString,
        mode: StripeMode,
    ) -> CredentialCheck {
        let client = match self.client(secret_key) {
            Ok(c) => c,
            Err(CallError::Unreachable(message)) => {
                return CredentialCheck::Failed {
                    code: STRIPE_UNREACHABLE,
                    message,
                }
            }
            Err(CallError::Api { .. }) => unreachable!("building a client makes no call"),
        };
        let list = RequestBuilder::new(StripeMethod::Get, "/payment_intents")
            .query(&ListParams { limit: 1 });
        match self.call(&client, list).await {
            Ok(body) => {
                let livemode = body.pointer("/data/0/livemode").and_then(Value::as_bool);
                if livemode.is_some_and(|live| live != (mode == StripeMode::Live)) {
                    return CredentialCheck::Failed {
                        code: "livemode_mismatch",
                        message: format!("The key is a {} key but Stripe answered for the other mode.", mode.as_str()),
                    };
                }
            }
            Err(CallError::Api { status: 401, .. }) => {
                return CredentialCheck::Failed {
                    code: "authentication_failed",
                    message: "Stripe did not accept the secret key: check that it was copied whole and has not been rolled or deleted.".into(),
                }
            }
            Err(CallError::Api { status: 403, .. }) => {
                return CredentialCheck::Failed {
                    code: "permission_denied",
                    message: "The key may not read PaymentIntents: give the restricted key the PaymentIntents write permission.".into(),
                }
            }
            Err(CallError::Api { status, .. }) => {
                return CredentialCheck::Failed {
                    code: STRIPE_UNREACHABLE,
                    message: format!("Stripe answered HTTP {status} while listing PaymentIntents; the check will be retried."),
                }
            }
            Err(CallError::Unreachable(reason)) => {
                return CredentialCheck::Failed {
                    code: STRIPE_UNREACHABLE,
                    message: format!("{reason}; the check will be retried."),
                }
            }
        }
        // The account id is a courtesy: restricted keys often may not read it, and
        // Stripe-compatible peers may not serve it.
        let account = RequestBuilder::new(StripeMethod::Get, "/account");
        let account_id = match self.call(&client, account).await {
            Ok(body) => body.get("id").and_then(Value::as_str).map(str::to_string),
            Err(_) => None,
        };
        CredentialCheck::Valid { account_id }
    }
}
