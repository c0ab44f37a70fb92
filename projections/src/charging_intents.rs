//! `charging_intents`: one row per intent, for support lists and the background sweep.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use roampay_events::{AnyEvent, ChargingIntentEvent as E, IntentRequest};
use sqlx::Row as _;

use crate::db::DbTx;
use crate::log::StoredEvent;
use crate::runner::{Projection, ProjectionError};

pub struct ChargingIntents;

#[derive(Debug, Clone, Default, serde::Serialize)]
struct Row {
    workspace_id: String,
    status: String,
    payment_required: bool,
    amount_cents: Option<i64>,
    currency: String,
    authorized_amount_cents: Option<i64>,
    captured_amount_cents: Option<i64>,
    payment_intent_id: Option<String>,
    location_id: String,
    evse_uid: String,
    connector_id: String,
    ocpi_session_id: Option<String>,
    failure_code: Option<String>,
    credential_version: Option<i64>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// The Stripe step under way (`capture` / `cancel`), if any.
    settlement: Option<String>,
    authorized_at: Option<DateTime<Utc>>,
    capture_before: Option<DateTime<Utc>>,
}

fn from_request(r: &IntentRequest, status: &str, paid: bool) -> Row {
    Row {
        workspace_id: r.workspace_id.clone(),
        status: status.into(),
        payment_required: paid,
        currency: r.currency.clone(),
        location_id: r.location_id.clone(),
        evse_uid: r.evse_uid.clone(),
        connector_id: r.connector_id.clone(),
        created_at: r.requested_at,
        updated_at: r.requested_at,
        ..Row::default()
    }
}

const COLUMNS: &str = "charging_intent_id, workspace_id, status, payment_required, amount_cents, currency,
    authorized_amount_cents, captured_amount_cents, payment_intent_id, location_id, evse_uid, connector_id,
    ocpi_session_id, failure_code, credential_version, created_at, updated_at, settlement, authorized_at,
    capture_before";

fn db_err(source: sqlx::Error) -> ProjectionError {
    ProjectionError::Database {
        projection: "charging_intents",
        source,
    }
}

#[async_trait::async_trait]
impl Projection for ChargingIntents {
    fn name(&self) -> &'static str {
        "charging_intents"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["charging_intents"]
    }

    async fn apply(&self, tx: &mut DbTx, events: &[StoredEvent]) -> Result<(), ProjectionError> {
        // Every row the batch touches, read at once; then the batch is folded in
        // memory and each row written once.
        let ids: Vec<&str> = events
            .iter()
            .filter(|e| matches!(e.event, AnyEvent::ChargingIntent(_)))
            .map(|e| e.aggregate_id.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let mut rows = load(tx, &ids).await?;
        for stored in events {
            let AnyEvent::ChargingIntent(event) = &stored.event else {
                continue;
            };
            let id = stored.aggregate_id.clone();
            match event {
                E::FreeSessionAuthorized(e) => {
                    rows.insert(id, from_request(&e.request, "authorized", false));
                }
                E::WorkspacePaymentIntentCreated(e) => {
                    let mut row = from_request(&e.request, "pending_payment", true);
                    row.amount_cents = Some(e.amount_cents);
                    row.payment_intent_id = Some(e.payment_intent_id.clone());
                    row.credential_version = Some(e.credential_version.into());
                    rows.insert(id, row);
                }
                E::WorkspacePaymentIntentCreationFailed(e) => {
                    let mut row = from_request(&e.request, "failed", true);
                    row.failure_code = Some(e.failure_code.clone());
                    rows.insert(id, row);
                }
                E::WorkspacePaymentIntentAuthorizationReceived(e) => {
                    if let Some(row) = rows.get_mut(&id) {
                        row.status = "authorized".into();
                        row.authorized_amount_cents = Some(e.authorized_amount_cents);
                        row.authorized_at = Some(e.received_at);
                        row.updated_at = e.received_at;
                    }
                }
                E::WorkspacePaymentIntentFailed(e) => {
                    if let Some(row) = rows.get_mut(&id) {
                        row.status = e.status.clone();
                        row.failure_code = Some(e.failure_code.clone());
                        row.settlement = None;
                        row.updated_at = e.received_at;
                    }
                }
                E::ChargingSessionStarted(e) => {
                    if let Some(row) = rows.get_mut(&id) {
                        row.status = "charging".into();
                        row.ocpi_session_id = Some(e.ocpi_session_id.clone());
                        row.updated_at = e.started_at;
                    }
                }
                E::SessionCompletionRequested(e) => {
                    if let Some(row) = rows.get_mut(&id) {
                        if e.ocpi_session_id.is_some() {
                            row.ocpi_session_id = e.ocpi_session_id.clone();
                        }
                        row.settlement = Some(
                            if e.capture_amount_cents > 0 {
                                "capture"
                            } else {
                                "cancel"
                            }
                            .into(),
                        );
                        row.updated_at = e.requested_at;
                    }
                }
                E::WorkspaceSessionPaymentCaptured(e) => {
                    if let Some(row) = rows.get_mut(&id) {
                        row.status = "completed".into();
                        if e.ocpi_session_id.is_some() {
                            row.ocpi_session_id = e.ocpi_session_id.clone();
                        }
                        row.captured_amount_cents = Some(e.captured_amount_cents);
                        row.settlement = None;
                        row.updated_at = e.captured_at;
                    }
                }
                E::SessionCaptureFailed(e) => {
                    if let Some(row) = rows.get_mut(&id) {
                        row.status = "capture_failed".into();
                        row.failure_code = Some(e.failure_code.clone());
                        row.settlement = None;
                        row.updated_at = e.failed_at;
                    }
                }
                E::HoldReleaseRequested(e) => {
                    if let Some(row) = rows.get_mut(&id) {
                        row.settlement = Some("cancel".into());
                        row.updated_at = e.requested_at;
                    }
                }
                E::HoldReleased(e) => {
                    if let Some(row) = rows.get_mut(&id) {
                        row.status = if e.reason == "expired" {
                            "expired"
                        } else {
                            "cancelled"
                        }
                        .into();
                        row.settlement = None;
                        row.updated_at = e.released_at;
                    }
                }
                E::HoldReleaseFailed(e) => {
                    if let Some(row) = rows.get_mut(&id) {
                        row.status = "failed".into();
                        row.failure_code = Some(e.failure_code.clone());
                        row.settlement = None;
                        row.updated_at = e.failed_at;
                    }
                }
                E::StripeCallDeferred(e) => {
                    if let Some(row) = rows.get_mut(&id) {
                        row.updated_at = e.deferred_at;
                    }
                }
                E::HoldExpiryApproaching(e) => {
                    if let Some(row) = rows.get_mut(&id) {
                        row.capture_before = Some(e.capture_before);
                    }
                }
                E::StrayHoldReleased(e) => {
                    if let Some(row) = rows.get_mut(&id) {
                        row.updated_at = e.released_at;
                    }
                }
            }
        }
        store(tx, &rows).await
    }
}

/// A stored row, from either backend's row type.
macro_rules! decode {
    ($r:expr) => {{
        let r = $r;
        (|| -> Result<(String, Row), sqlx::Error> {
            Ok((
                r.try_get::<String, _>("charging_intent_id")?,
                Row {
                    workspace_id: r.try_get("workspace_id")?,
                    status: r.try_get("status")?,
                    payment_required: r.try_get("payment_required")?,
                    amount_cents: r.try_get("amount_cents")?,
                    currency: r.try_get("currency")?,
                    authorized_amount_cents: r.try_get("authorized_amount_cents")?,
                    captured_amount_cents: r.try_get("captured_amount_cents")?,
                    payment_intent_id: r.try_get("payment_intent_id")?,
                    location_id: r.try_get("location_id")?,
                    evse_uid: r.try_get("evse_uid")?,
                    connector_id: r.try_get("connector_id")?,
                    ocpi_session_id: r.try_get("ocpi_session_id")?,
                    failure_code: r.try_get("failure_code")?,
                    credential_version: r.try_get("credential_version")?,
                    created_at: r.try_get("created_at")?,
                    updated_at: r.try_get("updated_at")?,
                    settlement: r.try_get("settlement")?,
                    authorized_at: r.try_get("authorized_at")?,
                    capture_before: r.try_get("capture_before")?,
                },
            ))
        })()
    }};
}

/// The stored rows of `ids` (one query on PostgreSQL; SQLite has no round trips).
async fn load(tx: &mut DbTx, ids: &[&str]) -> Result<BTreeMap<String, Row>, ProjectionError> {
    let mut rows = BTreeMap::new();
    match tx {
        DbTx::Postgres(t) => {
            let found = sqlx::query(&format!(
                "SELECT {COLUMNS} FROM charging_intents WHERE charging_intent_id = ANY($1)"
            ))
            // Planned for these ids each time: a generic plan cached while the table
            // was nearly empty compares every id with every row once it is not.
            .persistent(false)
            .bind(ids)
            .fetch_all(&mut **t)
            .await
            .map_err(db_err)?;
            for r in &found {
                let (id, row) = decode!(r).map_err(db_err)?;
                rows.insert(id, row);
            }
        }
        DbTx::Sqlite(t) => {
            for id in ids {
                let found = sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM charging_intents WHERE charging_intent_id = $1"
                ))
                .bind(id)
                .fetch_optional(&mut **t)
                .await
                .map_err(db_err)?;
                if let Some(r) = &found {
                    let (id, row) = decode!(r).map_err(db_err)?;
                    rows.insert(id, row);
                }
            }
        }
    }
    Ok(rows)
}

const UPSERT_SET: &str = "ON CONFLICT (charging_intent_id) DO UPDATE SET
    status = excluded.status, payment_required = excluded.payment_required,
    amount_cents = excluded.amount_cents, authorized_amount_cents = excluded.authorized_amount_cents,
    captured_amount_cents = excluded.captured_amount_cents, payment_intent_id = excluded.payment_intent_id,
    ocpi_session_id = excluded.ocpi_session_id, failure_code = excluded.failure_code,
    credential_version = excluded.credential_version, updated_at = excluded.updated_at,
    settlement = excluded.settlement, authorized_at = excluded.authorized_at,
    capture_before = excluded.capture_before";

/// Writes the folded rows: one statement on PostgreSQL, one per row on SQLite.
async fn store(tx: &mut DbTx, rows: &BTreeMap<String, Row>) -> Result<(), ProjectionError> {
    if rows.is_empty() {
        return Ok(());
    }
    match tx {
        DbTx::Postgres(t) => {
            let records: Vec<serde_json::Value> = rows
                .iter()
                .map(|(id, row)| {
                    let mut v = serde_json::to_value(row).expect("a row serializes");
                    v["charging_intent_id"] = id.as_str().into();
                    v
                })
                .collect();
            sqlx::query(&format!(
                "INSERT INTO charging_intents ({COLUMNS})
                 SELECT {COLUMNS} FROM json_populate_recordset(NULL::charging_intents, $1::json)
                 {UPSERT_SET}"
            ))
            .bind(serde_json::Value::Array(records))
            .execute(&mut **t)
            .await
            .map_err(db_err)?;
        }
        DbTx::Sqlite(t) => {
            for (id, row) in rows {
                sqlx::query(&format!(
                    "INSERT INTO charging_intents ({COLUMNS})
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                             $18, $19, $20)
                     {UPSERT_SET}"
                ))
                .bind(id)
                .bind(&row.workspace_id)
                .bind(&row.status)
                .bind(row.payment_required)
                .bind(row.amount_cents)
                .bind(&row.currency)
                .bind(row.authorized_amount_cents)
                .bind(row.captured_amount_cents)
                .bind(&row.payment_intent_id)
                .bind(&row.location_id)
                .bind(&row.evse_uid)
                .bind(&row.connector_id)
                .bind(&row.ocpi_session_id)
                .bind(&row.failure_code)
                .bind(row.credential_version)
                .bind(row.created_at)
                .bind(row.updated_at)
                .bind(&row.settlement)
                .bind(row.authorized_at)
                .bind(row.capture_before)
                .execute(&mut **t)
                .await
                .map_err(db_err)?;
            }
        }
    }
    Ok(())
}
