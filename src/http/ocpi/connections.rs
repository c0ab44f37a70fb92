//! The admin API of OCPI connections (contract v3.1): create one (a token A for the
//! CPO, or roampay registering with the CPO), list them, end one.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::application::ocpi::{Created, OcpiError};
use crate::http::auth::Principal;
use crate::http::error::{ApiError, FieldError, Problem};
use crate::http::{metadata, workspace_id, AppState};

impl From<OcpiError> for ApiError {
    fn from(e: OcpiError) -> Self {
        let text = e.to_string();
        match e {
            OcpiError::NotFound => ApiError::not_found("ocpi_connection_not_found", text),
            OcpiError::RegistrationFailed(_) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "ocpi_registration_failed", text)
            }
            OcpiError::Invalid(m) => {
                ApiError::validation(vec![FieldError::new("versions_url", "invalid_url", m)])
            }
            OcpiError::Store(f) => f.into(),
            other => ApiError::internal(other),
        }
    }
}

/// A new connection: a name, and to have roampay register with the CPO, the CPO's
/// versions URL and token A.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"name": "Depot CPMS"}))]
pub struct NewConnection {
    name: String,
    versions_url: Option<String>,
    token_a: Option<String>,
}

/// The CPO's party on a registered connection.
#[derive(Debug, Serialize, ToSchema)]
pub struct PartyView {
    #[schema(example = "AU")]
    pub country_code: String,
    #[schema(example = "CPO")]
    pub party_id: String,
    #[schema(example = "CPO")]
    pub role: String,
}

/// A connection (its tokens are never shown again).
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionView {
    pub id: String,
    pub name: String,
    /// `pending`, `registered` or `unregistered`.
    #[schema(example = "registered")]
    pub status: &'static str,
    pub party: Option<PartyView>,
    #[schema(example = "2.2.1")]
    pub version: Option<String>,
    pub registered_at: Option<chrono::DateTime<chrono::Utc>>,
    pub last_request_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl ConnectionView {
    fn of(v: &crate::application::ocpi::ConnectionView) -> Self {
        let c = &v.connection;
        Self {
            id: c.id.clone(),
            name: c.name.clone(),
            status: c.status.as_str(),
            party: c.party.as_ref().map(|p| PartyView {
                country_code: p.country_code.clone(),
                party_id: p.party_id.clone(),
                role: p.role.clone(),
            }),
            version: c.version.clone(),
            registered_at: c.registered_at,
            last_request_at: v.last_request_at,
        }
    }
}

/// A connection just made: with a token A, the one time it is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedConnection {
    pub id: String,
    pub name: String,
    #[schema(example = "pending")]
    pub status: &'static str,
    /// roampay's versions URL, for the CPO.
    pub versions_url: String,
    /// Give it to the CPO to register with (absent when roampay registered itself).
    #[serde(serialize_with = "crate::infra::ocpi::reveal_some")]
    #[schema(value_type = Option<String>)]
    pub token_a: Option<SecretString>,
}

/// `{"data": [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionList {
    pub data: Vec<ConnectionView>,
}

fn name_of(body: &NewConnection) -> Result<String, ApiError> {
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::validation(vec![FieldError::new(
            "name",
            "invalid_value",
            "A connection needs a name of 1 to 100 characters.",
        )]));
    }
    Ok(name.to_string())
}

/// The CPO's versions URL and token A, when roampay is to register with it.
fn outbound(body: &NewConnection) -> Result<Option<(String, SecretString)>, ApiError> {
    match (&body.versions_url, &body.token_a) {
        (None, None) => Ok(None),
        (Some(url), Some(token)) if crate::infra::ocpi::is_token(token) => {
            crate::config::check_http_url("versions_url", url).map_err(|_| {
                ApiError::validation(vec![FieldError::new(
                    "versions_url",
                    "invalid_url",
                    "An absolute http(s) URL.",
                )])
            })?;
            Ok(Some((url.clone(), SecretString::from(token.clone()))))
        }
        _ => Err(ApiError::validation(vec![FieldError::new(
            "token_a",
            "invalid_value",
            "To register with a CPO give both its versions_url and its token_a (1 to 64 printable ASCII characters).",
        )])),
    }
}

#[utoipa::path(
    post,
    path = "/api/workspaces/{workspace_id}/ocpi/connections",
    operation_id = "create_ocpi_connection",
    tag = "ocpi-connections",
    summary = "A connection for the workspace's CPO: a token A to register with, or roampay registering with the CPO (scope roaming:write)",
    params(("workspace_id" = String, Path, description = "^[A-Za-z0-9_-]{1,64}$")),
    request_body = NewConnection,
    responses(
        (status = 201, description = "Created; `token_a` is shown this once", body = CreatedConnection),
        (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`ocpi_registration_failed` (what the CPO answered in `detail`)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub async fn create(
    principal: Principal,
    path: web::Path<String>,
    body: web::Json<NewConnection>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ws = workspace_id(&path)?;
    principal.authorize("roaming:write", Some(ws.as_str()))?;
    let name = name_of(&body)?;
    let meta = metadata(&req, &principal.sub);
    let ocpi = &state.services.ocpi;
    let done: Created = match outbound(&body)? {
        None => ocpi.create(ws.as_str(), &name, &meta).await?,
        Some((url, token)) => {
            ocpi.register_with(ws.as_str(), &name, &url, token, &meta)
                .await?
        }
    };
    Ok(HttpResponse::Created().json(CreatedConnection {
        id: done.connection.id.clone(),
        name: done.connection.name.clone(),
        status: done.connection.status.as_str(),
        versions_url: ocpi.versions_url(),
        token_a: done.token_a,
    }))
}

#[utoipa::path(
    get,
    path = "/api/workspaces/{workspace_id}/ocpi/connections",
    operation_id = "list_ocpi_connections",
    tag = "ocpi-connections",
    summary = "The workspace's OCPI connections (scope roaming:read)",
    params(("workspace_id" = String, Path, description = "^[A-Za-z0-9_-]{1,64}$")),
    responses(
        (status = 200, description = "Oldest first; tokens are never shown", body = ConnectionList),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub async fn list(
    principal: Principal,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ws = workspace_id(&path)?;
    principal.authorize("roaming:read", Some(ws.as_str()))?;
    let all = state.services.ocpi.list(ws.as_str()).await?;
    Ok(HttpResponse::Ok().json(ConnectionList {
        data: all.iter().map(ConnectionView::of).collect(),
    }))
}

#[utoipa::path(
    delete,
    path = "/api/workspaces/{workspace_id}/ocpi/connections/{connection_id}",
    operation_id = "delete_ocpi_connection",
    tag = "ocpi-connections",
    summary = "End a connection: its tokens stop working at once (scope roaming:write)",
    params(
        ("workspace_id" = String, Path, description = "^[A-Za-z0-9_-]{1,64}$"),
        ("connection_id" = String, Path)
    ),
    responses(
        (status = 204, description = "Ended"),
        (status = 404, description = "`ocpi_connection_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub async fn delete(
    principal: Principal,
    path: web::Path<(String, String)>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (ws, id) = path.into_inner();
    let ws = workspace_id(&ws)?;
    principal.authorize("roaming:write", Some(ws.as_str()))?;
    let meta = metadata(&req, &principal.sub);
    state.services.ocpi.remove(ws.as_str(), &id, &meta).await?;
    Ok(HttpResponse::NoContent().finish())
}
