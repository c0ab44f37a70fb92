//! sqlite-es with one change: its errors are classified as ours are. sqlite-es counts
//! only I/O failures as the store not answering; a database file locked by another
//! process, gone or full (SQLite's BUSY, PROTOCOL, IOERR, CANTOPEN, FULL, READONLY) or
//! an exhausted pool is the store not answering too, answered 503, not 500.

use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use serde_json::Value;
use sqlite_es::SqliteEventRepository;

pub struct LiteEventRepository {
    inner: SqliteEventRepository,
}

impl LiteEventRepository {
    pub fn new(pool: sqlx::SqlitePool) -> Self {
        Self {
            inner: SqliteEventRepository::new(pool),
        }
    }
}

impl PersistedEventRepository for LiteEventRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let events = self.inner.get_events::<A>(aggregate_id).await;
        events.map_err(super::reclassify)
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let events = self.inner.get_last_events::<A>(aggregate_id, last_sequence);
        events.await.map_err(super::reclassify)
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        let snapshot = self.inner.get_snapshot::<A>(aggregate_id).await;
        snapshot.map_err(super::reclassify)
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        let stored = self.inner.persist::<A>(events, snapshot_update).await;
        stored.map_err(super::reclassify)
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        let stream = self.inner.stream_events::<A>(aggregate_id).await;
        stream.map_err(super::reclassify)
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        let stream = self.inner.stream_all_events::<A>().await;
        stream.map_err(super::reclassify)
    }
}
