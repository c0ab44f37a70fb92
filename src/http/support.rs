//! Support views (scope `audit:read`).

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use roampay_projections::on_db;
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::Row;

use super::auth::Principal;
use super::error::ApiError;
use super::{workspace_id, AppState};

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

enum Bind {
    Text(String),
    Int(i64),
    Time(DateTime<Utc>),
}

fn time(name: &str, v: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(v)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|_| {
            ApiError::bad_request(
                "invalid_query",
                format!("{name} must be an RFC 3339 timestamp."),
            )
        })
}

/// Parses `limit` (1..=200, default 50).
pub fn page_limit(raw: Option<&str>) -> Result<i64, ApiError> {
    match raw {
        None => Ok(50),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=200).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_query",
                    "limit must be a whole number from 1 to 200.",
                )
            }),
    }
}

/// `GET /api/support/audit`: newest first, cursor `starting_after` = an entry id.
#[utoipa::path(
    get,
    path = "/api/support/audit",
    tag = "support",
    summary = "Audit trail, newest first (scope audit:read)",
    params(("workspace_id" = Option<String>, Query), ("actor" = Option<String>, Query), ("event_type" = Option<String>, Query), ("aggregate_id" = Option<String>, Query), ("from" = Option<String>, Query, description = "RFC 3339"), ("to" = Option<String>, Query, description = "RFC 3339"), ("limit" = Option<u32>, Query, description = "≤ 200, default 50"), ("starting_after" = Option<String>, Query, description = "An entry id")),
    responses(
        (status = 200, description = "A page", body = super::openapi::AuditPage),
        (status = 400, description = "`invalid_query`", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthenticated`", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = super::openapi::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub async fn audit(
    principal: Principal,
    query: web::Query<AuditQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    principal.authorize("audit:read", None)?;
    let q = query.into_inner();
    let limit = page_limit(q.limit.as_deref())?;
    let mut clauses: Vec<String> = Vec::new();
    let mut binds: Vec<Bind> = Vec::new();
    macro_rules! push {
        ($clause:expr, $bind:expr) => {{
            binds.push($bind);
            clauses.push($clause.replace('?', &format!("${}", binds.len())));
        }};
    }
    match q.workspace_id.as_deref() {
        Some(raw) => {
            let ws = workspace_id(raw)?;
            principal.authorize("audit:read", Some(ws.as_str()))?;
            push!("workspace_id = ?", Bind::Text(ws.to_string()));
        }
        None if principal.may_access("*") => {}
        None => {
            // Not platform staff: only the workspaces the token names.
            if principal.workspaces.is_empty() {
                return Err(ApiError::forbidden("The token grants no workspace."));
            }
            let mut placeholders = Vec::new();
            for ws in &principal.workspaces {
                binds.push(Bind::Text(ws.clone()));
                placeholders.push(format!("${}", binds.len()));
            }
            clauses.push(format!("workspace_id IN ({})", placeholders.join(",")));
        }
    }
    if let Some(v) = q.actor {
        push!("actor = ?", Bind::Text(v));
    }
    if let Some(v) = q.event_type {
        push!("event_type = ?", Bind::Text(v));
    }
    if let Some(v) = q.aggregate_id {
        push!("aggregate_id = ?", Bind::Text(v));
    }
    if let Some(v) = q.from {
        push!("recorded_at >= ?", Bind::Time(time("from", &v)?));
    }
    if let Some(v) = q.to {
        push!("recorded_at < ?", Bind::Time(time("to", &v)?));
    }
    if let Some(v) = q.starting_after {
        let id = v.parse::<i64>().map_err(|_| {
            ApiError::bad_request("invalid_query", "starting_after must be an entry id.")
        })?;
        push!("id < ?", Bind::Int(id));
    }
    binds.push(Bind::Int(limit + 1));
    let sql = format!(
        "SELECT id, recorded_at, workspace_id, aggregate_type, aggregate_id, event_type, actor, request_id, summary
           FROM audit_log {} ORDER BY id DESC LIMIT ${}",
        if clauses.is_empty() { String::new() } else { format!("WHERE {}", clauses.join(" AND ")) },
        binds.len()
    );
    let rows: Vec<Value> = on_db!(&state.db, pool => {
        let mut query = sqlx::query(&sql);
        for b in binds {
            query = match b {
                Bind::Text(s) => query.bind(s),
                Bind::Int(i) => query.bind(i),
                Bind::Time(t) => query.bind(t),
            };
        }
        query.fetch_all(pool).await.map_err(ApiError::internal)?
            .into_iter()
            .map(|r| -> Result<Value, sqlx::Error> {
                Ok(json!({
                    "id": r.try_get::<i64, _>("id")?.to_string(),
                    "recorded_at": r.try_get::<DateTime<Utc>, _>("recorded_at")?,
                    "workspace_id": r.try_get::<Option<String>, _>("workspace_id")?,
                    "aggregate_type": r.try_get::<String, _>("aggregate_type")?,
                    "aggregate_id": r.try_get::<String, _>("aggregate_id")?,
                    "event_type": r.try_get::<String, _>("event_type")?,
                    "actor": r.try_get::<Option<String>, _>("actor")?,
                    "request_id": r.try_get::<Option<String>, _>("request_id")?,
                    "summary": r.try_get::<String, _>("summary")?,
                }))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(ApiError::internal)?
    });
    let has_more = rows.len() as i64 > limit;
    let data: Vec<Value> = rows.into_iter().take(limit as usize).collect();
    Ok(HttpResponse::Ok().json(json!({"data": data, "has_more": has_more})))
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
    tag = "support",
    summary = "Charging intents (scope audit:read)",
    params(("workspace_id" = Option<String>, Query), ("status" = Option<String>, Query), ("limit" = Option<u32>, Query), ("starting_after" = Option<String>, Query)),
    responses(
        (status = 200, description = "A page", body = super::openapi::ChargingIntentPage),
        (status = 400, description = "`invalid_query`", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthenticated`", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = super::openapi::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub async fn charging_intents(
    principal: Principal,
    query: web::Query<IntentsQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    principal.authorize("audit:read", None)?;
    let q = query.into_inner();
    let limit = page_limit(q.limit.as_deref())?;
    let mut clauses = Vec::new();
    let mut binds: Vec<String> = Vec::new();
    match q.workspace_id.as_deref() {
        Some(raw) => {
            let ws = workspace_id(raw)?;
            principal.authorize("audit:read", Some(ws.as_str()))?;
            binds.push(ws.to_string());
            clauses.push(format!("workspace_id = ${}", binds.len()));
        }
        None if principal.may_access("*") => {}
        None => {
            if principal.workspaces.is_empty() {
                return Err(ApiError::forbidden("The token grants no workspace."));
            }
            let mut ph = Vec::new();
            for ws in &principal.workspaces {
                binds.push(ws.clone());
                ph.push(format!("${}", binds.len()));
            }
            clauses.push(format!("workspace_id IN ({})", ph.join(",")));
        }
    }
    if let Some(s) = q.status {
        binds.push(s);
        clauses.push(format!("status = ${}", binds.len()));
    }
    if let Some(after) = q.starting_after {
        binds.push(after);
        clauses.push(format!("charging_intent_id < ${}", binds.len()));
    }
    let sql = format!(
        "SELECT charging_intent_id, workspace_id, status, payment_required, amount_cents, currency,
                authorized_amount_cents, captured_amount_cents, payment_intent_id, location_id, evse_uid,
                connector_id, ocpi_session_id, failure_code, created_at, updated_at
           FROM charging_intents {} ORDER BY charging_intent_id DESC LIMIT {}",
        if clauses.is_empty() { String::new() } else { format!("WHERE {}", clauses.join(" AND ")) },
        limit + 1
    );
    let rows: Vec<Value> = on_db!(&state.db, pool => {
        let mut query = sqlx::query(&sql);
        for b in binds {
            query = query.bind(b);
        }
        query.fetch_all(pool).await.map_err(ApiError::internal)?
            .into_iter()
            .map(|r| -> Result<Value, sqlx::Error> {
                Ok(json!({
                    "charging_intent_id": r.try_get::<String, _>("charging_intent_id")?,
                    "workspace_id": r.try_get::<String, _>("workspace_id")?,
                    "status": r.try_get::<String, _>("status")?,
                    "payment_required": r.try_get::<bool, _>("payment_required")?,
                    "amount_cents": r.try_get::<Option<i64>, _>("amount_cents")?,
                    "currency": r.try_get::<String, _>("currency")?,
                    "authorized_amount_cents": r.try_get::<Option<i64>, _>("authorized_amount_cents")?,
                    "captured_amount_cents": r.try_get::<Option<i64>, _>("captured_amount_cents")?,
                    "payment_intent_id": r.try_get::<Option<String>, _>("payment_intent_id")?,
                    "location_id": r.try_get::<String, _>("location_id")?,
                    "evse_uid": r.try_get::<String, _>("evse_uid")?,
                    "connector_id": r.try_get::<String, _>("connector_id")?,
                    "ocpi_session_id": r.try_get::<Option<String>, _>("ocpi_session_id")?,
                    "failure_code": r.try_get::<Option<String>, _>("failure_code")?,
                    "created_at": r.try_get::<DateTime<Utc>, _>("created_at")?,
                    "updated_at": r.try_get::<DateTime<Utc>, _>("updated_at")?,
                }))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(ApiError::internal)?
    });
    let has_more = rows.len() as i64 > limit;
    let data: Vec<Value> = rows.into_iter().take(limit as usize).collect();
    Ok(HttpResponse::Ok().json(json!({"data": data, "has_more": has_more})))
}

/// `GET /api/support/workspaces/{workspace_id}/payment-health`: is this workspace able
/// to take payments, and what went wrong lately.
#[utoipa::path(
    get,
    path = "/api/support/workspaces/{workspace_id}/payment-health",
    tag = "support",
    summary = "Can this workspace take payments, and what failed lately (scope audit:read)",
    params(("workspace_id" = String, Path, description = "^[A-Za-z0-9_-]{1,64}$")),
    responses(
        (status = 200, description = "Credential health and version, last webhook, rejections in 24 h, intents by status, recent failures", body = Object),
        (status = 401, description = "`unauthenticated`", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = super::openapi::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub async fn payment_health(
    principal: Principal,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    principal.authorize("audit:read", None)?;
    let ws = workspace_id(&path)?;
    principal.authorize("audit:read", Some(ws.as_str()))?;
    let ws = ws.to_string();
    let day_ago = Utc::now() - chrono::Duration::hours(24);
    let view = on_db!(&state.db, pool => async {
        let health = sqlx::query(
            "SELECT status, credential_version, mode, failure_code, failure_message, checked_at
               FROM credential_health WHERE workspace_id = $1")
            .bind(&ws)
            .fetch_optional(pool)
            .await?
            .map(|r| -> Result<Value, sqlx::Error> {
                Ok(json!({
                    "status": r.try_get::<String, _>("status")?,
                    "credential_version": r.try_get::<i64, _>("credential_version")?,
                    "mode": r.try_get::<Option<String>, _>("mode")?,
                    "failure_code": r.try_get::<Option<String>, _>("failure_code")?,
                    "failure_message": r.try_get::<Option<String>, _>("failure_message")?,
                    "checked_at": r.try_get::<Option<DateTime<Utc>>, _>("checked_at")?,
                }))
            })
            .transpose()?
            .unwrap_or_else(|| json!({"status": "unconfigured", "credential_version": 0}));
        // Webhooks this service verified and applied (refusals are counted apart).
        let last_webhook: Option<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT MAX(recorded_at) FROM audit_log
              WHERE workspace_id = $1 AND actor = 'stripe' AND event_type <> 'WebhookRejected'")
            .bind(&ws)
            .fetch_one(pool)
            .await?;
        let rejected: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM audit_log
              WHERE workspace_id = $1 AND event_type = 'WebhookRejected' AND recorded_at >= $2")
            .bind(&ws)
            .bind(day_ago)
            .fetch_one(pool)
            .await?;
        let mut by_status = serde_json::Map::new();
        for r in sqlx::query(
            "SELECT status, COUNT(*) AS n FROM charging_intents WHERE workspace_id = $1 GROUP BY status")
            .bind(&ws)
            .fetch_all(pool)
            .await?
        {
            by_status.insert(r.try_get("status")?, json!(r.try_get::<i64, _>("n")?));
        }
        let pending: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM charging_intents WHERE workspace_id = $1 AND settlement IS NOT NULL")
            .bind(&ws)
            .fetch_one(pool)
            .await?;
        let lapsing: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM charging_intents
              WHERE workspace_id = $1 AND capture_before IS NOT NULL AND status IN ('authorized', 'charging')")
            .bind(&ws)
            .fetch_one(pool)
            .await?;
        let failures = sqlx::query(
            "SELECT charging_intent_id, status, failure_code, payment_intent_id, updated_at
               FROM charging_intents WHERE workspace_id = $1 AND failure_code IS NOT NULL
              ORDER BY updated_at DESC LIMIT 10")
            .bind(&ws)
            .fetch_all(pool)
            .await?
            .into_iter()
            .map(|r| -> Result<Value, sqlx::Error> {
                Ok(json!({
                    "charging_intent_id": r.try_get::<String, _>("charging_intent_id")?,
                    "status": r.try_get::<String, _>("status")?,
                    "failure_code": r.try_get::<Option<String>, _>("failure_code")?,
                    "payment_intent_id": r.try_get::<Option<String>, _>("payment_intent_id")?,
                    "at": r.try_get::<DateTime<Utc>, _>("updated_at")?,
                }))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok::<_, sqlx::Error>(json!({
            "workspace_id": ws,
            "credential_health": health,
            "last_webhook_received_at": last_webhook,
            "webhooks_rejected_24h": rejected,
            "intents_by_status": by_status,
            "settlements_pending": pending,
            "holds_lapsing_soon": lapsing,
            "recent_failures": failures,
        }))
    }.await)
    .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(view))
}
