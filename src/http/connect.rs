//! Stripe Connect: onboarding a workspace's Stripe account, and the platform's endpoint
//! for events on connected accounts.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Principal;
use super::error::{ApiError, FieldError, Problem};
use super::views::WebhookAck;
use super::{metadata, workspace_id, AppState};
use crate::application::connect::{ConnectError, OnboardingRequest};
use crate::infra::stripe::connect::AccountType;

impl From<ConnectError> for ApiError {
    fn from(e: ConnectError) -> Self {
        let text = e.to_string();
        match e {
            ConnectError::NotEnabled => ApiError::conflict(
                "connect_not_enabled",
                "Stripe Connect is not enabled on this platform: paste the workspace's own keys instead.",
            ),
            ConnectError::NotReady(health) => ApiError::conflict(
                "workspace_payment_not_ready",
                format!("The connection to switch to cannot take payments yet: it is {health}."),
            ),
            ConnectError::StripeRefused { .. } => {
                ApiError::new(StatusCode::BAD_GATEWAY, "stripe_error", text)
            }
            ConnectError::StripeUnavailable => ApiError::stripe_unavailable(),
            ConnectError::Conflict => ApiError::concurrent_update(),
            ConnectError::Store(f) => f.into(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"return_url": "https://manage.example.com/stripe/done", "refresh_url": "https://manage.example.com/stripe/again", "account_type": "standard"}))]
pub struct OnboardingBody {
    return_url: String,
    refresh_url: String,
    /// `express` or `standard`.
    account_type: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OnboardingLink {
    /// The workspace's connected account.
    pub account_id: String,
    /// Send the admin there (single use, expires within minutes).
    pub url: String,
}

#[utoipa::path(
    post,
    path = "/api/workspaces/{workspace_id}/stripe-connect/onboarding",
    operation_id = "start_stripe_connect_onboarding",
    tag = "ocpi-config",
    summary = "Connect the workspace's Stripe account: its connected account (created once) and a fresh onboarding link (scope roaming:write)",
    params(("workspace_id" = String, Path, description = "^[A-Za-z0-9_-]{1,64}$")),
    request_body = OnboardingBody,
    responses(
        (status = 201, description = "Send the admin to `url`", body = OnboardingLink),
        (status = 422, description = "`validation_failed` (`invalid_url`, `invalid_account_type`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`connect_not_enabled`", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`stripe_error`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`stripe_unavailable`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub async fn onboarding(
    principal: Principal,
    path: web::Path<String>,
    body: web::Json<OnboardingBody>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ws = workspace_id(&path)?;
    principal.authorize("roaming:write", Some(ws.as_str()))?;
    super::billing::url("return_url", &body.return_url)?;
    super::billing::url("refresh_url", &body.refresh_url)?;
    let account_type = AccountType::parse(&body.account_type).ok_or_else(|| {
        ApiError::validation(vec![FieldError::new(
            "account_type",
            "invalid_account_type",
            "Must be \"express\" or \"standard\".",
        )])
    })?;
    let body = body.into_inner();
    let ask = OnboardingRequest {
        return_url: body.return_url,
        refresh_url: body.refresh_url,
        account_type,
    };
    let meta = metadata(&req, &principal.sub);
    let done = state
        .services
        .connect
        .start_onboarding(ws.as_str(), ask, &meta)
        .await?;
    Ok(HttpResponse::Created().json(OnboardingLink {
        account_id: done.account_id,
        url: done.url,
    }))
}

#[utoipa::path(
    post,
    path = "/ocpi/stripe/connect/webhook",
    operation_id = "stripe_webhook_connect",
    tag = "webhooks",
    summary = "The platform's Stripe Connect webhook (events on connected accounts)",
    params(("Stripe-Signature" = String, Header)),
    request_body(content = HashMap<String, serde_json::Value>, description = "The Stripe event, exactly as Stripe signed it (read raw)"),
    responses(
        (status = 200, description = "Verified", body = WebhookAck),
        (status = 400, description = "`missing_signature` | `invalid_signature_header` | `signature_mismatch` | `timestamp_out_of_tolerance` | `invalid_payload` | `webhook_secret_not_configured`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`ownership_mismatch` | `livemode_mismatch`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`: this address sent too many unsigned deliveries", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store_unavailable` | `stripe_unavailable` (Stripe delivers the event again)", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn webhook(
    body: web::Bytes,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    super::webhooks::receive_connect(&body, &req, &state).await
}
