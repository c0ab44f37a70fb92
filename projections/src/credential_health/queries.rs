//! Reads of `credential_health` for support, metrics and the background re-validation.

use chrono::{DateTime, Utc};
use sqlx::Row as _;

use crate::db::Db;
use crate::on_db;

/// Workspaces whose active set or candidate is still `pending`, oldest change first.
pub async fn pending(db: &Db, limit: i64) -> Result<Vec<String>, sqlx::Error> {
    on_db!(db, pool => sqlx::query_scalar(
        "SELECT workspace_id FROM credential_health
          WHERE status = 'pending' OR candidate_status = 'pending'
          ORDER BY updated_at LIMIT $1")
        .bind(limit)
        .fetch_all(pool)
        .await)
}

/// Workspaces whose active set is `valid` but was last proven before `checked_before`,
/// longest unchecked first.
pub async fn due_for_recheck(
    db: &Db,
    checked_before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    on_db!(db, pool => sqlx::query_scalar(
        "SELECT workspace_id FROM credential_health
          WHERE status = 'valid' AND (checked_at IS NULL OR checked_at < $1)
          ORDER BY checked_at LIMIT $2")
        .bind(checked_before)
        .bind(limit)
        .fetch_all(pool)
        .await)
}

/// How many workspaces are in each health status.
pub async fn counts(db: &Db) -> Result<Vec<(String, i64)>, sqlx::Error> {
    on_db!(db, pool => sqlx::query_as(
        "SELECT status, COUNT(*) FROM credential_health GROUP BY status")
        .fetch_all(pool)
        .await)
}

/// One workspace's credential health as support sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HealthRow {
    pub status: String,
    pub credential_version: i64,
    pub mode: Option<String>,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub checked_at: Option<DateTime<Utc>>,
}

pub async fn of_workspace(db: &Db, ws: &str) -> Result<Option<HealthRow>, sqlx::Error> {
    on_db!(db, pool => {
        let row = sqlx::query(
            "SELECT status, credential_version, mode, failure_code, failure_message, checked_at
               FROM credential_health WHERE workspace_id = $1")
            .bind(ws)
            .fetch_optional(pool)
            .await?;
        row.map(|r| -> Result<HealthRow, sqlx::Error> {
            Ok(HealthRow {
                status: r.try_get("status")?,
                credential_version: r.try_get("credential_version")?,
                mode: r.try_get("mode")?,
                failure_code: r.try_get("failure_code")?,
                failure_message: r.try_get("failure_message")?,
                checked_at: r.try_get("checked_at")?,
            })
        })
        .transpose()
    })
}
