//! `POST /ocpi/stripe/webhook[/{workspace_id}]`: verified with the workspace's own
//! signing secrets, checked for ownership, applied once, refusals kept for support.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use cqrs_es::AggregateError;
use roampay_events::{StripeMode, WebhookRejected};
use serde_json::{json, Value};
use tracing::Instrument;

use super::driver::client_ip;
use super::error::ApiError;
use super::ocpi_config::{metadata, profile_error};
use super::payments::{key_for, release_connector};
use super::AppState;
use crate::charging_intent::{
    ChargingIntentCommand, ChargingIntentError, IntentStatus, ProcessStripeAuthorizationWebhook,
    ReleaseStrayHold,
};
use crate::ids::WorkspaceId;
use crate::store::Metadata;
use crate::stripe::webhook::verify;
use crate::stripe::PaymentIntentView;
use crate::vault::SecretField;
use crate::webhook_rejections::stream_id;

/// A refusal: its HTTP status and code, and what we learnt before refusing.
struct Refusal {
    status: StatusCode,
    code: &'static str,
    workspace_id: Option<String>,
    event_id: Option<String>,
    payment_intent_id: Option<String>,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str) -> Self {
        Self {
            status,
            code,
            workspace_id: None,
            event_id: None,
            payment_intent_id: None,
        }
    }
}

fn outcome(o: &str) -> HttpResponse {
    HttpResponse::Ok().json(json!({"received": true, "outcome": o}))
}

#[utoipa::path(
    post,
    path = "/ocpi/stripe/webhook",
    tag = "webhooks",
    summary = "Stripe webhook (workspace from the PaymentIntent metadata)",
    params(("Stripe-Signature" = String, Header)),
    request_body = Object,
    responses(
        (status = 200, description = "Verified", body = super::openapi::WebhookAck),
        (status = 400, description = "`missing_signature` | `invalid_signature_header` | `signature_mismatch` | `timestamp_out_of_tolerance` | `invalid_payload` | `unknown_workspace` | `webhook_secret_not_configured`", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "`ownership_mismatch` | `livemode_mismatch`", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store_unavailable` | `stripe_unavailable` (Stripe delivers the event again)", body = super::openapi::Problem, content_type = "application/problem+json")
    )
)]
pub async fn shared(
    body: web::Bytes,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> HttpResponse {
    handle(None, body, req, state).await
}

#[utoipa::path(
    post,
    path = "/ocpi/stripe/webhook/{workspace_id}",
    tag = "webhooks",
    summary = "Stripe webhook for one workspace (the `webhook_url` shown in its config)",
    params(("workspace_id" = String, Path, description = "^[A-Za-z0-9_-]{1,64}$"), ("Stripe-Signature" = String, Header)),
    request_body = Object,
    responses(
        (status = 200, description = "Verified", body = super::openapi::WebhookAck),
        (status = 400, description = "`missing_signature` | `invalid_signature_header` | `signature_mismatch` | `timestamp_out_of_tolerance` | `invalid_payload` | `unknown_workspace` | `webhook_secret_not_configured`", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "`ownership_mismatch` | `livemode_mismatch`", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store_unavailable` | `stripe_unavailable` (Stripe delivers the event again)", body = super::openapi::Problem, content_type = "application/problem+json")
    )
)]
pub async fn per_workspace(
    path: web::Path<String>,
    body: web::Bytes,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> HttpResponse {
    handle(Some(path.into_inner()), body, req, state).await
}

async fn handle(
    url_workspace: Option<String>,
    body: web::Bytes,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> HttpResponse {
    let meta = Metadata {
        actor: "stripe".into(),
        request_id: metadata(&req, "stripe").request_id,
    };
    // Ids are recorded only once the signature is verified (or the workspace is known),
    // so forged requests cannot write arbitrary values into traces.
    let span = tracing::info_span!(
        "webhook",
        workspace_id = tracing::field::Empty,
        stripe.event_id = tracing::field::Empty,
        stripe.payment_intent_id = tracing::field::Empty,
        charging_intent_id = tracing::field::Empty,
        outcome = tracing::field::Empty,
        code = tracing::field::Empty,
    );
    let processed = process(url_workspace, &body, &req, &state, &meta)
        .instrument(span.clone())
        .await;
    match processed {
        Ok(o) => {
            span.record("outcome", o);
            crate::metrics::webhook(o, "");
            outcome(o)
        }
        Err(r) => {
            span.record("outcome", "rejected");
            span.record("code", r.code);
            if let Some(ws) = &r.workspace_id {
                span.record("workspace_id", ws.as_str());
            }
            crate::metrics::webhook("rejected", r.code);
            tracing::warn!(code = r.code, workspace_id = ?r.workspace_id, stripe.event = ?r.event_id, "webhook refused");
            let rejection = WebhookRejected {
                workspace_id: r.workspace_id.clone(),
                code: r.code.to_string(),
                stripe_event_id: r.event_id.clone(),
                payment_intent_id: r.payment_intent_id.clone(),
                source_ip: client_ip(&req).to_string(),
                rejected_at: chrono::Utc::now(),
            };
            if let Err(e) = state
                .rejections
                .execute(&stream_id(&rejection), rejection, &meta)
                .await
            {
                tracing::error!(error = %e, "could not record a refused webhook");
            }
            state.projector.nudge();
            let detail = match r.code {
                "missing_signature" => "No Stripe-Signature header.",
                "invalid_signature_header" => {
                    "The Stripe-Signature header has no timestamp or no v1 signature."
                }
                "signature_mismatch" => {
                    "No signature matches this workspace's webhook signing secrets."
                }
                "timestamp_out_of_tolerance" => {
                    "The signature's timestamp is outside the tolerance."
                }
                "invalid_payload" => "The body is not a Stripe event.",
                "unknown_workspace" => "The event names no workspace this service knows.",
                "webhook_secret_not_configured" => "This workspace has no webhook signing secret.",
                "ownership_mismatch" => {
                    "The PaymentIntent does not belong to this workspace's charging intent."
                }
                "livemode_mismatch" => {
                    "The event's livemode differs from the workspace's Stripe mode."
                }
                _ => "The webhook could not be processed.",
            };
            actix_web::ResponseError::error_response(&ApiError::new(r.status, r.code, detail))
        }
    }
}

async fn process(
    url_workspace: Option<String>,
    body: &[u8],
    req: &HttpRequest,
    state: &AppState,
    meta: &Metadata,
) -> Result<&'static str, Refusal> {
    let bad = |code| Refusal::new(StatusCode::BAD_REQUEST, code);
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    // The workspace: from the URL, or on the shared URL from the PaymentIntent's metadata.
    let ws = match &url_workspace {
        Some(w) => WorkspaceId::parse(w).ok_or_else(|| bad("unknown_workspace"))?,
        None => {
            let named = parsed
                .as_ref()
                .and_then(|v| v.pointer("/data/object/metadata/workspace_id"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    if parsed.is_some() {
                        bad("unknown_workspace")
                    } else {
                        bad("invalid_payload")
                    }
                })?;
            WorkspaceId::parse(named).ok_or_else(|| bad("unknown_workspace"))?
        }
    };
    let profile = state.profiles.load_recent(ws.as_str()).await.map_err(|e| {
        let _ = profile_error(e);
        Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
    })?;
    let known = profile.workspace_id.is_some();
    let with_ws = |mut r: Refusal| {
        if known {
            r.workspace_id = Some(ws.to_string());
        }
        r
    };
    if !known {
        return Err(bad("unknown_workspace"));
    }
    let Some(creds) = &profile.credentials else {
        return Err(with_ws(bad("webhook_secret_not_configured")));
    };

    // Signature, over the raw bytes, with every secret active now.
    let now = chrono::Utc::now();
    let mut secrets = Vec::new();
    for s in creds.active_webhook_secrets(now, state.webhook_overlap) {
        match state
            .vault
            .get(
                ws.as_str(),
                SecretField::WebhookSigningSecret,
                s.version,
                &s.secret.fingerprint,
            )
            .await
        {
            Ok(secret) => secrets.push(secret),
            Err(e) => {
                tracing::error!(error = %e, workspace_id = %ws, "a webhook signing secret did not decrypt")
            }
        }
    }
    let header = req
        .headers()
        .get("stripe-signature")
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    let refs: Vec<&secrecy::SecretString> = secrets.iter().collect();
    verify(
        body,
        header,
        &refs,
        state.webhook_tolerance,
        now.timestamp(),
    )
    .map_err(|e| with_ws(bad(e.code())))?;
    let span = tracing::Span::current();
    span.record("workspace_id", ws.as_str());

    // A verified event: is it about a PaymentIntent of ours?
    let event = parsed.ok_or_else(|| with_ws(bad("invalid_payload")))?;
    let event_id = event.get("id").and_then(Value::as_str).map(str::to_string);
    let Some(event_id) = event_id.filter(|id| id.starts_with("evt_") && id.len() <= 255) else {
        return Err(with_ws(bad("invalid_payload")));
    };
    let object = event
        .pointer("/data/object")
        .ok_or_else(|| with_ws(bad("invalid_payload")))?;
    let Some(pi) = PaymentIntentView::from_json(object)
        .filter(|_| object.get("object").and_then(Value::as_str) == Some("payment_intent"))
    else {
        return Ok("ignored"); // another kind of event (balance.available, charge.*, …)
    };
    let refuse = |status, code| {
        let mut r = with_ws(Refusal::new(status, code));
        r.event_id = Some(event_id.clone());
        r.payment_intent_id = Some(pi.id.clone());
        r
    };
    span.record("stripe.event_id", event_id.as_str());
    span.record("stripe.payment_intent_id", pi.id.as_str());
    let Some(intent_id) = pi.metadata_charging_intent_id.clone() else {
        return Ok("ignored"); // a PaymentIntent this service did not create
    };
    if pi.metadata_workspace_id.as_deref() != Some(ws.as_str()) {
        return Err(refuse(StatusCode::FORBIDDEN, "ownership_mismatch"));
    }
    span.record("charging_intent_id", intent_id.as_str());
    let event_live = event
        .get("livemode")
        .and_then(Value::as_bool)
        .unwrap_or(pi.livemode);
    if event_live != (creds.mode == StripeMode::Live) || pi.livemode != event_live {
        return Err(refuse(StatusCode::FORBIDDEN, "livemode_mismatch"));
    }
    let cmd = ChargingIntentCommand::ProcessStripeAuthorizationWebhook(
        ProcessStripeAuthorizationWebhook {
            charging_intent_id: intent_id.clone(),
            workspace_id: ws.to_string(),
            payment_intent: pi.clone(),
            stripe_event_id: Some(event_id.clone()),
            source: "webhook",
            at: now,
        },
    );
    let result = state.intents.execute(&intent_id, cmd, meta).await;
    state.projector.nudge();
    match result {
        Ok(after) => {
            // Events were applied; an end state now means this delivery ended it.
            if after.status.is_final() {
                release_connector(state, &after, after.status.as_str(), meta).await;
            }
            Ok("applied")
        }
        Err(AggregateError::UserError(ChargingIntentError::DuplicateStripeEvent)) => {
            Ok("duplicate")
        }
        Err(AggregateError::UserError(ChargingIntentError::NoChange))
            if pi.status == "requires_capture" =>
        {
            // A hold on an intent that has ended (the driver retried the card after we
            // recorded the failure): nobody will capture it, so it is cancelled.
            let intent = state.intents.load(&intent_id).await.map_err(|e| {
                tracing::error!(error = %e, "could not load the intent");
                refuse(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
            })?;
            let ended = matches!(
                intent.status,
                IntentStatus::Failed | IntentStatus::Cancelled | IntentStatus::Expired
            );
            let Some(payment) = intent.payment.as_ref().filter(|_| ended) else {
                return Ok("ignored");
            };
            if intent.stray_hold_released {
                return Ok("duplicate");
            }
            let secret_key = key_for(state, &profile, ws.as_str(), payment.credential_version)
                .await
                .map_err(|_| refuse(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"))?;
            let cmd = ChargingIntentCommand::ReleaseStrayHold(ReleaseStrayHold {
                payment_intent: pi.clone(),
                secret_key,
                at: now,
            });
            match state.intents.execute(&intent_id, cmd, meta).await {
                Ok(_) => Ok("applied"),
                // Answered 503 so that Stripe delivers the event again later.
                Err(AggregateError::UserError(ChargingIntentError::StripeUnavailable)) => Err(
                    refuse(StatusCode::SERVICE_UNAVAILABLE, "stripe_unavailable"),
                ),
                Err(e) => {
                    tracing::error!(error = %e, "a stray hold could not be released");
                    Err(refuse(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"))
                }
            }
        }
        Err(AggregateError::UserError(ChargingIntentError::NoChange)) => Ok("ignored"),
        Err(AggregateError::UserError(
            ChargingIntentError::NotFound | ChargingIntentError::OwnershipMismatch,
        )) => Err(refuse(StatusCode::FORBIDDEN, "ownership_mismatch")),
        Err(AggregateError::UserError(ChargingIntentError::LivemodeMismatch)) => {
            Err(refuse(StatusCode::FORBIDDEN, "livemode_mismatch"))
        }
        Err(e) => {
            tracing::error!(error = %e, "webhook could not be applied");
            Err(refuse(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"))
        }
    }
}
