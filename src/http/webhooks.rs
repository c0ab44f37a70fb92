//! `POST /ocpi/stripe/webhook[/{workspace_id}]`: the raw delivery handed to the webhook
//! use case; its outcome or refusal answered, traced and counted.

use actix_web::{web, HttpRequest, HttpResponse};
use tracing::Instrument;

use super::driver::client_ip;
use super::error::{ApiError, Problem};
use super::views::{WebhookAck, WebhookOutcomeName};
use super::{metadata, AppState};
use crate::application::delivery_log::Endpoint;
use crate::application::webhooks::Delivery;
use crate::application::{WebhookOutcome, WebhookRefusal};

#[utoipa::path(
    post,
    path = "/ocpi/stripe/webhook",
    operation_id = "stripe_webhook_shared",
    tag = "webhooks",
    summary = "Stripe webhook (workspace from the PaymentIntent metadata)",
    params(("Stripe-Signature" = String, Header)),
    request_body(content = HashMap<String, serde_json::Value>, description = "The Stripe event, exactly as Stripe signed it (read raw)"),
    responses(
        (status = 200, description = "Verified", body = WebhookAck),
        (status = 400, description = "`missing_signature` | `invalid_signature_header` | `signature_mismatch` | `timestamp_out_of_tolerance` | `invalid_payload` | `unknown_workspace` | `webhook_secret_not_configured`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`ownership_mismatch` | `livemode_mismatch`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`: this address sent too many unsigned deliveries", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store_unavailable` | `stripe_unavailable` (Stripe delivers the event again)", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn shared(
    body: web::Bytes,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    receive(Endpoint::Shared, None, &body, &req, &state).await
}

#[utoipa::path(
    post,
    path = "/ocpi/stripe/webhook/{workspace_id}",
    operation_id = "stripe_webhook_workspace",
    tag = "webhooks",
    summary = "Stripe webhook for one workspace (the `webhook_url` shown in its config)",
    params(("workspace_id" = String, Path, description = "^[A-Za-z0-9_-]{1,64}$"), ("Stripe-Signature" = String, Header)),
    request_body(content = HashMap<String, serde_json::Value>, description = "The Stripe event, exactly as Stripe signed it (read raw)"),
    responses(
        (status = 200, description = "Verified", body = WebhookAck),
        (status = 400, description = "`missing_signature` | `invalid_signature_header` | `signature_mismatch` | `timestamp_out_of_tolerance` | `invalid_payload` | `unknown_workspace` | `webhook_secret_not_configured`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`ownership_mismatch` | `livemode_mismatch`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`: this address sent too many unsigned deliveries", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store_unavailable` | `stripe_unavailable` (Stripe delivers the event again)", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn per_workspace(
    path: web::Path<String>,
    body: web::Bytes,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    receive(Endpoint::Workspace, Some(&path), &body, &req, &state).await
}

/// The platform's Connect endpoint (`connect.rs` documents it).
pub(super) async fn receive_connect(
    body: &[u8],
    req: &HttpRequest,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    receive(Endpoint::Connect, None, body, req, state).await
}

async fn receive(
    endpoint: Endpoint,
    url_workspace: Option<&str>,
    body: &[u8],
    req: &HttpRequest,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let delivery = Delivery {
        endpoint,
        url_workspace,
        body,
        signature: req
            .headers()
            .get("stripe-signature")
            .map(|v| v.to_str().unwrap_or("\u{0}")),
        source_ip: client_ip(state, req).to_string(),
    };
    let span = webhook_span();
    let meta = metadata(req, "stripe");
    let received = state
        .services
        .webhooks
        .receive_webhook(delivery, &meta)
        .instrument(span.clone())
        .await;
    let (outcome, code) = match &received {
        Ok(o) => (o.as_str(), None),
        Err(r) => ("rejected", Some(r.code())),
    };
    span.record("outcome", outcome);
    if let Some(code) = code {
        span.record("code", code);
    }
    crate::metrics::webhook(outcome, code.unwrap_or(""));
    refusal_counts(&received, state, req)?;
    Ok(HttpResponse::Ok().json(ack(received?)))
}

/// The webhook routes count against the client's rate limit: a delivery refused before
/// its signature could be verified takes from its address's allowance (as many a
/// minute as `ROAMPAY_RATE_LIMIT_PER_MIN`), and once that is spent the answer is 429
/// `rate_limited` instead. Signed deliveries (Stripe's) never take from it.
pub(super) fn refusal_counts<T>(
    received: &Result<T, WebhookRefusal>,
    state: &AppState,
    req: &HttpRequest,
) -> Result<(), ApiError> {
    match received {
        Err(r) if r.unsigned() => super::driver::spend(&state.webhook_refusals, state, req),
        _ => Ok(()),
    }
}

pub(super) fn ack(outcome: WebhookOutcome) -> WebhookAck {
    let outcome = match outcome {
        WebhookOutcome::Applied => WebhookOutcomeName::Applied,
        WebhookOutcome::Duplicate => WebhookOutcomeName::Duplicate,
        WebhookOutcome::Ignored => WebhookOutcomeName::Ignored,
    };
    WebhookAck {
        received: true,
        outcome,
    }
}

/// The delivery's span. Ids are recorded only once the signature is verified (or the
/// workspace is known), so forged requests cannot write arbitrary values into traces.
fn webhook_span() -> tracing::Span {
    tracing::info_span!(
        "webhook",
        workspace_id = tracing::field::Empty,
        stripe.event_id = tracing::field::Empty,
        stripe.payment_intent_id = tracing::field::Empty,
        charging_intent_id = tracing::field::Empty,
        outcome = tracing::field::Empty,
        code = tracing::field::Empty,
    )
}
