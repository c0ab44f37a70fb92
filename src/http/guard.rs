//! What every request passes before a handler: a path of sane length, a body that
//! arrives whole within `ROAMPAY_BODY_TIMEOUT_SECS` and within 64 KiB, and — on the way
//! out — every error answered as problem+json, also the ones actix-web makes itself.

use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{HttpResponse, ResponseError};
use futures::StreamExt;

use super::error::ApiError;
use super::BODY_LIMIT;

/// Paths longer than this are refused (414) before routing.
pub const MAX_PATH: usize = 4096;

/// How long a request's body may take to arrive.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub Duration);

/// Reads the whole body (at most `BODY_LIMIT`) within the body timeout, then hands it
/// to the handler: a slow client is answered 408 and its connection closed, never
/// holding a worker for longer.
pub async fn read_body_in_time(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if req.path().len() > MAX_PATH {
        let refused = ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            "The path is longer than 4096 bytes.",
        );
        return Ok(req.into_response(refused.error_response()));
    }
    let limit = req
        .app_data::<actix_web::web::Data<BodyTimeout>>()
        .map_or(Duration::from_secs(10), |t| t.0);
    let (http, payload) = req.into_parts();
    let body = match tokio::time::timeout(limit, read_all(payload)).await {
        Ok(Ok(body)) => body,
        Ok(Err(refused)) => return Ok(ServiceResponse::new(http, closing(refused))),
        Err(_) => {
            let slow = ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!("The body did not arrive within {} s.", limit.as_secs()),
            );
            return Ok(ServiceResponse::new(http, closing(slow)));
        }
    };
    let req = ServiceRequest::from_parts(http, Payload::from(body));
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// An answer after which the connection is closed (the rest of the body is not read).
fn closing(e: ApiError) -> HttpResponse {
    let mut res = e.error_response();
    res.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}

async fn read_all(mut payload: Payload) -> Result<Bytes, ApiError> {
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| {
            ApiError::bad_request("invalid_body", "The request body could not be read.")
        })?;
        if body.len() + chunk.len() > BODY_LIMIT {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Request bodies are limited to 64 KiB.",
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Every error answer is problem+json: one actix-web made itself (a path that matched
/// nothing in a scope, an extractor's refusal) is rewritten with the code its status
/// means, keeping `Allow` and `Retry-After`.
pub async fn problem_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    // (An `Err` from inside is one of ours, already problem+json when rendered.)
    let res = next.call(req).await?.map_into_boxed_body();
    let status = res.status();
    // Our handlers answer errors in problem+json (or the OCPI envelope on the OCPI
    // endpoints); what actix-web writes itself is plain text or empty.
    let bare = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.starts_with("text/plain"));
    if !bare || !(status.is_client_error() || status.is_server_error()) {
        return Ok(res);
    }
    let (code, detail) = generic(status);
    let mut problem = ApiError::new(status, code, detail).error_response();
    for name in [header::ALLOW, header::RETRY_AFTER, header::CONNECTION] {
        if let Some(v) = res.headers().get(&name) {
            problem.headers_mut().insert(name, v.clone());
        }
    }
    Ok(res.into_response(problem))
}

/// The code and words for an error status that no handler described.
fn generic(status: StatusCode) -> (&'static str, &'static str) {
    match status.as_u16() {
        404 => ("not_found", "No such endpoint."),
        405 => (
            "method_not_allowed",
            "This endpoint does not take that method.",
        ),
        408 => ("request_timeout", "The request did not arrive in time."),
        413 => ("payload_too_large", "Request bodies are limited to 64 KiB."),
        414 => ("uri_too_long", "The path is too long."),
        415 => (
            "unsupported_media_type",
            "Send JSON with Content-Type: application/json.",
        ),
        s if s >= 500 => ("internal", "Something went wrong on our side."),
        _ => ("bad_request", "The request could not be read."),
    }
}

/// 405 with the methods the path takes.
pub fn method_not_allowed(allow: &str) -> HttpResponse {
    let mut res = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("This endpoint takes {allow}."),
    )
    .error_response();
    if let Ok(v) = HeaderValue::from_str(allow) {
        res.headers_mut().insert(header::ALLOW, v);
    }
    res
}

/// A CORS preflight that was let through answers 204 No Content (actix-cors says 200).
pub async fn preflight_no_content(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let preflight = req.method() == actix_web::http::Method::OPTIONS;
    let mut res = next.call(req).await?.map_into_boxed_body();
    let allowed = res
        .headers()
        .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN);
    if preflight && allowed && res.status() == StatusCode::OK {
        *res.response_mut().status_mut() = StatusCode::NO_CONTENT;
    }
    Ok(res)
}

/// Open connections per client address (the socket peer; a trusted proxy's connections
/// are many clients' and are not counted).
#[derive(Debug, Clone)]
pub struct ConnectionLimit {
    pub per_client: usize,
    open: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
}

/// One open connection, counted until it closes.
pub struct ConnectionSlot {
    ip: std::net::IpAddr,
    over: bool,
    open: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().expect("connection counts");
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

impl ConnectionLimit {
    pub fn new(per_client: usize) -> Self {
        Self {
            per_client: per_client.max(1),
            open: Default::default(),
        }
    }

    /// Counts a new connection from `ip` (called when it is accepted).
    pub fn open(&self, ip: std::net::IpAddr) -> ConnectionSlot {
        let mut open = self.open.lock().expect("connection counts");
        let n = open.entry(ip).or_insert(0);
        *n += 1;
        ConnectionSlot {
            ip,
            over: *n > self.per_client,
            open: self.open.clone(),
        }
    }
}

/// A connection beyond the client's limit is answered 429 and closed.
pub async fn limit_connections(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let over = req.conn_data::<ConnectionSlot>().is_some_and(|s| s.over);
    if over {
        let mut refused = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_connections",
            "Too many open connections from this address; close some and retry.",
        );
        refused.retry_after_secs = Some(1);
        return Ok(req.into_response(closing(refused)));
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}
