//! Sessions (the OCPI session module, scope `sessions:write`): start, complete with the
//! final amount (capture, or release for 0), cancel. Each step is decided and stored
//! first, then carried out in the workspace's own Stripe account; what Stripe did not
//! answer definitely is finished by the session worker.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use cqrs_es::AggregateError;
use serde::Deserialize;

use super::auth::Principal;
use super::driver::ci_string;
use super::error::{ApiError, FieldError};
use super::ocpi_config::{metadata, profile_error};
use super::payments::{intent_error, intent_json, key_for, release_connector};
use super::AppState;
use crate::charging_intent::{
    CancelIntent, ChargingIntent, ChargingIntentCommand, ChargingIntentError, CompleteSession,
    ReleaseReason, SettlePayment, StartSession,
};
use crate::store::Metadata;

const SCOPE: &str = "sessions:write";

#[derive(Deserialize)]
pub struct StartBody {
    ocpi_session_id: String,
}

#[derive(Deserialize)]
pub struct CompleteBody {
    final_amount_cents: i64,
    ocpi_session_id: Option<String>,
}

pub fn session_error(e: AggregateError<ChargingIntentError>) -> ApiError {
    match e {
        AggregateError::UserError(ChargingIntentError::InvalidTransition(status)) => {
            ApiError::conflict(
                "invalid_transition",
                format!("Not possible while the charging intent is {status}."),
            )
        }
        other => intent_error(other),
    }
}

fn not_found() -> ApiError {
    ApiError::not_found("charging_intent_not_found", "No such charging intent.")
}

/// The intent, if the token may act on its workspace.
async fn load(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<ChargingIntent, ApiError> {
    principal.authorize(SCOPE, None)?;
    if id.is_empty() || id.len() > 64 {
        return Err(not_found());
    }
    let intent = state.intents.load(id).await.map_err(ApiError::internal)?;
    let ws = &intent.request.as_ref().ok_or_else(not_found)?.workspace_id;
    principal.authorize(SCOPE, Some(ws))?;
    Ok(intent)
}

/// Carries out the capture or release the intent is waiting for, with the secret key of
/// the credential version it was created under; frees the connector once it has ended.
pub async fn settle(
    state: &AppState,
    intent: ChargingIntent,
    meta: &Metadata,
) -> Result<ChargingIntent, ApiError> {
    let (Some(r), Some(p)) = (&intent.request, &intent.payment) else {
        return Ok(intent);
    };
    if intent.settlement.is_none() {
        return Ok(intent);
    }
    let profile = state
        .profiles
        .load_recent(&r.workspace_id)
        .await
        .map_err(profile_error)?;
    let key = key_for(state, &profile, &r.workspace_id, p.credential_version).await?;
    let cmd = ChargingIntentCommand::SettlePayment(SettlePayment {
        secret_key: key,
        at: chrono::Utc::now(),
    });
    let after = state
        .intents
        .execute(&r.charging_intent_id, cmd, meta)
        .await
        .map_err(session_error)?;
    state.projector.nudge();
    Ok(after)
}

/// Runs a session step, settles what it decided, frees the connector when it ended.
async fn step(
    state: &AppState,
    id: &str,
    cmd: ChargingIntentCommand,
    meta: &Metadata,
) -> Result<HttpResponse, ApiError> {
    let was_final = state
        .intents
        .load(id)
        .await
        .map_err(ApiError::internal)?
        .status
        .is_final();
    let after = state
        .intents
        .execute(id, cmd, meta)
        .await
        .map_err(session_error)?;
    state.projector.nudge();
    let after = match settle(state, after.clone(), meta).await {
        Ok(a) => a,
        Err(e) => {
            // Decided and stored; the worker carries it out.
            tracing::warn!(charging_intent_id = %id, error = %e, "settlement left to the worker");
            after
        }
    };
    if after.status.is_final() && !was_final {
        release_connector(state, &after, after.status.as_str(), meta).await;
    }
    // Still waiting for a definite answer from Stripe: accepted, the worker finishes it.
    let status = if after.settlement.is_some() {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok(HttpResponse::build(status).json(intent_json(id, &after)))
}

/// `POST /ocpi/charging-intents/{id}/start`
#[utoipa::path(
    post,
    path = "/ocpi/charging-intents/{charging_intent_id}/start",
    tag = "sessions",
    summary = "Charging started: authorized → charging (scope sessions:write)",
    params(("charging_intent_id" = String, Path)),
    request_body = super::openapi::StartSession,
    responses(
        (status = 200, description = "The intent", body = super::openapi::ChargingIntentView),
        (status = 409, description = "`invalid_transition` (current status in `detail`)", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`charging_intent_not_found`", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthenticated`", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = super::openapi::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub async fn start(
    principal: Principal,
    path: web::Path<String>,
    body: web::Json<StartBody>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    load(&state, &principal, &path).await?;
    let ocpi_session_id = ci_string("ocpi_session_id", &body.ocpi_session_id)?;
    let cmd = ChargingIntentCommand::StartSession(StartSession {
        ocpi_session_id,
        at: chrono::Utc::now(),
    });
    step(&state, &path, cmd, &metadata(&req, &principal.sub)).await
}

/// `POST /ocpi/charging-intents/{id}/complete`
#[utoipa::path(
    post,
    path = "/ocpi/charging-intents/{charging_intent_id}/complete",
    tag = "sessions",
    summary = "Charging ended: capture min(final, authorized); 0 releases the hold (scope sessions:write)",
    params(("charging_intent_id" = String, Path)),
    request_body = super::openapi::CompleteSession,
    responses(
        (status = 200, description = "`completed` or `capture_failed`", body = super::openapi::ChargingIntentView),
        (status = 202, description = "Stripe has not answered definitely yet; retried in the background", body = super::openapi::ChargingIntentView),
        (status = 409, description = "`invalid_transition`", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`charging_intent_not_found`", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthenticated`", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = super::openapi::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub async fn complete(
    principal: Principal,
    path: web::Path<String>,
    body: web::Json<CompleteBody>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    load(&state, &principal, &path).await?;
    let body = body.into_inner();
    if body.final_amount_cents < 0 {
        return Err(ApiError::validation(vec![FieldError::new(
            "final_amount_cents",
            "invalid_amount",
            "The final amount must be 0 or more (minor units).",
        )]));
    }
    let ocpi_session_id = body
        .ocpi_session_id
        .as_deref()
        .map(|s| ci_string("ocpi_session_id", s))
        .transpose()?;
    let cmd = ChargingIntentCommand::CompleteSession(CompleteSession {
        final_amount_cents: body.final_amount_cents,
        ocpi_session_id,
        at: chrono::Utc::now(),
    });
    step(&state, &path, cmd, &metadata(&req, &principal.sub)).await
}

/// `POST /ocpi/charging-intents/{id}/cancel`
#[utoipa::path(
    post,
    path = "/ocpi/charging-intents/{charging_intent_id}/cancel",
    tag = "sessions",
    summary = "Release the hold (scope sessions:write)",
    params(("charging_intent_id" = String, Path)),
    responses(
        (status = 200, description = "`cancelled`", body = super::openapi::ChargingIntentView),
        (status = 202, description = "Release pending", body = super::openapi::ChargingIntentView),
        (status = 409, description = "`invalid_transition`", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`charging_intent_not_found`", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthenticated`", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = super::openapi::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub async fn cancel(
    principal: Principal,
    path: web::Path<String>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    load(&state, &principal, &path).await?;
    let cmd = ChargingIntentCommand::CancelIntent(CancelIntent {
        reason: ReleaseReason::Cancelled,
        at: chrono::Utc::now(),
    });
    step(&state, &path, cmd, &metadata(&req, &principal.sub)).await
}
