//! Reading the event log in its durable global order.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::Row;

use crate::db::DbTx;

/// A point in the global order. On PostgreSQL the order is (writing transaction id,
/// global sequence) and only transactions older than every one still running are
/// read, so nothing can later appear behind a position already passed. SQLite commits
/// one writer at a time, so `tx` is always 0 there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub tx: i64,
    pub seq: i64,
}

#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub position: Position,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub payload: Value,
    pub metadata: Value,
}

impl StoredEvent {
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).and_then(Value::as_str)
    }

    /// When the event was recorded (metadata `recorded_at`, written by the command side).
    pub fn recorded_at(&self) -> Option<DateTime<Utc>> {
        self.meta("recorded_at")
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.with_timezone(&Utc))
    }
}

const PG_READ: &str = "
SELECT tx_id::text::bigint AS tx, global_seq, aggregate_type, aggregate_id, sequence,
       event_type, payload, metadata
  FROM events
 WHERE (tx_id, global_seq) > ($1::text::xid8, $2)
   AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
 ORDER BY tx_id, global_seq
 LIMIT $3";

const SQLITE_READ: &str = "
SELECT 0 AS tx, global_seq, aggregate_type, aggregate_id, sequence,
       event_type, payload, metadata
  FROM events
 WHERE global_seq > $1
 ORDER BY global_seq
 LIMIT $2";

/// The next `limit` events after `after`, in global order.
pub async fn read_after(
    tx: &mut DbTx,
    after: Position,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    macro_rules! read {
        ($rows:expr) => {{
            $rows
                .into_iter()
                .map(|r| {
                    Ok(StoredEvent {
                        position: Position {
                            tx: r.try_get("tx")?,
                            seq: r.try_get("global_seq")?,
                        },
                        aggregate_type: r.try_get("aggregate_type")?,
                        aggregate_id: r.try_get("aggregate_id")?,
                        sequence: r.try_get("sequence")?,
                        event_type: r.try_get("event_type")?,
                        payload: r.try_get("payload")?,
                        metadata: r.try_get("metadata")?,
                    })
                })
                .collect()
        }};
    }
    match tx {
        DbTx::Postgres(t) => read!(
            sqlx::query(PG_READ)
                .bind(after.tx.to_string())
                .bind(after.seq)
                .bind(limit)
                .fetch_all(&mut **t)
                .await?
        ),
        DbTx::Sqlite(t) => read!(
            sqlx::query(SQLITE_READ)
                .bind(after.seq)
                .bind(limit)
                .fetch_all(&mut **t)
                .await?
        ),
    }
}

/// How many events the log holds (for progress reporting).
pub async fn count(db: &crate::Db) -> Result<i64, sqlx::Error> {
    crate::on_db!(db, pool => sqlx::query_scalar("SELECT COUNT(*) FROM events").fetch_one(pool).await)
}
