//! postgres-es with one change: commits are group-committed. Each commit's events go
//! to a small set of writers; a writer takes every commit waiting at that moment and
//! stores them all with one `INSERT` statement (atomic on its own, durable before any
//! of them is answered), instead of `BEGIN`, an `INSERT` per event and `COMMIT` per
//! command. When nothing is waiting a commit is written at once, alone. A statement
//! that fails on a sequence already taken (a lost race) is retried commit by commit,
//! so only the commits that lost are told so. Loads are grouped the same way: the
//! aggregates that a set of concurrent commands need and this instance does not
//! remember are read with one statement. Snapshots are postgres-es's own.

use std::sync::Arc;

use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Mutex};

/// Events as parallel arrays, in order: `global_seq` follows the array order, and every
/// row of the statement has the statement's transaction as `tx_id`.
const INSERT_EVENTS: &str = "
INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
SELECT e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, e.event_version, e.payload::json, e.metadata::json
  FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[])
       WITH ORDINALITY AS e(aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, n)
 ORDER BY e.n";

/// The events of several aggregates of one type, each in order. One index range per
/// aggregate, as postgres-es reads one: with `aggregate_id = ANY($2)` and an `ORDER BY`
/// instead, a cached generic plan may walk every event of the type in key order
/// (seen: 30–70 ms per statement at 60,000 events).
const SELECT_EVENTS: &str = "
SELECT e.aggregate_id, e.sequence, e.event_type, e.event_version, e.payload, e.metadata
  FROM UNNEST($2::text[]) AS wanted(id)
 CROSS JOIN LATERAL (
       SELECT aggregate_id, sequence, event_type, event_version, payload, metadata
         FROM events
        WHERE aggregate_type = $1 AND aggregate_id = wanted.id
        ORDER BY sequence) AS e";

/// Writers storing commits at the same time (each with one statement in flight).
const WRITERS: usize = 2;
/// Readers loading aggregates at the same time (each with one statement in flight).
const READERS: usize = 2;
/// At most this many commits in one statement.
const MAX_GROUP: usize = 256;

/// The rows of one or more commits, column by column.
#[derive(Default)]
struct Rows {
    aggregate_type: Vec<String>,
    aggregate_id: Vec<String>,
    sequence: Vec<i64>,
    event_type: Vec<String>,
    event_version: Vec<String>,
    payload: Vec<String>,
    metadata: Vec<String>,
}

impl Rows {
    fn of(aggregate_type: &str, events: &[SerializedEvent]) -> Result<Self, PersistenceError> {
        let mut rows = Rows::default();
        for e in events {
            rows.aggregate_type.push(aggregate_type.to_string());
            rows.aggregate_id.push(e.aggregate_id.clone());
            rows.sequence.push(
                i64::try_from(e.sequence).map_err(|e| PersistenceError::UnknownError(e.into()))?,
            );
            rows.event_type.push(e.event_type.clone());
            rows.event_version.push(e.event_version.clone());
            rows.payload.push(e.payload.to_string());
            rows.metadata.push(e.metadata.to_string());
        }
        Ok(rows)
    }

    fn extend(&mut self, other: &Rows) {
        self.aggregate_type.extend_from_slice(&other.aggregate_type);
        self.aggregate_id.extend_from_slice(&other.aggregate_id);
        self.sequence.extend_from_slice(&other.sequence);
        self.event_type.extend_from_slice(&other.event_type);
        self.event_version.extend_from_slice(&other.event_version);
        self.payload.extend_from_slice(&other.payload);
        self.metadata.extend_from_slice(&other.metadata);
    }

    async fn insert(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        sqlx::query(INSERT_EVENTS)
            .bind(&self.aggregate_type)
            .bind(&self.aggregate_id)
            .bind(&self.sequence)
            .bind(&self.event_type)
            .bind(&self.event_version)
            .bind(&self.payload)
            .bind(&self.metadata)
            .execute(pool)
            .await
            .map(|_| ())
    }
}

/// One commit waiting for a writer.
struct Pending {
    rows: Rows,
    done: oneshot::Sender<Result<(), PersistenceError>>,
}

/// One aggregate's events wanted by a command.
struct Load {
    aggregate_type: String,
    aggregate_id: String,
    done: oneshot::Sender<Result<Vec<SerializedEvent>, PersistenceError>>,
}

pub struct PgEventRepository {
    inner: PostgresEventRepository,
    queue: mpsc::UnboundedSender<Pending>,
    loads: mpsc::UnboundedSender<Load>,
}

impl PgEventRepository {
    /// Starts the writers and readers (on the current Tokio runtime); they stop with the
    /// repository.
    pub fn new(pool: PgPool) -> Self {
        let (queue, waiting) = mpsc::unbounded_channel();
        let waiting = Arc::new(Mutex::new(waiting));
        for _ in 0..WRITERS {
            tokio::spawn(write_groups(pool.clone(), waiting.clone()));
        }
        let (loads, wanted) = mpsc::unbounded_channel();
        let wanted = Arc::new(Mutex::new(wanted));
        for _ in 0..READERS {
            tokio::spawn(read_groups(pool.clone(), wanted.clone()));
        }
        Self {
            inner: PostgresEventRepository::new(pool),
            queue,
            loads,
        }
    }
}

/// Takes whatever loads are waiting (at least one) and reads them together, one
/// statement per aggregate type.
async fn read_groups(pool: PgPool, wanted: Arc<Mutex<mpsc::UnboundedReceiver<Load>>>) {
    loop {
        let mut group = {
            let mut wanted = wanted.lock().await;
            let Some(first) = wanted.recv().await else {
                return; // the repository is gone
            };
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match wanted.try_recv() {
                    Ok(l) => group.push(l),
                    Err(_) => break,
                }
            }
            group
        };
        while !group.is_empty() {
            let kind = group[0].aggregate_type.clone();
            let (same, rest) = group.into_iter().partition(|l| l.aggregate_type == kind);
            read_group(&pool, &kind, same).await;
            group = rest;
        }
    }
}

async fn read_group(pool: &PgPool, aggregate_type: &str, group: Vec<Load>) {
    let mut ids: Vec<&str> = group.iter().map(|l| l.aggregate_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let rows = sqlx::query_as::<_, (String, i64, String, String, Value, Value)>(SELECT_EVENTS)
        .bind(aggregate_type)
        .bind(&ids)
        .fetch_all(pool)
        .await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => {
            let message = e.to_string();
            let connection = super::unreachable(&e);
            for l in group {
                let err = if connection {
                    PersistenceError::ConnectionError(message.clone().into())
                } else {
                    PersistenceError::UnknownError(message.clone().into())
                };
                let _ = l.done.send(Err(err));
            }
            return;
        }
    };
    let mut by_id: std::collections::HashMap<String, Vec<SerializedEvent>> = Default::default();
    for (aggregate_id, sequence, event_type, event_version, payload, metadata) in rows {
        let event = SerializedEvent {
            aggregate_id: aggregate_id.clone(),
            sequence: usize::try_from(sequence).unwrap_or_default(),
            aggregate_type: aggregate_type.to_string(),
            event_type,
            event_version,
            payload,
            metadata,
        };
        by_id.entry(aggregate_id).or_default().push(event);
    }
    for l in group {
        let events = by_id.get(&l.aggregate_id).cloned().unwrap_or_default();
        let _ = l.done.send(Ok(events));
    }
}

/// Takes whatever commits are waiting (at least one) and stores them together.
async fn write_groups(pool: PgPool, waiting: Arc<Mutex<mpsc::UnboundedReceiver<Pending>>>) {
    loop {
        let group = {
            let mut waiting = waiting.lock().await;
            let Some(first) = waiting.recv().await else {
                return; // the repository is gone
            };
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match waiting.try_recv() {
                    Ok(p) => group.push(p),
                    Err(_) => break,
                }
            }
            group
        };
        write_group(&pool, group).await;
    }
}

async fn write_group(pool: &PgPool, group: Vec<Pending>) {
    let result = if group.len() == 1 {
        group[0].rows.insert(pool).await
    } else {
        let mut all = Rows::default();
        for p in &group {
            all.extend(&p.rows);
        }
        all.insert(pool).await
    };
    match result {
        Ok(()) => {
            for p in group {
                let _ = p.done.send(Ok(()));
            }
        }
        // Someone took a sequence one of these commits wanted: find out which, alone.
        Err(e) if group.len() > 1 && is_unique_violation(&e) => {
            for p in group {
                let alone = p.rows.insert(pool).await.map_err(persistence_error);
                let _ = p.done.send(alone);
            }
        }
        Err(e) if group.len() == 1 => {
            let p = group.into_iter().next().expect("one commit");
            let _ = p.done.send(Err(persistence_error(e)));
        }
        // The whole statement failed: every commit in it gets the same error.
        Err(e) => {
            let message = e.to_string();
            let connection = super::unreachable(&e);
            for p in group {
                let err = if connection {
                    PersistenceError::ConnectionError(message.clone().into())
                } else {
                    PersistenceError::UnknownError(message.clone().into())
                };
                let _ = p.done.send(Err(err));
            }
        }
    }
}

/// The primary key (aggregate, sequence): someone else committed this sequence first.
fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("23505"))
}

fn persistence_error(e: sqlx::Error) -> PersistenceError {
    if is_unique_violation(&e) {
        return PersistenceError::OptimisticLockError;
    }
    if super::unreachable(&e) {
        PersistenceError::ConnectionError(Box::new(e))
    } else {
        PersistenceError::UnknownError(Box::new(e))
    }
}

impl PersistedEventRepository for PgEventRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let (done, events) = oneshot::channel();
        let load = Load {
            aggregate_type: A::TYPE.to_string(),
            aggregate_id: aggregate_id.to_string(),
            done,
        };
        let gone = || PersistenceError::UnknownError("the event store's readers stopped".into());
        self.loads.send(load).map_err(|_| gone())?;
        events.await.map_err(|_| gone())?
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.inner
            .get_last_events::<A>(aggregate_id, last_sequence)
            .await
            .map_err(super::reclassify)
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        self.inner.get_snapshot::<A>(aggregate_id).await
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        // Snapshots (unused by roampay) keep postgres-es's transaction.
        if snapshot_update.is_some() {
            return self.inner.persist::<A>(events, snapshot_update).await;
        }
        if events.is_empty() {
            return Ok(());
        }
        let (done, result) = oneshot::channel();
        let pending = Pending {
            rows: Rows::of(A::TYPE, events)?,
            done,
        };
        let gone = || PersistenceError::UnknownError("the event writers have stopped".into());
        self.queue.send(pending).map_err(|_| gone())?;
        result.await.map_err(|_| gone())?
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        self.inner.stream_events::<A>(aggregate_id).await
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        self.inner.stream_all_events::<A>().await
    }
}
