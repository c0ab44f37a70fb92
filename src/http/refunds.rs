//! `POST /api/support/charging-intents/{id}/refunds` (scope `refunds:write`): a refund
//! in the workspace's Stripe account, once per `Idempotency-Key`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Principal;
use super::error::{ApiError, FieldError, Problem};
use super::payments::usable_key;
use super::{metadata, AppState};
use crate::application::refunds::{RefundAsk, RefundDone};
use crate::infra::store::Metadata;

const SCOPE: &str = "refunds:write";

/// Why the driver gets money back (Stripe's refund reasons).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefundReason {
    RequestedByCustomer,
    Duplicate,
    Fraudulent,
}

#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"amount_cents": 500, "reason": "requested_by_customer"}))]
pub struct RefundBody {
    /// Minor units, at least 1; absent: the whole refundable rest.
    amount_cents: Option<i64>,
    reason: Option<RefundReason>,
}

#[derive(Serialize, ToSchema)]
pub struct RefundView {
    /// Stripe's refund id; null when Stripe refused it.
    pub refund_id: Option<String>,
    /// `succeeded` | `pending` | `failed`
    pub status: &'static str,
    pub amount_cents: i64,
    pub charging_intent_id: String,
}

pub(super) fn ask(body: RefundBody, req: &HttpRequest) -> Result<RefundAsk, ApiError> {
    let key = req
        .headers()
        .get("idempotency-key")
        .ok_or_else(|| {
            let detail = "A refund needs an Idempotency-Key (a random UUID per refund).";
            ApiError::bad_request("idempotency_key_required", detail)
        })?
        .to_str()
        .ok()
        .filter(|k| usable_key(k))
        .ok_or_else(|| {
            let detail = "Idempotency-Key must be 16 to 255 printable ASCII characters.";
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_idempotency_key",
                detail,
            )
        })?;
    if body.amount_cents.is_some_and(|a| a < 1) {
        let e = FieldError::new(
            "amount_cents",
            "invalid_amount",
            "At least 1 (minor units).",
        );
        return Err(ApiError::validation(vec![e]));
    }
    let reason = body
        .reason
        .map(|r| serde_json::to_value(r).expect("serializes"))
        .and_then(|v| v.as_str().map(str::to_string));
    Ok(RefundAsk {
        key: key.to_string(),
        amount_cents: body.amount_cents,
        reason,
    })
}

#[utoipa::path(
    post,
    path = "/api/support/charging-intents/{charging_intent_id}/refunds",
    operation_id = "refund_charging_intent",
    tag = "support",
    summary = "Refund part or all of a completed intent's capture (scope refunds:write)",
    params(
        ("charging_intent_id" = String, Path),
        ("Idempotency-Key" = String, Header, description = "Required; the same key again answers the same refund")
    ),
    request_body = RefundBody,
    responses(
        (status = 201, description = "The refund", body = RefundView),
        (status = 400, description = "`idempotency_key_required`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`invalid_transition` (not completed with a capture above 0)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`refund_exceeds_captured` | `invalid_idempotency_key` | `idempotency_key_reused` | `validation_failed`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`charging_intent_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`stripe_unavailable` (send the same key again) | `store_unavailable`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub async fn create(
    principal: Principal,
    path: web::Path<String>,
    body: web::Json<RefundBody>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    principal.authorize(SCOPE, None)?;
    let ask = ask(body.into_inner(), &req)?;
    let admitted = |ws: &str| -> Result<Metadata, ApiError> {
        principal.authorize(SCOPE, Some(ws))?;
        Ok(metadata(&req, &principal.sub))
    };
    let done: RefundDone = state.services.payments.refund(&path, ask, admitted).await?;
    Ok(HttpResponse::Created().json(RefundView {
        refund_id: done.refund_id,
        status: done.status,
        amount_cents: done.amount_cents,
        charging_intent_id: path.into_inner(),
    }))
}
