//! Roaming payments: pre-authorization, the intent view, and the confirm path for
//! workspaces without webhooks.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;

use super::driver::{admit, ci_string, rate_limit};
use super::error::{ApiError, FieldError, Problem};
use super::views::{ChargingIntentView, CreatedPaymentIntent};
use super::{metadata, AppState};
use crate::application::payments::{DriverGate, PreAuthRequest, PreAuthorized};
use crate::infra::store::Metadata;

#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"location_id": "LOC-1", "evse_uid": "EVSE-1", "connector_id": "1", "email": "driver@example.com"}))]
pub struct CreatePaymentIntent {
    location_id: String,
    evse_uid: String,
    connector_id: String,
    email: Option<String>,
}

/// The request, checked for shape: ids, email, `Idempotency-Key`.
pub(super) fn parse(
    body: CreatePaymentIntent,
    req: &HttpRequest,
) -> Result<PreAuthRequest, ApiError> {
    if let Some(email) = &body.email {
        if email.len() > 254 || !email.contains('@') {
            let e = FieldError::new("email", "invalid_email", "Must be an email address.");
            return Err(ApiError::validation(vec![e]));
        }
    }
    let idempotency_key = match req.headers().get("idempotency-key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .filter(|k| usable_key(k))
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid_idempotency_key",
                        "Idempotency-Key must be 16 to 255 printable ASCII characters (a random UUID is right).",
                    )
                })?
                .to_string(),
        ),
    };
    Ok(PreAuthRequest {
        location_id: ci_string("location_id", &body.location_id)?,
        evse_uid: ci_string("evse_uid", &body.evse_uid)?,
        connector_id: ci_string("connector_id", &body.connector_id)?,
        email: body.email,
        idempotency_key,
        driver: None,
    })
}

/// 16 to 255 printable ASCII characters: long enough not to be guessed or collide.
pub(super) fn usable_key(k: &str) -> bool {
    (16..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic())
}

fn created(p: PreAuthorized) -> CreatedPaymentIntent {
    let i = &p.intent;
    let paid = i.payment.as_ref();
    CreatedPaymentIntent {
        charging_intent_id: p.charging_intent_id.clone(),
        authorization_reference: paid.map(|p| p.authorization_reference.clone()),
        workspace_id: i
            .request
            .as_ref()
            .map(|r| r.workspace_id.clone())
            .unwrap_or_default(),
        payment_required: i.payment_required(),
        status: i.status,
        amount_cents: paid.map(|p| p.amount_cents),
        currency: paid.and(i.request.as_ref().map(|r| r.currency.clone())),
        payment_intent_id: paid.map(|p| p.payment_intent_id.clone()),
        client_secret: paid.map(|_| {
            p.client_secret
                .as_ref()
                .map(crate::infra::stripe::client_secret_for_browser)
        }),
        publishable_key: paid.map(|_| p.publishable_key.clone()),
        stripe_account_id: paid.map(|p| p.stripe_account_id.clone()),
    }
}

/// `POST /ocpi/create-payment-intent`
#[utoipa::path(
    post,
    path = "/ocpi/create-payment-intent",
    operation_id = "create_payment_intent",
    tag = "payments",
    summary = "Pre-authorize a driver for a connector",
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key and body: the same answer, no second PaymentIntent")),
    request_body = CreatePaymentIntent,
    responses(
        (status = 201, description = "Created (paid: `pending_payment` with Stripe fields; free: `authorized`)", body = CreatedPaymentIntent),
        (status = 404, description = "`location_not_found` | `evse_not_found` | `connector_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`workspace_payment_not_ready` | `connector_busy`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`idempotency_key_reused` | `validation_failed`", body = Problem, content_type = "application/problem+json"),
        (status = 402, description = "`stripe_error` (card or request refused)", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`stripe_error`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`stripe_unavailable` | `store_unavailable`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`driver_token_required` (the workspace does not allow guests)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn create(
    body: web::Json<CreatePaymentIntent>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let answer = pre_authorize(body.into_inner(), &req, &state).await;
    match &answer {
        Ok(p) => crate::metrics::preauth(p.outcome.as_str(), ""),
        Err(e) => crate::metrics::preauth("refused", e.code),
    }
    Ok(HttpResponse::Created().json(created(answer?)))
}

async fn pre_authorize(
    body: CreatePaymentIntent,
    req: &HttpRequest,
    state: &AppState,
) -> Result<PreAuthorized, ApiError> {
    rate_limit(state, req)?;
    let request = parse(body, req)?;
    let request_id = metadata(req, "").request_id;
    let admitted = |gate: &_| admit(state, req, gate).map(|d| d.sub);
    state
        .services
        .payments
        .pre_authorize_driver::<ApiError>(request, &request_id, admitted)
        .await
}

/// `GET /ocpi/charging-intents/{id}`
#[utoipa::path(
    get,
    path = "/ocpi/charging-intents/{charging_intent_id}",
    operation_id = "get_charging_intent",
    tag = "payments",
    summary = "Read a charging intent",
    params(("charging_intent_id" = String, Path)),
    responses(
        (status = 200, description = "The intent", body = ChargingIntentView),
        (status = 404, description = "`charging_intent_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`driver_token_required` (the workspace does not allow guests)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn get(
    path: web::Path<String>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    rate_limit(&state, &req)?;
    let (intent, gate) = state.services.payments.intent_gate(&path).await?;
    admit(&state, &req, &gate)?;
    Ok(HttpResponse::Ok().json(ChargingIntentView::of(&path, &intent)))
}

/// `POST /ocpi/charging-intents/{id}/confirm`
#[utoipa::path(
    post,
    path = "/ocpi/charging-intents/{charging_intent_id}/confirm",
    operation_id = "confirm_charging_intent",
    tag = "payments",
    summary = "Read the PaymentIntent from Stripe and apply its status (no-webhook path)",
    params(("charging_intent_id" = String, Path)),
    responses(
        (status = 200, description = "The intent", body = ChargingIntentView),
        (status = 404, description = "`charging_intent_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`stripe_unavailable`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`driver_token_required` (the workspace does not allow guests)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn confirm(
    path: web::Path<String>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    rate_limit(&state, &req)?;
    let admitted = |gate: &DriverGate| -> Result<Metadata, ApiError> {
        Ok(metadata(&req, admit(&state, &req, gate)?.actor()))
    };
    let after = state.services.payments.confirm(&path, admitted).await?;
    Ok(HttpResponse::Ok().json(ChargingIntentView::of(&path, &after)))
}
