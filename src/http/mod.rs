//! The HTTP API (see CONTRACT.md): routes, shared state, and cross-cutting concerns.

pub mod auth;
pub mod driver;
pub mod error;
pub mod guard;
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

use actix_web::http::Method;
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
    body_timeout: guard::BodyTimeout,
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
            .app_data(web::Data::new(body_timeout))
            .wrap(middleware::from_fn(guard::read_body_in_time))
            .wrap(middleware::from_fn(guard::problem_errors))
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

/// A path and the methods it takes; any other method is 405 with `Allow`.
fn endpoint(path: &str, routes: Vec<(Method, actix_web::Route)>) -> actix_web::Resource {
    let allow: Vec<&str> = routes.iter().map(|(m, _)| m.as_str()).collect();
    let allow = allow.join(", ");
    let mut resource = web::resource(path);
    for (_, route) in routes {
        resource = resource.route(route);
    }
    resource.default_service(web::to(move || {
        let allow = allow.clone();
        async move { guard::method_not_allowed(&allow) }
    }))
}

fn get(r: actix_web::Route) -> (Method, actix_web::Route) {
    (Method::GET, r)
}

fn post(r: actix_web::Route) -> (Method, actix_web::Route) {
    (Method::POST, r)
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
    }));
    let ops = [
        endpoint("/healthz", vec![get(web::get().to(ops::healthz))]),
        endpoint("/readyz", vec![get(web::get().to(ops::readyz))]),
        endpoint("/metrics", vec![get(web::get().to(ops::metrics))]),
    ];
    let config = "/api/permissions/workspace/{workspace_id}/ocpi-config";
    let admin = [
        endpoint(
            config,
            vec![
                get(web::get().to(ocpi_config::get)),
                (Method::PATCH, web::patch().to(ocpi_config::patch)),
            ],
        ),
        endpoint(
            &format!("{config}/stripe/validate"),
            vec![post(web::post().to(ocpi_config::validate))],
        ),
        endpoint(
            "/api/workspaces/{workspace_id}/locations/{location_id}",
            vec![(Method::PUT, web::put().to(locations::put))],
        ),
    ];
    let support = [
        endpoint(
            "/api/support/audit",
            vec![get(web::get().to(support::audit))],
        ),
        endpoint(
            "/api/support/charging-intents",
            vec![get(web::get().to(support::charging_intents))],
        ),
        endpoint(
            "/api/support/charging-intents/{charging_intent_id}/refunds",
            vec![post(web::post().to(refunds::create))],
        ),
        endpoint(
            "/api/support/workspaces/{workspace_id}/payment-health",
            vec![get(web::get().to(support::payment_health))],
        ),
    ];
    let intent = "/ocpi/charging-intents/{id}";
    let driver = [
        endpoint(
            "/emsp/2.2.1/locations/{location_id}",
            vec![get(web::get().to(locations::get_emsp))],
        ),
        endpoint(
            "/ocpi/create-payment-intent",
            vec![post(web::post().to(payments::create))],
        ),
        endpoint(intent, vec![get(web::get().to(payments::get))]),
        endpoint(
            &format!("{intent}/confirm"),
            vec![post(web::post().to(payments::confirm))],
        ),
        endpoint(
            &format!("{intent}/cancel"),
            vec![post(web::post().to(sessions::cancel))],
        ),
    ];
    let sessions = [
        endpoint(
            &format!("{intent}/start"),
            vec![post(web::post().to(sessions::start))],
        ),
        endpoint(
            &format!("{intent}/complete"),
            vec![post(web::post().to(sessions::complete))],
        ),
    ];
    let webhooks = [
        endpoint(
            "/ocpi/stripe/webhook",
            vec![post(web::post().to(webhooks::shared))],
        ),
        endpoint(
            "/ocpi/stripe/webhook/{workspace_id}",
            vec![post(web::post().to(webhooks::per_workspace))],
        ),
    ];
    for r in ops
        .into_iter()
        .chain(admin)
        .chain(support)
        .chain(sessions)
        .chain(webhooks)
    {
        cfg.service(r);
    }
    for r in driver {
        cfg.service(r);
    }
}

pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::not_found("not_found", "No such endpoint."))
}
