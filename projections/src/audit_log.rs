//! `audit_log`: every change, by workspace and actor, newest first for support.
//! Summaries are built from event fields only, and events never hold a secret.

use chrono::{DateTime, Utc};
use roampay_events::WorkspaceStripeProfileEvent as E;
use serde_json::Value;

use crate::db::DbTx;
use crate::log::StoredEvent;
use crate::runner::{Projection, ProjectionError};

pub struct AuditLog;

/// One audit row, as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub id: i64,
    pub recorded_at: DateTime<Utc>,
    pub workspace_id: Option<String>,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub event_type: String,
    pub actor: Option<String>,
    pub request_id: Option<String>,
    pub summary: String,
}

impl Entry {
    pub fn from_event(e: &StoredEvent) -> Self {
        Entry {
            id: e.position.seq,
            recorded_at: e.recorded_at().unwrap_or_default(),
            workspace_id: workspace_of(&e.payload),
            aggregate_type: e.aggregate_type.clone(),
            aggregate_id: e.aggregate_id.clone(),
            event_type: e.event_type.clone(),
            actor: e.meta("actor").map(str::to_string),
            request_id: e.meta("request_id").map(str::to_string),
            summary: summarize(e),
        }
    }
}

/// Events are stored as `{"EventName": {..., "workspace_id": ...}}`.
fn workspace_of(payload: &Value) -> Option<String> {
    payload
        .as_object()
        .and_then(|o| o.values().next())
        .and_then(|inner| inner.get("workspace_id"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn summarize(stored: &StoredEvent) -> String {
    match serde_json::from_value::<E>(stored.payload.clone()) {
        Ok(event) => summarize_profile(&event),
        Err(_) => stored.event_type.clone(),
    }
}

fn summarize_profile(event: &E) -> String {
    match event {
        E::WorkspaceOcpiConfigUpdated(e) => {
            let mut parts = Vec::new();
            if let Some(v) = e.allow_guest_access {
                parts.push(format!("allow_guest_access={v}"));
            }
            if let Some(v) = e.allow_user_registration {
                parts.push(format!("allow_user_registration={v}"));
            }
            if let Some(v) = e.pre_auth_cents {
                parts.push(format!("pre_auth_cents={v}"));
            }
            if let Some(v) = &e.currency {
                parts.push(format!("currency={v}"));
            }
            format!("roaming settings changed: {}", parts.join(", "))
        }
        E::WorkspaceStripeCredentialsUpdated(e) => {
            let mut parts = Vec::new();
            if let Some(pk) = &e.publishable_key {
                parts.push(format!("publishable key {pk}"));
            }
            if let Some(sk) = &e.secret_key {
                let kind = match e.secret_key_kind {
                    Some(roampay_events::SecretKeyKind::Restricted) => "restricted key",
                    _ => "secret key",
                };
                parts.push(format!("{kind} ending {}", sk.last4));
            }
            if let Some(wh) = &e.webhook_signing_secret {
                parts.push(format!("webhook signing secret ending {}", wh.last4));
            }
            format!(
                "Stripe credentials saved as version {} ({} mode): {}",
                e.credential_version,
                e.mode.as_str(),
                parts.join(", ")
            )
        }
        E::WorkspaceStripeCredentialsValidated(e) => format!(
            "Stripe credentials version {} validated ({} mode{})",
            e.credential_version,
            e.mode.as_str(),
            e.account_id
                .as_ref()
                .map(|a| format!(", account {a}"))
                .unwrap_or_default()
        ),
        E::WorkspaceStripeCredentialsValidationFailed(e) => format!(
            "Stripe credentials version {} failed validation: {} ({})",
            e.credential_version,
            e.failure_code,
            e.health_status().as_str()
        ),
        E::WorkspaceStripeCredentialsRemoved(e) => format!(
            "Stripe credentials removed (version {})",
            e.credential_version
        ),
    }
}

fn db_err(source: sqlx::Error) -> ProjectionError {
    ProjectionError::Database {
        projection: "audit_log",
        source,
    }
}

#[async_trait::async_trait]
impl Projection for AuditLog {
    fn name(&self) -> &'static str {
        "audit_log"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["audit_log"]
    }

    async fn apply(&self, tx: &mut DbTx, events: &[StoredEvent]) -> Result<(), ProjectionError> {
        let entries: Vec<Entry> = events.iter().map(Entry::from_event).collect();
        match tx {
            // One statement per batch: arrays unnested into rows.
            DbTx::Postgres(t) => {
                let mut cols = Columns::default();
                for e in entries {
                    cols.push(e);
                }
                sqlx::query(
                    "INSERT INTO audit_log (id, recorded_at, workspace_id, aggregate_type, aggregate_id,
                                            event_type, actor, request_id, summary)
                     SELECT * FROM UNNEST($1::bigint[], $2::timestamptz[], $3::text[], $4::text[],
                                          $5::text[], $6::text[], $7::text[], $8::text[], $9::text[])
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(cols.id)
                .bind(cols.recorded_at)
                .bind(cols.workspace_id)
                .bind(cols.aggregate_type)
                .bind(cols.aggregate_id)
                .bind(cols.event_type)
                .bind(cols.actor)
                .bind(cols.request_id)
                .bind(cols.summary)
                .execute(&mut **t)
                .await
                .map_err(db_err)?;
            }
            // In-process: a prepared statement per row inside the transaction is cheap.
            DbTx::Sqlite(t) => {
                for e in entries {
                    sqlx::query(
                        "INSERT INTO audit_log (id, recorded_at, workspace_id, aggregate_type,
                                                aggregate_id, event_type, actor, request_id, summary)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                         ON CONFLICT (id) DO NOTHING",
                    )
                    .bind(e.id)
                    .bind(e.recorded_at)
                    .bind(e.workspace_id)
                    .bind(e.aggregate_type)
                    .bind(e.aggregate_id)
                    .bind(e.event_type)
                    .bind(e.actor)
                    .bind(e.request_id)
                    .bind(e.summary)
                    .execute(&mut **t)
                    .await
                    .map_err(db_err)?;
                }
            }
        }
        Ok(())
    }
}

#[derive(Default)]
struct Columns {
    id: Vec<i64>,
    recorded_at: Vec<DateTime<Utc>>,
    workspace_id: Vec<Option<String>>,
    aggregate_type: Vec<String>,
    aggregate_id: Vec<String>,
    event_type: Vec<String>,
    actor: Vec<Option<String>>,
    request_id: Vec<Option<String>>,
    summary: Vec<String>,
}

impl Columns {
    fn push(&mut self, e: Entry) {
        self.id.push(e.id);
        self.recorded_at.push(e.recorded_at);
        self.workspace_id.push(e.workspace_id);
        self.aggregate_type.push(e.aggregate_type);
        self.aggregate_id.push(e.aggregate_id);
        self.event_type.push(e.event_type);
        self.actor.push(e.actor);
        self.request_id.push(e.request_id);
        self.summary.push(e.summary);
    }
}
