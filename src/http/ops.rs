use actix_web::{web, HttpResponse};

use super::error::{ApiError, Problem};
use super::views::Status;
use super::AppState;

/// The process is up.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "operations",
    summary = "The process is up",
    responses(
        (status = 200, description = "Up", body = Status),
        (status = 405, description = "`method_not_allowed` (`Allow: GET`)", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Status {
        status: "ok",
        store: None,
    })
}

/// The store answers.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "operations",
    summary = "The store answers",
    responses(
        (status = 200, description = "Ready", body = Status),
        (status = 503, description = "`store_unavailable`", body = Problem, content_type = "application/problem+json"),
        (status = 405, description = "`method_not_allowed` (`Allow: GET`)", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let db = &state.services.db;
    if db.ping().await {
        Ok(HttpResponse::Ok().json(Status {
            status: "ready",
            store: Some(db.backend()),
        }))
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
    operation_id = "metrics",
    tag = "operations",
    summary = "Prometheus metrics (text format 0.0.4)",
    responses(
        (status = 200, description = "Metrics", body = String, content_type = "text/plain"),
        (status = 405, description = "`method_not_allowed` (`Allow: GET`)", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let now = chrono::Utc::now();
    let db = &state.services.db;
    for name in state.services.projector.names() {
        match roampay_projections::log::lag(db, name).await {
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
    match roampay_projections::credential_health::counts(db).await {
        Ok(counts) => crate::metrics::set_credential_health(&counts),
        Err(e) => tracing::warn!(error = %e, "could not count credential health"),
    }
    if state.services.settings.billing.is_some() {
        match roampay_projections::workspace_billing::counts(db).await {
            Ok(counts) => crate::metrics::set_billing(&counts),
            Err(e) => tracing::warn!(error = %e, "could not count billing statuses"),
        }
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::metrics::render())
}
