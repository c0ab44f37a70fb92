//! The webhook delivery log (scope `audit:read`): every delivery to every webhook
//! endpoint, what became of it, and for verified ones the event as received.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use roampay_projections::webhook_deliveries::{self, Delivery, DeliveryFilter};
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::Principal;
use super::error::{ApiError, Problem};
use super::listing::{self, Params};
use super::support::scope;
use super::AppState;

const PARAMS: &[&str] = &[
    "workspace_id",
    "event_id",
    "event_type",
    "outcome",
    "limit",
    "starting_after",
];

/// One delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    pub id: String,
    pub received_at: DateTime<Utc>,
    /// `workspace` | `shared` | `connect` | `billing`
    pub endpoint: String,
    pub workspace_id: Option<String>,
    /// Verified deliveries only.
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    /// `applied` | `duplicate` | `ignored` | `refused`
    pub outcome: String,
    /// The refusal's code; null for accepted deliveries.
    pub code: Option<String>,
    /// The delivery's `X-Request-Id`.
    pub request_id: String,
}

/// One delivery with the verified event as received.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryDetail {
    #[serde(flatten)]
    pub delivery: DeliveryView,
    /// The verified event as Stripe sent it; null for an unverified delivery.
    #[schema(value_type = Option<HashMap<String, serde_json::Value>>)]
    pub payload: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    pub data: Vec<DeliveryView>,
    pub has_more: bool,
}

impl From<Delivery> for DeliveryView {
    fn from(d: Delivery) -> Self {
        Self {
            id: d.id,
            received_at: d.received_at,
            endpoint: d.endpoint,
            workspace_id: d.workspace_id,
            event_id: d.event_id,
            event_type: d.event_type,
            outcome: d.outcome,
            code: d.code,
            request_id: d.request_id,
        }
    }
}

fn filter(principal: &Principal, p: &Params) -> Result<DeliveryFilter, ApiError> {
    Ok(DeliveryFilter {
        workspaces: scope(principal, p.text("workspace_id").as_deref())?,
        event_id: p.text("event_id"),
        event_type: p.text("event_type"),
        outcome: p.one_of("outcome", &["applied", "duplicate", "ignored", "refused"])?,
        before_id: p.text("starting_after"),
        limit: p.limit()?,
    })
}

/// `GET /api/support/webhook-deliveries`: newest first, cursor = a delivery id.
#[utoipa::path(
    get,
    path = "/api/support/webhook-deliveries",
    operation_id = "list_webhook_deliveries",
    tag = "support",
    summary = "Every webhook delivery and what became of it, newest first (scope audit:read); CSV with Accept: text/csv",
    params(("workspace_id" = Option<String>, Query), ("event_id" = Option<String>, Query), ("event_type" = Option<String>, Query), ("outcome" = Option<String>, Query, description = "applied | duplicate | ignored | refused"), ("limit" = Option<u32>, Query, description = "1..=200, default 50"), ("starting_after" = Option<String>, Query, description = "A delivery id")),
    responses(
        (status = 200, description = "A page (or CSV rows)", body = DeliveryPage),
        (status = 400, description = "`unknown_parameter`, `invalid_parameter`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub async fn list(
    principal: Principal,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let filter = filter(&principal, &Params::parse(&req, PARAMS)?)?;
    // This instance's deliveries of a moment ago are written before the read.
    let log = &state.services.deliveries;
    log.flush().await;
    let (rows, has_more) = webhook_deliveries::search(log.db().await?, &filter).await?;
    let data: Vec<DeliveryView> = rows.into_iter().map(Into::into).collect();
    if listing::wants_csv(&req) {
        return Ok(listing::csv(data));
    }
    Ok(HttpResponse::Ok().json(DeliveryPage { data, has_more }))
}

#[utoipa::path(
    get,
    path = "/api/support/webhook-deliveries/{id}",
    operation_id = "get_webhook_delivery",
    tag = "support",
    summary = "One webhook delivery with the verified event as received (scope audit:read)",
    params(("id" = String, Path, description = "A delivery id")),
    responses(
        (status = 200, description = "The delivery", body = DeliveryDetail),
        (status = 404, description = "`delivery_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub async fn get(
    principal: Principal,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let not_found = || ApiError::not_found("delivery_not_found", "No such webhook delivery.");
    principal.authorize("audit:read", None)?;
    let id = uuid::Uuid::parse_str(&path).map_err(|_| not_found())?;
    let log = &state.services.deliveries;
    log.flush().await;
    let found = webhook_deliveries::get(log.db().await?, &id.to_string()).await?;
    let d = found.ok_or_else(not_found)?;
    // A delivery of no known workspace is for platform-wide readers only.
    let ws = d.workspace_id.as_deref().unwrap_or("*");
    if !principal.may_access(ws) {
        return Err(not_found());
    }
    let payload = d
        .payload
        .as_deref()
        .and_then(|p| serde_json::from_str(p).ok());
    Ok(HttpResponse::Ok().json(DeliveryDetail {
        delivery: d.into(),
        payload,
    }))
}
