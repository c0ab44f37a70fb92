//! `charging_intents`: one row per intent, for support lists and the background sweep.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use roampay_events::{
    AnyEvent, ChargingIntentEvent as E, Dispute, IntentFacts, IntentRequest, IntentStatus,
    Settlement,
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
        let mut folded: BTreeMap<String, (Row, IntentFacts)> = load(tx, &ids)
            .await?
            .into_iter()
            .map(|(id, row)| {
                let facts = row.facts();
                (id, (row, facts))
            })
            .collect();
        for stored in events {
            let AnyEvent::ChargingIntent(event) = &stored.event else {
                continue;
            };
            apply_event(&mut folded, &stored.aggregate_id, event);
        }
        let rows = folded
            .into_iter()
            .map(|(id, (mut row, facts))| {
                row.set_facts(&facts);
                (id, row)
            })
            .collect();
        store(tx, &rows).await
    }
}

/// Folds one event in: a creation makes the row (the intent's identity), and the facts
/// are folded as the aggregate folds them (`IntentFacts::apply`, the one definition).
fn apply_event(rows: &mut BTreeMap<String, (Row, IntentFacts)>, id: &str, event: &E) {
    let created = match event {
        E::FreeSessionAuthorized(e) => Some(from_request(&e.request, false)),
        E::WorkspacePaymentIntentCreated(e) => {
            let mut row = from_request(&e.request, true);
            row.amount_cents = Some(e.amount_cents);
            row.payment_intent_id = Some(e.payment_intent_id.clone());
            row.credential_version = Some(e.credential_version.into());
            row.authorization_reference = Some(e.authorization_reference.clone());
            Some(row)
        }
        E::WorkspacePaymentIntentCreationFailed(e) => Some(from_request(&e.request, true)),
        _ => None,
    };
    if let Some(row) = created {
        rows.insert(id.to_string(), (row, IntentFacts::default()));
    }
    if let Some((_, facts)) = rows.get_mut(id) {
        facts.apply(event);
    }
}

impl Row {
    /// The facts a stored row holds. The read model keeps only the step of a
    /// settlement under way (`capture` / `cancel`), which is all it writes back.
    fn facts(&self) -> IntentFacts {
        IntentFacts {
            status: self.status,
            authorized_amount_cents: self.authorized_amount_cents,
            captured_amount_cents: self.captured_amount_cents,
            ocpi_session_id: self.ocpi_session_id.clone(),
            failure_code: self.failure_code.clone(),
            created_at: Some(self.created_at),
            updated_at: Some(self.updated_at),
            authorized_at: self.authorized_at,
            final_amount_cents: self.final_amount_cents,
            settlement: self.settlement.as_deref().map(|step| match step {
                "capture" => Settlement::Capture {
                    final_amount_cents: self.final_amount_cents.unwrap_or_default(),
                    capture_amount_cents: self.final_amount_cents.unwrap_or(1).max(1),
                },
                _ => Settlement::Release {
                    reason: String::new(),
                },
            }),
            capture_before: self.capture_before,
            deadline_read: self.deadline_read,
            lapse_flagged: self.lapse_flagged,
            last_payment_error: self
                .last_payment_error
                .as_deref()
                .and_then(|e| serde_json::from_str(e).ok()),
            refunded_amount_cents: self.refunded_amount_cents,
            dispute: self
                .dispute
                .as_deref()
                .and_then(|d| serde_json::from_str::<Dispute>(d).ok()),
        }
    }

    fn set_facts(&mut self, f: &IntentFacts) {
        self.status = f.status;
        self.authorized_amount_cents = f.authorized_amount_cents;
        self.captured_amount_cents = f.captured_amount_cents;
        self.ocpi_session_id.clone_from(&f.ocpi_session_id);
        self.failure_code.clone_from(&f.failure_code);
        self.created_at = f.created_at.unwrap_or(self.created_at);
        self.updated_at = f.updated_at.unwrap_or(self.updated_at);
        self.authorized_at = f.authorized_at;
        self.final_amount_cents = f.final_amount_cents;
        self.settlement = f.settlement.as_ref().map(|s| s.step().to_string());
        self.capture_before = f.capture_before;
        self.deadline_read = f.deadline_read;
        self.lapse_flagged = f.lapse_flagged;
        self.last_payment_error = f
            .last_payment_error
            .as_ref()
            .map(|e| serde_json::to_string(e).expect("an error serializes"));
        self.refunded_amount_cents = f.refunded_amount_cents;
        self.dispute = f
            .dispute
            .as_ref()
            .map(|d| serde_json::to_string(d).expect("a dispute serializes"));
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
