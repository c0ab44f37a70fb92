//! The HTTP API (see CONTRACT.md): routes, shared state, and cross-cutting concerns.

pub mod auth;
pub mod billing;
pub mod client;
pub mod connect;
pub mod deliveries;
pub mod driver;
pub mod error;
#[cfg(test)]
pub(crate) mod fuzz;
pub mod guard;
pub mod listing;
pub mod locations;
pub mod ocpi;
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
use actix_web::{middleware, web, App, HttpMessage, HttpRequest};

use crate::application::Services;
use crate::domain::ids::WorkspaceId;
use crate::infra::store::Metadata;
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
    /// The same allowance, spent by unsigned webhook deliveries (kept apart from the
    /// driver endpoints' so that neither starves the other).
    pub webhook_refusals: driver::IpRateLimiter,
    pub trusted_proxies: client::TrustedProxies,
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
/// What shapes the server beyond the handlers' state.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub body_timeout: guard::BodyTimeout,
    /// Origins whose browsers may call the driver endpoints (none: no CORS at all).
    pub cors_origins: Vec<String>,
    /// Open connections a client address may hold.
    pub connections_per_client: usize,
}

pub fn server(
    listener: std::net::TcpListener,
    state: AppState,
    settings: ServerSettings,
) -> Result<actix_web::dev::Server, Box<dyn std::error::Error + Send + Sync>> {
    let state = web::Data::new(state);
    let http_metrics = actix_web_prom::PrometheusMetricsBuilder::new(crate::metrics::NAMESPACE)
        .registry(crate::metrics::global().registry.clone())
        .mask_unmatched_patterns("unmatched")
        .exclude("/metrics")
        // Swagger UI's assets: not API traffic (and their pattern cannot be a label).
        .exclude_regex("^/docs")
        .build()?;
    let openapi = openapi::document(&state.services.settings.public_url);
    let connections = guard::ConnectionLimit::new(settings.connections_per_client);
    let proxies = state.trusted_proxies.clone();
    let app = move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::Data::new(settings.body_timeout))
            .wrap(middleware::from_fn(guard::read_body_in_time))
            .wrap(middleware::from_fn(guard::limit_connections))
            .wrap(middleware::from_fn(guard::problem_errors))
            .wrap(middleware::from_fn(request_id::middleware))
            .wrap(http_metrics.clone())
            .configure(|cfg| routes(cfg, &settings.cors_origins))
            .service(
                utoipa_swagger_ui::SwaggerUi::new("/docs/{_:.*}")
                    .url("/openapi.json", openapi.clone())
                    // Swagger UI would otherwise ask validator.swagger.io about the spec.
                    .config(
                        // Relative to /docs/, so that it works behind a path prefix too.
                        utoipa_swagger_ui::Config::new(["../openapi.json"]).validator_url("none"),
                    ),
            )
            .route("/docs", web::get().to(openapi::docs_redirect))
            .default_service(web::to(not_found))
    };
    // Each connection is counted against its client address from its first byte (a
    // trusted proxy's are not: they carry many clients).
    let on_connect = move |io: &dyn std::any::Any, ext: &mut actix_web::dev::Extensions| {
        let peer = io
            .downcast_ref::<actix_web::rt::net::TcpStream>()
            .and_then(|s| s.peer_addr().ok())
            .map(|a| a.ip());
        if let Some(ip) = peer.filter(|ip| !proxies.trusts(*ip)) {
            ext.insert(connections.open(ip));
        }
    };
    Ok(actix_web::HttpServer::new(app)
        .on_connect(on_connect)
        .client_disconnect_timeout(std::time::Duration::from_secs(1))
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

/// CORS for the driver endpoints: the configured origins, the methods and headers
/// Roaming Web sends; other origins get no CORS headers (and are not blocked: a
/// non-browser client may send any `Origin`).
fn cors(origins: &[String]) -> middleware::Condition<actix_cors::Cors> {
    use actix_web::http::header;
    let mut cors = actix_cors::Cors::default()
        .block_on_origin_mismatch(false)
        .allowed_methods(["GET", "POST"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("idempotency-key"),
        ])
        .expose_headers(["x-request-id", "retry-after"])
        .max_age(600);
    for origin in origins {
        cors = cors.allowed_origin(origin);
    }
    middleware::Condition::new(!origins.is_empty(), cors)
}

/// Checks `ROAMPAY_CORS_ALLOWED_ORIGINS`: each an `http(s)://host[:port]` origin.
pub fn parse_origins(list: &str) -> Result<Vec<String>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|o| {
            let ok = actix_web::http::Uri::try_from(o).is_ok_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https"))
                    && u.host().is_some_and(|h| !h.is_empty())
                    && u.path_and_query().is_none_or(|p| p.as_str().is_empty() || p.as_str() == "/")
                    && !o.ends_with('/')
            });
            ok.then(|| o.to_string()).ok_or_else(|| {
                format!("ROAMPAY_CORS_ALLOWED_ORIGINS: {o:?} is not an origin like https://pay.example.com")
            })
        })
        .collect()
}

pub fn routes(cfg: &mut web::ServiceConfig, cors_origins: &[String]) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(BODY_LIMIT)
            .error_handler(error::json_error),
    )
    .app_data(web::PayloadConfig::new(BODY_LIMIT))
    .app_data(web::QueryConfig::default().error_handler(|err, _| {
        ApiError::bad_request(
            "invalid_parameter",
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
        endpoint(
            "/api/workspaces/{workspace_id}/stripe-connect/onboarding",
            vec![post(web::post().to(connect::onboarding))],
        ),
        endpoint(
            "/api/workspaces/{workspace_id}/ocpi/connections",
            vec![
                get(web::get().to(ocpi::connections::list)),
                post(web::post().to(ocpi::connections::create)),
            ],
        ),
        endpoint(
            "/api/workspaces/{workspace_id}/ocpi/connections/{connection_id}",
            vec![(Method::DELETE, web::delete().to(ocpi::connections::delete))],
        ),
    ];
    let billing = [
        endpoint(
            "/api/workspaces/{workspace_id}/billing",
            vec![get(web::get().to(billing::get))],
        ),
        endpoint(
            "/api/workspaces/{workspace_id}/billing/checkout",
            vec![post(web::post().to(billing::checkout))],
        ),
        endpoint(
            "/api/workspaces/{workspace_id}/billing/portal",
            vec![post(web::post().to(billing::portal))],
        ),
        endpoint(
            "/billing/stripe/webhook",
            vec![post(web::post().to(billing::webhook))],
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
            "/api/support/workspaces",
            vec![get(web::get().to(support::workspaces))],
        ),
        endpoint(
            "/api/support/workspaces/{workspace_id}/payment-health",
            vec![get(web::get().to(support::payment_health))],
        ),
        endpoint(
            "/api/support/webhook-deliveries",
            vec![get(web::get().to(deliveries::list))],
        ),
        endpoint(
            "/api/support/webhook-deliveries/{id}",
            vec![get(web::get().to(deliveries::get))],
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
        endpoint(
            "/ocpi/stripe/connect/webhook",
            vec![post(web::post().to(connect::webhook))],
        ),
    ];
    // Resources are tried in the order they are registered, each dynamic one with a
    // regular expression: the busiest (Stripe's webhooks, then the drivers') first.
    for r in webhooks {
        cfg.service(r);
    }
    for r in driver {
        cfg.service(
            r.wrap(cors(cors_origins))
                .wrap(middleware::from_fn(guard::preflight_no_content)),
        );
    }
    for r in ops
        .into_iter()
        .chain(admin)
        .chain(billing)
        .chain(support)
        .chain(sessions)
        .chain(ocpi::routes())
    {
        cfg.service(r);
    }
}

pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::not_found("not_found", "No such endpoint."))
}
