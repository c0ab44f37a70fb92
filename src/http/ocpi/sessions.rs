//! The Sessions (OCPI 2.2.1 §9) and Tariffs (§11) receivers: the CPO pushes its
//! sessions and tariffs.

use actix_web::{web, HttpRequest, HttpResponse};

use super::{admitted, done, partner_meta, status, Refusal};
use crate::application::ocpi::Pushed;
use crate::http::AppState;

pub(super) fn at(path: (String, String, String)) -> Pushed {
    let (country_code, party_id, id) = path;
    Pushed {
        country_code,
        party_id,
        id,
    }
}

pub(super) fn object(req: &HttpRequest, raw: &[u8]) -> Result<serde_json::Value, Refusal> {
    serde_json::from_slice(raw).map_err(|e| {
        let message = format!("the body is not JSON: {e}");
        Refusal::new(
            actix_web::http::StatusCode::BAD_REQUEST,
            status::INVALID_PARAMETERS,
            message,
        )
        .to(req)
    })
}

/// What a push changes.
#[derive(Clone, Copy)]
enum Push {
    Session { patch: bool },
    Tariff { delete: bool },
}

async fn push(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    raw: web::Bytes,
    state: web::Data<AppState>,
    what: Push,
) -> Result<HttpResponse, Refusal> {
    let who = admitted(&req, &state).await?;
    let meta = partner_meta(&req, &who);
    let (ocpi, at) = (&state.services.ocpi, at(path.into_inner()));
    let pushed = match what {
        Push::Session { patch } => {
            let body = object(&req, &raw)?;
            ocpi.push_session(&who, &at, body, patch, &meta).await
        }
        Push::Tariff { delete: true } => ocpi.push_tariff(&who, &at, None, &meta).await,
        Push::Tariff { delete: false } => {
            let body = object(&req, &raw)?;
            ocpi.push_tariff(&who, &at, Some(body), &meta).await
        }
    };
    done(&req, pushed.map(|()| serde_json::Value::Null))
}

/// `PUT sessions/{country_code}/{party_id}/{session_id}`: the whole session.
pub async fn put(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    raw: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Refusal> {
    push(req, path, raw, state, Push::Session { patch: false }).await
}

/// `PATCH …`: the fields that changed, with `last_updated`.
pub async fn patch(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    raw: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Refusal> {
    push(req, path, raw, state, Push::Session { patch: true }).await
}

/// `GET …`: the session as roampay has it.
pub async fn get(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Refusal> {
    let who = admitted(&req, &state).await?;
    let found = state
        .services
        .ocpi
        .session(&who, &at(path.into_inner()))
        .await;
    done(&req, found)
}

/// `PUT tariffs/{country_code}/{party_id}/{tariff_id}`: the whole tariff.
pub async fn put_tariff(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    raw: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Refusal> {
    push(req, path, raw, state, Push::Tariff { delete: false }).await
}

/// `DELETE tariffs/…`: the tariff is gone.
pub async fn delete_tariff(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    raw: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Refusal> {
    push(req, path, raw, state, Push::Tariff { delete: true }).await
}
