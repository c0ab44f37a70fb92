//! Reads of `credential_health` for support, metrics and the background re-validation.

use chrono::{DateTime, Utc};
use sqlx::Row as _;

use crate::db::Db;
use crate::on_db;

/// The health of the connection a workspace's new payments use: its connected account's
/// in connect mode, its keys' otherwise.
const EFFECTIVE: &str = "CASE WHEN connection = 'connect' THEN connect_status ELSE status END AS status,
     CASE WHEN connection = 'connect' THEN connect_failure_code ELSE failure_code END AS failure_code,
     CASE WHEN connection = 'connect' THEN connect_failure_message ELSE failure_message END AS failure_message,
     CASE WHEN connection = 'connect' THEN connect_checked_at ELSE checked_at END AS checked_at,
     CASE WHEN connection = 'connect' THEN 'connect' WHEN status = 'unconfigured' THEN NULL ELSE 'keys' END AS connection";

const EFFECTIVE_STATUS: &str =
    "(CASE WHEN connection = 'connect' THEN connect_status ELSE status END)";

/// The workspace whose connected account is `account_id` (Connect webhooks name it).
pub async fn workspace_of_account(
    db: &Db,
    account_id: &str,
) -> Result<Option<String>, sqlx::Error> {
    on_db!(db, pool => sqlx::query_scalar(
        "SELECT workspace_id FROM credential_health WHERE connect_account_id = $1 LIMIT 1")
        .bind(account_id)
        .fetch_optional(pool)
        .await)
}

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
        "SELECT (CASE WHEN connection = 'connect' THEN connect_status ELSE status END) AS s, COUNT(*)
           FROM credential_health GROUP BY s")
        .fetch_all(pool)
        .await)
}

/// One workspace's credential health as support sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HealthRow {
    /// `keys`, `connect`, or none.
    pub connection: Option<String>,
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
            &format!("SELECT {EFFECTIVE}, credential_version, mode
               FROM credential_health WHERE workspace_id = $1"))
            .bind(ws)
            .fetch_optional(pool)
            .await?;
        row.map(|r| -> Result<HealthRow, sqlx::Error> {
            Ok(HealthRow {
                connection: r.try_get("connection")?,
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

/// A workspace as the support list shows it.
#[derive(Debug, Clone)]
pub struct WorkspaceHealth {
    pub workspace_id: String,
    pub connection: Option<String>,
    pub status: String,
    pub checked_at: Option<DateTime<Utc>>,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub webhook_verified_at: Option<DateTime<Utc>>,
    pub webhook_failing_since: Option<DateTime<Utc>>,
}

/// Workspaces by id, optionally of one health status, after `after` (the cursor).
pub async fn list_workspaces(
    db: &Db,
    scope: &crate::db::WorkspaceScope,
    health: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> Result<(Vec<WorkspaceHealth>, bool), sqlx::Error> {
    use crate::bind_all;
    use crate::db::{Bind, Where};
    let mut w = Where::default();
    w.workspaces(scope);
    if let Some(h) = health {
        w.push(
            &format!("{EFFECTIVE_STATUS} = ?"),
            Bind::Text(h.to_string()),
        );
    }
    if let Some(a) = after {
        w.push("workspace_id > ?", Bind::Text(a.to_string()));
    }
    let (clause, lim) = w.sql_with_limit(limit + 1);
    let sql = format!(
        "SELECT workspace_id, {EFFECTIVE}, webhook_verified_at, webhook_failing_since
           FROM credential_health {clause} ORDER BY workspace_id LIMIT {lim}"
    );
    let mut rows: Vec<WorkspaceHealth> = on_db!(db, pool => {
        let rows = bind_all!(sqlx::query(&sql), w.binds()).fetch_all(pool).await?;
        rows.iter()
            .map(|r| -> Result<WorkspaceHealth, sqlx::Error> {
                Ok(WorkspaceHealth {
                    workspace_id: r.try_get("workspace_id")?,
                    connection: r.try_get("connection")?,
                    status: r.try_get("status")?,
                    checked_at: r.try_get("checked_at")?,
                    failure_code: r.try_get("failure_code")?,
                    failure_message: r.try_get("failure_message")?,
                    webhook_verified_at: r.try_get("webhook_verified_at")?,
                    webhook_failing_since: r.try_get("webhook_failing_since")?,
                })
            })
            .collect::<Result<_, _>>()?
    });
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    Ok((rows, has_more))
}
