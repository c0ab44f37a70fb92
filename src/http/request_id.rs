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
    span.in_scope(|| tracing::info!(request_id = %id, http.method = %method, http.route = %path, http.status = status, elapsed_ms, "request"));
    Ok(res)
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
