//! `X-Request-Id` on every response (echoed when the client sent a usable one), made
//! available to error bodies and event metadata, one span (continuing the caller's W3C
//! trace) and one log line per request.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::HttpMessage;
use tracing::Instrument;

use super::error::REQUEST_ID;

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The request id, stored in the request's extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

fn usable(v: &str) -> bool {
    (1..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic())
}

pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get(&HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| usable(v))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().clone();
    let path = req
        .match_pattern()
        .unwrap_or_else(|| req.path().to_string());
    let span = request_span(&method, &path, &id);
    crate::telemetry::continue_trace(&span, req.headers());
    let started = std::time::Instant::now();
    let mut res = REQUEST_ID
        .scope(id.clone(), next.call(req))
        .instrument(span.clone())
        .await?;
    res.headers_mut().insert(
        HEADER,
        HeaderValue::from_str(&id).expect("checked visible ASCII"),
    );
    let status = res.status().as_u16();
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let seen = Seen::of(&res);
    span.in_scope(|| seen.log(&id, &method, &path, status, elapsed_ms));
    Ok(res)
}

/// What the request log line says beyond method and route: the workspace (from the
/// path, else the token when it names one), the error code, the client's address.
struct Seen {
    workspace_id: Option<String>,
    code: Option<&'static str>,
    client: Option<String>,
}

impl Seen {
    /// The one line per request.
    fn log(
        &self,
        id: &str,
        method: &actix_web::http::Method,
        route: &str,
        status: u16,
        elapsed_ms: u64,
    ) {
        tracing::info!(
            request_id = %id,
            http.method = %method,
            http.route = %route,
            http.status = status,
            elapsed_ms,
            workspace_id = self.workspace_id.as_deref(),
            code = self.code,
            client_address = self.client.as_deref(),
            "request"
        )
    }

    fn of<B>(res: &ServiceResponse<B>) -> Self {
        let req = res.request();
        let workspace_id = req
            .match_info()
            .get("workspace_id")
            .map(str::to_string)
            .or_else(|| {
                req.extensions()
                    .get::<super::auth::TokenWorkspace>()
                    .map(|w| w.0.clone())
            });
        let client = req
            .app_data::<actix_web::web::Data<super::AppState>>()
            .map(|s| s.trusted_proxies.client_of(req).to_string());
        Self {
            workspace_id,
            code: res
                .response()
                .extensions()
                .get::<super::error::ErrorCode>()
                .map(|c| c.0),
            client,
        }
    }
}

fn request_span(method: &actix_web::http::Method, path: &str, id: &str) -> tracing::Span {
    tracing::info_span!(
        "HTTP request",
        otel.name = %format!("{method} {path}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %method,
        http.route = %path,
        http.response.status_code = tracing::field::Empty,
        request_id = %id,
    )
}
