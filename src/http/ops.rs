use actix_web::{web, HttpResponse};
use serde_json::json;

use roampay_projections::on_db;

use super::error::ApiError;
use super::AppState;

/// The process is up.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    summary = "The process is up",
    responses(
        (status = 200, description = "Up", body = super::openapi::Status)
    )
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// The store answers.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    summary = "The store answers",
    responses(
        (status = 200, description = "Ready", body = super::openapi::Status),
        (status = 503, description = "`store_unavailable`", body = super::openapi::Problem, content_type = "application/problem+json")
    )
)]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.db.ping().await {
        Ok(HttpResponse::Ok().json(json!({"status": "ready", "store": state.db.backend()})))
    } else {
        Err(ApiError::unavailable(
            "store_unavailable",
            "The event store does not answer.",
        ))
    }
}

/// Prometheus text format. Gauges that come from the database are read now; when the
/// store does not answer they keep their last value and the scrape still succeeds.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    summary = "Prometheus metrics (text format 0.0.4)",
    responses(
        (status = 200, description = "Metrics", body = String, content_type = "text/plain")
    )
)]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let now = chrono::Utc::now();
    for name in state.projector.names() {
        match roampay_projections::log::lag(&state.db, name).await {
            Ok((behind, oldest)) => {
                let secs =
                    oldest.map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0);
                crate::metrics::set_projection_lag(name, behind, secs);
            }
            Err(e) => {
                tracing::warn!(projection = name, error = %e, "could not read projection lag")
            }
        }
    }
    let health: Result<Vec<(String, i64)>, sqlx::Error> = on_db!(&state.db, pool => sqlx::query_as(
        "SELECT status, COUNT(*) FROM credential_health GROUP BY status")
        .fetch_all(pool).await);
    match health {
        Ok(counts) => crate::metrics::set_credential_health(&counts),
        Err(e) => tracing::warn!(error = %e, "could not count credential health"),
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::metrics::render())
}
