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
    /// Why no projection may apply this event (it holds a NUL character, which
    /// PostgreSQL's `text` cannot store, or it does not decode): it is set aside as a
    /// dead letter instead, and the projections go on.
    pub poison: Option<String>,
}

/// What makes a stored event unfit for the read side, judged on its stored text.
fn poison_of(payload: &str, metadata: &str) -> Option<String> {
    // JSON writes a NUL only as this escape (a literal backslash before `u0000` is
    // written `\\u0000` and only costs a closer look).
    let nul = |text: &str| {
        text.contains("\\u0000")
            && serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| holds_nul(&v))
    };
    (nul(payload) || nul(metadata)).then(|| {
        "the event holds a NUL character (\\u0000), which the read side cannot store".to_string()
    })
}

fn holds_nul(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(holds_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
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

/// The log could not be read (an event that does not decode is no error: it comes back
/// marked as poison).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
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
                let mut poison = poison_of(payload, metadata);
                let event = match AnyEvent::decode(&aggregate_type, payload) {
                    Ok(e) if poison.is_none() => e,
                    Ok(_) => AnyEvent::Unknown,
                    Err(e) => {
                        poison = Some(format!("the event does not decode: {e}"));
                        AnyEvent::Unknown
                    }
                };
                let metadata = serde_json::from_str(metadata).unwrap_or_default();
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
                    poison,
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

/// Counted at most this far: a projector this far behind is simply "very far behind".
const LAG_COUNT_CAP: i64 = 1_000_000;

const PG_LAG: &str = "
WITH c AS (
    SELECT coalesce(max(last_tx), 0) AS last_tx, coalesce(max(last_seq), 0) AS last_seq
      FROM projection_checkpoints WHERE name = $1
), pending AS (
    SELECT e.tx_id, e.global_seq, e.metadata
      FROM events e, c
     WHERE (e.tx_id, e.global_seq) > (c.last_tx::text::xid8, c.last_seq)
       AND e.tx_id < pg_snapshot_xmin(pg_current_snapshot())
     ORDER BY e.tx_id, e.global_seq
     LIMIT $2
)
SELECT (SELECT count(*) FROM pending) AS behind,
       (SELECT metadata->>'recorded_at' FROM pending ORDER BY tx_id, global_seq LIMIT 1) AS oldest";

const SQLITE_LAG: &str = "
WITH c AS (
    SELECT coalesce(max(last_seq), 0) AS last_seq FROM projection_checkpoints WHERE name = $1
), pending AS (
    SELECT e.global_seq, e.metadata FROM events e, c
     WHERE e.global_seq > c.last_seq ORDER BY e.global_seq LIMIT $2
)
SELECT (SELECT count(*) FROM pending) AS behind,
       (SELECT json_extract(metadata, '$.recorded_at') FROM pending
         ORDER BY global_seq LIMIT 1) AS oldest";

/// How far a projection is behind the committed log: the number of events it has not
/// applied, and when the oldest of them was recorded (`None` when caught up).
pub async fn lag(
    db: &crate::Db,
    projection: &str,
) -> Result<(i64, Option<DateTime<Utc>>), sqlx::Error> {
    let row = match db {
        crate::Db::Postgres(pool) => {
            sqlx::query(PG_LAG)
                .persistent(false)
                .bind(projection)
                .bind(LAG_COUNT_CAP)
                .fetch_one(pool)
                .await?
        }
        crate::Db::Sqlite(pool) => {
            let r = sqlx::query(SQLITE_LAG)
                .bind(projection)
                .bind(LAG_COUNT_CAP)
                .fetch_one(pool)
                .await?;
            let behind: i64 = r.try_get("behind")?;
            let oldest: Option<String> = r.try_get("oldest")?;
            return Ok((behind, oldest.and_then(|s| parse_time(&s))));
        }
    };
    let behind: i64 = row.try_get("behind")?;
    let oldest: Option<String> = row.try_get("oldest")?;
    Ok((behind, oldest.and_then(|s| parse_time(&s))))
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}
