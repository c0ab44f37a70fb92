//! The versions and credentials modules (OCPI 2.2.1 §6, §7), as a CPO calls them.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::{admitted, done, ok, partner_meta, status, Refusal};
use crate::application::ocpi::SERVED;
use crate::http::AppState;
use crate::infra::ocpi::{Credentials, Endpoint, Version, VersionDetails, VERSION};

/// One OCPI version roampay speaks.
#[derive(Serialize, ToSchema)]
pub struct VersionEntry {
    #[schema(example = "2.2.1")]
    pub version: String,
    pub url: String,
}

/// `GET /ocpi/versions` answer.
#[derive(Serialize, ToSchema)]
pub struct VersionsEnvelope {
    pub data: Vec<VersionEntry>,
    #[schema(example = 1000)]
    pub status_code: u32,
    pub status_message: String,
    pub timestamp: String,
}

/// An OCPI answer without data (how every OCPI error is answered).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status_code": 2000, "status_message": "unknown or missing credentials token", "timestamp": "2026-12-07T10:00:00Z"}))]
pub struct OcpiStatus {
    /// OCPI's: 2000 client error, 2001 invalid parameters, 3000 server error, …
    pub status_code: u32,
    pub status_message: String,
    pub timestamp: String,
}

/// `GET /ocpi/versions`: the versions roampay speaks (any of roampay's tokens).
#[utoipa::path(
    get,
    path = "/ocpi/versions",
    operation_id = "ocpi_versions",
    tag = "ocpi",
    summary = "OCPI versions (a CPO's call: `Authorization: Token <base64 token>`; answers in the OCPI envelope)",
    responses(
        (status = 200, description = "OCPI 1000 with the versions", body = VersionsEnvelope),
        (status = 401, description = "OCPI 2000: no token, or one that opens no connection", body = OcpiStatus)
    ),
    security(("ocpi_token" = []))
)]
pub async fn versions(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Refusal> {
    admitted(&req, &state).await?;
    let ocpi = &state.services.ocpi;
    let list = vec![Version {
        version: VERSION.into(),
        url: ocpi.version_url(None),
    }];
    Ok(ok(&req, list))
}

/// `GET /ocpi/2.2.1`: the modules roampay serves.
pub async fn details(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Refusal> {
    admitted(&req, &state).await?;
    let ocpi = &state.services.ocpi;
    let endpoints = SERVED
        .iter()
        .map(|(module, role)| Endpoint {
            identifier: module.to_string(),
            role: role.to_string(),
            url: ocpi.version_url(Some(module)),
        })
        .collect();
    Ok(ok(
        &req,
        VersionDetails {
            version: VERSION.into(),
            endpoints,
        },
    ))
}

/// `GET credentials`: roampay's credentials as the partner uses them.
pub async fn get(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, Refusal> {
    let who = admitted(&req, &state).await?;
    done(&req, state.services.ocpi.credentials(&who).await)
}

fn body(req: &HttpRequest, raw: &[u8]) -> Result<Credentials, Refusal> {
    serde_json::from_slice(raw).map_err(|e| {
        let message = format!("the body is not a credentials object: {e}");
        Refusal::new(StatusCode::BAD_REQUEST, status::INVALID_PARAMETERS, message).to(req)
    })
}

async fn exchange(
    req: HttpRequest,
    raw: web::Bytes,
    state: web::Data<AppState>,
    update: bool,
) -> Result<HttpResponse, Refusal> {
    let who = admitted(&req, &state).await?;
    let theirs = body(&req, &raw)?;
    let meta = partner_meta(&req, &who);
    done(
        &req,
        state
            .services
            .ocpi
            .exchange(&who, theirs, update, &meta)
            .await,
    )
}

/// `POST credentials` with token A: the CPO registers.
pub async fn post(
    req: HttpRequest,
    raw: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Refusal> {
    exchange(req, raw, state, false).await
}

/// `PUT credentials`: new tokens both ways, the CPO's endpoints read again.
pub async fn put(
    req: HttpRequest,
    raw: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Refusal> {
    exchange(req, raw, state, true).await
}

/// `DELETE credentials`: the CPO unregisters; its token stops working.
pub async fn delete(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, Refusal> {
    let who = admitted(&req, &state).await?;
    let meta = partner_meta(&req, &who);
    let ended = state.services.ocpi.unregister(&who, &meta).await;
    done(&req, ended.map(|()| serde_json::Value::Null))
}
