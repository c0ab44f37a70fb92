//! Events a projection could not apply, set aside so that it goes on: listed by
//! `roampay dead-letters`, tried again by `roampay dead-letters --retry`.

use chrono::{DateTime, Utc};
use sqlx::Row as _;

use crate::db::{Db, DbTx};
use crate::log::StoredEvent;
use crate::{on_db, on_tx};

/// One event a projection set aside, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeadLetter {
    pub projection: String,
    pub tx: i64,
    pub seq: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub event_type: String,
    pub error: String,
    pub recorded_at: DateTime<Utc>,
}

/// What PostgreSQL's `text` can hold: NUL characters written as `\0`.
fn storable(s: &str) -> String {
    s.replace('\0', "\\0")
}

pub(crate) async fn record(
    tx: &mut DbTx,
    projection: &str,
    event: &StoredEvent,
    why: &str,
) -> Result<(), sqlx::Error> {
    let now = Utc::now();
    on_tx!(tx, c => sqlx::query(
        "INSERT INTO projection_dead_letters
              (projection, tx, seq, aggregate_type, aggregate_id, event_type, error, recorded_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (projection, tx, seq) DO UPDATE SET error = excluded.error,
                                                         recorded_at = excluded.recorded_at")
        .bind(projection)
        .bind(event.position.tx)
        .bind(event.position.seq)
        .bind(storable(&event.aggregate_type))
        .bind(storable(&event.aggregate_id))
        .bind(storable(&event.event_type))
        .bind(storable(why))
        .bind(now)
        .execute(c)
        .await
        .map(|_| ()))
}

/// The dead letters, of one projection or all, oldest event first.
pub async fn list(db: &Db, projection: Option<&str>) -> Result<Vec<DeadLetter>, sqlx::Error> {
    on_db!(db, pool => {
        let rows = sqlx::query(
            "SELECT projection, tx, seq, aggregate_type, aggregate_id, event_type, error, recorded_at
               FROM projection_dead_letters
              WHERE $1 IS NULL OR projection = $1
              ORDER BY tx, seq, projection")
            .bind(projection)
            .fetch_all(pool)
            .await?;
        rows.iter()
            .map(|r| Ok(DeadLetter {
                projection: r.try_get("projection")?,
                tx: r.try_get("tx")?,
                seq: r.try_get("seq")?,
                aggregate_type: r.try_get("aggregate_type")?,
                aggregate_id: r.try_get("aggregate_id")?,
                event_type: r.try_get("event_type")?,
                error: r.try_get("error")?,
                recorded_at: r.try_get("recorded_at")?,
            }))
            .collect()
    })
}

pub(crate) async fn remove(tx: &mut DbTx, d: &DeadLetter) -> Result<(), sqlx::Error> {
    on_tx!(tx, c => sqlx::query(
        "DELETE FROM projection_dead_letters WHERE projection = $1 AND tx = $2 AND seq = $3")
        .bind(&d.projection)
        .bind(d.tx)
        .bind(d.seq)
        .execute(c)
        .await
        .map(|_| ()))
}
