//! Locations: pushed by the CPO side, read by Roaming Web with the workspace's
//! checkout configuration.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use roampay_events::{Connector, Coordinates, Evse, HealthStatus, LocationData, Tariff};
use serde::Deserialize;
use utoipa::ToSchema;

use super::auth::Principal;
use super::driver::{admit, ci_string, rate_limit};
use super::error::{ApiError, FieldError, Problem};
use super::{metadata, workspace_id, AppState};
use crate::application::locations::DriverLocation;
use crate::application::payments::DriverGate;
use crate::domain::location::vocabulary::{
    connector_problems, ConnectorFormat, ConnectorStandard, PowerType,
};
use crate::domain::location::Location;
use crate::domain::money::Currency;

/// A location with per-connector tariffs, as the CPO side pushes it.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"name": "Depot A", "address": "1 Main St", "city": "Sydney", "postal_code": "2000", "country": "AUS",
    "coordinates": {"latitude": "-33.868800", "longitude": "151.209300"},
    "evses": [{"uid": "EVSE-1", "evse_id": "AU*BFL*E1", "connectors": [{"id": "1", "standard": "IEC_62196_T2_COMBO",
      "format": "CABLE", "power_type": "DC", "max_electric_power": 50000,
      "tariff": {"currency": "aud", "price_per_kwh_cents": 45, "flat_fee_cents": 0}}]}]}))]
pub struct LocationInput {
    name: String,
    address: String,
    city: String,
    postal_code: Option<String>,
    /// ISO 3166-1 alpha-3
    country: String,
    coordinates: Coordinates,
    evses: Vec<EvseInput>,
}

#[derive(Deserialize, ToSchema)]
pub struct EvseInput {
    uid: String,
    evse_id: Option<String>,
    connectors: Vec<ConnectorInput>,
}

#[derive(Deserialize, ToSchema)]
pub struct ConnectorInput {
    id: String,
    #[schema(value_type = ConnectorStandard)]
    standard: String,
    #[schema(value_type = ConnectorFormat)]
    format: String,
    #[schema(value_type = PowerType)]
    power_type: String,
    max_electric_power: Option<i64>,
    /// Free when both prices are 0.
    tariff: Tariff,
}

fn tariff_errors(field: String, t: &Tariff) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if Currency::parse(&t.currency).is_none() {
        let message = "Must be a lower-case ISO 4217 code.";
        errors.push(FieldError::new(
            format!("{field}.currency"),
            "invalid_currency",
            message,
        ));
    }
    if t.price_per_kwh_cents < 0 || t.flat_fee_cents < 0 {
        errors.push(FieldError::new(
            field,
            "invalid_tariff",
            "Prices cannot be negative.",
        ));
    }
    errors
}

fn parse_evse(i: usize, e: EvseInput, errors: &mut Vec<FieldError>) -> Result<Evse, ApiError> {
    let uid = ci_string("evses[].uid", &e.uid)?;
    let mut connectors = Vec::new();
    for (j, c) in e.connectors.into_iter().enumerate() {
        let id = ci_string("evses[].connectors[].id", &c.id)?;
        errors.extend(tariff_errors(
            format!("evses[{i}].connectors[{j}].tariff"),
            &c.tariff,
        ));
        let words = connector_problems(&c.standard, &c.format, &c.power_type);
        errors.extend(words.into_iter().map(|(field, message)| {
            let field = format!("evses[{i}].connectors[{j}].{field}");
            FieldError::new(field, "invalid_value", message)
        }));
        connectors.push(Connector {
            id,
            standard: c.standard,
            format: c.format,
            power_type: c.power_type,
            max_electric_power: c.max_electric_power,
            tariff: c.tariff,
        });
    }
    Ok(Evse {
        uid,
        evse_id: e.evse_id,
        connectors,
    })
}

pub(super) fn parse(body: LocationInput) -> Result<LocationData, ApiError> {
    let mut errors = Vec::new();
    let mut evses = Vec::new();
    for (i, e) in body.evses.into_iter().enumerate() {
        evses.push(parse_evse(i, e, &mut errors)?);
    }
    if body.name.trim().is_empty() {
        errors.push(FieldError::new(
            "name",
            "invalid_value",
            "A location needs a name.",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    Ok(LocationData {
        name: body.name,
        address: body.address,
        city: body.city,
        postal_code: body.postal_code,
        country: body.country,
        coordinates: body.coordinates,
        evses,
    })
}

/// A published location as the API serves it (OCPI's Location, with roampay's tariff).
#[derive(serde::Serialize, ToSchema)]
pub struct LocationView {
    id: String,
    workspace_id: Option<String>,
    name: String,
    address: String,
    city: String,
    postal_code: Option<String>,
    /// ISO 3166-1 alpha-3
    country: String,
    coordinates: Coordinates,
    evses: Vec<EvseView>,
    last_updated: Option<chrono::DateTime<chrono::Utc>>,
    /// With `show_ocpi_cfg=true` on the driver endpoint: the workspace's checkout
    /// configuration.
    #[serde(skip_serializing_if = "Option::is_none")]
    ocpi_cfg: Option<OcpiCfg>,
}

#[derive(serde::Serialize, ToSchema)]
pub struct EvseView {
    uid: String,
    evse_id: Option<String>,
    /// OCPI EVSE status.
    #[schema(example = "AVAILABLE")]
    status: &'static str,
    connectors: Vec<ConnectorView>,
    last_updated: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(serde::Serialize, ToSchema)]
pub struct ConnectorView {
    id: String,
    #[schema(value_type = ConnectorStandard)]
    standard: String,
    #[schema(value_type = ConnectorFormat)]
    format: String,
    #[schema(value_type = PowerType)]
    power_type: String,
    max_electric_power: Option<i64>,
    tariff: Tariff,
    /// Both prices 0: no payment needed.
    free: bool,
    last_updated: Option<chrono::DateTime<chrono::Utc>>,
}

/// The workspace's checkout configuration for Roaming Web (never a secret).
#[derive(serde::Serialize, ToSchema)]
pub struct OcpiCfg {
    workspace_id: String,
    allow_guest_access: bool,
    allow_user_registration: bool,
    pre_auth_cents: i64,
    currency: String,
    stripe_publishable_key: Option<String>,
    /// Connect mode: the connected account Stripe.js starts with.
    stripe_account_id: Option<String>,
    payment_ready: bool,
    payment_error: Option<OcpiPaymentError>,
}

/// Why paid sessions are unavailable.
#[derive(serde::Serialize, ToSchema)]
pub struct OcpiPaymentError {
    /// `workspace_payment_not_ready`
    code: &'static str,
    message: String,
}

fn location_view(loc: &Location) -> LocationView {
    let data = loc.data.as_ref().expect("a published location");
    let updated = loc.last_updated;
    let connector = |c: &Connector| ConnectorView {
        id: c.id.clone(),
        standard: c.standard.clone(),
        format: c.format.clone(),
        power_type: c.power_type.clone(),
        max_electric_power: c.max_electric_power,
        tariff: c.tariff.clone(),
        free: c.tariff.is_free(),
        last_updated: updated,
    };
    LocationView {
        // The id as published (a request may name it in another case).
        id: loc.location_id.clone(),
        workspace_id: loc.workspace_id.clone(),
        name: data.name.clone(),
        address: data.address.clone(),
        city: data.city.clone(),
        postal_code: data.postal_code.clone(),
        country: data.country.clone(),
        coordinates: data.coordinates.clone(),
        evses: data
            .evses
            .iter()
            .map(|e| EvseView {
                uid: e.uid.clone(),
                evse_id: e.evse_id.clone(),
                status: "AVAILABLE",
                connectors: e.connectors.iter().map(connector).collect(),
                last_updated: updated,
            })
            .collect(),
        last_updated: updated,
        ocpi_cfg: None,
    }
}

#[utoipa::path(
    put,
    path = "/api/workspaces/{workspace_id}/locations/{location_id}",
    operation_id = "put_location",
    tag = "locations",
    summary = "Publish a location with per-connector tariffs (scope locations:write)",
    params(("workspace_id" = String, Path, description = "^[A-Za-z0-9_-]{1,64}$"), ("location_id" = String, Path, description = "OCPI CiString(36)")),
    request_body = LocationInput,
    responses(
        (status = 200, description = "The stored location", body = LocationView),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`location_owned_by_other_workspace`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub async fn put(
    principal: Principal,
    path: web::Path<(String, String)>,
    body: web::Json<LocationInput>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (ws, location_id) = path.into_inner();
    let ws = workspace_id(&ws)?;
    let location_id = ci_string("location_id", &location_id)?;
    principal.authorize("locations:write", Some(ws.as_str()))?;
    let data = parse(body.into_inner())?;
    let meta = metadata(&req, &principal.sub);
    let loc = state
        .services
        .locations
        .publish_location(ws.as_str(), &location_id, data, &meta)
        .await?;
    Ok(HttpResponse::Ok().json(location_view(&loc)))
}

/// The OCPI response envelope.
#[derive(serde::Serialize, ToSchema)]
pub struct OcpiEnvelope {
    /// The OCPI Location (null for an unknown one); with `show_ocpi_cfg=true` it
    /// carries `ocpi_cfg`.
    data: Option<LocationView>,
    /// 1000 on success, 2003 for an unknown location.
    status_code: u32,
    status_message: &'static str,
    timestamp: chrono::DateTime<chrono::Utc>,
}

#[derive(Deserialize)]
pub struct EmspQuery {
    show_ocpi_cfg: Option<String>,
}

fn ocpi(
    status: StatusCode,
    code: u32,
    message: &'static str,
    data: Option<LocationView>,
) -> HttpResponse {
    HttpResponse::build(status).json(OcpiEnvelope {
        data,
        status_code: code,
        status_message: message,
        timestamp: chrono::Utc::now(),
    })
}

/// `GET /emsp/2.2.1/locations/{id}`: the OCPI location, and with `show_ocpi_cfg=true`
/// the workspace's checkout configuration (publishable key, readiness; never a secret).
#[utoipa::path(
    get,
    path = "/emsp/2.2.1/locations/{location_id}",
    operation_id = "get_emsp_location",
    tag = "locations",
    summary = "OCPI location for Roaming Web, with the workspace payment bootstrap",
    params(("location_id" = String, Path), ("show_ocpi_cfg" = Option<bool>, Query, description = "Adds `data.ocpi_cfg` (publishable key, payment readiness; never a secret)")),
    responses(
        (status = 200, description = "OCPI envelope, status_code 1000", body = OcpiEnvelope),
        (status = 404, description = "OCPI status_code 2003", body = OcpiEnvelope),
        (status = 400, description = "`invalid_id`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`driver_token_required` (the workspace does not allow guests)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn get_emsp(
    path: web::Path<String>,
    query: web::Query<EmspQuery>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    rate_limit(&state, &req)?;
    let location_id = ci_string("location_id", &path)?;
    let found = state.services.locations.location_for_driver(&location_id);
    let Some(found) = found.await? else {
        return Ok(ocpi(StatusCode::NOT_FOUND, 2003, "Unknown location", None));
    };
    let ws = found.location.workspace_id.clone().unwrap_or_default();
    let gate = DriverGate {
        workspace_id: ws.clone(),
        allow_guest_access: found.profile.settings.allow_guest_access,
    };
    admit(&state, &req, &gate)?;
    let mut data = location_view(&found.location);
    let show = query.show_ocpi_cfg.as_deref();
    if show.is_some_and(|v| v == "true" || v == "1") {
        data.ocpi_cfg = Some(ocpi_cfg(&ws, &found));
    }
    Ok(ocpi(StatusCode::OK, 1000, "Success", Some(data)))
}

/// The workspace's checkout configuration for Roaming Web (never a secret).
fn ocpi_cfg(ws: &str, found: &DriverLocation) -> OcpiCfg {
    let (profile, publishable_key) = (&found.profile, found.publishable_key.clone());
    let account = found.stripe_account.clone();
    let health = profile.health_status();
    let ready = health == HealthStatus::Valid;
    let s = &profile.settings;
    let error = (!ready).then(|| OcpiPaymentError {
        code: "workspace_payment_not_ready",
        message: format!(
            "Paid sessions are unavailable: the workspace's Stripe credentials are {}.",
            health.as_str()
        ),
    });
    OcpiCfg {
        workspace_id: ws.to_string(),
        allow_guest_access: s.allow_guest_access,
        allow_user_registration: s.allow_user_registration,
        pre_auth_cents: s.pre_auth_cents.cents(),
        currency: s.currency.as_str().to_string(),
        stripe_publishable_key: publishable_key,
        stripe_account_id: account,
        payment_ready: ready,
        payment_error: error,
    }
}
