//! The HTTP API (see CONTRACT.md): routes, shared state, and cross-cutting concerns.

pub mod auth;
pub mod driver;
pub mod error;
pub mod locations;
pub mod ocpi_config;
pub mod openapi;
pub mod ops;
pub mod payments;
pub mod refunds;
pub mod request_id;
pub mod sessions;
pub mod support;
pub mod views;
pub mod webhooks;

use std::sync::Arc;

use actix_web::{middleware, web, App, HttpMessage, HttpRequest, HttpServer};

use crate::application::Services;
use crate::ids::WorkspaceId;
use crate::store::Metadata;
use auth::JwtAuth;
use error::ApiError;
use request_id::RequestId;

/// Request bodies above this are refused (413 `payload_too_large`).
pub const BODY_LIMIT: usize = 64 * 1024;

/// What handlers reach: the application, and the HTTP layer's own concerns.
pub struct AppState {
    pub services: Arc<Services>,
    pub auth: JwtAuth,
    pub rate_limiter: driver::IpRateLimiter,
}

/// The event metadata of a request: who, and which request.
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

/// The HTTP server on `listener`: routes, request ids, metrics, OpenAPI and Swagger UI.
pub fn server(
    listener: std::net::TcpListener,
    state: AppState,
) -> Result<actix_web::dev::Server, Box<dyn std::error::Error + Send + Sync>> {
    let state = web::Data::new(state);
    let http_metrics = actix_web_prom::PrometheusMetricsBuilder::new(crate::metrics::NAMESPACE)
        .registry(crate::metrics::global().registry.clone())
        .mask_unmatched_patterns("unmatched")
        .exclude("/metrics")
        .build()?;
    let openapi = <openapi::ApiDoc as utoipa::OpenApi>::openapi();
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(middleware::from_fn(request_id::middleware))
            .wrap(http_metrics.clone())
            .configure(routes)
            .service(
                utoipa_swagger_ui::SwaggerUi::new("/docs/{_:.*}")
                    .url("/openapi.json", openapi.clone())
                    // Swagger UI would otherwise ask validator.swagger.io about the spec.
                    .config(
                        utoipa_swagger_ui::Config::new(["/openapi.json"]).validator_url("none"),
                    ),
            )
            .route("/docs", web::get().to(openapi::docs_redirect))
            .default_service(web::to(not_found))
    })
    .listen(listener)?
    .run())
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
    .app_data(web::QueryConfig::default().error_handler(|err, _| {
        ApiError::bad_request(
            "invalid_query",
            format!("The query string could not be read: {err}"),
        )
        .into()
    }))
    .route("/healthz", web::get().to(ops::healthz))
    .route("/readyz", web::get().to(ops::readyz))
    .route("/metrics", web::get().to(ops::metrics))
    .service(
        web::resource("/api/permissions/workspace/{workspace_id}/ocpi-config")
            .route(web::get().to(ocpi_config::get))
            .route(web::patch().to(ocpi_config::patch))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api/permissions/workspace/{workspace_id}/ocpi-config/stripe/validate")
            .route(web::post().to(ocpi_config::validate))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api/support/audit")
            .route(web::get().to(support::audit))
            .default_service(web::to(method_not_allowed)),
    )
    .route(
        "/api/support/charging-intents",
        web::get().to(support::charging_intents),
    )
    .service(
        web::resource("/api/support/charging-intents/{charging_intent_id}/refunds")
            .route(web::post().to(refunds::create))
            .default_service(web::to(method_not_allowed)),
    )
    .route(
        "/api/workspaces/{workspace_id}/locations/{location_id}",
        web::put().to(locations::put),
    )
    .route(
        "/emsp/2.2.1/locations/{location_id}",
        web::get().to(locations::get_emsp),
    )
    .route(
        "/ocpi/create-payment-intent",
        web::post().to(payments::create),
    )
    .route(
        "/api/support/workspaces/{workspace_id}/payment-health",
        web::get().to(support::payment_health),
    )
    .route("/ocpi/charging-intents/{id}", web::get().to(payments::get))
    .route(
        "/ocpi/charging-intents/{id}/start",
        web::post().to(sessions::start),
    )
    .route(
        "/ocpi/charging-intents/{id}/complete",
        web::post().to(sessions::complete),
    )
    .route(
        "/ocpi/charging-intents/{id}/cancel",
        web::post().to(sessions::cancel),
    )
    .route(
        "/ocpi/charging-intents/{id}/confirm",
        web::post().to(payments::confirm),
    )
    .route("/ocpi/stripe/webhook", web::post().to(webhooks::shared))
    .route(
        "/ocpi/stripe/webhook/{workspace_id}",
        web::post().to(webhooks::per_workspace),
    );
}

pub async fn method_not_allowed() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::new(
        actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "This endpoint does not take that method.",
    ))
}

pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::not_found("not_found", "No such endpoint."))
}
