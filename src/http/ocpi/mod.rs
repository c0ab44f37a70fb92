//! OCPI 2.2.1 as a CPO calls it (contract v3.1): every answer in the OCPI envelope
//! (errors too, never problem+json), `X-Request-ID` and `X-Correlation-ID` echoed,
//! `Authorization: Token …` opening one connection. The admin API of connections is in
//! `connections.rs` (problem+json like every `/api` route).

pub mod connections;
pub mod credentials;
pub mod sessions;

use actix_web::http::{header, Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;

use crate::application::ocpi::{Admitted, OcpiError};
use crate::application::StoreFault;
use crate::infra::ocpi::token_of_header;

/// OCPI status codes (OCPI 2.2.1 §5).
pub mod status {
    pub const SUCCESS: u32 = 1000;
    pub const CLIENT_ERROR: u32 = 2000;
    pub const INVALID_PARAMETERS: u32 = 2001;
    pub const SERVER_ERROR: u32 = 3000;
    pub const UNABLE_TO_USE_CLIENT_API: u32 = 3001;
    pub const UNSUPPORTED_VERSION: u32 = 3002;
}

#[derive(Serialize)]
struct Envelope<T> {
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<T>,
    status_code: u32,
    status_message: String,
    timestamp: String,
}

/// An OCPI answer: the envelope, with the request's correlation id echoed.
pub fn answer<T: Serialize>(
    req: &HttpRequest,
    http: StatusCode,
    code: u32,
    message: impl Into<String>,
    data: Option<T>,
) -> HttpResponse {
    let correlation = req
        .headers()
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    HttpResponse::build(http)
        .insert_header(("X-Correlation-ID", correlation))
        .json(Envelope {
            data,
            status_code: code,
            status_message: message.into(),
            timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        })
}

/// Success with `data`.
pub fn ok<T: Serialize>(req: &HttpRequest, data: T) -> HttpResponse {
    answer(req, StatusCode::OK, status::SUCCESS, "Success", Some(data))
}

/// An OCPI refusal, answered in the envelope.
#[derive(Debug)]
pub struct Refusal {
    pub http: StatusCode,
    pub code: u32,
    pub message: String,
    correlation: Option<String>,
}

impl Refusal {
    pub fn new(http: StatusCode, code: u32, message: impl Into<String>) -> Self {
        Self {
            http,
            code,
            message: message.into(),
            correlation: None,
        }
    }

    /// Echoes the request's `X-Correlation-ID`.
    pub fn to(mut self, req: &HttpRequest) -> Self {
        self.correlation = req
            .headers()
            .get("x-correlation-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        self
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OCPI {}: {}", self.code, self.message)
    }
}

impl ResponseError for Refusal {
    fn status_code(&self) -> StatusCode {
        self.http
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.http);
        if let Some(c) = &self.correlation {
            res.insert_header(("X-Correlation-ID", c.clone()));
        }
        res.json(Envelope::<()> {
            data: None,
            status_code: self.code,
            status_message: self.message.clone(),
            timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        })
    }
}

impl From<OcpiError> for Refusal {
    fn from(e: OcpiError) -> Self {
        let text = e.to_string();
        let (http, code) = match e {
            OcpiError::Unauthorized => (StatusCode::UNAUTHORIZED, status::CLIENT_ERROR),
            OcpiError::OnlyRegistration | OcpiError::OtherParty(_) => {
                (StatusCode::FORBIDDEN, status::CLIENT_ERROR)
            }
            OcpiError::NotFound => (StatusCode::NOT_FOUND, status::CLIENT_ERROR),
            OcpiError::MethodNotAllowed(_) => {
                (StatusCode::METHOD_NOT_ALLOWED, status::CLIENT_ERROR)
            }
            OcpiError::Invalid(_) => (StatusCode::BAD_REQUEST, status::INVALID_PARAMETERS),
            OcpiError::PartnerUnusable(_) | OcpiError::RegistrationFailed(_) => {
                (StatusCode::OK, status::UNABLE_TO_USE_CLIENT_API)
            }
            OcpiError::UnsupportedVersion => (StatusCode::OK, status::UNSUPPORTED_VERSION),
            OcpiError::Store(StoreFault::Unavailable) => {
                (StatusCode::SERVICE_UNAVAILABLE, status::SERVER_ERROR)
            }
            OcpiError::Store(StoreFault::Internal(cause)) => {
                tracing::error!(%cause, "an OCPI request failed");
                return Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    status::SERVER_ERROR,
                    "Internal error",
                );
            }
        };
        Self::new(http, code, text)
    }
}

/// A use case's result as OCPI answers it: its data on success, else the refusal
/// (with the request's correlation id).
pub fn done<T: Serialize>(
    req: &HttpRequest,
    r: Result<T, OcpiError>,
) -> Result<HttpResponse, Refusal> {
    match r {
        Ok(data) => Ok(ok(req, data)),
        Err(e) => Err(Refusal::from(e).to(req)),
    }
}

/// The metadata of a partner's request: its actor is the connection.
pub fn partner_meta(req: &HttpRequest, who: &Admitted) -> crate::infra::store::Metadata {
    super::metadata(req, &format!("ocpi:{}", who.connection.id))
}

/// The connection the request's token opens.
pub async fn admitted(req: &HttpRequest, state: &super::AppState) -> Result<Admitted, Refusal> {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(token_of_header);
    let who = state.services.ocpi.admit(token.as_ref()).await;
    who.map_err(|e| Refusal::from(e).to(req))
}

/// An OCPI resource: its methods, and the envelope's 405 for any other.
pub fn endpoint(path: &str, routes: Vec<(Method, actix_web::Route)>) -> actix_web::Resource {
    let mut resource = web::resource(path);
    for (_, route) in routes {
        resource = resource.route(route);
    }
    resource.default_service(web::to(|req: HttpRequest| async move {
        answer::<()>(
            &req,
            StatusCode::METHOD_NOT_ALLOWED,
            status::CLIENT_ERROR,
            "This endpoint does not take that method.",
            None,
        )
    }))
}

/// The OCPI routes.
pub fn routes() -> Vec<actix_web::Resource> {
    vec![
        endpoint(
            "/ocpi/versions",
            vec![(Method::GET, web::get().to(credentials::versions))],
        ),
        endpoint(
            "/ocpi/2.2.1",
            vec![(Method::GET, web::get().to(credentials::details))],
        ),
        endpoint(
            "/ocpi/2.2.1/credentials",
            vec![
                (Method::GET, web::get().to(credentials::get)),
                (Method::POST, web::post().to(credentials::post)),
                (Method::PUT, web::put().to(credentials::put)),
                (Method::DELETE, web::delete().to(credentials::delete)),
            ],
        ),
        endpoint(
            "/ocpi/2.2.1/sessions/{country_code}/{party_id}/{session_id}",
            vec![
                (Method::GET, web::get().to(sessions::get)),
                (Method::PUT, web::put().to(sessions::put)),
                (Method::PATCH, web::patch().to(sessions::patch)),
            ],
        ),
        endpoint(
            "/ocpi/2.2.1/tariffs/{country_code}/{party_id}/{tariff_id}",
            vec![
                (Method::PUT, web::put().to(sessions::put_tariff)),
                (Method::DELETE, web::delete().to(sessions::delete_tariff)),
            ],
        ),
    ]
}
