//! Support views (scope `audit:read`), read from the projections.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use roampay_projections::audit_log::{self, AuditFilter};
use roampay_projections::charging_intents::{self, IntentFilter};
use roampay_projections::credential_health;
use roampay_projections::db::WorkspaceScope;
use serde::Deserialize;
use serde_json::json;

use super::auth::Principal;
use super::error::{ApiError, Problem};
use super::views::{
    AuditPage, ChargingIntentPage, ChargingIntentView, PaymentHealth, RecentFailure,
};
use super::{workspace_id, AppState};

const SCOPE: &str = "audit:read";

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    workspace_id: Option<String>,
    actor: Option<String>,
    event_type: Option<String>,
    aggregate_id: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
    starting_after: Option<String>,
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_query", detail)
}

fn time(name: &str, v: Option<String>) -> Result<Option<DateTime<Utc>>, ApiError> {
    v.map(|v| {
        DateTime::parse_from_rfc3339(&v)
            .map(|d| d.with_timezone(&Utc))
            .map_err(|_| invalid(format!("{name} must be an RFC 3339 timestamp.")))
    })
    .transpose()
}

/// Parses `limit` (1..=200, default 50).
fn page_limit(raw: Option<&str>) -> Result<i64, ApiError> {
    match raw {
        None => Ok(50),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=200).contains(n))
            .ok_or_else(|| invalid("limit must be a whole number from 1 to 200.")),
    }
}

/// The workspaces a support query may cover: the one asked for (if the token allows
/// it), else every workspace the token names.
fn scope(principal: &Principal, asked: Option<&str>) -> Result<WorkspaceScope, ApiError> {
    principal.authorize(SCOPE, None)?;
    match asked {
        Some(raw) => {
            let ws = workspace_id(raw)?;
            principal.authorize(SCOPE, Some(ws.as_str()))?;
            Ok(WorkspaceScope::One(ws.to_string()))
        }
        None if principal.may_access("*") => Ok(WorkspaceScope::All),
        None if principal.workspaces.is_empty() => {
            Err(ApiError::forbidden("The token grants no workspace."))
        }
        None => Ok(WorkspaceScope::Any(principal.workspaces.clone())),
    }
}

/// `GET /api/support/audit`: newest first, cursor `starting_after` = an entry id.
#[utoipa::path(
    get,
    path = "/api/support/audit",
    operation_id = "list_audit",
    tag = "support",
    summary = "Audit trail, newest first (scope audit:read)",
    params(("workspace_id" = Option<String>, Query), ("actor" = Option<String>, Query), ("event_type" = Option<String>, Query), ("aggregate_id" = Option<String>, Query), ("from" = Option<String>, Query, description = "RFC 3339"), ("to" = Option<String>, Query, description = "RFC 3339"), ("limit" = Option<u32>, Query, description = "≤ 200, default 50"), ("starting_after" = Option<String>, Query, description = "An entry id")),
    responses(
        (status = 200, description = "A page", body = AuditPage),
        (status = 400, description = "`invalid_query`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub async fn audit(
    principal: Principal,
    query: web::Query<AuditQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let limit = page_limit(q.limit.as_deref())?;
    let filter = AuditFilter {
        workspaces: scope(&principal, q.workspace_id.as_deref())?,
        actor: q.actor,
        event_type: q.event_type,
        aggregate_id: q.aggregate_id,
        from: time("from", q.from)?,
        to: time("to", q.to)?,
        before_id: q
            .starting_after
            .map(|v| v.parse::<i64>())
            .transpose()
            .map_err(|_| invalid("starting_after must be an entry id."))?,
        limit,
    };
    let (entries, has_more) = audit_log::search(&state.services.db, &filter).await?;
    let data = entries.into_iter().map(Into::into).collect();
    Ok(HttpResponse::Ok().json(AuditPage { data, has_more }))
}

#[derive(Debug, Deserialize)]
pub struct IntentsQuery {
    workspace_id: Option<String>,
    status: Option<String>,
    limit: Option<String>,
    starting_after: Option<String>,
}

/// `GET /api/support/charging-intents`: newest first (ids are time-ordered), cursor =
/// a `charging_intent_id`.
#[utoipa::path(
    get,
    path = "/api/support/charging-intents",
    operation_id = "list_charging_intents",
    tag = "support",
    summary = "Charging intents (scope audit:read)",
    params(("workspace_id" = Option<String>, Query), ("status" = Option<String>, Query), ("limit" = Option<u32>, Query), ("starting_after" = Option<String>, Query)),
    responses(
        (status = 200, description = "A page", body = ChargingIntentPage),
        (status = 400, description = "`invalid_query`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub async fn charging_intents(
    principal: Principal,
    query: web::Query<IntentsQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let filter = IntentFilter {
        limit: page_limit(q.limit.as_deref())?,
        workspaces: scope(&principal, q.workspace_id.as_deref())?,
        status: q.status,
        before_id: q.starting_after,
    };
    let (rows, has_more) = charging_intents::list(&state.services.db, &filter).await?;
    let data = rows
        .into_iter()
        .map(|(id, row)| ChargingIntentView::of_row(id, row))
        .collect();
    Ok(HttpResponse::Ok().json(ChargingIntentPage { data, has_more }))
}

/// `GET /api/support/workspaces/{workspace_id}/payment-health`: is this workspace able
/// to take payments, and what went wrong lately.
#[utoipa::path(
    get,
    path = "/api/support/workspaces/{workspace_id}/payment-health",
    operation_id = "get_payment_health",
    tag = "support",
    summary = "Can this workspace take payments, and what failed lately (scope audit:read)",
    params(("workspace_id" = String, Path, description = "^[A-Za-z0-9_-]{1,64}$")),
    responses(
        (status = 200, description = "Credential health and version, last webhook, rejections in 24 h, intents by status, recent failures", body = PaymentHealth),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub async fn payment_health(
    principal: Principal,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    principal.authorize(SCOPE, None)?;
    let ws = workspace_id(&path)?;
    principal.authorize(SCOPE, Some(ws.as_str()))?;
    let view = health_view(&state, ws.as_str()).await?;
    Ok(HttpResponse::Ok().json(view))
}

async fn health_view(state: &AppState, ws: &str) -> Result<PaymentHealth, sqlx::Error> {
    let db = &state.services.db;
    let day_ago = state.services.clock.now() - chrono::Duration::hours(24);
    let health = match credential_health::of_workspace(db, ws).await? {
        Some(h) => serde_json::to_value(h).expect("a row serializes"),
        None => json!({"status": "unconfigured", "credential_version": 0}),
    };
    let intents = charging_intents::health_of_workspace(db, ws).await?;
    Ok(PaymentHealth {
        workspace_id: ws.to_string(),
        credential_health: health,
        last_webhook_received_at: audit_log::last_webhook(db, ws).await?,
        webhooks_rejected_24h: audit_log::rejected_since(db, ws, day_ago).await?,
        intents_by_status: intents.by_status,
        settlements_pending: intents.settlements_pending,
        holds_lapsing_soon: intents.holds_lapsing_soon,
        captured_below_cost: intents.captured_below_cost,
        uncollected_cents: intents.uncollected_cents,
        recent_failures: intents
            .recent_failures
            .into_iter()
            .map(|f| RecentFailure {
                charging_intent_id: f.charging_intent_id,
                status: f.status,
                failure_code: f.failure_code,
                payment_intent_id: f.payment_intent_id,
                at: f.at,
            })
            .collect(),
    })
}
