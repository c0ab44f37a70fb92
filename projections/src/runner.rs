//! Catch-up projectors: each projection keeps a checkpoint in `projection_checkpoints`
//! and moves it in the same transaction as the rows it writes.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;
use tokio::sync::{Mutex, Notify};

use crate::db::{Db, DbTx};
use crate::log::{self, Position, StoredEvent};
use crate::{on_db, on_tx};

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("database error in projection {projection}: {source}")]
    Database {
        projection: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("the event log could not be read: {0}")]
    Log(#[from] crate::log::ReadError),
    #[error("reading ahead failed: {0}")]
    Prefetch(String),
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
    /// Secondary indexes dropped during a rebuild from zero and built once at the end
    /// (cheaper than maintaining them row by row). They must match the migrations.
    fn deferred_indexes(&self) -> &'static [DeferredIndex] {
        &[]
    }
    /// Applies a batch of events in global order inside the checkpoint's transaction.
    /// Must be idempotent per event, since a replay applies the same events again.
    async fn apply(&self, tx: &mut DbTx, events: &[StoredEvent]) -> Result<(), ProjectionError>;
}

/// How long a nudged projector waits for more events before catching up: short when
/// events come one at a time (support sees a change within milliseconds), longer under
/// load, when each batch's fixed cost (a transaction and checkpoint per projection) is
/// shared by hundreds of events instead of a few.
const COALESCE: Duration = Duration::from_millis(10);
const COALESCE_BUSY: Duration = Duration::from_millis(100);
/// A catch-up that made at least this many applications (events × projections that
/// took them) means the service is busy.
const BUSY: u64 = 100;

/// A secondary index of a read model: its name and its `CREATE INDEX IF NOT EXISTS`.
pub struct DeferredIndex {
    pub name: &'static str,
    pub create: &'static str,
}

/// The next batch, being read while the current one is applied.
struct Prefetch {
    from: Position,
    events: tokio::task::JoinHandle<Result<Vec<StoredEvent>, crate::log::ReadError>>,
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

    /// Catches every projection up to the head of the log. Returns the event
    /// applications made (events × projections that had not seen them).
    pub async fn catch_up(&self) -> Result<u64, ProjectionError> {
        self.catch_up_with(|_| {}).await
    }

    /// As [`catch_up`](Self::catch_up), reporting progress after each batch. While a
    /// batch is applied, the next one is already being read on another connection.
    pub async fn catch_up_with(
        &self,
        mut progress: impl FnMut(u64),
    ) -> Result<u64, ProjectionError> {
        let _guard = self.running.lock().await;
        let mut total = 0;
        let mut ahead: Option<Prefetch> = None;
        loop {
            let (applied, read, next) = self.run_batch(ahead.take()).await?;
            total += applied;
            progress(applied);
            if read < self.batch_size as u64 {
                return Ok(total);
            }
            ahead = next;
        }
    }

    /// Rebuilds the given projections from the first event: empties them, drops their
    /// deferred indexes, catches up (reporting progress), and builds the indexes again.
    pub async fn rebuild(&self, mut progress: impl FnMut(u64)) -> Result<u64, ProjectionError> {
        for name in self.names() {
            self.reset(name).await?;
        }
        let db_err = |source| ProjectionError::Database {
            projection: "rebuild",
            source,
        };
        for index in self.projections.iter().flat_map(|p| p.deferred_indexes()) {
            let sql = format!("DROP INDEX IF EXISTS {}", index.name);
            on_db!(&self.db, pool => sqlx::query(&sql).execute(pool).await.map(|_| ()))
                .map_err(db_err)?;
        }
        let applied = self.catch_up_with(&mut progress).await?;
        self.ensure_indexes().await?;
        Ok(applied)
    }

    /// Builds any deferred index that is missing (after an interrupted rebuild).
    pub async fn ensure_indexes(&self) -> Result<(), ProjectionError> {
        for index in self.projections.iter().flat_map(|p| p.deferred_indexes()) {
            on_db!(&self.db, pool => sqlx::query(index.create).execute(pool).await.map(|_| ()))
                .map_err(|source| ProjectionError::Database {
                    projection: "indexes",
                    source,
                })?;
        }
        Ok(())
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
            let sql = match self.db {
                Db::Postgres(_) => format!("TRUNCATE {table}"),
                Db::Sqlite(_) => format!("DELETE FROM {table}"),
            };
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

    /// One batch for every projection. The log is read once, from the furthest-behind
    /// checkpoint; then each projection applies the events past its own checkpoint in
    /// its own transaction, all at the same time (they share no tables).
    /// Returns (applications made, events read, the read of the next batch under way).
    #[tracing::instrument(name = "projector batch", skip_all, fields(events = tracing::field::Empty, applied = tracing::field::Empty))]
    async fn run_batch(
        &self,
        ahead: Option<Prefetch>,
    ) -> Result<(u64, u64, Option<Prefetch>), ProjectionError> {
        if let Db::Sqlite(_) = self.db {
            let (applied, read) = self.run_batch_single_writer().await?;
            let span = tracing::Span::current();
            span.record("events", read);
            span.record("applied", applied);
            return Ok((applied, read, None));
        }
        let db_err = |source| ProjectionError::Database {
            projection: "projector",
            source,
        };
        let mut txs = Vec::with_capacity(self.projections.len());
        for p in &self.projections {
            let mut tx = self.db.begin().await.map_err(db_err)?;
            let at = lock_checkpoint(&mut tx, p.name()).await.map_err(db_err)?;
            txs.push((tx, at));
        }
        let Some(from) = txs.iter().map(|(_, at)| *at).min() else {
            return Ok((0, 0, None));
        };
        // A prefetch is only good if nobody else moved the checkpoints meanwhile.
        let events = match ahead {
            Some(p) if p.from == from => p
                .events
                .await
                .map_err(|e| ProjectionError::Prefetch(e.to_string()))??,
            _ => read_in_own_tx(self.db.clone(), from, self.batch_size).await?,
        };
        let Some(last) = events.last().map(|e| e.position) else {
            return Ok((0, 0, None));
        };
        let next = (events.len() as i64 == self.batch_size).then(|| Prefetch {
            from: last,
            events: tokio::spawn(read_in_own_tx(self.db.clone(), last, self.batch_size)),
        });
        let events = &events;
        let work = self
            .projections
            .iter()
            .zip(txs)
            .map(|(projection, (mut tx, at))| async move {
                let start = events.partition_point(|e| e.position <= at);
                if start == events.len() {
                    return Ok(0);
                }
                let name = projection.name();
                let db_err = |source| ProjectionError::Database {
                    projection: name,
                    source,
                };
                projection.apply(&mut tx, &events[start..]).await?;
                set_checkpoint(&mut tx, name, last).await?;
                tx.commit().await.map_err(db_err)?;
                Ok::<u64, ProjectionError>((events.len() - start) as u64)
            });
        let applied: u64 = futures::future::try_join_all(work).await?.into_iter().sum();
        let span = tracing::Span::current();
        span.record("events", events.len());
        span.record("applied", applied);
        tracing::debug!(events = events.len(), applied, "projected batch");
        Ok((applied, events.len() as u64, next))
    }

    /// SQLite has one writer at a time: every projection in one transaction, in turn.
    async fn run_batch_single_writer(&self) -> Result<(u64, u64), ProjectionError> {
        let db_err = |source| ProjectionError::Database {
            projection: "projector",
            source,
        };
        let mut tx = self.db.begin().await.map_err(db_err)?;
        let mut positions = Vec::with_capacity(self.projections.len());
        for p in &self.projections {
            positions.push(lock_checkpoint(&mut tx, p.name()).await.map_err(db_err)?);
        }
        let Some(from) = positions.iter().min().copied() else {
            return Ok((0, 0));
        };
        let events = log::read_after(&mut tx, from, self.batch_size).await?;
        let Some(last) = events.last().map(|e| e.position) else {
            return Ok((0, 0));
        };
        let mut applied = 0;
        for (projection, at) in self.projections.iter().zip(positions) {
            let start = events.partition_point(|e| e.position <= at);
            if start == events.len() {
                continue;
            }
            projection.apply(&mut tx, &events[start..]).await?;
            set_checkpoint(&mut tx, projection.name(), last).await?;
            applied += (events.len() - start) as u64;
        }
        tx.commit().await.map_err(db_err)?;
        Ok((applied, events.len() as u64))
    }

    /// Catches up whenever nudged, and at least every `interval` (for events written by
    /// other instances), until the task is dropped.
    pub async fn run_forever(self: Arc<Self>, interval: Duration) {
        loop {
            let applied = match self.catch_up().await {
                Ok(n) => n,
                Err(err) => {
                    tracing::error!(error = %err, "projection catch-up failed; retrying");
                    0
                }
            };
            if tokio::time::timeout(interval, self.wake.notified())
                .await
                .is_ok()
            {
                // Let the commands of the next few milliseconds join this batch: under
                // load one batch then carries many events instead of one each.
                let wait = if applied >= BUSY {
                    COALESCE_BUSY
                } else {
                    COALESCE
                };
                tokio::time::sleep(wait).await;
            }
        }
    }
}

async fn set_checkpoint(
    tx: &mut DbTx,
    name: &'static str,
    at: Position,
) -> Result<(), ProjectionError> {
    on_tx!(tx, c => sqlx::query(
        "UPDATE projection_checkpoints SET last_tx = $1, last_seq = $2, updated_at = CURRENT_TIMESTAMP WHERE name = $3")
        .bind(at.tx).bind(at.seq).bind(name).execute(c).await.map(|_| ()))
    .map_err(|source| ProjectionError::Database { projection: name, source })
}

/// Reads a batch in a short transaction of its own (for reading ahead, and so the
/// read does not hold up the projections' write transactions).
async fn read_in_own_tx(
    db: Db,
    from: Position,
    limit: i64,
) -> Result<Vec<StoredEvent>, crate::log::ReadError> {
    let mut tx = db.begin().await?;
    let events = log::read_after(&mut tx, from, limit).await?;
    tx.commit().await?;
    Ok(events)
}

/// Takes the checkpoint row's write lock (the first statement writes, so SQLite takes
/// its write lock at once and PostgreSQL locks the row) and reads the position.
async fn lock_checkpoint(tx: &mut DbTx, name: &str) -> Result<Position, sqlx::Error> {
    // A projection commit need not wait for its WAL flush: if the server crashes before
    // the flush, the rows and the checkpoint are lost together and the events are
    // applied again. This keeps projectors from competing with commands for fsyncs.
    if let DbTx::Postgres(t) = tx {
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut **t)
            .await?;
    }
    on_tx!(tx, c => {
        let row = sqlx::query(
            "INSERT INTO projection_checkpoints (name) VALUES ($1)
             ON CONFLICT (name) DO UPDATE SET last_tx = projection_checkpoints.last_tx
             RETURNING last_tx, last_seq")
            .bind(name)
            .fetch_one(&mut *c)
            .await?;
        Ok(Position { tx: row.try_get("last_tx")?, seq: row.try_get("last_seq")? })
    })
}
