//! `charging_intents`: one row per intent, for support lists and the background sweep.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use roampay_events::{
    settlement_step, AnyEvent, ChargingIntentEvent as E, IntentRequest, IntentStatus,
};
use sqlx::Row as _;

use crate::db::DbTx;
use crate::log::StoredEvent;
use crate::runner::{Projection, ProjectionError};

pub struct ChargingIntents;

/// One intent as the read side keeps it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Row {
    pub workspace_id: String,
    pub status: IntentStatus,
    pub payment_required: bool,
    pub amount_cents: Option<i64>,
    pub currency: String,
    pub authorized_amount_cents: Option<i64>,
    pub captured_amount_cents: Option<i64>,
    pub payment_intent_id: Option<String>,
    pub location_id: String,
    pub evse_uid: String,
    pub connector_id: String,
    pub ocpi_session_id: Option<String>,
    pub failure_code: Option<String>,
    pub credential_version: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The Stripe step under way (`capture` / `cancel`), if any.
    pub settlement: Option<String>,
    pub authorized_at: Option<DateTime<Utc>>,
    pub capture_before: Option<DateTime<Utc>>,
    /// The last declined attempt (`LastPaymentError` as JSON text), while pending.
    pub last_payment_error: Option<String>,
    /// What the session cost, even when the capture was capped by the hold.
    pub final_amount_cents: Option<i64>,
    /// The driver token's `sub` that asked; none for a guest.
    pub driver: Option<String>,
    /// Refunds that succeeded, in minor units.
    pub refunded_amount_cents: i64,
    /// The dispute, if any (`{"status", "amount_cents", "reason"}` as JSON text).
    pub dispute: Option<String>,
    /// Stripe was asked when the hold lapses.
    pub deadline_read: bool,
    /// The hold's lapse was flagged for support.
    pub lapse_flagged: bool,
    /// What the driver's bank statement shows (`RP…`), once a PaymentIntent exists.
    pub authorization_reference: Option<String>,
}

fn from_request(r: &IntentRequest, paid: bool) -> Row {
    Row {
        workspace_id: r.workspace_id.clone(),
        status: IntentStatus::New,
        payment_required: paid,
        currency: r.currency.clone(),
        location_id: r.location_id.clone(),
        evse_uid: r.evse_uid.clone(),
        connector_id: r.connector_id.clone(),
        driver: r.driver.clone(),
        created_at: r.requested_at,
        updated_at: r.requested_at,
        ..Row::default()
    }
}

pub(crate) const COLUMNS: &str = "charging_intent_id, workspace_id, status, payment_required, amount_cents, currency,
    authorized_amount_cents, captured_amount_cents, payment_intent_id, location_id, evse_uid, connector_id,
    ocpi_session_id, failure_code, credential_version, created_at, updated_at, settlement, authorized_at,
    capture_before, last_payment_error, final_amount_cents, driver, refunded_amount_cents, dispute,
    deadline_read, lapse_flagged, authorization_reference";

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

    fn takes(&self, aggregate_type: &str) -> bool {
        aggregate_type == "ChargingIntent"
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
            apply_event(&mut rows, &stored.aggregate_id, event);
        }
        store(tx, &rows).await
    }
}

/// Folds one event into the rows: what it carries, and the status it leaves the intent
/// in (the same definition the aggregate uses).
fn apply_event(rows: &mut BTreeMap<String, Row>, id: &str, event: &E) {
    let status = event.status_after();
    match event {
        E::FreeSessionAuthorized(e) => {
            rows.insert(id.to_string(), from_request(&e.request, false));
        }
        E::WorkspacePaymentIntentCreated(e) => {
            let mut row = from_request(&e.request, true);
            row.amount_cents = Some(e.amount_cents);
            row.payment_intent_id = Some(e.payment_intent_id.clone());
            row.credential_version = Some(e.credential_version.into());
            row.authorization_reference = Some(e.authorization_reference.clone());
            rows.insert(id.to_string(), row);
        }
        E::WorkspacePaymentIntentCreationFailed(e) => {
            let mut row = from_request(&e.request, true);
            row.failure_code = Some(e.failure_code.clone());
            rows.insert(id.to_string(), row);
        }
        E::WorkspacePaymentIntentAuthorizationReceived(e) => {
            if let Some(row) = rows.get_mut(id) {
                row.authorized_amount_cents = Some(e.authorized_amount_cents);
                row.authorized_at = Some(e.received_at);
                if e.capture_before.is_some() {
                    row.capture_before = e.capture_before;
                    row.deadline_read = true;
                }
                row.last_payment_error = None;
                row.updated_at = e.received_at;
            }
        }
        E::WorkspacePaymentIntentFailed(e) => {
            if let Some(row) = rows.get_mut(id) {
                row.failure_code = Some(e.failure_code.clone());
                row.settlement = None;
                row.updated_at = e.received_at;
            }
        }
        E::ChargingSessionStarted(e) => {
            if let Some(row) = rows.get_mut(id) {
                row.ocpi_session_id = Some(e.ocpi_session_id.clone());
                row.updated_at = e.started_at;
            }
        }
        E::SessionCompletionRequested(e) => {
            if let Some(row) = rows.get_mut(id) {
                row.final_amount_cents = Some(e.final_amount_cents);
                if e.ocpi_session_id.is_some() {
                    row.ocpi_session_id = e.ocpi_session_id.clone();
                }
                row.settlement = Some(settlement_step(e.capture_amount_cents).into());
                row.updated_at = e.requested_at;
            }
        }
        E::WorkspaceSessionPaymentCaptured(e) => {
            if let Some(row) = rows.get_mut(id) {
                row.final_amount_cents = Some(e.final_amount_cents);
                if e.ocpi_session_id.is_some() {
                    row.ocpi_session_id = e.ocpi_session_id.clone();
                }
                row.captured_amount_cents = Some(e.captured_amount_cents);
                row.settlement = None;
                row.updated_at = e.captured_at;
            }
        }
        E::SessionCaptureFailed(e) => {
            if let Some(row) = rows.get_mut(id) {
                row.failure_code = Some(e.failure_code.clone());
                row.settlement = None;
                row.updated_at = e.failed_at;
            }
        }
        E::HoldReleaseRequested(e) => {
            if let Some(row) = rows.get_mut(id) {
                row.settlement = Some(settlement_step(0).into());
                row.updated_at = e.requested_at;
            }
        }
        E::HoldReleased(e) => {
            if let Some(row) = rows.get_mut(id) {
                row.settlement = None;
                row.updated_at = e.released_at;
            }
        }
        E::HoldReleaseFailed(e) => {
            if let Some(row) = rows.get_mut(id) {
                row.failure_code = Some(e.failure_code.clone());
                row.settlement = None;
                row.updated_at = e.failed_at;
            }
        }
        E::StripeCallDeferred(e) => {
            if let Some(row) = rows.get_mut(id) {
                row.updated_at = e.deferred_at;
            }
        }
        E::HoldExpiryApproaching(e) => {
            if let Some(row) = rows.get_mut(id) {
                row.capture_before = Some(e.capture_before);
                row.lapse_flagged = true;
            }
        }
        E::StrayHoldReleased(e) => {
            if let Some(row) = rows.get_mut(id) {
                row.updated_at = e.released_at;
            }
        }
        E::RefundSucceeded(e) => {
            if let Some(row) = rows.get_mut(id) {
                row.refunded_amount_cents += e.amount_cents;
                row.updated_at = e.succeeded_at;
            }
        }
        E::RefundRequested(_) | E::RefundPending(_) | E::RefundFailed(_) => {}
        E::DisputeOpened(d) | E::DisputeUpdated(d) | E::DisputeClosed(d) => {
            if let Some(row) = rows.get_mut(id) {
                let dispute = serde_json::json!({"status": d.status, "amount_cents": d.amount_cents, "reason": d.reason});
                row.dispute = Some(dispute.to_string());
                row.updated_at = d.at;
            }
        }
        E::HoldDeadlineRead(e) => {
            if let Some(row) = rows.get_mut(id) {
                row.deadline_read = true;
                row.capture_before = e.capture_before.or(row.capture_before);
            }
        }
        E::PaymentAttemptFailed(e) => {
            if let Some(row) = rows.get_mut(id) {
                let error = serde_json::to_string(&e.error).expect("an error serializes");
                row.last_payment_error = Some(error);
                row.updated_at = e.failed_at;
            }
        }
    }
    if let (Some(status), Some(row)) = (status, rows.get_mut(id)) {
        row.status = status;
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
                    status: roampay_events::IntentStatus::parse(r.try_get("status")?).ok_or_else(
                        || sqlx::Error::Decode("unknown charging intent status".into()),
                    )?,
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
                    last_payment_error: r.try_get("last_payment_error")?,
                    final_amount_cents: r.try_get("final_amount_cents")?,
                    driver: r.try_get("driver")?,
                    refunded_amount_cents: r.try_get("refunded_amount_cents")?,
                    dispute: r.try_get("dispute")?,
                    deadline_read: r.try_get("deadline_read")?,
                    lapse_flagged: r.try_get("lapse_flagged")?,
                    authorization_reference: r.try_get("authorization_reference")?,
                },
            ))
        })()
    }};
}

/// PostgreSQL: the rows of the ids in `$1`, one primary-key lookup per id whatever the
/// table's statistics say. With `= ANY($1)` (or a plain join) a table that grew since it
/// was last analyzed is read whole, every id against every row; `LIMIT 1` keeps the
/// planner from turning the lookups back into a join. (Public for the test of its plan.)
pub fn rows_by_id_sql() -> String {
    format!(
        "SELECT c.* FROM UNNEST($1::text[]) AS wanted(id)
          CROSS JOIN LATERAL (SELECT {COLUMNS} FROM charging_intents
                               WHERE charging_intent_id = wanted.id LIMIT 1) AS c"
    )
}

/// The stored rows of `ids` (one query on PostgreSQL; SQLite has no round trips).
async fn load(tx: &mut DbTx, ids: &[&str]) -> Result<BTreeMap<String, Row>, ProjectionError> {
    let mut rows = BTreeMap::new();
    match tx {
        DbTx::Postgres(t) => {
            let found = sqlx::query(&rows_by_id_sql())
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
    capture_before = excluded.capture_before, last_payment_error = excluded.last_payment_error,
    final_amount_cents = excluded.final_amount_cents,
    refunded_amount_cents = excluded.refunded_amount_cents, dispute = excluded.dispute,
    deadline_read = excluded.deadline_read, lapse_flagged = excluded.lapse_flagged,
    authorization_reference = excluded.authorization_reference";

/// Writes the folded rows: one statement on PostgreSQL, one per row on SQLite.
async fn store(tx: &mut DbTx, rows: &BTreeMap<String, Row>) -> Result<(), ProjectionError> {
    if rows.is_empty() {
        return Ok(());
    }
    match tx {
        DbTx::Postgres(t) => {
            // Column by column, as arrays in the order of COLUMNS (binary on the wire,
            // nothing to parse).
            fn col<'a, T>(rows: &'a BTreeMap<String, Row>, f: impl Fn(&'a Row) -> T) -> Vec<T> {
                rows.values().map(f).collect()
            }
            let ids: Vec<&str> = rows.keys().map(String::as_str).collect();
            sqlx::query(&format!(
                "INSERT INTO charging_intents ({COLUMNS})
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bool[], $5::int8[],
                        $6::text[], $7::int8[], $8::int8[], $9::text[], $10::text[], $11::text[],
                        $12::text[], $13::text[], $14::text[], $15::int8[], $16::timestamptz[],
                        $17::timestamptz[], $18::text[], $19::timestamptz[], $20::timestamptz[],
                        $21::text[], $22::int8[], $23::text[], $24::int8[], $25::text[], $26::bool[],
                        $27::bool[], $28::text[])
                 {UPSERT_SET}"
            ))
            .bind(ids)
            .bind(col(rows, |r| r.workspace_id.as_str()))
            .bind(col(rows, |r| r.status.as_str()))
            .bind(col(rows, |r| r.payment_required))
            .bind(col(rows, |r| r.amount_cents))
            .bind(col(rows, |r| r.currency.as_str()))
            .bind(col(rows, |r| r.authorized_amount_cents))
            .bind(col(rows, |r| r.captured_amount_cents))
            .bind(col(rows, |r| r.payment_intent_id.as_deref()))
            .bind(col(rows, |r| r.location_id.as_str()))
            .bind(col(rows, |r| r.evse_uid.as_str()))
            .bind(col(rows, |r| r.connector_id.as_str()))
            .bind(col(rows, |r| r.ocpi_session_id.as_deref()))
            .bind(col(rows, |r| r.failure_code.as_deref()))
            .bind(col(rows, |r| r.credential_version))
            .bind(col(rows, |r| r.created_at))
            .bind(col(rows, |r| r.updated_at))
            .bind(col(rows, |r| r.settlement.as_deref()))
            .bind(col(rows, |r| r.authorized_at))
            .bind(col(rows, |r| r.capture_before))
            .bind(col(rows, |r| r.last_payment_error.as_deref()))
            .bind(col(rows, |r| r.final_amount_cents))
            .bind(col(rows, |r| r.driver.as_deref()))
            .bind(col(rows, |r| r.refunded_amount_cents))
            .bind(col(rows, |r| r.dispute.as_deref()))
            .bind(col(rows, |r| r.deadline_read))
            .bind(col(rows, |r| r.lapse_flagged))
            .bind(col(rows, |r| r.authorization_reference.as_deref()))
            .execute(&mut **t)
            .await
            .map_err(db_err)?;
        }
        DbTx::Sqlite(t) => {
            for (id, row) in rows {
                sqlx::query(&format!(
                    "INSERT INTO charging_intents ({COLUMNS})
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                             $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28)
                     {UPSERT_SET}"
                ))
                .bind(id)
                .bind(&row.workspace_id)
                .bind(row.status.as_str())
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
                .bind(&row.last_payment_error)
                .bind(row.final_amount_cents)
                .bind(&row.driver)
                .bind(row.refunded_amount_cents)
                .bind(&row.dispute)
                .bind(row.deadline_read)
                .bind(row.lapse_flagged)
                .bind(&row.authorization_reference)
                .execute(&mut **t)
                .await
                .map_err(db_err)?;
            }
        }
    }
    Ok(())
}

// After `decode!`, which the queries use.
mod queries;
pub use queries::*;
