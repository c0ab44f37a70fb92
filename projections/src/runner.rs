//! Catch-up projectors: each projection keeps a checkpoint in `projection_checkpoints`
//! and moves it in the same transaction as the rows it writes.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;
use tokio::sync::{Mutex, Notify};

use crate::db::{Db, DbTx};
use crate::log::{self, Position, StoredEvent};
use crate::on_tx;

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("database error in projection {projection}: {source}")]
    Database {
        projection: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("event {seq} ({event_type}) cannot be read by projection {projection}: {message}")]
    Payload {
        projection: &'static str,
        seq: i64,
        event_type: String,
        message: String,
    },
    #[error("unknown projection {0}")]
    Unknown(String),
}

/// A read model built only from events.
#[async_trait::async_trait]
pub trait Projection: Send + Sync {
    /// The name of its checkpoint, and of the projection on the command line.
    fn name(&self) -> &'static str;
    /// The tables it owns, emptied on replay.
    fn tables(&self) -> &'static [&'static str];
    /// Applies a batch of events in global order inside the checkpoint's transaction.
    /// Must be idempotent per event, since a replay applies the same events again.
    async fn apply(&self, tx: &mut DbTx, events: &[StoredEvent]) -> Result<(), ProjectionError>;
}

/// Runs every projection over the log, in batches.
pub struct Projector {
    db: Db,
    projections: Vec<Box<dyn Projection>>,
    batch_size: i64,
    /// One catch-up at a time in this process; the checkpoint row lock covers others.
    running: Mutex<()>,
    wake: Notify,
}

impl Projector {
    pub fn new(db: Db, projections: Vec<Box<dyn Projection>>, batch_size: i64) -> Arc<Self> {
        Arc::new(Self {
            db,
            projections,
            batch_size,
            running: Mutex::new(()),
            wake: Notify::new(),
        })
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.projections.iter().map(|p| p.name()).collect()
    }

    /// Asks the background loop to catch up now (called after every command).
    pub fn nudge(&self) {
        self.wake.notify_one();
    }

    /// Catches every projection up to the head of the log. Returns the events applied.
    pub async fn catch_up(&self) -> Result<u64, ProjectionError> {
        self.catch_up_with(|_| {}).await
    }

    /// As [`catch_up`](Self::catch_up), reporting progress after each batch.
    pub async fn catch_up_with(
        &self,
        mut progress: impl FnMut(u64),
    ) -> Result<u64, ProjectionError> {
        let _guard = self.running.lock().await;
        let mut total = 0;
        for projection in &self.projections {
            loop {
                let n = self.run_batch(projection.as_ref()).await?;
                total += n;
                progress(n);
                if n < self.batch_size as u64 {
                    break;
                }
            }
        }
        Ok(total)
    }

    /// Empties a projection's tables and its checkpoint (then [`catch_up`] rebuilds it).
    pub async fn reset(&self, name: &str) -> Result<(), ProjectionError> {
        let projection = self
            .projections
            .iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| ProjectionError::Unknown(name.to_string()))?;
        let _guard = self.running.lock().await;
        let pname = projection.name();
        let db_err = |source| ProjectionError::Database {
            projection: pname,
            source,
        };
        let mut tx = self.db.begin().await.map_err(db_err)?;
        lock_checkpoint(&mut tx, pname).await.map_err(db_err)?;
        for table in projection.tables() {
            let sql = format!("DELETE FROM {table}");
            on_tx!(&mut tx, c => sqlx::query(&sql).execute(c).await.map(|r| r.rows_affected()))
                .map_err(db_err)?;
        }
        on_tx!(&mut tx, c => sqlx::query(
            "UPDATE projection_checkpoints SET last_tx = 0, last_seq = 0 WHERE name = $1")
            .bind(pname).execute(c).await.map(|r| r.rows_affected()))
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }

    /// Where a projection has got to.
    pub async fn checkpoint(&self, name: &'static str) -> Result<Position, ProjectionError> {
        let db_err = |source| ProjectionError::Database {
            projection: name,
            source,
        };
        let mut tx = self.db.begin().await.map_err(db_err)?;
        let pos = lock_checkpoint(&mut tx, name).await.map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(pos)
    }

    async fn run_batch(&self, projection: &dyn Projection) -> Result<u64, ProjectionError> {
        let name = projection.name();
        let db_err = |source| ProjectionError::Database {
            projection: name,
            source,
        };
        let mut tx = self.db.begin().await.map_err(db_err)?;
        let after = lock_checkpoint(&mut tx, name).await.map_err(db_err)?;
        let events = log::read_after(&mut tx, after, self.batch_size)
            .await
            .map_err(db_err)?;
        let Some(last) = events.last().map(|e| e.position) else {
            return Ok(0);
        };
        projection.apply(&mut tx, &events).await?;
        on_tx!(&mut tx, c => sqlx::query(
            "UPDATE projection_checkpoints SET last_tx = $1, last_seq = $2, updated_at = CURRENT_TIMESTAMP WHERE name = $3")
            .bind(last.tx).bind(last.seq).bind(name).execute(c).await.map(|r| r.rows_affected()))
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        tracing::debug!(projection = name, events = events.len(), "projected batch");
        Ok(events.len() as u64)
    }

    /// Catches up whenever nudged, and at least every `interval` (for events written by
    /// other instances), until the task is dropped.
    pub async fn run_forever(self: Arc<Self>, interval: Duration) {
        loop {
            if let Err(err) = self.catch_up().await {
                tracing::error!(error = %err, "projection catch-up failed; retrying");
            }
            let _ = tokio::time::timeout(interval, self.wake.notified()).await;
        }
    }
}

/// Takes the checkpoint row's write lock (the first statement writes, so SQLite takes
/// its write lock at once and PostgreSQL locks the row) and reads the position.
async fn lock_checkpoint(tx: &mut DbTx, name: &str) -> Result<Position, sqlx::Error> {
    on_tx!(tx, c => {
        sqlx::query(
            "INSERT INTO projection_checkpoints (name) VALUES ($1)
             ON CONFLICT (name) DO UPDATE SET last_tx = projection_checkpoints.last_tx")
            .bind(name)
            .execute(&mut *c)
            .await?;
        let row = sqlx::query("SELECT last_tx, last_seq FROM projection_checkpoints WHERE name = $1")
            .bind(name)
            .fetch_one(&mut *c)
            .await?;
        Ok(Position { tx: row.try_get("last_tx")?, seq: row.try_get("last_seq")? })
    })
}
