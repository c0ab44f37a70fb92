//! Roaming payments: pre-authorization in the workspace's own Stripe account, the
//! intent view, and the confirm path for workspaces without webhooks.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use cqrs_es::AggregateError;
use roampay_events::{HealthStatus, IntentRequest};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::driver::{admit, ci_string, rate_limit};
use super::error::ApiError;
use super::ocpi_config::{metadata, profile_error};
use super::AppState;
use crate::charging_intent::aggregate::STRIPE_UNAVAILABLE;
use crate::charging_intent::{
    ChargingIntent, ChargingIntentCommand, ChargingIntentError, IntentStatus, PaidPreAuth, Payment,
    ProcessStripeAuthorizationWebhook, RequestRoamingPreAuth,
};
use crate::connector_reservation::{connector_key, ConnectorCommand, ConnectorError};
use crate::store::Metadata;
use crate::stripe::PaymentIntentView;
use crate::vault::SecretField;
use crate::workspace_stripe_profile::WorkspaceStripeProfile;

#[derive(Deserialize)]
pub struct CreateBody {
    location_id: String,
    evse_uid: String,
    connector_id: String,
    email: Option<String>,
}

/// The intent as drivers and support see it.
pub fn intent_json(id: &str, i: &ChargingIntent) -> Value {
    let r = i.request.as_ref();
    let p = i.payment.as_ref();
    json!({
        "charging_intent_id": id,
        "workspace_id": r.map(|r| &r.workspace_id),
        "status": i.status.as_str(),
        "payment_required": i.payment_required(),
        "amount_cents": p.map(|p| p.amount_cents),
        "currency": r.map(|r| &r.currency),
        "authorized_amount_cents": i.authorized_amount_cents,
        "captured_amount_cents": i.captured_amount_cents,
        "payment_intent_id": p.map(|p| &p.payment_intent_id),
        "authorization_reference": p.map(|p| &p.authorization_reference),
        "location_id": r.map(|r| &r.location_id),
        "evse_uid": r.map(|r| &r.evse_uid),
        "connector_id": r.map(|r| &r.connector_id),
        "ocpi_session_id": i.ocpi_session_id,
        "failure_code": i.failure_code,
        "created_at": i.created_at,
        "updated_at": i.updated_at,
    })
}

fn hash_request(b: &CreateBody) -> String {
    let mut h = Sha256::new();
    for part in [
        b.location_id.as_str(),
        &b.evse_uid,
        &b.connector_id,
        b.email.as_deref().unwrap_or(""),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..16])
}

/// With a client `Idempotency-Key`, the intent id is derived from it (per workspace),
/// so a retry lands on the same intent; without one, a fresh id.
fn intent_id(workspace_id: &str, key: Option<&str>) -> String {
    match key {
        Some(k) => {
            let d = Sha256::digest(format!("{workspace_id}\0{k}").as_bytes());
            let mut b = [0u8; 16];
            b.copy_from_slice(&d[..16]);
            b[6] = (b[6] & 0x0f) | 0x80; // version 8 (custom), RFC 9562
            b[8] = (b[8] & 0x3f) | 0x80;
            uuid::Uuid::from_bytes(b).to_string()
        }
        None => uuid::Uuid::now_v7().to_string(),
    }
}

pub(super) fn intent_error(e: AggregateError<ChargingIntentError>) -> ApiError {
    match e {
        AggregateError::UserError(ChargingIntentError::IdempotencyKeyReused) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "This Idempotency-Key was already used with a different request.",
        ),
        AggregateError::UserError(ChargingIntentError::NotFound) => not_found(),
        AggregateError::UserError(ChargingIntentError::StripeUnavailable) => {
            ApiError::unavailable("stripe_unavailable", "Stripe did not answer; try again.")
        }
        AggregateError::DatabaseConnectionError(_) => {
            ApiError::unavailable("store_unavailable", "The event store does not answer.")
        }
        other => ApiError::internal(other),
    }
}

fn not_found() -> ApiError {
    ApiError::not_found("charging_intent_not_found", "No such charging intent.")
}

/// The secret key an intent must use: the one of the credential version it was created
/// under (a rotation since then does not matter).
pub async fn key_for(
    state: &AppState,
    profile: &WorkspaceStripeProfile,
    workspace_id: &str,
    version: u32,
) -> Result<SecretString, ApiError> {
    let k = profile.secret_key_for(version).ok_or_else(|| {
        ApiError::internal(format!("no secret key for credential version {version}"))
    })?;
    state
        .vault
        .get(
            workspace_id,
            SecretField::SecretKey,
            k.version,
            &k.secret.fingerprint,
        )
        .await
        .map_err(ApiError::internal)
}

/// The intent's PaymentIntent as Stripe has it, read with the intent's own key.
async fn read_payment_intent(
    state: &AppState,
    profile: &WorkspaceStripeProfile,
    workspace_id: &str,
    payment: &Payment,
) -> Result<PaymentIntentView, ApiError> {
    let key = key_for(state, profile, workspace_id, payment.credential_version).await?;
    state
        .stripe
        .retrieve_payment_intent(&key, &payment.payment_intent_id)
        .await
        .map_err(|_| {
            ApiError::unavailable(
                "stripe_unavailable",
                "Stripe could not be reached; try again.",
            )
        })
}

pub async fn release_connector(
    state: &AppState,
    i: &ChargingIntent,
    reason: &str,
    meta: &Metadata,
) {
    let Some(r) = &i.request else { return };
    let cmd = ConnectorCommand::Release {
        workspace_id: r.workspace_id.clone(),
        charging_intent_id: r.charging_intent_id.clone(),
        reason: reason.to_string(),
        at: chrono::Utc::now(),
    };
    let key = connector_key(&r.location_id, &r.evse_uid, &r.connector_id);
    if let Err(e) = state.connectors.execute(&key, cmd, meta).await {
        tracing::error!(error = %e, connector = %key, "could not release a connector; the stale-hold sweep will");
    }
}

/// How long a reservation may wait for its intent's first event before it is taken
/// for the leftover of a crash (creation waits on Stripe for far less).
const STALE_RESERVATION: chrono::Duration = chrono::Duration::minutes(5);

/// Reserves the connector. A holder that ended without releasing it, or that never
/// came to exist (the process died between the reservation and the intent), is
/// released first: leftovers of crashes do not block a connector.
async fn reserve_connector(
    state: &AppState,
    key: &str,
    reserve: ConnectorCommand,
    meta: &Metadata,
) -> Result<(), ApiError> {
    let busy = || {
        ApiError::conflict(
            "connector_busy",
            "Another charging intent holds this connector.",
        )
    };
    for _ in 0..2 {
        let held_by = match state.connectors.execute(key, reserve.clone(), meta).await {
            Ok(_) => return Ok(()),
            Err(AggregateError::UserError(ConnectorError::Busy { held_by })) => held_by,
            Err(other) => return Err(ApiError::internal(other)),
        };
        let holder = state
            .intents
            .load(&held_by)
            .await
            .map_err(ApiError::internal)?;
        let reservation = state
            .connectors
            .load(key)
            .await
            .map_err(ApiError::internal)?;
        let never_created = holder.request.is_none()
            && reservation
                .held_since
                .is_some_and(|t| t < chrono::Utc::now() - STALE_RESERVATION);
        if !(holder.status.is_final() || never_created) {
            return Err(busy());
        }
        let ConnectorCommand::Reserve { workspace_id, .. } = &reserve else {
            return Err(busy());
        };
        let release = ConnectorCommand::Release {
            workspace_id: workspace_id.clone(),
            charging_intent_id: held_by.clone(),
            reason: if never_created {
                "stale"
            } else {
                holder.status.as_str()
            }
            .to_string(),
            at: chrono::Utc::now(),
        };
        tracing::warn!(connector = %key, charging_intent_id = %held_by, "released a connector left held");
        state
            .connectors
            .execute(key, release, meta)
            .await
            .map_err(ApiError::internal)?;
    }
    Err(busy())
}

fn created_response(
    id: &str,
    i: &ChargingIntent,
    client_secret: Option<&SecretString>,
    publishable_key: Option<&str>,
) -> HttpResponse {
    let mut body = json!({
        "charging_intent_id": id,
        "authorization_reference": i.payment.as_ref().map(|p| p.authorization_reference.clone()),
        "workspace_id": i.request.as_ref().map(|r| &r.workspace_id),
        "payment_required": i.payment_required(),
        "status": i.status.as_str(),
    });
    if let Some(p) = &i.payment {
        body["amount_cents"] = json!(p.amount_cents);
        body["currency"] = json!(i.request.as_ref().map(|r| &r.currency));
        body["payment_intent_id"] = json!(p.payment_intent_id);
        body["client_secret"] = json!(client_secret.map(crate::stripe::client_secret_for_browser));
        body["publishable_key"] = json!(publishable_key);
    }
    HttpResponse::Created().json(body)
}

/// An intent that ended at creation answers with the error it ended with.
fn creation_failure(i: &ChargingIntent) -> Option<ApiError> {
    if i.status != IntentStatus::Failed || i.payment.is_some() {
        return None;
    }
    let code = i.failure_code.clone().unwrap_or_default();
    Some(if code == STRIPE_UNAVAILABLE {
        ApiError::unavailable(
            "stripe_unavailable",
            "Stripe could not be reached; no payment was started. Try again.",
        )
    } else {
        let status = if code.starts_with("card_") || code == "authentication_required" {
            StatusCode::PAYMENT_REQUIRED
        } else {
            StatusCode::BAD_GATEWAY
        };
        ApiError::new(
            status,
            "stripe_error",
            format!("Stripe refused the pre-authorization: {code}"),
        )
    })
}

/// `POST /ocpi/create-payment-intent`
#[utoipa::path(
    post,
    path = "/ocpi/create-payment-intent",
    tag = "payments",
    summary = "Pre-authorize a driver for a connector",
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key and body: the same answer, no second PaymentIntent")),
    request_body = super::openapi::CreatePaymentIntent,
    responses(
        (status = 201, description = "Created (paid: `pending_payment` with Stripe fields; free: `authorized`)", body = super::openapi::CreatedPaymentIntent),
        (status = 404, description = "`location_not_found` | `evse_not_found` | `connector_not_found`", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`workspace_payment_not_ready` | `connector_busy`", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "`idempotency_key_reused` | `validation_failed`", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 402, description = "`stripe_error` (card or request refused)", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 502, description = "`stripe_error`", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "`stripe_unavailable`", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "`driver_token_required` (the workspace does not allow guests)", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`", body = super::openapi::Problem, content_type = "application/problem+json")
    )
)]
pub async fn create(
    body: web::Json<CreateBody>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    match create_intent(body, req, state).await {
        Ok((response, outcome)) => {
            crate::metrics::preauth(outcome, "");
            Ok(response)
        }
        Err(e) => {
            crate::metrics::preauth("refused", e.code);
            Err(e)
        }
    }
}

/// The answer, and the outcome counted in `roampay_preauths_total`.
async fn create_intent(
    body: web::Json<CreateBody>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<(HttpResponse, &'static str), ApiError> {
    rate_limit(&state, &req)?;
    let body = body.into_inner();
    let location_id = ci_string("location_id", &body.location_id)?;
    let evse_uid = ci_string("evse_uid", &body.evse_uid)?;
    let connector_id = ci_string("connector_id", &body.connector_id)?;
    if let Some(email) = &body.email {
        if email.len() > 254 || !email.contains('@') {
            return Err(ApiError::validation(vec![super::error::FieldError::new(
                "email",
                "invalid_email",
                "Must be an email address.",
            )]));
        }
    }
    let idem = req
        .headers()
        .get("idempotency-key")
        .map(|v| {
            v.to_str()
                .ok()
                .filter(|k| (1..=255).contains(&k.len()))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_idempotency_key",
                        "Idempotency-Key must be 1 to 255 visible characters.",
                    )
                })
        })
        .transpose()?;

    let location = state
        .locations
        .load_recent(&location_id)
        .await
        .map_err(ApiError::internal)?;
    let Some(ws) = location.workspace_id.clone() else {
        return Err(ApiError::not_found(
            "location_not_found",
            "No such location.",
        ));
    };
    let connector = location
        .connector(&evse_uid, &connector_id)
        .map_err(|code| ApiError::not_found(code, "No such EVSE or connector at this location."))?
        .clone();
    let profile = state
        .profiles
        .load_recent(&ws)
        .await
        .map_err(profile_error)?;
    let principal = admit(&state, &req, &ws, &profile)?;
    let actor = principal.map(|p| p.sub).unwrap_or_else(|| "guest".into());
    let meta = metadata(&req, &actor);

    let id = intent_id(&ws, idem);
    let request_hash = hash_request(&body);
    // Without a client key the id is fresh: there is nothing to look up.
    let existing = if idem.is_some() {
        state.intents.load(&id).await.map_err(ApiError::internal)?
    } else {
        ChargingIntent::default()
    };
    if let Some(r) = &existing.request {
        // A retry of the same request answers as the first did; no second PaymentIntent.
        if r.request_hash != request_hash {
            return Err(intent_error(AggregateError::UserError(
                ChargingIntentError::IdempotencyKeyReused,
            )));
        }
        if let Some(err) = creation_failure(&existing) {
            return Err(err);
        }
        let secret = match &existing.payment {
            Some(p) => {
                let pi = read_payment_intent(&state, &profile, &ws, p).await?;
                pi.client_secret
            }
            None => None,
        };
        let pk = profile
            .credentials
            .as_ref()
            .map(|c| c.publishable_key.as_str());
        return Ok((
            created_response(&id, &existing, secret.as_ref(), pk),
            "replayed",
        ));
    }

    let free = connector.tariff.is_free();
    let paid = if free {
        None
    } else {
        let health = profile.health_status();
        let creds = match (&profile.credentials, health) {
            (Some(c), HealthStatus::Valid) => c,
            _ => {
                return Err(ApiError::conflict(
                    "workspace_payment_not_ready",
                    format!(
                        "This workspace cannot take payments: its Stripe credentials are {}.",
                        health.as_str()
                    ),
                ))
            }
        };
        Some(PaidPreAuth {
            amount_cents: profile.settings.pre_auth_cents.cents(),
            credential_version: profile.credential_version,
            mode: creds.mode,
            secret_key: key_for(&state, &profile, &ws, profile.credential_version).await?,
            email: body.email.clone(),
        })
    };
    let request = IntentRequest {
        charging_intent_id: id.clone(),
        workspace_id: ws.clone(),
        location_id: location_id.clone(),
        evse_uid: evse_uid.clone(),
        connector_id: connector_id.clone(),
        currency: if free {
            connector.tariff.currency.clone()
        } else {
            profile.settings.currency.as_str().to_string()
        },
        request_hash,
        requested_at: chrono::Utc::now(),
    };

    // The connector first: one open intent per connector, decided by the store.
    let reserve = ConnectorCommand::Reserve {
        workspace_id: ws.clone(),
        location_id: location_id.clone(),
        evse_uid: evse_uid.clone(),
        connector_id: connector_id.clone(),
        charging_intent_id: id.clone(),
        at: chrono::Utc::now(),
    };
    reserve_connector(
        &state,
        &connector_key(&location_id, &evse_uid, &connector_id),
        reserve,
        &meta,
    )
    .await?;

    let cmd = ChargingIntentCommand::RequestRoamingPreAuth(RequestRoamingPreAuth { request, paid });
    let intent = state
        .intents
        .execute(&id, cmd, &meta)
        .await
        .map_err(intent_error)?;
    state.projector.nudge();
    if let Some(err) = creation_failure(&intent) {
        release_connector(&state, &intent, "failed", &meta).await;
        return Err(err);
    }
    let secret = state.intent_services.take_client_secret(&id);
    let pk = profile
        .credentials
        .as_ref()
        .map(|c| c.publishable_key.as_str());
    let outcome = if free { "free" } else { "created" };
    Ok((created_response(&id, &intent, secret.as_ref(), pk), outcome))
}

async fn load_for_driver(
    state: &AppState,
    req: &HttpRequest,
    id: &str,
) -> Result<(ChargingIntent, WorkspaceStripeProfile, String), ApiError> {
    if id.is_empty() || id.len() > 64 {
        return Err(not_found());
    }
    let intent = state.intents.load(id).await.map_err(ApiError::internal)?;
    let ws = intent
        .request
        .as_ref()
        .ok_or_else(not_found)?
        .workspace_id
        .clone();
    let profile = state
        .profiles
        .load_recent(&ws)
        .await
        .map_err(profile_error)?;
    let principal = admit(state, req, &ws, &profile)?;
    Ok((
        intent,
        profile,
        principal.map(|p| p.sub).unwrap_or_else(|| "guest".into()),
    ))
}

/// `GET /ocpi/charging-intents/{id}`
#[utoipa::path(
    get,
    path = "/ocpi/charging-intents/{charging_intent_id}",
    tag = "payments",
    summary = "Read a charging intent",
    params(("charging_intent_id" = String, Path)),
    responses(
        (status = 200, description = "The intent", body = super::openapi::ChargingIntentView),
        (status = 404, description = "`charging_intent_not_found`", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "`driver_token_required` (the workspace does not allow guests)", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`", body = super::openapi::Problem, content_type = "application/problem+json")
    )
)]
pub async fn get(
    path: web::Path<String>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    rate_limit(&state, &req)?;
    let (intent, _, _) = load_for_driver(&state, &req, &path).await?;
    Ok(HttpResponse::Ok().json(intent_json(&path, &intent)))
}

/// Reads the PaymentIntent from the workspace's account and applies its status.
pub async fn sync_from_stripe(
    state: &AppState,
    intent: &ChargingIntent,
    profile: &WorkspaceStripeProfile,
    source: &'static str,
    meta: &Metadata,
) -> Result<ChargingIntent, ApiError> {
    let (Some(r), Some(p)) = (&intent.request, &intent.payment) else {
        return Ok(intent.clone());
    };
    if intent.status.is_final() {
        return Ok(intent.clone());
    }
    let pi = read_payment_intent(state, profile, &r.workspace_id, p).await?;
    let cmd = ChargingIntentCommand::ProcessStripeAuthorizationWebhook(
        ProcessStripeAuthorizationWebhook {
            charging_intent_id: r.charging_intent_id.clone(),
            workspace_id: r.workspace_id.clone(),
            payment_intent: pi,
            stripe_event_id: None,
            source,
            at: chrono::Utc::now(),
        },
    );
    let after = match state
        .intents
        .execute(&r.charging_intent_id, cmd, meta)
        .await
    {
        Ok(after) => after,
        Err(AggregateError::UserError(ChargingIntentError::NoChange)) => return Ok(intent.clone()),
        Err(e) => return Err(intent_error(e)),
    };
    state.projector.nudge();
    if after.status.is_final() && !intent.status.is_final() {
        release_connector(state, &after, after.status.as_str(), meta).await;
    }
    Ok(after)
}

/// `POST /ocpi/charging-intents/{id}/confirm`
#[utoipa::path(
    post,
    path = "/ocpi/charging-intents/{charging_intent_id}/confirm",
    tag = "payments",
    summary = "Read the PaymentIntent from Stripe and apply its status (no-webhook path)",
    params(("charging_intent_id" = String, Path)),
    responses(
        (status = 200, description = "The intent", body = super::openapi::ChargingIntentView),
        (status = 404, description = "`charging_intent_not_found`", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "`stripe_unavailable`", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "`driver_token_required` (the workspace does not allow guests)", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`", body = super::openapi::Problem, content_type = "application/problem+json")
    )
)]
pub async fn confirm(
    path: web::Path<String>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    rate_limit(&state, &req)?;
    let (intent, profile, actor) = load_for_driver(&state, &req, &path).await?;
    let after = sync_from_stripe(
        &state,
        &intent,
        &profile,
        "confirm",
        &metadata(&req, &actor),
    )
    .await?;
    Ok(HttpResponse::Ok().json(intent_json(&path, &after)))
}
