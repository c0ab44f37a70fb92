//! `charging_intents`: one row per intent, for support lists and the background sweep.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use roampay_events::{AnyEvent, ChargingIntentEvent as E, IntentRequest};
use sqlx::Row as _;

use crate::db::DbTx;
use crate::log::StoredEvent;
use crate::on_tx;
use crate::runner::{Projection, ProjectionError};

pub struct ChargingIntents;

#[derive(Debug, Clone, Default)]
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
    ocpi_session_id, failure_code, credential_version, created_at, updated_at";

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
        let mut rows: BTreeMap<String, Row> = BTreeMap::new();
        for stored in events {
            let AnyEvent::ChargingIntent(event) = &stored.event else {
                continue;
            };
            let id = stored.aggregate_id.clone();
            if !rows.contains_key(&id) {
                if let Some(existing) = load(tx, &id).await? {
                    rows.insert(id.clone(), existing);
                }
            }
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
                        row.updated_at = e.received_at;
                    }
                }
                E::WorkspacePaymentIntentFailed(e) => {
                    if let Some(row) = rows.get_mut(&id) {
                        row.status = e.status.clone();
                        row.failure_code = Some(e.failure_code.clone());
                        row.updated_at = e.received_at;
                    }
                }
            }
        }
        for (id, row) in rows {
            store(tx, &id, &row).await?;
        }
        Ok(())
    }
}

async fn load(tx: &mut DbTx, id: &str) -> Result<Option<Row>, ProjectionError> {
    on_tx!(tx, c => {
        let r = sqlx::query(&format!("SELECT {COLUMNS} FROM charging_intents WHERE charging_intent_id = $1"))
            .bind(id)
            .fetch_optional(c)
            .await
            .map_err(db_err)?;
        r.map(|r| -> Result<Row, sqlx::Error> {
            Ok(Row {
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
            })
        })
        .transpose()
        .map_err(db_err)
    })
}

async fn store(tx: &mut DbTx, id: &str, row: &Row) -> Result<(), ProjectionError> {
    on_tx!(tx, c => sqlx::query(&format!(
        "INSERT INTO charging_intents ({COLUMNS})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
         ON CONFLICT (charging_intent_id) DO UPDATE SET
           status = excluded.status, payment_required = excluded.payment_required,
           amount_cents = excluded.amount_cents, authorized_amount_cents = excluded.authorized_amount_cents,
           captured_amount_cents = excluded.captured_amount_cents, payment_intent_id = excluded.payment_intent_id,
           ocpi_session_id = excluded.ocpi_session_id, failure_code = excluded.failure_code,
           credential_version = excluded.credential_version, updated_at = excluded.updated_at"))
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
        .execute(c)
        .await
        .map(|_| ())
        .map_err(db_err))
}
