//! RFC 9457 problem details with stable `code`s: the one place errors become HTTP.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::application::{
    CredentialError, LocationError, PaymentError, StoreFault, WebhookRefusal,
};

tokio::task_local! {
    /// The id of the request being served, for error bodies built deep in a handler.
    pub static REQUEST_ID: String;
}

pub fn current_request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub code: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            code,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub errors: Vec<FieldError>,
    /// Sent as `Retry-After` (seconds), e.g. on 429.
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            errors: vec![],
            retry_after_secs: None,
        }
    }
    pub fn validation(errors: Vec<FieldError>) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "validation_failed",
            detail: "The request was not saved: see errors.".into(),
            errors,
            retry_after_secs: None,
        }
    }
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }
    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", detail)
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }
    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, detail)
    }
    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }
    /// An unexpected failure: logged with its cause, answered without it.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Something went wrong on our side; it has been logged.",
        )
    }
    pub fn unavailable(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, detail)
    }

    fn title(&self) -> &'static str {
        self.status.canonical_reason().unwrap_or("Error")
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

/// RFC 9457 problem details; every error has this shape.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"type": "urn:roampay:problem:connector_busy", "title": "Conflict",
    "status": 409, "detail": "Another charging intent holds this connector.",
    "code": "connector_busy", "request_id": "0193a6c2-…"}))]
pub struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    /// Stable snake_case error code (see docs/runbook.md).
    code: &'a str,
    request_id: String,
    /// Present on validation failures (422).
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    errors: &'a [FieldError],
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let body = Problem {
            kind: format!("urn:roampay:problem:{}", self.code),
            title: self.title(),
            status: self.status.as_u16(),
            detail: &self.detail,
            code: self.code,
            request_id: current_request_id(),
            errors: &self.errors,
        };
        let mut resp = HttpResponse::build(self.status);
        resp.content_type("application/problem+json");
        if self.status == StatusCode::UNAUTHORIZED {
            resp.insert_header(("WWW-Authenticate", "Bearer"));
        }
        if let Some(secs) = self.retry_after_secs {
            resp.insert_header(("Retry-After", secs.to_string()));
        }
        let mut resp = resp.body(serde_json::to_string(&body).expect("problem serializes"));
        // For the request log line.
        resp.extensions_mut().insert(ErrorCode(self.code));
        resp
    }
}

/// The error `code` an answer carried, for the request log line.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

// The one place where the application's errors become HTTP answers.

impl ApiError {
    /// 503 `stripe_unavailable`: no definite answer from Stripe.
    pub(super) fn stripe_unavailable() -> Self {
        Self::unavailable(
            "stripe_unavailable",
            "Stripe could not be reached; try again.",
        )
    }

    /// 409 `concurrent_update`: two admins changed the same configuration at once.
    pub(super) fn concurrent_update() -> Self {
        Self::conflict(
            "concurrent_update",
            "The configuration was changed by someone else at the same moment; try again.",
        )
    }
}

impl From<StoreFault> for ApiError {
    fn from(e: StoreFault) -> Self {
        match e {
            StoreFault::Unavailable => {
                Self::unavailable("store_unavailable", "The event store does not answer.")
            }
            StoreFault::Internal(cause) => Self::internal(cause),
        }
    }
}

/// A read-model query that failed: 503 `store_unavailable` when the store does not
/// answer, else internal.
impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        StoreFault::of_sqlx(e).into()
    }
}

impl From<PaymentError> for ApiError {
    fn from(e: PaymentError) -> Self {
        use PaymentError as E;
        match e {
            E::LocationNotFound => Self::not_found("location_not_found", "No such location."),
            E::NotAtLocation(code) => {
                Self::not_found(code, "No such EVSE or connector at this location.")
            }
            E::WorkspaceSuspended => Self::conflict(
                "workspace_suspended",
                "This workspace's subscription is not in good standing: no new charging sessions until it is paid.",
            ),
            E::PaymentNotReady(health) => Self::conflict(
                "workspace_payment_not_ready",
                format!(
                    "This workspace cannot take payments: its Stripe credentials are {health}."
                ),
            ),
            E::ConnectorBusy => Self::conflict(
                "connector_busy",
                "Another charging intent holds this connector.",
            ),
            E::TooManyPendingIntents => {
                let mut e = Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_pending_intents",
                    "This workspace has too many guest intents waiting for payment; try again in a few minutes.",
                );
                e.retry_after_secs = Some(60);
                e
            }
            E::IdempotencyKeyReused => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "This Idempotency-Key was already used with a different request.",
            ),
            other => stripe_or_intent_error(other),
        }
    }
}

fn stripe_or_intent_error(e: PaymentError) -> ApiError {
    use PaymentError as E;
    let detail = e.to_string();
    match e {
        E::StripeRefused { code, card } => ApiError::new(
            if card {
                StatusCode::PAYMENT_REQUIRED
            } else {
                StatusCode::BAD_GATEWAY
            },
            "stripe_error",
            format!("Stripe refused the pre-authorization: {code}"),
        ),
        E::StripeUnavailable => ApiError::stripe_unavailable(),
        E::IntentNotFound => {
            ApiError::not_found("charging_intent_not_found", "No such charging intent.")
        }
        E::NotTheDriver => ApiError::forbidden(detail),
        E::RefundExceedsCaptured { refundable } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "refund_exceeds_captured",
            format!("The refunds would add up to more than was captured: {refundable} is left to refund."),
        ),
        E::InvalidTransition(status) => ApiError::conflict(
            "invalid_transition",
            format!("Not possible while the charging intent is {status}."),
        ),
        E::Store(fault) => fault.into(),
        _ => ApiError::internal(detail),
    }
}

impl From<CredentialError> for ApiError {
    fn from(e: CredentialError) -> Self {
        use CredentialError as E;
        match e {
            E::IncompleteCredentials(_) => Self::validation(vec![FieldError::new(
                "stripe",
                "incomplete_credentials",
                "The first save needs publishable_key, secret_key and webhook_signing_secret together.",
            )]),
            E::CredentialModeMismatch(message) => Self::validation(vec![FieldError::new(
                "stripe",
                "credential_mode_mismatch",
                message,
            )]),
            E::NotConfigured => Self::conflict(
                "credentials_not_configured",
                "This workspace has no Stripe credentials to validate.",
            ),
            E::Conflict => Self::concurrent_update(),
            E::Connect(e) => e.into(),
            E::Store(fault) => fault.into(),
        }
    }
}

impl From<LocationError> for ApiError {
    fn from(e: LocationError) -> Self {
        match e {
            LocationError::OwnedByOtherWorkspace => Self::conflict(
                "location_owned_by_other_workspace",
                "This location id is already registered by another workspace.",
            ),
            LocationError::Store(fault) => fault.into(),
        }
    }
}

impl From<WebhookRefusal> for ApiError {
    fn from(e: WebhookRefusal) -> Self {
        use WebhookRefusal as R;
        let status = match e {
            R::OwnershipMismatch | R::LivemodeMismatch => StatusCode::FORBIDDEN,
            R::StoreUnavailable | R::StripeUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        let mut detail = e.to_string();
        if let Some(first) = detail.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        Self::new(status, e.code(), detail + ".")
    }
}

/// Body-size and JSON errors from actix extractors, as problems.
pub fn json_error(
    err: actix_web::error::JsonPayloadError,
    _req: &actix_web::HttpRequest,
) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as J;
    match err {
        J::Overflow { .. } | J::OverflowKnownLength { .. } => payload_too_large(),
        J::ContentType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Send JSON with Content-Type: application/json.",
        )
        .into(),
        J::Deserialize(e) => ApiError::bad_request(
            "invalid_json",
            format!("The body is not valid JSON: {}", e.classify_msg()),
        )
        .into(),
        _ => ApiError::bad_request("invalid_json", "The body could not be read as JSON.").into(),
    }
}

pub fn payload_too_large() -> actix_web::Error {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "Request bodies are limited to 64 KiB.",
    )
    .into()
}

trait ClassifyMsg {
    fn classify_msg(&self) -> &'static str;
}

impl ClassifyMsg for serde_json::Error {
    fn classify_msg(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Eof => "unexpected end of input",
            serde_json::error::Category::Data => "unexpected shape",
            serde_json::error::Category::Io => "read error",
        }
    }
}
