//! The HTTP API (see CONTRACT.md): routes, shared state, and cross-cutting concerns.

pub mod auth;
pub mod error;
pub mod ocpi_config;
pub mod ops;
pub mod request_id;
pub mod support;

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use roampay_projections::{Db, Projector};

use crate::ids::WorkspaceId;
use crate::store::Aggregates;
use crate::workspace_stripe_profile::WorkspaceStripeProfile;
use auth::JwtAuth;
use error::ApiError;

/// Request bodies above this are refused (413 `payload_too_large`).
pub const BODY_LIMIT: usize = 64 * 1024;

pub struct AppState {
    pub db: Db,
    pub profiles: Aggregates<WorkspaceStripeProfile>,
    pub projector: Arc<Projector>,
    pub auth: JwtAuth,
    /// Base of the URLs we show (webhook endpoints).
    pub public_url: String,
    /// How long a PATCH waits for the Stripe round trip before answering `pending`.
    pub validation_wait: Duration,
}

pub fn workspace_id(raw: &str) -> Result<WorkspaceId, ApiError> {
    WorkspaceId::parse(raw).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_id",
            "workspace_id must match ^[A-Za-z0-9_-]{1,64}$.",
        )
    })
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(BODY_LIMIT)
            .error_handler(error::json_error),
    )
    .app_data(web::PayloadConfig::new(BODY_LIMIT))
    .route("/healthz", web::get().to(ops::healthz))
    .route("/readyz", web::get().to(ops::readyz))
    .service(
        web::resource("/api/permissions/workspace/{workspace_id}/ocpi-config")
            .route(web::get().to(ocpi_config::get))
            .route(web::patch().to(ocpi_config::patch)),
    )
    .route(
        "/api/permissions/workspace/{workspace_id}/ocpi-config/stripe/validate",
        web::post().to(ocpi_config::validate),
    )
    .route("/api/support/audit", web::get().to(support::audit));
}

pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::not_found("not_found", "No such endpoint."))
}
