//! The Sessions (OCPI 2.2.1 §9) and Tariffs (§11) receivers: the CPO pushes its
//! sessions and tariffs.

use actix_web::{web, HttpRequest, HttpResponse};

use super::{admitted, ok, status, Refusal};
use crate::application::ocpi::Pushed;
use crate::http::{metadata, AppState};

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

async fn push(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    raw: web::Bytes,
    state: web::Data<AppState>,
    patch: bool,
) -> Result<HttpResponse, Refusal> {
    let who = admitted(&req, &state).await?;
    let body = object(&req, &raw)?;
    let meta = metadata(&req, &format!("ocpi:{}", who.connection.id));
    let ocpi = &state.services.ocpi;
    let done = ocpi
        .push_session(&who, &at(path.into_inner()), body, patch, &meta)
        .await;
    done.map_err(|e| Refusal::from(e).to(&req))?;
    Ok(ok(&req, serde_json::Value::Null))
}

/// `PUT sessions/{country_code}/{party_id}/{session_id}`: the whole session.
pub async fn put(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    raw: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Refusal> {
    push(req, path, raw, state, false).await
}

/// `PATCH …`: the fields that changed, with `last_updated`.
pub async fn patch(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    raw: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Refusal> {
    push(req, path, raw, state, true).await
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
    Ok(ok(&req, found.map_err(|e| Refusal::from(e).to(&req))?))
}

/// `PUT tariffs/{country_code}/{party_id}/{tariff_id}`: the whole tariff.
pub async fn put_tariff(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    raw: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Refusal> {
    let who = admitted(&req, &state).await?;
    let body = object(&req, &raw)?;
    let meta = metadata(&req, &format!("ocpi:{}", who.connection.id));
    let ocpi = &state.services.ocpi;
    let done = ocpi
        .push_tariff(&who, &at(path.into_inner()), Some(body), &meta)
        .await;
    done.map_err(|e| Refusal::from(e).to(&req))?;
    Ok(ok(&req, serde_json::Value::Null))
}

/// `DELETE tariffs/…`: the tariff is gone.
pub async fn delete_tariff(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Refusal> {
    let who = admitted(&req, &state).await?;
    let meta = metadata(&req, &format!("ocpi:{}", who.connection.id));
    let ocpi = &state.services.ocpi;
    let done = ocpi
        .push_tariff(&who, &at(path.into_inner()), None, &meta)
        .await;
    done.map_err(|e| Refusal::from(e).to(&req))?;
    Ok(ok(&req, serde_json::Value::Null))
}
