//! `credential_health`: one row per workspace with the health of its Stripe credential
//! set, for support views and the background re-validation of `pending` sets.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use roampay_events::{HealthStatus, WorkspaceStripeProfileEvent as E};

use crate::db::DbTx;
use crate::log::StoredEvent;
use crate::on_tx;
use crate::runner::{Projection, ProjectionError};

pub const AGGREGATE_TYPE: &str = "WorkspaceStripeProfile";

pub struct CredentialHealth;

#[derive(Debug, Clone, Default)]
struct Row {
    status: String,
    credential_version: i64,
    mode: Option<String>,
    account_id: Option<String>,
    failure_code: Option<String>,
    failure_message: Option<String>,
    checked_at: Option<DateTime<Utc>>,
    updated_at: Option<DateTime<Utc>>,
}

#[async_trait::async_trait]
impl Projection for CredentialHealth {
    fn name(&self) -> &'static str {
        "credential_health"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["credential_health"]
    }

    async fn apply(&self, tx: &mut DbTx, events: &[StoredEvent]) -> Result<(), ProjectionError> {
        // Fold the batch per workspace first: one write per workspace, not per event.
        let mut rows: BTreeMap<String, Row> = BTreeMap::new();
        for stored in events.iter().filter(|e| e.aggregate_type == AGGREGATE_TYPE) {
            let event: E = serde_json::from_value(stored.payload.clone()).map_err(|e| {
                ProjectionError::Payload {
                    projection: "credential_health",
                    seq: stored.position.seq,
                    event_type: stored.event_type.clone(),
                    message: e.to_string(),
                }
            })?;
            let ws = event.workspace_id().to_string();
            if !rows.contains_key(&ws) {
                let current = load(tx, &ws).await?;
                rows.insert(ws.clone(), current.unwrap_or_default());
            }
            let row = rows.get_mut(&ws).expect("inserted above");
            match event {
                E::WorkspaceOcpiConfigUpdated(_) => {}
                E::WorkspaceStripeCredentialsUpdated(e) => {
                    *row = Row {
                        status: HealthStatus::Pending.as_str().into(),
                        credential_version: e.credential_version.into(),
                        mode: Some(e.mode.as_str().into()),
                        updated_at: Some(e.updated_at),
                        ..Row::default()
                    };
                }
                E::WorkspaceStripeCredentialsValidated(e) => {
                    row.status = HealthStatus::Valid.as_str().into();
                    row.credential_version = e.credential_version.into();
                    row.mode = Some(e.mode.as_str().into());
                    row.account_id = e.account_id;
                    row.failure_code = None;
                    row.failure_message = None;
                    row.checked_at = Some(e.validated_at);
                    row.updated_at = Some(e.validated_at);
                }
                E::WorkspaceStripeCredentialsValidationFailed(e) => {
                    row.status = e.health_status().as_str().into();
                    row.credential_version = e.credential_version.into();
                    row.failure_code = Some(e.failure_code);
                    row.failure_message = Some(e.failure_message);
                    row.checked_at = Some(e.validated_at);
                    row.updated_at = Some(e.validated_at);
                }
                E::WorkspaceStripeCredentialsRemoved(e) => {
                    *row = Row {
                        status: HealthStatus::Unconfigured.as_str().into(),
                        credential_version: e.credential_version.into(),
                        updated_at: Some(e.removed_at),
                        ..Row::default()
                    };
                }
            }
        }
        for (ws, row) in rows {
            if row.status.is_empty() {
                continue; // only config changes: no credential row to show
            }
            store(tx, &ws, &row).await?;
        }
        Ok(())
    }
}

fn db_err(source: sqlx::Error) -> ProjectionError {
    ProjectionError::Database { projection: "credential_health", source }
}

async fn load(tx: &mut DbTx, ws: &str) -> Result<Option<Row>, ProjectionError> {
    use sqlx::Row as _;
    let row = on_tx!(tx, c => sqlx::query(
        "SELECT status, credential_version, mode, account_id, failure_code, failure_message,
                checked_at, updated_at
           FROM credential_health WHERE workspace_id = $1")
        .bind(ws)
        .fetch_optional(c)
        .await
        .and_then(|r| r.map(|r| Ok(Row {
            status: r.try_get("status")?,
            credential_version: r.try_get("credential_version")?,
            mode: r.try_get("mode")?,
            account_id: r.try_get("account_id")?,
            failure_code: r.try_get("failure_code")?,
            failure_message: r.try_get("failure_message")?,
            checked_at: r.try_get("checked_at")?,
            updated_at: r.try_get("updated_at")?,
        })).transpose()))
    .map_err(db_err)?;
    Ok(row)
}

async fn store(tx: &mut DbTx, ws: &str, row: &Row) -> Result<(), ProjectionError> {
    on_tx!(tx, c => sqlx::query(
        "INSERT INTO credential_health (workspace_id, status, credential_version, mode, account_id,
                                        failure_code, failure_message, checked_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (workspace_id) DO UPDATE SET
           status = excluded.status, credential_version = excluded.credential_version,
           mode = excluded.mode, account_id = excluded.account_id,
           failure_code = excluded.failure_code, failure_message = excluded.failure_message,
           checked_at = excluded.checked_at, updated_at = excluded.updated_at")
        .bind(ws)
        .bind(&row.status)
        .bind(row.credential_version)
        .bind(&row.mode)
        .bind(&row.account_id)
        .bind(&row.failure_code)
        .bind(&row.failure_message)
        .bind(row.checked_at)
        .bind(row.updated_at.unwrap_or_default())
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
    .map_err(db_err)?;
    Ok(())
}
