//! Sessions (the OCPI session module, scope `sessions:write`): start, complete with the
//! final amount, cancel. 202 while Stripe still owes a definite answer (the session
//! worker finishes it).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use secrecy::SecretString;
use serde::Deserialize;
use utoipa::ToSchema;

use super::auth::{bearer, Principal};
use super::driver::{ci_string, rate_limit};
use super::error::{ApiError, FieldError, Problem};
use super::views::ChargingIntentView;
use super::{metadata, AppState};
use crate::application::sessions::{DriverProof, SessionStep, StepDone};
use crate::domain::charging_intent::ReleaseReason;
use crate::infra::store::Metadata;

const SCOPE: &str = "sessions:write";

#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"ocpi_session_id": "SESS-1"}))]
pub struct StartSession {
    ocpi_session_id: String,
}

#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"final_amount_cents": 3210, "ocpi_session_id": "SESS-1"}))]
pub struct CompleteSession {
    /// What the session cost; `min(final, authorized)` is captured, 0 releases the hold.
    final_amount_cents: i64,
    ocpi_session_id: Option<String>,
}

/// The session module's step, for a token that may act on the intent's workspace.
async fn step(
    state: &AppState,
    principal: &Principal,
    id: &str,
    step: SessionStep,
    req: &HttpRequest,
) -> Result<HttpResponse, ApiError> {
    principal.authorize(SCOPE, None)?;
    let admit = |ws: &str| -> Result<Metadata, ApiError> {
        principal.authorize(SCOPE, Some(ws))?;
        Ok(metadata(req, &principal.sub))
    };
    let done = state.services.payments.session_step_for(id, step, admit);
    Ok(answer(id, done.await?))
}

fn answer(id: &str, done: StepDone) -> HttpResponse {
    let status = if done.settling {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    HttpResponse::build(status).json(ChargingIntentView::of(id, &done.intent))
}

/// `POST /ocpi/charging-intents/{id}/start`
#[utoipa::path(
    post,
    path = "/ocpi/charging-intents/{charging_intent_id}/start",
    operation_id = "start_session",
    tag = "sessions",
    summary = "Charging started: authorized → charging (scope sessions:write)",
    params(("charging_intent_id" = String, Path)),
    request_body = StartSession,
    responses(
        (status = 200, description = "The intent", body = ChargingIntentView),
        (status = 409, description = "`invalid_transition` (current status in `detail`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`charging_intent_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub async fn start(
    principal: Principal,
    path: web::Path<String>,
    body: web::Json<StartSession>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ocpi_session_id = ci_string("ocpi_session_id", &body.ocpi_session_id)?;
    let start = SessionStep::Start { ocpi_session_id };
    step(&state, &principal, &path, start, &req).await
}

/// `POST /ocpi/charging-intents/{id}/complete`
#[utoipa::path(
    post,
    path = "/ocpi/charging-intents/{charging_intent_id}/complete",
    operation_id = "complete_session",
    tag = "sessions",
    summary = "Charging ended: capture min(final, authorized); 0 releases the hold (scope sessions:write)",
    params(("charging_intent_id" = String, Path)),
    request_body = CompleteSession,
    responses(
        (status = 200, description = "`completed` or `capture_failed`", body = ChargingIntentView),
        (status = 202, description = "Stripe has not answered definitely yet; retried in the background", body = ChargingIntentView),
        (status = 409, description = "`invalid_transition`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`charging_intent_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub async fn complete(
    principal: Principal,
    path: web::Path<String>,
    body: web::Json<CompleteSession>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    principal.authorize(SCOPE, None)?;
    let body = body.into_inner();
    if body.final_amount_cents < 0 {
        let e = FieldError::new(
            "final_amount_cents",
            "invalid_amount",
            "The final amount must be 0 or more (minor units).",
        );
        return Err(ApiError::validation(vec![e]));
    }
    let ocpi_session_id = body
        .ocpi_session_id
        .as_deref()
        .map(|s| ci_string("ocpi_session_id", s))
        .transpose()?;
    let complete = SessionStep::Complete {
        final_amount_cents: body.final_amount_cents,
        ocpi_session_id,
    };
    step(&state, &principal, &path, complete, &req).await
}

/// A guest's proof, on `cancel`: the PaymentIntent's client secret.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"client_secret": "pi_3Hx_secret_…"}))]
pub struct CancelByGuest {
    /// The `client_secret` the create-payment-intent answer gave the driver's browser.
    client_secret: String,
}

/// `POST /ocpi/charging-intents/{id}/cancel`
#[utoipa::path(
    post,
    path = "/ocpi/charging-intents/{charging_intent_id}/cancel",
    operation_id = "cancel_charging_intent",
    tag = "sessions",
    summary = "Release the hold: the session module (scope sessions:write), or before charging the driver who created the intent (driver token, or a guest's client_secret)",
    params(("charging_intent_id" = String, Path)),
    request_body(content = Option<CancelByGuest>, description = "Guests only"),
    responses(
        (status = 200, description = "`cancelled`", body = ChargingIntentView),
        (status = 202, description = "Release pending", body = ChargingIntentView),
        (status = 409, description = "`invalid_transition`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`charging_intent_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthenticated` (no token and no client_secret)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden` (not the session module, nor the driver who created the intent)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited` (guests)", body = Problem, content_type = "application/problem+json")
    ),
    security((), ("bearer" = []))
)]
pub async fn cancel(
    path: web::Path<String>,
    body: web::Bytes,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let payments = &state.services.payments;
    let principal = match bearer(&req)? {
        Some(token) => Some(state.auth.verify(token)?),
        None => None,
    };
    let done = match principal {
        Some(p) if p.has_scope(SCOPE) => {
            let cancel = SessionStep::Cancel(ReleaseReason::Cancelled);
            return step(&state, &p, &path, cancel, &req).await;
        }
        Some(p) => {
            let meta = metadata(&req, &p.sub);
            let proof = DriverProof::Token(p.sub.clone());
            let admit = |ws: &str| p.authorize("driver", Some(ws));
            payments
                .cancel_by_driver(&path, proof, admit, &meta)
                .await?
        }
        None => {
            let proof = guest_proof(&state, &req, &body)?;
            let meta = metadata(&req, "guest");
            let admit = |_: &str| Ok::<_, ApiError>(());
            payments
                .cancel_by_driver(&path, proof, admit, &meta)
                .await?
        }
    };
    Ok(answer(&path, done))
}

/// A guest proves the intent is theirs with the PaymentIntent's client secret.
fn guest_proof(state: &AppState, req: &HttpRequest, body: &[u8]) -> Result<DriverProof, ApiError> {
    rate_limit(state, req)?;
    let unauthenticated = || {
        ApiError::unauthenticated(
            "Send a bearer token, or as a guest the PaymentIntent's client_secret.",
        )
    };
    if body.is_empty() {
        return Err(unauthenticated());
    }
    let guest: CancelByGuest = serde_json::from_slice(body).map_err(|_| unauthenticated())?;
    Ok(DriverProof::ClientSecret(SecretString::from(
        guest.client_secret,
    )))
}
