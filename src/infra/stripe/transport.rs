//! Sends async-stripe request descriptions to Stripe (or `STRIPE_API_BASE`) with the
//! workspace's key, retrying only what Stripe says may be retried, always with the same
//! idempotency key.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;
use stripe_client_core::{RequestBuilder, StripeMethod};
use tracing::Instrument;

/// The Stripe API version we speak.
pub const STRIPE_VERSION: &str = "2024-06-20";

/// The PaymentIntent's client secret as text: the one place it leaves its wrapper,
/// because the contract hands it to the driver's browser (Stripe.js needs it). Kept
/// beside the key handling of the Stripe client, the only other place a Stripe secret
/// is read.
pub fn client_secret_for_browser(secret: &SecretString) -> String {
    secret.expose_secret().to_string()
}

/// A digest naming a key without holding it: lets the service tell which workspace a
/// key that Stripe refused belongs to.
pub fn key_digest(key: &SecretString) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(key.expose_secret().as_bytes()).into()
}

/// The mode of a secret or restricted key by its prefix (`None`: not a Stripe key).
pub fn key_mode(key: &SecretString) -> Option<roampay_events::StripeMode> {
    use roampay_events::StripeMode;
    let k = key.expose_secret();
    match k.get(..8) {
        Some("sk_test_" | "rk_test_") => Some(StripeMode::Test),
        Some("sk_live_" | "rk_live_") => Some(StripeMode::Live),
        _ => None,
    }
}

impl super::PaymentIntentView {
    /// The PaymentIntent's client secret is `given` (compared in constant time): a
    /// guest's proof that the intent is theirs.
    pub fn client_secret_is(&self, given: &SecretString) -> bool {
        use subtle::ConstantTimeEq;
        self.client_secret.as_ref().is_some_and(|s| {
            s.expose_secret()
                .as_bytes()
                .ct_eq(given.expose_secret().as_bytes())
                .into()
        })
    }
}

/// How a call to Stripe failed, stripped of anything Stripe echoed back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// Stripe answered with this HTTP status and error code.
    Api { status: u16, code: Option<String> },
    /// No usable answer: connection refused, timeout, garbage.
    Unreachable(String),
}

impl CallError {
    /// The one rule for "trying again may still succeed, and cannot be told apart from
    /// a first try": no answer, a rate limit, a concurrent request with the same
    /// idempotency key (409 `idempotency_key_in_use`), or a Stripe-side 5xx.
    pub fn is_transient(&self) -> bool {
        match self {
            CallError::Unreachable(_) => true,
            CallError::Api { status, .. } => is_transient_status(*status),
        }
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            CallError::Api { code, .. } => code.as_deref(),
            CallError::Unreachable(_) => None,
        }
    }
}

fn is_transient_status(status: u16) -> bool {
    matches!(status, 409 | 429 | 500..=599)
}

enum Attempt {
    Retry(CallError),
    Final(CallError),
}

/// Who a call is made as: a key, on its own account or (the platform's key) on a
/// connected account (`Stripe-Account`).
#[derive(Clone, Copy)]
pub struct Caller<'a> {
    pub key: &'a SecretString,
    pub account: Option<&'a str>,
}

impl<'a> From<&'a SecretString> for Caller<'a> {
    fn from(key: &'a SecretString) -> Self {
        Self { key, account: None }
    }
}

impl<'a> From<&'a super::StripeAccount> for Caller<'a> {
    fn from(on: &'a super::StripeAccount) -> Self {
        Self {
            key: &on.key,
            account: on.connected.as_deref(),
        }
    }
}

/// Stripe's `application/x-www-form-urlencoded`: nested keys in brackets
/// (`metadata[k]`, `line_items[0][price]`), every reserved character percent-encoded
/// (brackets included); arrays indexed in forms, `expand[]` in queries.
pub(crate) fn encoded<T: Serialize>(t: &T, arrays: serde_qs::ArrayFormat) -> String {
    serde_qs::Config::new()
        .use_form_encoding(true)
        .array_format(arrays)
        .serialize_string(t)
        .expect("a Stripe form serializes")
}

/// An answer read into its type; one that lacks what the type needs is no usable answer.
pub fn read<T: DeserializeOwned>(body: Value, what: &str) -> Result<T, CallError> {
    T::deserialize(body).map_err(|e| CallError::Unreachable(format!("Stripe's {what} answer: {e}")))
}

pub struct StripeTransport {
    http: reqwest::Client,
    base: String,
    max_attempts: u32,
    backoff: Duration,
}

impl StripeTransport {
    /// `timeout` bounds each attempt; `max_attempts` counts the first one.
    pub fn new(base: &str, timeout: Duration, max_attempts: u32) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("roampay/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("HTTP client");
        Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            max_attempts: max_attempts.max(1),
            backoff: Duration::from_millis(200),
        }
    }

    /// `POST path` with `form` (the one way anything is posted to Stripe), on the
    /// account `on` names; retried with the same idempotency key when worth it.
    pub async fn post<F: Serialize>(
        &self,
        on: impl Into<Caller<'_>>,
        path: &str,
        form: &F,
        idempotency_key: Option<&str>,
    ) -> Result<Value, CallError> {
        let mut req = RequestBuilder::new(StripeMethod::Post, path);
        let body = encoded(form, serde_qs::ArrayFormat::Indexed);
        req.body = (!body.is_empty()).then_some(body);
        let on = on.into();
        self.send_as(on.key, on.account, req, idempotency_key).await
    }

    /// `GET path?query`.
    pub async fn get<Q: Serialize>(
        &self,
        on: impl Into<Caller<'_>>,
        path: &str,
        query: Option<&Q>,
    ) -> Result<Value, CallError> {
        let mut req = RequestBuilder::new(StripeMethod::Get, path);
        req.query = query.map(|q| encoded(q, serde_qs::ArrayFormat::EmptyIndexed));
        let on = on.into();
        self.send_as(on.key, on.account, req, None).await
    }

    /// Sends one request; retries (same idempotency key) what is worth retrying.
    async fn send_as(
        &self,
        key: &SecretString,
        account: Option<&str>,
        req: RequestBuilder,
        idempotency_key: Option<&str>,
    ) -> Result<Value, CallError> {
        let operation = crate::metrics::stripe_operation(
            match req.method {
                StripeMethod::Get => "GET",
                StripeMethod::Post => "POST",
                StripeMethod::Delete => "DELETE",
            },
            &req.path,
        );
        // The idempotency key names the workspace and the intent; it is not a secret.
        let span = tracing::info_span!(
            "stripe call",
            otel.name = %format!("stripe {operation}"),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            stripe.operation = %operation,
            stripe.idempotency_key = idempotency_key,
            stripe.account = account,
            stripe.object_id = tracing::field::Empty,
            http.response.status_code = tracing::field::Empty,
            attempts = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        let result = self
            .send_with_retries((key, account), &req, idempotency_key, &operation)
            .instrument(span.clone())
            .await;
        match &result {
            Ok((v, attempts)) => {
                span.record("outcome", "ok");
                span.record("attempts", attempts);
                span.record("http.response.status_code", 200);
                if let Some(id) = v.get("id").and_then(Value::as_str) {
                    span.record("stripe.object_id", id);
                }
            }
            Err((e, attempts)) => {
                span.record("attempts", attempts);
                span.record("otel.status_code", "ERROR");
                match e {
                    CallError::Api { status, .. } => {
                        span.record("outcome", "refused");
                        span.record("http.response.status_code", status);
                    }
                    CallError::Unreachable(_) => {
                        span.record("outcome", "unreachable");
                    }
                }
            }
        }
        result.map(|(v, _)| v).map_err(|(e, _)| e)
    }

    async fn send_with_retries(
        &self,
        key: (&SecretString, Option<&str>),
        req: &RequestBuilder,
        idempotency_key: Option<&str>,
        operation: &str,
    ) -> Result<(Value, u32), (CallError, u32)> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let started = std::time::Instant::now();
            let outcome = self.attempt(key, req, idempotency_key, operation).await;
            let ms = started.elapsed().as_millis() as u64;
            match outcome {
                Ok(v) => {
                    tracing::debug!(stripe.path = %req.path, attempt, elapsed_ms = ms, "stripe call succeeded");
                    return Ok((v, attempt));
                }
                Err(Attempt::Final(e)) => {
                    tracing::info!(stripe.path = %req.path, attempt, elapsed_ms = ms, error = ?e, "stripe call refused");
                    return Err((e, attempt));
                }
                Err(Attempt::Retry(e)) if attempt < self.max_attempts => {
                    let wait = self.backoff * 2u32.pow(attempt - 1);
                    tracing::warn!(stripe.path = %req.path, attempt, elapsed_ms = ms, error = ?e, wait_ms = wait.as_millis() as u64, "stripe call failed; retrying with the same idempotency key");
                    tokio::time::sleep(wait).await;
                }
                Err(Attempt::Retry(e)) => {
                    tracing::warn!(stripe.path = %req.path, attempt, error = ?e, "stripe call failed; giving up");
                    return Err((e, attempt));
                }
            }
        }
    }

    async fn attempt(
        &self,
        (key, account): (&SecretString, Option<&str>),
        req: &RequestBuilder,
        idempotency_key: Option<&str>,
        operation: &str,
    ) -> Result<Value, Attempt> {
        let mut url = format!("{}/v1{}", self.base, req.path);
        if let Some(q) = &req.query {
            url.push('?');
            url.push_str(q);
        }
        let mut builder = match req.method {
            StripeMethod::Get => self.http.get(&url),
            StripeMethod::Post => self.http.post(&url),
            StripeMethod::Delete => self.http.delete(&url),
        };
        let mut auth =
            reqwest::header::HeaderValue::from_str(&format!("Bearer {}", key.expose_secret()))
                .map_err(|_| {
                    Attempt::Final(CallError::Unreachable(
                        "the key is not a valid header value".into(),
                    ))
                })?;
        auth.set_sensitive(true);
        builder = builder
            .header(reqwest::header::AUTHORIZATION, auth)
            .header("Stripe-Version", STRIPE_VERSION);
        if let Some(k) = idempotency_key {
            builder = builder.header("Idempotency-Key", k);
        }
        if let Some(a) = account {
            builder = builder.header("Stripe-Account", a);
        }
        for (name, value) in crate::telemetry::trace_headers() {
            builder = builder.header(name, value);
        }
        if let Some(body) = &req.body {
            builder = builder
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(body.clone());
        }
        let started = std::time::Instant::now();
        let sent = builder.send().await;
        crate::metrics::stripe_call(
            operation,
            sent.as_ref().ok().map(|r| r.status().as_u16()),
            started.elapsed().as_secs_f64(),
        );
        let response = sent.map_err(|e| {
            Attempt::Retry(CallError::Unreachable(if e.is_timeout() {
                "Stripe did not answer in time".into()
            } else {
                "Stripe could not be reached".into()
            }))
        })?;
        let status = response.status().as_u16();
        let should_retry = response
            .headers()
            .get("Stripe-Should-Retry")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.eq_ignore_ascii_case("true"));
        let bytes = response.bytes().await.map_err(|_| {
            Attempt::Retry(CallError::Unreachable("Stripe's answer was cut off".into()))
        })?;
        let body: Option<Value> = serde_json::from_slice(&bytes).ok();
        if (200..300).contains(&status) {
            return body.ok_or_else(|| {
                Attempt::Retry(CallError::Unreachable(
                    "Stripe sent a body that is not JSON".into(),
                ))
            });
        }
        let code = serde_json::from_slice::<super::wire::ErrorAnswer>(&bytes)
            .ok()
            .and_then(super::wire::ErrorAnswer::code);
        let error = CallError::Api { status, code };
        let retry = match should_retry {
            Some(explicit) => explicit,
            None => is_transient_status(status),
        };
        Err(if retry {
            Attempt::Retry(error)
        } else {
            Attempt::Final(error)
        })
    }
}
