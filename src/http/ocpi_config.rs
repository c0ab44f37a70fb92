//! Workspace OCPI config: roaming settings and the workspace's Stripe credential set.

use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use cqrs_es::AggregateError;
use serde_json::{json, Map, Value};

use super::auth::Principal;
use super::error::{ApiError, FieldError};
use super::request_id::RequestId;
use super::{workspace_id, AppState};
use crate::ids::WorkspaceId;
use crate::money::{Currency, PreAuthAmount};
use crate::store::Metadata;
use crate::workspace_stripe_profile::credentials::{
    PublishableKey, StripeSecretKey, WebhookSigningSecret,
};
use crate::workspace_stripe_profile::{
    RemoveWorkspaceStripeCredentials, SaveWorkspaceStripeCredentials, UpdateWorkspaceOcpiConfig,
    ValidateWorkspaceStripeCredentials, ValidationScope, WorkspaceStripeProfile,
    WorkspaceStripeProfileCommand as Cmd, WorkspaceStripeProfileError,
};

pub fn metadata(req: &HttpRequest, actor: &str) -> Metadata {
    Metadata {
        actor: actor.to_string(),
        request_id: req
            .extensions()
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default(),
    }
}

/// Maps the aggregate's refusals to HTTP; the one place that does.
pub fn profile_error(err: AggregateError<WorkspaceStripeProfileError>) -> ApiError {
    use WorkspaceStripeProfileError as E;
    match err {
        AggregateError::UserError(E::IncompleteCredentials) => {
            ApiError::validation(vec![FieldError::new(
            "stripe",
            "incomplete_credentials",
            "The first save needs publishable_key, secret_key and webhook_signing_secret together.",
        )])
        }
        AggregateError::UserError(e @ E::CredentialModeMismatch { .. }) => {
            ApiError::validation(vec![FieldError::new(
                "stripe",
                "credential_mode_mismatch",
                e.to_string(),
            )])
        }
        AggregateError::UserError(E::CredentialsNotConfigured) => ApiError::conflict(
            "credentials_not_configured",
            "This workspace has no Stripe credentials to validate.",
        ),
        AggregateError::UserError(e @ E::Vault(_)) => ApiError::internal(e),
        AggregateError::AggregateConflict => ApiError::conflict(
            "concurrent_update",
            "The configuration was changed by someone else at the same moment; try again.",
        ),
        AggregateError::DatabaseConnectionError(e) => {
            tracing::error!(error = %e, "event store unreachable");
            ApiError::unavailable("store_unavailable", "The event store does not answer.")
        }
        other => ApiError::internal(other),
    }
}

/// The GET body: settings, and the credential set with secrets reduced to `last4`.
pub fn view(state: &AppState, ws: &WorkspaceId, p: &WorkspaceStripeProfile) -> Value {
    let s = &p.settings;
    let c = p.credentials.as_ref();
    let health = match c {
        Some(c) => json!({
            "status": c.health.status.as_str(),
            "checked_at": c.health.checked_at,
            "failure_code": c.health.failure_code,
            "failure_message": c.health.failure_message,
        }),
        None => {
            json!({"status": "unconfigured", "checked_at": null, "failure_code": null, "failure_message": null})
        }
    };
    json!({
        "workspace_id": ws.as_str(),
        "allow_guest_access": s.allow_guest_access,
        "allow_user_registration": s.allow_user_registration,
        "pre_auth_cents": s.pre_auth_cents.cents(),
        "currency": s.currency.as_str(),
        "stripe": {
            "publishable_key": c.map(|c| &c.publishable_key),
            "secret_key": {
                "configured": c.is_some(),
                "kind": c.map(|c| c.secret_key.kind),
                "last4": c.map(|c| &c.secret_key.secret.last4),
            },
            "webhook_signing_secret": {
                "configured": c.is_some(),
                "last4": c.map(|c| &c.current_webhook_secret().secret.last4),
            },
            "mode": c.map(|c| c.mode.as_str()),
            "account_id": c.and_then(|c| c.account_id.as_ref()),
            "credential_version": p.credential_version,
            "health": health,
            "updated_at": c.map(|c| c.updated_at),
            "updated_by": c.map(|c| &c.updated_by),
            "webhook_url": format!("{}/ocpi/stripe/webhook/{}", state.public_url, ws),
        }
    })
}

async fn respond(state: &AppState, ws: &WorkspaceId) -> Result<HttpResponse, ApiError> {
    let profile = state
        .profiles
        .load(ws.as_str())
        .await
        .map_err(profile_error)?;
    Ok(HttpResponse::Ok().json(view(state, ws, &profile)))
}

#[utoipa::path(
    get,
    path = "/api/permissions/workspace/{workspace_id}/ocpi-config",
    tag = "ocpi-config",
    summary = "Read the workspace OCPI config (scope roaming:read)",
    params(("workspace_id" = String, Path, description = "^[A-Za-z0-9_-]{1,64}$")),
    responses(
        (status = 200, description = "The configuration (secrets only as `last4`)", body = super::openapi::OcpiConfig),
        (status = 401, description = "`unauthenticated`", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 400, description = "`invalid_id`", body = super::openapi::Problem, content_type = "application/problem+json")
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
    respond(&state, &ws).await
}

/// A PATCH body, parsed field by field so every problem is reported at once.
#[derive(Default)]
struct Patch {
    settings: UpdateWorkspaceOcpiConfig,
    has_settings: bool,
    /// `Some(None)`: `"stripe": null`, remove the set.
    stripe: Option<Option<StripePatch>>,
}

#[derive(Default)]
struct StripePatch {
    publishable_key: Option<PublishableKey>,
    secret_key: Option<StripeSecretKey>,
    webhook_signing_secret: Option<WebhookSigningSecret>,
}

fn parse_patch(body: Value) -> Result<Patch, Vec<FieldError>> {
    let Value::Object(fields) = body else {
        return Err(vec![FieldError::new(
            "",
            "invalid_body",
            "The body must be a JSON object.",
        )]);
    };
    let mut errors = Vec::new();
    let mut patch = Patch::default();
    for (key, value) in fields {
        match key.as_str() {
            "allow_guest_access" | "allow_user_registration" => match value.as_bool() {
                Some(b) if key == "allow_guest_access" => {
                    patch.settings.allow_guest_access = Some(b)
                }
                Some(b) => patch.settings.allow_user_registration = Some(b),
                None => errors.push(FieldError::new(
                    &key,
                    "invalid_boolean",
                    "Must be true or false.",
                )),
            },
            "pre_auth_cents" => match value.as_i64().and_then(PreAuthAmount::parse) {
                Some(a) => patch.settings.pre_auth_cents = Some(a),
                None => errors.push(FieldError::new(
                    &key,
                    "invalid_pre_auth_amount",
                    format!(
                        "Must be a whole number of minor units from {} to {}.",
                        PreAuthAmount::MIN,
                        PreAuthAmount::MAX
                    ),
                )),
            },
            "currency" => match value
                .as_str()
                .and_then(|c| Currency::parse(&c.to_ascii_lowercase()))
            {
                Some(c) => patch.settings.currency = Some(c),
                None => errors.push(FieldError::new(
                    &key,
                    "invalid_currency",
                    "Must be an ISO 4217 code Stripe supports, such as \"aud\".",
                )),
            },
            "stripe" => match value {
                Value::Null => patch.stripe = Some(None),
                Value::Object(obj) => patch.stripe = Some(Some(parse_stripe(obj, &mut errors))),
                _ => errors.push(FieldError::new(
                    &key,
                    "invalid_type",
                    "Must be an object, or null to remove the credentials.",
                )),
            },
            _ => errors.push(FieldError::new(
                &key,
                "unknown_field",
                "This field cannot be set here.",
            )),
        }
    }
    patch.has_settings = patch.settings.allow_guest_access.is_some()
        || patch.settings.allow_user_registration.is_some()
        || patch.settings.pre_auth_cents.is_some()
        || patch.settings.currency.is_some();
    if errors.is_empty() {
        Ok(patch)
    } else {
        Err(errors)
    }
}

fn parse_stripe(obj: Map<String, Value>, errors: &mut Vec<FieldError>) -> StripePatch {
    let mut out = StripePatch::default();
    for (key, value) in obj {
        let field = format!("stripe.{key}");
        let text = match value {
            Value::Null => continue,
            Value::String(s) => s,
            _ => {
                let code = match key.as_str() {
                    "publishable_key" => "invalid_publishable_key",
                    "secret_key" => "invalid_secret_key",
                    "webhook_signing_secret" => "invalid_webhook_signing_secret",
                    _ => "unknown_field",
                };
                errors.push(FieldError::new(field, code, "Must be a string."));
                continue;
            }
        };
        match key.as_str() {
            "publishable_key" => match PublishableKey::parse(&text) {
                Ok(k) => out.publishable_key = Some(k),
                Err(e) => errors.push(FieldError::new(field, e.code(), "Expected a publishable key: pk_test_… or pk_live_….")),
            },
            "secret_key" => match StripeSecretKey::parse(text) {
                Ok(k) => out.secret_key = Some(k),
                Err(e) => errors.push(FieldError::new(field, e.code(), "Expected a secret key (sk_test_…, sk_live_…) or a restricted key (rk_test_…, rk_live_…).")),
            },
            "webhook_signing_secret" => match WebhookSigningSecret::parse(text) {
                Ok(k) => out.webhook_signing_secret = Some(k),
                Err(e) => errors.push(FieldError::new(field, e.code(), "Expected a webhook signing secret: whsec_….")),
            },
            _ => errors.push(FieldError::new(field, "unknown_field", "Known fields: publishable_key, secret_key, webhook_signing_secret.")),
        }
    }
    // Both keys in one request: refuse a mixed set before anything is stored.
    if let (Some(pk), Some(sk)) = (&out.publishable_key, &out.secret_key) {
        if pk.mode() != sk.mode() {
            errors.push(FieldError::new(
                "stripe",
                "credential_mode_mismatch",
                format!(
                    "The publishable key is a {} key but the secret key is a {} key.",
                    pk.mode().as_str(),
                    sk.mode().as_str()
                ),
            ));
        }
    }
    out
}

#[utoipa::path(
    patch,
    path = "/api/permissions/workspace/{workspace_id}/ocpi-config",
    tag = "ocpi-config",
    summary = "Change settings, save or rotate Stripe credentials (scope roaming:write)",
    params(("workspace_id" = String, Path, description = "^[A-Za-z0-9_-]{1,64}$")),
    request_body = super::openapi::OcpiConfigPatch,
    responses(
        (status = 200, description = "The configuration (secrets only as `last4`)", body = super::openapi::OcpiConfig),
        (status = 401, description = "`unauthenticated`", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed` with `errors[].code`; nothing saved", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 400, description = "`invalid_id` | `invalid_json`", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`", body = super::openapi::Problem, content_type = "application/problem+json")
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
    let patch = parse_patch(body.into_inner()).map_err(ApiError::validation)?;
    let meta = metadata(&req, &principal.sub);
    let now = chrono::Utc::now();

    // Credentials first: they are the only part the aggregate can still refuse, so a
    // refusal leaves the whole request unsaved.
    let mut validate = false;
    match patch.stripe {
        Some(Some(sp)) => {
            let cmd = Cmd::SaveWorkspaceStripeCredentials(SaveWorkspaceStripeCredentials {
                workspace_id: ws.to_string(),
                publishable_key: sp.publishable_key,
                secret_key: sp.secret_key,
                webhook_signing_secret: sp.webhook_signing_secret,
                actor: principal.sub.clone(),
                at: now,
            });
            state
                .profiles
                .execute(ws.as_str(), cmd, &meta)
                .await
                .map_err(profile_error)?;
            validate = true;
        }
        Some(None) => {
            let cmd = Cmd::RemoveWorkspaceStripeCredentials(RemoveWorkspaceStripeCredentials {
                workspace_id: ws.to_string(),
                actor: principal.sub.clone(),
                at: now,
            });
            state
                .profiles
                .execute(ws.as_str(), cmd, &meta)
                .await
                .map_err(profile_error)?;
        }
        None => {}
    }
    if patch.has_settings {
        let mut cmd = patch.settings;
        cmd.workspace_id = ws.to_string();
        cmd.actor = principal.sub.clone();
        cmd.at = now;
        state
            .profiles
            .execute(ws.as_str(), Cmd::UpdateWorkspaceOcpiConfig(cmd), &meta)
            .await
            .map_err(profile_error)?;
    }
    state.projector.nudge();
    if validate {
        run_validation(&state, &ws, ValidationScope::UnlessValid, meta).await?;
    }
    respond(&state, &ws).await
}

/// Validates with Stripe, waiting at most `validation_wait`; past that the check goes
/// on in the background and the set stays `pending`.
async fn run_validation(
    state: &web::Data<AppState>,
    ws: &WorkspaceId,
    scope: ValidationScope,
    meta: Metadata,
) -> Result<(), ApiError> {
    let task_state = state.clone();
    let id = ws.to_string();
    let task = tokio::spawn(async move {
        let cmd = Cmd::ValidateWorkspaceStripeCredentials(ValidateWorkspaceStripeCredentials {
            workspace_id: id.clone(),
            scope,
            at: chrono::Utc::now(),
        });
        let result = task_state.profiles.execute(&id, cmd, &meta).await;
        task_state.projector.nudge();
        result
    });
    match tokio::time::timeout(state.validation_wait, task).await {
        Ok(Ok(result)) => result.map(|_| ()).map_err(profile_error),
        Ok(Err(join)) => Err(ApiError::internal(join)),
        Err(_) => Ok(()), // still running: the answer shows `pending`
    }
}

#[utoipa::path(
    post,
    path = "/api/permissions/workspace/{workspace_id}/ocpi-config/stripe/validate",
    tag = "ocpi-config",
    summary = "Validate the saved credentials with Stripe again (scope roaming:write)",
    params(("workspace_id" = String, Path, description = "^[A-Za-z0-9_-]{1,64}$")),
    responses(
        (status = 200, description = "The configuration (secrets only as `last4`)", body = super::openapi::OcpiConfig),
        (status = 401, description = "`unauthenticated`", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`credentials_not_configured`", body = super::openapi::Problem, content_type = "application/problem+json")
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
    run_validation(
        &state,
        &ws,
        ValidationScope::Always,
        metadata(&req, &principal.sub),
    )
    .await?;
    respond(&state, &ws).await
}
