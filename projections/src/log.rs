//! Reading the event log in its durable global order.

use chrono::{DateTime, Utc};
use roampay_events::AnyEvent;
use serde::Deserialize;
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

/// What the command side stores next to every event.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Metadata {
    pub actor: Option<String>,
    pub request_id: Option<String>,
    pub recorded_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub position: Position,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    /// Decoded once, shared by every projection.
    pub event: AnyEvent,
    pub metadata: Metadata,
}

const PG_READ: &str = "
SELECT tx_id::text::bigint AS tx, global_seq, aggregate_type, aggregate_id, sequence,
       event_type, payload::text AS payload, metadata::text AS metadata
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

/// A stored event whose payload or metadata no longer decodes.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("event {seq} ({event_type}) does not decode: {source}")]
    Decode {
        seq: i64,
        event_type: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The next `limit` events after `after`, in global order.
pub async fn read_after(
    tx: &mut DbTx,
    after: Position,
    limit: i64,
) -> Result<Vec<StoredEvent>, ReadError> {
    macro_rules! decode {
        ($rows:expr) => {{
            let mut out = Vec::with_capacity($rows.len());
            for r in $rows {
                let seq: i64 = r.try_get("global_seq")?;
                let aggregate_type: String = r.try_get("aggregate_type")?;
                let event_type: String = r.try_get("event_type")?;
                let payload: &str = r.try_get("payload")?;
                let metadata: &str = r.try_get("metadata")?;
                let decode_err = |source| ReadError::Decode {
                    seq,
                    event_type: event_type.clone(),
                    source,
                };
                let event = AnyEvent::decode(&aggregate_type, payload).map_err(decode_err)?;
                let metadata = serde_json::from_str(metadata).map_err(decode_err)?;
                out.push(StoredEvent {
                    position: Position {
                        tx: r.try_get("tx")?,
                        seq,
                    },
                    aggregate_id: r.try_get("aggregate_id")?,
                    sequence: r.try_get("sequence")?,
                    aggregate_type,
                    event_type,
                    event,
                    metadata,
                });
            }
            Ok(out)
        }};
    }
    match tx {
        DbTx::Postgres(t) => {
            // Planned on every call (not a cached generic plan): a plan made while the
            // log was nearly empty would scan and sort the whole log once it is not.
            let rows = sqlx::query(PG_READ)
                .persistent(false)
                .bind(after.tx.to_string())
                .bind(after.seq)
                .bind(limit)
                .fetch_all(&mut **t)
                .await?;
            decode!(rows.iter())
        }
        DbTx::Sqlite(t) => {
            let rows = sqlx::query(SQLITE_READ)
                .bind(after.seq)
                .bind(limit)
                .fetch_all(&mut **t)
                .await?;
            decode!(rows.iter())
        }
    }
}

/// How many events the log holds (for progress reporting).
pub async fn count(db: &crate::Db) -> Result<i64, sqlx::Error> {
    crate::on_db!(db, pool => sqlx::query_scalar("SELECT COUNT(*) FROM events").fetch_one(pool).await)
}
