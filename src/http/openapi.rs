//! The OpenAPI 3 description of the HTTP API, generated from the handlers'
//! `#[utoipa::path]` attributes, served at `GET /openapi.json` with Swagger UI (vendored
//! assets, no external request) at `/docs/`.
//!
//! The schemas below describe the JSON the handlers build; they are documentation types
//! (the handlers write `serde_json` values), so a test compares them with real answers.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::{locations, ocpi_config, ops, payments, sessions, support, webhooks};

/// RFC 9457 problem details; every error has this shape.
#[derive(ToSchema)]
#[schema(example = json!({"type": "about:blank", "title": "Conflict", "status": 409,
    "detail": "An open charging intent holds this connector.", "code": "connector_busy",
    "request_id": "0193a6c2-…"}))]
pub struct Problem {
    pub r#type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable snake_case error code (see docs/runbook.md).
    pub code: String,
    pub request_id: String,
    /// Present on validation failures (422).
    pub errors: Option<Vec<FieldProblem>>,
}

#[derive(ToSchema)]
pub struct FieldProblem {
    pub field: String,
    pub code: String,
    pub message: String,
}

#[derive(ToSchema)]
pub struct SecretState {
    pub configured: bool,
    /// `secret` (sk_) or `restricted` (rk_); absent for the webhook signing secret.
    pub kind: Option<String>,
    /// The last four characters; the only part of a secret ever shown.
    pub last4: Option<String>,
}

#[derive(ToSchema)]
pub struct Health {
    /// `unconfigured` | `pending` | `valid` | `invalid`
    pub status: String,
    pub checked_at: Option<String>,
    /// `authentication_failed` | `permission_denied` | `livemode_mismatch` | `stripe_unreachable`
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
}

#[derive(ToSchema)]
pub struct StripeConfig {
    pub publishable_key: Option<String>,
    pub secret_key: SecretState,
    pub webhook_signing_secret: SecretState,
    /// `test` | `live` | null
    pub mode: Option<String>,
    pub account_id: Option<String>,
    pub credential_version: u32,
    pub health: Health,
    pub updated_at: Option<String>,
    pub updated_by: Option<String>,
    /// The per-workspace endpoint to register in Stripe.
    pub webhook_url: String,
}

#[derive(ToSchema)]
pub struct OcpiConfig {
    pub workspace_id: String,
    pub allow_guest_access: bool,
    pub allow_user_registration: bool,
    pub pre_auth_cents: i64,
    pub currency: String,
    pub stripe: StripeConfig,
}

/// Any subset; `"stripe": null` removes the credential set.
#[derive(ToSchema)]
pub struct OcpiConfigPatch {
    pub allow_guest_access: Option<bool>,
    pub allow_user_registration: Option<bool>,
    /// 50..=1000000
    pub pre_auth_cents: Option<i64>,
    pub currency: Option<String>,
    pub stripe: Option<StripeCredentialsPatch>,
}

/// Any subset (one secret can be rotated alone); the first save carries all three.
#[derive(ToSchema)]
pub struct StripeCredentialsPatch {
    pub publishable_key: Option<String>,
    /// `sk_…` or `rk_…`; write-only.
    pub secret_key: Option<String>,
    /// `whsec_…`; write-only.
    pub webhook_signing_secret: Option<String>,
}

#[derive(ToSchema)]
pub struct TariffInput {
    pub currency: String,
    pub price_per_kwh_cents: i64,
    pub flat_fee_cents: i64,
}

#[derive(ToSchema)]
pub struct ConnectorInput {
    pub id: String,
    pub standard: String,
    pub format: String,
    pub power_type: String,
    pub max_electric_power: Option<i64>,
    pub tariff: TariffInput,
}

#[derive(ToSchema)]
pub struct EvseInput {
    pub uid: String,
    pub evse_id: Option<String>,
    pub connectors: Vec<ConnectorInput>,
}

#[derive(ToSchema)]
pub struct CoordinatesInput {
    pub latitude: String,
    pub longitude: String,
}

#[derive(ToSchema)]
pub struct LocationInput {
    pub name: String,
    pub address: String,
    pub city: String,
    pub postal_code: Option<String>,
    /// ISO 3166-1 alpha-3
    pub country: String,
    pub coordinates: CoordinatesInput,
    pub evses: Vec<EvseInput>,
}

#[derive(ToSchema)]
pub struct CreatePaymentIntent {
    pub location_id: String,
    pub evse_uid: String,
    pub connector_id: String,
    pub email: Option<String>,
}

/// A new pre-authorization; the Stripe fields are absent for a free connector.
#[derive(ToSchema)]
pub struct CreatedPaymentIntent {
    pub charging_intent_id: String,
    pub authorization_reference: Option<String>,
    pub workspace_id: String,
    pub payment_required: bool,
    pub status: String,
    pub amount_cents: Option<i64>,
    pub currency: String,
    pub payment_intent_id: Option<String>,
    /// For Stripe.js `confirmCardPayment`.
    pub client_secret: Option<String>,
    pub publishable_key: Option<String>,
}

#[derive(ToSchema)]
pub struct ChargingIntentView {
    pub charging_intent_id: String,
    pub workspace_id: String,
    /// `pending_payment` | `authorized` | `charging` | `completed` | `cancelled` |
    /// `failed` | `expired` | `capture_failed`
    pub status: String,
    pub payment_required: bool,
    pub amount_cents: Option<i64>,
    pub currency: String,
    pub authorized_amount_cents: Option<i64>,
    pub captured_amount_cents: Option<i64>,
    pub payment_intent_id: Option<String>,
    pub authorization_reference: Option<String>,
    pub location_id: String,
    pub evse_uid: String,
    pub connector_id: String,
    pub ocpi_session_id: Option<String>,
    pub failure_code: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(ToSchema)]
pub struct StartSession {
    pub ocpi_session_id: String,
}

#[derive(ToSchema)]
pub struct CompleteSession {
    /// What the session cost; `min(final, authorized)` is captured, 0 releases the hold.
    pub final_amount_cents: i64,
    pub ocpi_session_id: Option<String>,
}

#[derive(ToSchema)]
pub struct WebhookAck {
    pub received: bool,
    /// `applied` | `duplicate` | `ignored`
    pub outcome: String,
}

#[derive(ToSchema)]
pub struct AuditEntry {
    pub id: String,
    pub recorded_at: String,
    pub workspace_id: Option<String>,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub event_type: String,
    pub actor: Option<String>,
    pub request_id: Option<String>,
    pub summary: String,
}

#[derive(ToSchema)]
pub struct AuditPage {
    pub data: Vec<AuditEntry>,
    pub has_more: bool,
}

#[derive(ToSchema)]
pub struct ChargingIntentPage {
    pub data: Vec<ChargingIntentView>,
    pub has_more: bool,
}

/// The OCPI response envelope.
#[derive(ToSchema)]
pub struct OcpiEnvelope {
    /// The OCPI Location; with `show_ocpi_cfg=true` it carries `ocpi_cfg`.
    pub data: Option<serde_json::Value>,
    /// 1000 on success, 2003 for an unknown location.
    pub status_code: i32,
    pub status_message: String,
    pub timestamp: String,
}

#[derive(ToSchema)]
pub struct Status {
    pub status: String,
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::builder()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some("HS256 JWT with `sub`, `workspaces` and `scope` claims; `roampay token` prints one."))
                .build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "roampay",
        description = "Event-sourced payment orchestration for workspace-owned Stripe accounts. Errors are RFC 9457 problem+json with a stable `code`; every response carries `X-Request-Id`."
    ),
    paths(
        ops::healthz,
        ops::readyz,
        ops::metrics,
        ocpi_config::get,
        ocpi_config::patch,
        ocpi_config::validate,
        locations::put,
        locations::get_emsp,
        payments::create,
        payments::get,
        payments::confirm,
        webhooks::shared,
        webhooks::per_workspace,
        sessions::start,
        sessions::complete,
        sessions::cancel,
        support::audit,
        support::charging_intents,
        support::payment_health,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "ocpi-config", description = "Workspace Stripe credentials and roaming settings (Manage Web)"),
        (name = "locations", description = "Reference data pushed by the CPO side"),
        (name = "payments", description = "Pre-authorizations for Roaming Web"),
        (name = "webhooks", description = "Called by Stripe"),
        (name = "sessions", description = "OCPI session module: start, complete (capture), cancel"),
        (name = "support", description = "Audit and health views"),
        (name = "operations", description = "Probes and metrics"),
    )
)]
pub struct ApiDoc;

/// `/docs` → `/docs/` (Swagger UI resolves its assets relative to the slash).
pub async fn docs_redirect() -> actix_web::HttpResponse {
    actix_web::HttpResponse::PermanentRedirect()
        .insert_header((actix_web::http::header::LOCATION, "/docs/"))
        .finish()
}
