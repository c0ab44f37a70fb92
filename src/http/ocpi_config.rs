//! Workspace OCPI config: roaming settings and the workspace's Stripe credential set.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{Map, Value};

use super::auth::Principal;
use super::error::{ApiError, FieldError, Problem};
use super::views::{OcpiConfig, OcpiConfigPatch};
use super::{metadata, workspace_id, AppState};
use crate::application::credentials::{ConfigChange, CredentialChange, WorkspaceConfig};
use crate::domain::ids::WorkspaceId;
use crate::domain::money::{Currency, PreAuthAmount};
use crate::domain::workspace_stripe_profile::credentials::{
    PublishableKey, StripeSecretKey, WebhookSigningSecret,
};
use crate::domain::workspace_stripe_profile::{UpdateWorkspaceOcpiConfig, ValidationScope};
use roampay_events::StripeConnection;

fn answer(state: &AppState, ws: &WorkspaceId, c: &WorkspaceConfig) -> HttpResponse {
    let public_url = &state.services.settings.public_url;
    HttpResponse::Ok().json(OcpiConfig::of(ws.as_str(), c, public_url))
}

#[utoipa::path(
    get,
    path = "/api/permissions/workspace/{workspace_id}/ocpi-config",
    operation_id = "get_ocpi_config",
    tag = "ocpi-config",
    summary = "Read the workspace OCPI config (scope roaming:read)",
    params(("workspace_id" = String, Path, description = "^[A-Za-z0-9_-]{1,64}$")),
    responses(
        (status = 200, description = "The configuration (secrets only as `last4`)", body = OcpiConfig),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "`invalid_id`", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub async fn get(
    principal: Principal,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ws = workspace_id(&path)?;
    principal.authorize("roaming:read", Some(ws.as_str()))?;
    let config = state
        .services
        .credentials
        .workspace_config(ws.as_str())
        .await?;
    Ok(answer(&state, &ws, &config))
}

/// A PATCH body, read field by field so every problem is reported at once.
pub(super) fn parse_patch(body: Value) -> Result<ConfigChange, Vec<FieldError>> {
    let Value::Object(fields) = body else {
        return Err(vec![FieldError::new(
            "",
            "invalid_body",
            "The body must be a JSON object.",
        )]);
    };
    let mut errors = Vec::new();
    let mut change = ConfigChange::default();
    for (key, value) in fields {
        if let Err(e) = parse_field(&mut change, &key, value, &mut errors) {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(change)
    } else {
        Err(errors)
    }
}

fn parse_field(
    change: &mut ConfigChange,
    key: &str,
    value: Value,
    errors: &mut Vec<FieldError>,
) -> Result<(), FieldError> {
    match (key, value) {
        ("stripe", Value::Null) => change.stripe = Some(None),
        ("stripe", Value::Object(obj)) => change.stripe = Some(Some(parse_stripe(obj, errors))),
        ("stripe", _) => {
            let message = "Must be an object, or null to remove the credentials.";
            return Err(FieldError::new(key, "invalid_type", message));
        }
        ("connection", value) => {
            let to = match value.as_str() {
                Some("keys") => StripeConnection::Keys,
                Some("connect") => StripeConnection::Connect,
                _ => {
                    let message = "Must be \"keys\" or \"connect\".";
                    return Err(FieldError::new(key, "invalid_connection", message));
                }
            };
            change.connection = Some(to);
        }
        ("stripe_connect", Value::Object(obj)) => {
            change.settings.application_fee_bps = parse_connect(obj, errors);
        }
        ("stripe_connect", _) => {
            let message = "Must be an object: {\"application_fee_bps\": 0..2000}.";
            return Err(FieldError::new(key, "invalid_type", message));
        }
        (_, value) => parse_setting(&mut change.settings, key, value)?,
    }
    Ok(())
}

fn parse_setting(
    s: &mut UpdateWorkspaceOcpiConfig,
    key: &str,
    value: Value,
) -> Result<(), FieldError> {
    let refuse = |code, message: String| FieldError::new(key, code, message);
    match key {
        "allow_guest_access" | "allow_user_registration" => {
            let b = value.as_bool();
            let b =
                Some(b.ok_or_else(|| refuse("invalid_boolean", "Must be true or false.".into()))?);
            match key {
                "allow_guest_access" => s.allow_guest_access = b,
                _ => s.allow_user_registration = b,
            }
        }
        "pre_auth_cents" => {
            let (min, max) = (PreAuthAmount::MIN, PreAuthAmount::MAX);
            let message = format!("Must be a whole number of minor units from {min} to {max}.");
            let amount = value.as_i64().and_then(PreAuthAmount::parse);
            s.pre_auth_cents =
                Some(amount.ok_or_else(|| refuse("invalid_pre_auth_amount", message))?);
        }
        "currency" => {
            let c = value
                .as_str()
                .and_then(|c| Currency::parse(&c.to_ascii_lowercase()));
            let message = "Must be an ISO 4217 code Stripe supports, such as \"aud\".";
            s.currency = Some(c.ok_or_else(|| refuse("invalid_currency", message.into()))?);
        }
        _ => {
            return Err(refuse(
                "unknown_field",
                "This field cannot be set here.".into(),
            ))
        }
    }
    Ok(())
}

/// `stripe_connect`: the platform's fee in basis points.
fn parse_connect(obj: Map<String, Value>, errors: &mut Vec<FieldError>) -> Option<u32> {
    let mut fee = None;
    for (key, value) in obj {
        let field = format!("stripe_connect.{key}");
        if key != "application_fee_bps" {
            let message = "Known fields: application_fee_bps.";
            errors.push(FieldError::new(field, "unknown_field", message));
            continue;
        }
        let max = crate::application::connect::MAX_FEE_BPS;
        match value.as_u64().filter(|b| *b <= u64::from(max)) {
            Some(b) => fee = Some(b as u32),
            None => errors.push(FieldError::new(
                field,
                "invalid_application_fee",
                format!("Must be a whole number of basis points from 0 to {max}."),
            )),
        }
    }
    fee
}

fn parse_stripe(obj: Map<String, Value>, errors: &mut Vec<FieldError>) -> CredentialChange {
    let mut out = CredentialChange::default();
    for (key, value) in obj {
        if let Err(e) = parse_secret(&mut out, &key, value) {
            errors.push(e);
        }
    }
    // Both keys in one request: refuse a mixed set before anything is stored.
    if let (Some(pk), Some(sk)) = (&out.publishable_key, &out.secret_key) {
        if pk.mode() != sk.mode() {
            let message = format!(
                "The publishable key is a {} key but the secret key is a {} key.",
                pk.mode().as_str(),
                sk.mode().as_str()
            );
            errors.push(FieldError::new(
                "stripe",
                "credential_mode_mismatch",
                message,
            ));
        }
    }
    out
}

fn parse_secret(out: &mut CredentialChange, key: &str, value: Value) -> Result<(), FieldError> {
    let field = format!("stripe.{key}");
    let (code, expected) = match key {
        "publishable_key" => ("invalid_publishable_key", "Expected a publishable key: pk_test_… or pk_live_…."),
        "secret_key" => ("invalid_secret_key", "Expected a secret key (sk_test_…, sk_live_…) or a restricted key (rk_test_…, rk_live_…)."),
        "webhook_signing_secret" => ("invalid_webhook_signing_secret", "Expected a webhook signing secret: whsec_…."),
        _ => return Err(FieldError::new(field, "unknown_field", "Known fields: publishable_key, secret_key, webhook_signing_secret.")),
    };
    let text = match value {
        Value::Null => return Ok(()),
        Value::String(s) => s,
        _ => return Err(FieldError::new(field, code, "Must be a string.")),
    };
    let refuse = |e_code| FieldError::new(field.clone(), e_code, expected);
    match key {
        "publishable_key" => {
            out.publishable_key = Some(PublishableKey::parse(&text).map_err(|e| refuse(e.code()))?)
        }
        "secret_key" => {
            out.secret_key = Some(StripeSecretKey::parse(text).map_err(|e| refuse(e.code()))?)
        }
        _ => {
            out.webhook_signing_secret =
                Some(WebhookSigningSecret::parse(text).map_err(|e| refuse(e.code()))?)
        }
    }
    Ok(())
}

#[utoipa::path(
    patch,
    path = "/api/permissions/workspace/{workspace_id}/ocpi-config",
    operation_id = "patch_ocpi_config",
    tag = "ocpi-config",
    summary = "Change settings, save or rotate Stripe credentials (scope roaming:write)",
    params(("workspace_id" = String, Path, description = "^[A-Za-z0-9_-]{1,64}$")),
    request_body = OcpiConfigPatch,
    responses(
        (status = 200, description = "The configuration (secrets only as `last4`)", body = OcpiConfig),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed` with `errors[].code`; nothing saved", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "`invalid_id` | `invalid_json`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub async fn patch(
    principal: Principal,
    path: web::Path<String>,
    body: web::Json<Value>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ws = workspace_id(&path)?;
    principal.authorize("roaming:write", Some(ws.as_str()))?;
    let change = parse_patch(body.into_inner()).map_err(ApiError::validation)?;
    let meta = metadata(&req, &principal.sub);
    let profile = state
        .services
        .credentials
        .change_config(ws.as_str(), change, &meta)
        .await?;
    Ok(answer(&state, &ws, &profile))
}

#[utoipa::path(
    post,
    path = "/api/permissions/workspace/{workspace_id}/ocpi-config/stripe/validate",
    operation_id = "validate_stripe_credentials",
    tag = "ocpi-config",
    summary = "Validate the saved credentials with Stripe again (scope roaming:write)",
    params(("workspace_id" = String, Path, description = "^[A-Za-z0-9_-]{1,64}$")),
    responses(
        (status = 200, description = "The configuration (secrets only as `last4`)", body = OcpiConfig),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`credentials_not_configured`", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub async fn validate(
    principal: Principal,
    path: web::Path<String>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ws = workspace_id(&path)?;
    principal.authorize("roaming:write", Some(ws.as_str()))?;
    let meta = metadata(&req, &principal.sub);
    let profile = state
        .services
        .credentials
        .validate_credentials(ws.as_str(), ValidationScope::Always, &meta)
        .await?;
    Ok(answer(&state, &ws, &profile))
}
