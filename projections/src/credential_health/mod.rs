//! `credential_health`: one row per workspace with the health of its Stripe credential
//! set, for support views and the background re-validation of `pending` sets.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use roampay_events::{AnyEvent, HealthStatus, WorkspaceStripeProfileEvent as E};

use crate::db::DbTx;
use crate::log::StoredEvent;
use crate::runner::{Projection, ProjectionError};

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
    candidate_version: Option<i64>,
    candidate_status: Option<String>,
    webhook_verified_at: Option<DateTime<Utc>>,
    webhook_failing_since: Option<DateTime<Utc>>,
    connection: Option<String>,
    connect_account_id: Option<String>,
    connect_status: Option<String>,
    connect_failure_code: Option<String>,
    connect_failure_message: Option<String>,
    connect_checked_at: Option<DateTime<Utc>>,
}

impl Row {
    /// The connected account's health from what Stripe reported.
    fn connect_health(
        &mut self,
        charges: bool,
        details: bool,
        deauthorized: bool,
        at: DateTime<Utc>,
    ) {
        let (status, failure) = roampay_events::connect_health(charges, details, deauthorized);
        self.connect_status = Some(status.as_str().into());
        self.connect_failure_code = failure.map(|(c, _)| c.to_string());
        self.connect_failure_message = failure.map(|(_, m)| m.to_string());
        self.connect_checked_at = Some(at);
        self.updated_at = Some(at);
        if self.status.is_empty() {
            // No keys: the keys' part of the row reads as never configured.
            self.status = HealthStatus::Unconfigured.as_str().into();
        }
    }
}

#[async_trait::async_trait]
impl Projection for CredentialHealth {
    fn name(&self) -> &'static str {
        "credential_health"
    }

    fn takes(&self, aggregate_type: &str) -> bool {
        aggregate_type == "WorkspaceStripeProfile"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["credential_health"]
    }

    async fn apply(&self, tx: &mut DbTx, events: &[StoredEvent]) -> Result<(), ProjectionError> {
        // Load every touched row in one query, fold the batch, and write back once.
        let decoded: Vec<&E> = events
            .iter()
            .filter_map(|e| match &e.event {
                AnyEvent::WorkspaceStripeProfile(p)
                    if !matches!(p, E::WorkspaceOcpiConfigUpdated(_)) =>
                {
                    Some(p)
                }
                _ => None,
            })
            .collect();
        if decoded.is_empty() {
            return Ok(());
        }
        let touched: Vec<String> = {
            let mut w: Vec<String> = decoded
                .iter()
                .map(|e| e.workspace_id().to_string())
                .collect();
            w.sort();
            w.dedup();
            w
        };
        let mut rows: BTreeMap<String, Row> = load(tx, &touched).await?;
        for event in decoded {
            let ws = event.workspace_id().to_string();
            let row = rows.entry(ws).or_default();
            match event.clone() {
                E::WorkspaceOcpiConfigUpdated(_) | E::WorkspaceStripeOnboardingLinkIssued(_) => {}
                E::WorkspaceStripeConnectAccountCreated(e) => {
                    row.connect_account_id = Some(e.account_id);
                    row.connect_health(e.charges_enabled, e.details_submitted, false, e.created_at);
                }
                E::WorkspaceStripeConnectAccountUpdated(e)
                    if row.connect_account_id.as_deref() == Some(e.account_id.as_str()) =>
                {
                    row.connect_health(e.charges_enabled, e.details_submitted, false, e.updated_at);
                }
                E::WorkspaceStripeConnectAccountUpdated(_) => {}
                E::WorkspaceStripeConnectDeauthorized(e)
                    if row.connect_account_id.as_deref() == Some(e.account_id.as_str()) =>
                {
                    row.connect_health(false, true, true, e.deauthorized_at);
                }
                E::WorkspaceStripeConnectDeauthorized(_) => {}
                E::WorkspaceStripeConnectionSwitched(e) => {
                    row.connection = Some(e.connection.as_str().into());
                    row.updated_at = Some(e.switched_at);
                    if row.status.is_empty() {
                        row.status = HealthStatus::Unconfigured.as_str().into();
                    }
                }
                E::WorkspaceWebhookVerified(e) => {
                    row.webhook_verified_at = Some(e.verified_at);
                    row.webhook_failing_since = None;
                }
                E::WorkspaceWebhookFailing(e) => {
                    row.webhook_failing_since = Some(e.failing_since);
                }
                E::WorkspaceStripeCredentialsUpdated(e)
                    if e.secret_key.is_none()
                        && e.publishable_key.is_none()
                        && !row.status.is_empty() =>
                {
                    // A new webhook secret alone: the set's health is unchanged.
                    row.credential_version = e.credential_version.into();
                    row.updated_at = Some(e.updated_at);
                }
                E::WorkspaceStripeCredentialsUpdated(e) => {
                    *row = Row {
                        status: HealthStatus::Pending.as_str().into(),
                        credential_version: e.credential_version.into(),
                        mode: Some(e.mode.as_str().into()),
                        updated_at: Some(e.updated_at),
                        ..keep_others(row)
                    };
                }
                E::WorkspaceStripeCandidateSaved(e) => {
                    row.candidate_version = Some(e.credential_version.into());
                    row.candidate_status = Some(HealthStatus::Pending.as_str().into());
                    row.updated_at = Some(e.updated_at);
                }
                E::WorkspaceStripeCandidatePromoted(e) => {
                    row.status = HealthStatus::Valid.as_str().into();
                    row.credential_version = e.credential_version.into();
                    row.account_id = e.account_id;
                    row.failure_code = None;
                    row.failure_message = None;
                    row.checked_at = Some(e.promoted_at);
                    row.updated_at = Some(e.promoted_at);
                    row.candidate_version = None;
                    row.candidate_status = None;
                }
                E::WorkspaceStripeCandidateRejected(e) => {
                    row.candidate_status = Some(HealthStatus::Invalid.as_str().into());
                    row.updated_at = Some(e.rejected_at);
                }
                E::WorkspaceStripeCredentialsValidationFailed(e)
                    if row.candidate_version == Some(e.credential_version.into()) =>
                {
                    row.candidate_status = Some(e.health_status().as_str().into());
                    row.updated_at = Some(e.validated_at);
                }
                E::WorkspaceStripeCredentialsRevoked(e) => {
                    row.status = HealthStatus::Invalid.as_str().into();
                    row.failure_code = Some(e.failure_code);
                    row.failure_message = Some(e.failure_message);
                    row.checked_at = Some(e.revoked_at);
                    row.updated_at = Some(e.revoked_at);
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
                        ..keep_others(row)
                    };
                }
                E::WorkspaceOcpiConfigPurged(e) => {
                    *row = Row {
                        status: HealthStatus::Unconfigured.as_str().into(),
                        credential_version: row.credential_version,
                        updated_at: Some(e.purged_at),
                        ..Row::default()
                    };
                }
            }
        }
        rows.retain(|_, r| !r.status.is_empty());
        store(tx, rows).await
    }
}

/// A row whose keys' part is blank; the webhook's health and the connection kept.
fn keep_others(row: &Row) -> Row {
    Row {
        webhook_verified_at: row.webhook_verified_at,
        webhook_failing_since: row.webhook_failing_since,
        connection: row.connection.clone(),
        connect_account_id: row.connect_account_id.clone(),
        connect_status: row.connect_status.clone(),
        connect_failure_code: row.connect_failure_code.clone(),
        connect_failure_message: row.connect_failure_message.clone(),
        connect_checked_at: row.connect_checked_at,
        ..Row::default()
    }
}

fn db_err(source: sqlx::Error) -> ProjectionError {
    ProjectionError::Database {
        projection: "credential_health",
        source,
    }
}

const COLUMNS: &str = "workspace_id, status, credential_version, mode, account_id, failure_code, failure_message, checked_at, updated_at, candidate_version, candidate_status, webhook_verified_at, webhook_failing_since, connection, connect_account_id, connect_status, connect_failure_code, connect_failure_message, connect_checked_at";

fn decode<R: sqlx::Row>(r: &R) -> Result<(String, Row), sqlx::Error>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    Option<String>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    Option<DateTime<Utc>>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok((
        r.try_get("workspace_id")?,
        Row {
            status: r.try_get("status")?,
            credential_version: r.try_get("credential_version")?,
            mode: r.try_get("mode")?,
            account_id: r.try_get("account_id")?,
            failure_code: r.try_get("failure_code")?,
            failure_message: r.try_get("failure_message")?,
            checked_at: r.try_get("checked_at")?,
            updated_at: r.try_get("updated_at")?,
            candidate_version: r.try_get("candidate_version")?,
            candidate_status: r.try_get("candidate_status")?,
            webhook_verified_at: r.try_get("webhook_verified_at")?,
            webhook_failing_since: r.try_get("webhook_failing_since")?,
            connection: r.try_get("connection")?,
            connect_account_id: r.try_get("connect_account_id")?,
            connect_status: r.try_get("connect_status")?,
            connect_failure_code: r.try_get("connect_failure_code")?,
            connect_failure_message: r.try_get("connect_failure_message")?,
            connect_checked_at: r.try_get("connect_checked_at")?,
        },
    ))
}

async fn load(
    tx: &mut DbTx,
    workspaces: &[String],
) -> Result<BTreeMap<String, Row>, ProjectionError> {
    let mut out = BTreeMap::new();
    match tx {
        DbTx::Postgres(t) => {
            let rows = sqlx::query(&format!(
                "SELECT {COLUMNS} FROM credential_health WHERE workspace_id = ANY($1)"
            ))
            .bind(workspaces)
            .fetch_all(&mut **t)
            .await
            .map_err(db_err)?;
            for r in rows {
                let (ws, row) = decode(&r).map_err(db_err)?;
                out.insert(ws, row);
            }
        }
        DbTx::Sqlite(t) => {
            for ws in workspaces {
                let r = sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM credential_health WHERE workspace_id = $1"
                ))
                .bind(ws)
                .fetch_optional(&mut **t)
                .await
                .map_err(db_err)?;
                if let Some(r) = r {
                    let (ws, row) = decode(&r).map_err(db_err)?;
                    out.insert(ws, row);
                }
            }
        }
    }
    Ok(out)
}

const UPSERT_TAIL: &str = "ON CONFLICT (workspace_id) DO UPDATE SET
       status = excluded.status, credential_version = excluded.credential_version,
       mode = excluded.mode, account_id = excluded.account_id,
       failure_code = excluded.failure_code, failure_message = excluded.failure_message,
       checked_at = excluded.checked_at, updated_at = excluded.updated_at,
       candidate_version = excluded.candidate_version, candidate_status = excluded.candidate_status,
       webhook_verified_at = excluded.webhook_verified_at,
       webhook_failing_since = excluded.webhook_failing_since,
       connection = excluded.connection, connect_account_id = excluded.connect_account_id,
       connect_status = excluded.connect_status, connect_failure_code = excluded.connect_failure_code,
       connect_failure_message = excluded.connect_failure_message,
       connect_checked_at = excluded.connect_checked_at";

async fn store(tx: &mut DbTx, rows: BTreeMap<String, Row>) -> Result<(), ProjectionError> {
    match tx {
        DbTx::Postgres(t) => {
            let mut c = Columns::default();
            for (w, r) in rows {
                c.workspace_id.push(w);
                c.status.push(r.status);
                c.credential_version.push(r.credential_version);
                c.mode.push(r.mode);
                c.account_id.push(r.account_id);
                c.failure_code.push(r.failure_code);
                c.failure_message.push(r.failure_message);
                c.checked_at.push(r.checked_at);
                c.updated_at.push(r.updated_at.unwrap_or_default());
                c.candidate_version.push(r.candidate_version);
                c.candidate_status.push(r.candidate_status);
                c.webhook_verified_at.push(r.webhook_verified_at);
                c.webhook_failing_since.push(r.webhook_failing_since);
                c.connection.push(r.connection);
                c.connect_account_id.push(r.connect_account_id);
                c.connect_status.push(r.connect_status);
                c.connect_failure_code.push(r.connect_failure_code);
                c.connect_failure_message.push(r.connect_failure_message);
                c.connect_checked_at.push(r.connect_checked_at);
            }
            sqlx::query(&format!(
                "INSERT INTO credential_health ({COLUMNS})
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[],
                                      $6::text[], $7::text[], $8::timestamptz[], $9::timestamptz[],
                                      $10::bigint[], $11::text[], $12::timestamptz[], $13::timestamptz[],
                                      $14::text[], $15::text[], $16::text[], $17::text[], $18::text[],
                                      $19::timestamptz[])
                 {UPSERT_TAIL}"
            ))
            .bind(c.workspace_id)
            .bind(c.status)
            .bind(c.credential_version)
            .bind(c.mode)
            .bind(c.account_id)
            .bind(c.failure_code)
            .bind(c.failure_message)
            .bind(c.checked_at)
            .bind(c.updated_at)
            .bind(c.candidate_version)
            .bind(c.candidate_status)
            .bind(c.webhook_verified_at)
            .bind(c.webhook_failing_since)
            .bind(c.connection)
            .bind(c.connect_account_id)
            .bind(c.connect_status)
            .bind(c.connect_failure_code)
            .bind(c.connect_failure_message)
            .bind(c.connect_checked_at)
            .execute(&mut **t)
            .await
            .map_err(db_err)?;
        }
        DbTx::Sqlite(t) => {
            for (ws, row) in rows {
                sqlx::query(&format!("INSERT INTO credential_health ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) {UPSERT_TAIL}"))
                    .bind(ws)
                    .bind(row.status)
                    .bind(row.credential_version)
                    .bind(row.mode)
                    .bind(row.account_id)
                    .bind(row.failure_code)
                    .bind(row.failure_message)
                    .bind(row.checked_at)
                    .bind(row.updated_at.unwrap_or_default())
                    .bind(row.candidate_version)
                    .bind(row.candidate_status)
                    .bind(row.webhook_verified_at)
                    .bind(row.webhook_failing_since)
                    .bind(row.connection)
                    .bind(row.connect_account_id)
                    .bind(row.connect_status)
                    .bind(row.connect_failure_code)
                    .bind(row.connect_failure_message)
                    .bind(row.connect_checked_at)
                    .execute(&mut **t)
                    .await
                    .map_err(db_err)?;
            }
        }
    }
    Ok(())
}

/// Column arrays for one UNNEST upsert.
#[derive(Default)]
struct Columns {
    workspace_id: Vec<String>,
    status: Vec<String>,
    credential_version: Vec<i64>,
    mode: Vec<Option<String>>,
    account_id: Vec<Option<String>>,
    failure_code: Vec<Option<String>>,
    failure_message: Vec<Option<String>>,
    checked_at: Vec<Option<DateTime<Utc>>>,
    updated_at: Vec<DateTime<Utc>>,
    candidate_version: Vec<Option<i64>>,
    candidate_status: Vec<Option<String>>,
    webhook_verified_at: Vec<Option<DateTime<Utc>>>,
    webhook_failing_since: Vec<Option<DateTime<Utc>>>,
    connection: Vec<Option<String>>,
    connect_account_id: Vec<Option<String>>,
    connect_status: Vec<Option<String>>,
    connect_failure_code: Vec<Option<String>>,
    connect_failure_message: Vec<Option<String>>,
    connect_checked_at: Vec<Option<DateTime<Utc>>>,
}

mod queries;
pub use queries::*;
