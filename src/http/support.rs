//! Support views (scope `audit:read`), read from the projections.

use actix_web::{web, HttpRequest, HttpResponse};
use roampay_events::{HealthStatus, IntentStatus};
use roampay_projections::audit_log::{self, AuditFilter};
use roampay_projections::charging_intents::{self, IntentFilter};
use roampay_projections::credential_health;
use roampay_projections::db::WorkspaceScope;
use serde_json::json;

use super::auth::Principal;
use super::error::{ApiError, Problem};
use super::listing::{self, Params};
use super::views::{
    AuditEntry, AuditPage, ChargingIntentPage, ChargingIntentView, PaymentHealth, RecentFailure,
    WorkspacePage, WorkspaceSummary,
};
use super::{workspace_id, AppState};

const SCOPE: &str = "audit:read";

/// The workspaces a support query may cover: the one asked for (if the token allows
/// it), else every workspace the token names.
pub(super) fn scope(
    principal: &Principal,
    asked: Option<&str>,
) -> Result<WorkspaceScope, ApiError> {
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

const AUDIT_PARAMS: &[&str] = &[
    "workspace_id",
    "actor",
    "event_type",
    "aggregate_id",
    "from",
    "to",
    "limit",
    "starting_after",
];

fn audit_filter(principal: &Principal, p: &Params) -> Result<AuditFilter, ApiError> {
    Ok(AuditFilter {
        workspaces: scope(principal, p.text("workspace_id").as_deref())?,
        actor: p.text("actor"),
        event_type: p.text("event_type"),
        aggregate_id: p.text("aggregate_id"),
        from: p.time("from")?,
        to: p.time("to")?,
        before_id: p
            .text("starting_after")
            .map(|v| v.parse::<i64>())
            .transpose()
            .map_err(|_| listing::invalid("starting_after must be an entry id."))?,
        limit: p.limit()?,
    })
}

/// `GET /api/support/audit`: newest first, cursor `starting_after` = an entry id.
#[utoipa::path(
    get,
    path = "/api/support/audit",
    operation_id = "list_audit",
    tag = "support",
    summary = "Audit trail, newest first (scope audit:read); CSV with Accept: text/csv",
    params(("workspace_id" = Option<String>, Query), ("actor" = Option<String>, Query), ("event_type" = Option<String>, Query), ("aggregate_id" = Option<String>, Query), ("from" = Option<String>, Query, description = "RFC 3339"), ("to" = Option<String>, Query, description = "RFC 3339"), ("limit" = Option<u32>, Query, description = "1..=200, default 50"), ("starting_after" = Option<String>, Query, description = "An entry id")),
    responses(
        (status = 200, description = "A page (or CSV rows)", body = AuditPage),
        (status = 400, description = "`unknown_parameter`, `invalid_parameter`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub async fn audit(
    principal: Principal,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let filter = audit_filter(&principal, &Params::parse(&req, AUDIT_PARAMS)?)?;
    let (entries, has_more) = audit_log::search(&state.services.db, &filter).await?;
    let data: Vec<AuditEntry> = entries.into_iter().map(Into::into).collect();
    if listing::wants_csv(&req) {
        return Ok(listing::csv(data));
    }
    Ok(HttpResponse::Ok().json(AuditPage { data, has_more }))
}

const INTENT_PARAMS: &[&str] = &[
    "workspace_id",
    "status",
    "payment_intent_id",
    "ocpi_session_id",
    "authorization_reference",
    "created_from",
    "created_to",
    "limit",
    "starting_after",
];

fn intent_filter(principal: &Principal, p: &Params) -> Result<IntentFilter, ApiError> {
    let statuses: Vec<&str> = IntentStatus::VISIBLE.iter().map(|s| s.as_str()).collect();
    Ok(IntentFilter {
        workspaces: scope(principal, p.text("workspace_id").as_deref())?,
        status: p.one_of("status", &statuses)?,
        payment_intent_id: p.text("payment_intent_id"),
        ocpi_session_id: p.text("ocpi_session_id"),
        authorization_reference: p.text("authorization_reference"),
        created_from: p.time("created_from")?,
        created_to: p.time("created_to")?,
        before_id: p.text("starting_after"),
        limit: p.limit()?,
    })
}

/// `GET /api/support/charging-intents`: newest first by creation, cursor = a
/// `charging_intent_id`.
#[utoipa::path(
    get,
    path = "/api/support/charging-intents",
    operation_id = "list_charging_intents",
    tag = "support",
    summary = "Find charging intents, newest first (scope audit:read); CSV with Accept: text/csv",
    params(("workspace_id" = Option<String>, Query), ("status" = Option<IntentStatus>, Query), ("payment_intent_id" = Option<String>, Query), ("ocpi_session_id" = Option<String>, Query), ("authorization_reference" = Option<String>, Query, description = "What the driver's bank statement shows (RP…)"), ("created_from" = Option<String>, Query, description = "RFC 3339"), ("created_to" = Option<String>, Query, description = "RFC 3339"), ("limit" = Option<u32>, Query, description = "1..=200, default 50"), ("starting_after" = Option<String>, Query, description = "A charging_intent_id")),
    responses(
        (status = 200, description = "A page (or CSV rows)", body = ChargingIntentPage),
        (status = 400, description = "`unknown_parameter`, `invalid_parameter`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub async fn charging_intents(
    principal: Principal,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let filter = intent_filter(&principal, &Params::parse(&req, INTENT_PARAMS)?)?;
    let (rows, has_more) = charging_intents::list(&state.services.db, &filter).await?;
    let data: Vec<ChargingIntentView> = rows
        .into_iter()
        .map(|(id, row)| ChargingIntentView::of_row(id, row))
        .collect();
    if listing::wants_csv(&req) {
        return Ok(listing::csv(data));
    }
    Ok(HttpResponse::Ok().json(ChargingIntentPage { data, has_more }))
}

const WORKSPACE_PARAMS: &[&str] = &["health", "limit", "starting_after"];

/// `GET /api/support/workspaces`: which workspaces cannot take payments, and why.
#[utoipa::path(
    get,
    path = "/api/support/workspaces",
    operation_id = "list_workspaces",
    tag = "support",
    summary = "Workspaces by credential health (scope audit:read); CSV with Accept: text/csv",
    params(("health" = Option<HealthStatus>, Query), ("limit" = Option<u32>, Query, description = "1..=200, default 50"), ("starting_after" = Option<String>, Query, description = "A workspace_id")),
    responses(
        (status = 200, description = "A page (or CSV rows)", body = WorkspacePage),
        (status = 400, description = "`unknown_parameter`, `invalid_parameter`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub async fn workspaces(
    principal: Principal,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(&req, WORKSPACE_PARAMS)?;
    let statuses: Vec<&str> = HealthStatus::ALL.iter().map(|s| s.as_str()).collect();
    let health = p.one_of("health", &statuses)?;
    let (after, limit) = (p.text("starting_after"), p.limit()?);
    let scope = scope(&principal, None)?;
    let services = &state.services;
    let page = services.credentials.workspaces_by_health(
        &scope,
        health.as_deref(),
        after.as_deref(),
        limit,
    );
    let (data, has_more) = page
        .await
        .map_err(crate::application::StoreFault::of_sqlx)?;
    let data: Vec<WorkspaceSummary> = data.into_iter().map(WorkspaceSummary::from).collect();
    if listing::wants_csv(&req) {
        return Ok(listing::csv(data));
    }
    Ok(HttpResponse::Ok().json(WorkspacePage { data, has_more }))
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
    let mut view = health_view(&state, ws.as_str()).await?;
    view.billing = super::billing::standing(&state, ws.as_str()).await?;
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
        billing: None,
    })
}
