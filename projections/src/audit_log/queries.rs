//! Reads of `audit_log` for support.

use chrono::{DateTime, Utc};
use sqlx::Row as _;

use super::Entry;
use crate::db::{Bind, Db, Where, WorkspaceScope};
use crate::{bind_all, on_db};

/// Filters of the audit trail; every one optional but the page size.
#[derive(Debug, Clone)]
pub struct AuditFilter {
    pub workspaces: WorkspaceScope,
    pub actor: Option<String>,
    pub event_type: Option<String>,
    pub aggregate_id: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Entries older than this entry id (the page cursor).
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// A page, newest first, and whether more follow.
pub async fn search(db: &Db, f: &AuditFilter) -> Result<(Vec<Entry>, bool), sqlx::Error> {
    let mut w = Where::default();
    w.workspaces(&f.workspaces);
    for (clause, v) in [
        ("actor = ?", &f.actor),
        ("event_type = ?", &f.event_type),
        ("aggregate_id = ?", &f.aggregate_id),
    ] {
        if let Some(v) = v {
            w.push(clause, Bind::Text(v.clone()));
        }
    }
    if let Some(t) = f.from {
        w.push("recorded_at >= ?", Bind::Time(t));
    }
    if let Some(t) = f.to {
        w.push("recorded_at < ?", Bind::Time(t));
    }
    if let Some(id) = f.before_id {
        w.push("id < ?", Bind::Int(id));
    }
    let (clause, limit) = w.sql_with_limit(f.limit + 1);
    let sql = format!(
        "SELECT id, recorded_at, workspace_id, aggregate_type, aggregate_id, event_type, actor, request_id, summary
           FROM audit_log {clause} ORDER BY id DESC LIMIT {limit}"
    );
    let mut entries: Vec<Entry> = on_db!(db, pool => {
        bind_all!(sqlx::query(&sql), w.binds())
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| -> Result<Entry, sqlx::Error> {
                Ok(Entry {
                    id: r.try_get("id")?,
                    recorded_at: r.try_get("recorded_at")?,
                    workspace_id: r.try_get("workspace_id")?,
                    aggregate_type: r.try_get("aggregate_type")?,
                    aggregate_id: r.try_get("aggregate_id")?,
                    event_type: r.try_get("event_type")?,
                    actor: r.try_get("actor")?,
                    request_id: r.try_get("request_id")?,
                    summary: r.try_get("summary")?,
                })
            })
            .collect::<Result<_, _>>()?
    });
    let has_more = entries.len() as i64 > f.limit;
    entries.truncate(f.limit as usize);
    Ok((entries, has_more))
}

/// When this service last applied a webhook of the workspace (refusals not counted).
pub async fn last_webhook(db: &Db, ws: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    on_db!(db, pool => sqlx::query_scalar(
        "SELECT MAX(recorded_at) FROM audit_log
          WHERE workspace_id = $1 AND actor = 'stripe' AND event_type <> 'WebhookRejected'")
        .bind(ws)
        .fetch_one(pool)
        .await)
}

/// Webhooks of the workspace refused since `since`.
pub async fn rejected_since(db: &Db, ws: &str, since: DateTime<Utc>) -> Result<i64, sqlx::Error> {
    on_db!(db, pool => sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_log
          WHERE workspace_id = $1 AND event_type = 'WebhookRejected' AND recorded_at >= $2")
        .bind(ws)
        .bind(since)
        .fetch_one(pool)
        .await)
}

/// Webhooks refused since `since`, per workspace of `workspaces`.
pub async fn rejected_since_by_workspace(
    db: &Db,
    workspaces: &[String],
    since: DateTime<Utc>,
) -> Result<std::collections::HashMap<String, i64>, sqlx::Error> {
    if workspaces.is_empty() {
        return Ok(Default::default());
    }
    let mut w = Where::default();
    w.any_of("workspace_id", workspaces);
    w.push("event_type = ?", Bind::Text("WebhookRejected".into()));
    w.push("recorded_at >= ?", Bind::Time(since));
    let sql = format!(
        "SELECT workspace_id, COUNT(*) AS n FROM audit_log {} GROUP BY workspace_id",
        w.sql()
    );
    let rows: Vec<(String, i64)> = on_db!(db, pool => {
        bind_all!(sqlx::query_as(&sql), w.binds()).fetch_all(pool).await?
    });
    Ok(rows.into_iter().collect())
}
