//! postgres-es with one change: a commit is one `INSERT` statement (atomic on its
//! own), not `BEGIN`, an `INSERT` per event and `COMMIT` — three round trips fewer on
//! the hottest path. Reads and snapshots are postgres-es's own, on the same table.

use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlx::PgPool;

/// The events of one commit, in order, as parallel arrays. `global_seq` follows the
/// array order and `tx_id` is the statement's transaction, as with postgres-es.
const INSERT_EVENTS: &str = "
INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
SELECT $1, $2, e.sequence, e.event_type, e.event_version, e.payload::json, e.metadata::json
  FROM UNNEST($3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[])
       WITH ORDINALITY AS e(sequence, event_type, event_version, payload, metadata, n)
 ORDER BY e.n";

pub struct PgEventRepository {
    pool: PgPool,
    inner: PostgresEventRepository,
}

impl PgEventRepository {
    pub fn new(pool: PgPool) -> Self {
        Self {
            inner: PostgresEventRepository::new(pool.clone()),
            pool,
        }
    }
}

fn persistence_error(e: sqlx::Error) -> PersistenceError {
    match &e {
        // The primary key (aggregate, sequence): someone else committed this sequence.
        sqlx::Error::Database(d) if d.code().as_deref() == Some("23505") => {
            PersistenceError::OptimisticLockError
        }
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut => {
            PersistenceError::ConnectionError(Box::new(e))
        }
        _ => PersistenceError::UnknownError(Box::new(e)),
    }
}

impl PersistedEventRepository for PgEventRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.inner.get_events::<A>(aggregate_id).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.inner
            .get_last_events::<A>(aggregate_id, last_sequence)
            .await
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
        let Some(first) = events.first() else {
            return Ok(());
        };
        let mut sequence = Vec::with_capacity(events.len());
        let mut event_type = Vec::with_capacity(events.len());
        let mut event_version = Vec::with_capacity(events.len());
        let mut payload = Vec::with_capacity(events.len());
        let mut metadata = Vec::with_capacity(events.len());
        for e in events {
            debug_assert_eq!(e.aggregate_id, first.aggregate_id);
            sequence.push(
                i64::try_from(e.sequence).map_err(|e| PersistenceError::UnknownError(e.into()))?,
            );
            event_type.push(e.event_type.as_str());
            event_version.push(e.event_version.as_str());
            payload.push(e.payload.to_string());
            metadata.push(e.metadata.to_string());
        }
        sqlx::query(INSERT_EVENTS)
            .bind(A::TYPE)
            .bind(&first.aggregate_id)
            .bind(&sequence)
            .bind(&event_type)
            .bind(&event_version)
            .bind(&payload)
            .bind(&metadata)
            .execute(&self.pool)
            .await
            .map_err(persistence_error)?;
        Ok(())
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
