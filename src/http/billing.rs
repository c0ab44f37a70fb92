//! Workspace billing (contract "Workspace billing"): the subscription view, Checkout
//! and Billing Portal sessions, and the platform's billing webhook.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Principal;
use super::driver::client_ip;
use super::error::{ApiError, Problem};
use super::views::{BillingView, WebhookAck};
use super::{metadata, workspace_id, AppState};
use crate::application::billing::BillingError;

/// The workspace's billing for the support views; `None` when billing is off.
pub(super) async fn standing(state: &AppState, ws: &str) -> Result<Option<BillingView>, ApiError> {
    if state.services.settings.billing.is_none() {
        return Ok(None);
    }
    let subscription = state.services.billing.billing_of(ws).await?;
    Ok(Some(BillingView::of(ws, subscription)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"plan": "standard", "success_url": "https://manage.example.com/billing/done", "cancel_url": "https://manage.example.com/billing"}))]
pub struct CheckoutBody {
    plan: String,
    success_url: String,
    cancel_url: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckoutSession {
    pub url: String,
    pub session_id: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"return_url": "https://manage.example.com/billing"}))]
pub struct PortalBody {
    return_url: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PortalSession {
    pub url: String,
}

impl From<BillingError> for ApiError {
    fn from(e: BillingError) -> Self {
        let text = e.to_string();
        match e {
            BillingError::NotEnabled => ApiError::conflict("billing_not_enabled", text),
            BillingError::UnknownPlan(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unknown_plan", text)
            }
            BillingError::AlreadySubscribed => ApiError::conflict("already_subscribed", text),
            BillingError::NoBillingCustomer => ApiError::conflict("no_billing_customer", text),
            BillingError::StripeUnavailable => {
                ApiError::new(StatusCode::BAD_GATEWAY, "stripe_unavailable", text)
            }
            BillingError::StripeRefused(_) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "stripe_error", text)
            }
            BillingError::Store(f) => f.into(),
        }
    }
}

/// http(s) URLs only (Stripe sends the customer there).
pub(super) fn url(field: &'static str, v: &str) -> Result<(), ApiError> {
    let ok = (v.starts_with("https://") || v.starts_with("http://")) && v.len() <= 2048;
    ok.then_some(()).ok_or_else(|| {
        ApiError::validation(vec![super::error::FieldError::new(
            field,
            "invalid_url",
            "Must be an http(s) URL.",
        )])
    })
}

#[utoipa::path(
    get,
    path = "/api/workspaces/{workspace_id}/billing",
    operation_id = "get_billing",
    tag = "billing",
    summary = "The workspace's subscription to the platform (scope billing:read)",
    params(("workspace_id" = String, Path, description = "^[A-Za-z0-9_-]{1,64}$")),
    responses(
        (status = 200, description = "The subscription", body = BillingView),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub async fn get(
    principal: Principal,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ws = workspace_id(&path)?;
    principal.authorize("billing:read", Some(ws.as_str()))?;
    let s = state.services.billing.billing_of(ws.as_str()).await?;
    Ok(HttpResponse::Ok().json(BillingView::of(ws.as_str(), s)))
}

#[utoipa::path(
    post,
    path = "/api/workspaces/{workspace_id}/billing/checkout",
    operation_id = "start_billing_checkout",
    tag = "billing",
    summary = "A Stripe Checkout Session for a plan (scope billing:write)",
    params(("workspace_id" = String, Path, description = "^[A-Za-z0-9_-]{1,64}$")),
    request_body = CheckoutBody,
    responses(
        (status = 201, description = "Send the admin to `url`", body = CheckoutSession),
        (status = 422, description = "`unknown_plan` | `validation_failed`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`already_subscribed` | `billing_not_enabled`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub async fn checkout(
    principal: Principal,
    path: web::Path<String>,
    body: web::Json<CheckoutBody>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ws = workspace_id(&path)?;
    principal.authorize("billing:write", Some(ws.as_str()))?;
    url("success_url", &body.success_url)?;
    url("cancel_url", &body.cancel_url)?;
    let meta = metadata(&req, &principal.sub);
    let (url, session_id) = state
        .services
        .billing
        .start_checkout(
            ws.as_str(),
            &body.plan,
            &body.success_url,
            &body.cancel_url,
            &meta,
        )
        .await?;
    Ok(HttpResponse::Created().json(CheckoutSession { url, session_id }))
}

#[utoipa::path(
    post,
    path = "/api/workspaces/{workspace_id}/billing/portal",
    operation_id = "open_billing_portal",
    tag = "billing",
    summary = "A Stripe Billing Portal session (scope billing:write)",
    params(("workspace_id" = String, Path, description = "^[A-Za-z0-9_-]{1,64}$")),
    request_body = PortalBody,
    responses(
        (status = 201, description = "Send the admin to `url`", body = PortalSession),
        (status = 409, description = "`no_billing_customer` | `billing_not_enabled`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub async fn portal(
    principal: Principal,
    path: web::Path<String>,
    body: web::Json<PortalBody>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ws = workspace_id(&path)?;
    principal.authorize("billing:write", Some(ws.as_str()))?;
    url("return_url", &body.return_url)?;
    let url = state
        .services
        .billing
        .open_portal(ws.as_str(), &body.return_url)
        .await?;
    Ok(HttpResponse::Created().json(PortalSession { url }))
}

#[utoipa::path(
    post,
    path = "/billing/stripe/webhook",
    operation_id = "billing_webhook",
    tag = "webhooks",
    summary = "The platform's billing webhook (subscriptions and invoices)",
    params(("Stripe-Signature" = String, Header)),
    request_body(content = HashMap<String, serde_json::Value>, description = "The Stripe event, exactly as Stripe signed it (read raw)"),
    responses(
        (status = 200, description = "Verified", body = WebhookAck),
        (status = 400, description = "`missing_signature` | `invalid_signature_header` | `signature_mismatch` | `timestamp_out_of_tolerance` | `invalid_payload` | `webhook_secret_not_configured`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`: this address sent too many unsigned deliveries", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store_unavailable`", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn webhook(
    body: web::Bytes,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let signature = req
        .headers()
        .get("stripe-signature")
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    let meta = metadata(&req, "stripe");
    let received = state
        .services
        .billing
        .receive_billing_webhook(&body, signature, client_ip(&state, &req), &meta)
        .await;
    let (outcome, code) = match &received {
        Ok(o) => (o.as_str(), ""),
        Err(r) => ("rejected", r.code()),
    };
    crate::metrics::webhook(outcome, code);
    super::webhooks::refusal_counts(&received, &state, &req)?;
    Ok(HttpResponse::Ok().json(super::webhooks::ack(received?)))
}
