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

impl ProjectionError {
    /// The store did not answer: try the batch again later, set nothing aside.
    pub fn is_connection(&self) -> bool {
        match self {
            Self::Database { source, .. } => crate::db::unreachable(source),
            Self::Log(crate::log::ReadError::Database(e)) => crate::db::unreachable(e),
            Self::Prefetch(_) => true,
            Self::Unknown(_) => false,
        }
    }
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
    /// Whether it reads events of this aggregate type (a poison event of a type it
    /// ignores is not its dead letter).
    fn takes(&self, _aggregate_type: &str) -> bool {
        true
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
/// (100 ms shared the cost best, but then a read model showed a change 80–250 ms after
/// its commit at half the service's top rate; issue 16 asks p99 ≤ 100 ms.)
const COALESCE_BUSY: Duration = Duration::from_millis(30);
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
    /// Told the projection's name whenever an event is set aside.
    on_dead_letter: std::sync::OnceLock<DeadLetterHook>,
    /// Told, for every event applied, its projection and how long after its commit it
    /// became visible there.
    on_visible: std::sync::OnceLock<VisibleHook>,
}

/// What runs when an event is set aside (the service counts it).
pub type DeadLetterHook = Box<dyn Fn(&'static str) + Send + Sync>;

/// What runs for each event a projection made visible: its name and the seconds since
/// the event was recorded (the service keeps a histogram).
pub type VisibleHook = Box<dyn Fn(&'static str, f64) + Send + Sync>;

/// An event a projection could not apply is tried this many times, alone, before it
/// is set aside.
const ATTEMPTS: u32 = 3;

impl Projector {
    pub fn new(db: Db, projections: Vec<Box<dyn Projection>>, batch_size: i64) -> Arc<Self> {
        Arc::new(Self {
            db,
            projections,
            batch_size,
            running: Mutex::new(()),
            wake: Notify::new(),
            on_dead_letter: std::sync::OnceLock::new(),
            on_visible: std::sync::OnceLock::new(),
        })
    }

    /// Runs `hook` with the projection's name for every event set aside.
    pub fn on_dead_letter(&self, hook: DeadLetterHook) {
        let _ = self.on_dead_letter.set(hook);
    }

    /// Runs `hook` for every event applied by a live catch-up (not by the isolation of
    /// a failing batch).
    pub fn on_visible(&self, hook: VisibleHook) {
        let _ = self.on_visible.set(hook);
    }

    fn visible(&self, projection: &'static str, events: &[StoredEvent]) {
        let Some(hook) = self.on_visible.get() else {
            return;
        };
        let now = chrono::Utc::now();
        for at in events.iter().filter_map(|e| e.metadata.recorded_at) {
            hook(
                projection,
                (now - at).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6,
            );
        }
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

    /// Tries the dead letters (of one projection, or all) again, each alone: one that
    /// applies now is removed from the list. Returns (applied, still set aside). An
    /// event applied this late comes after newer ones; `replay` of the projection is
    /// the thorough repair.
    pub async fn retry_dead_letters(
        &self,
        name: Option<&str>,
    ) -> Result<(usize, usize), ProjectionError> {
        let db_err = |source| ProjectionError::Database {
            projection: "dead letters",
            source,
        };
        let letters = crate::dead_letters::list(&self.db, name)
            .await
            .map_err(db_err)?;
        let _guard = self.running.lock().await;
        let (mut applied, mut still) = (0, 0);
        for d in letters {
            let Some(projection) = self.projections.iter().find(|p| p.name() == d.projection)
            else {
                still += 1;
                continue;
            };
            let mut tx = self.db.begin().await.map_err(db_err)?;
            lock_checkpoint(&mut tx, projection.name())
                .await
                .map_err(db_err)?;
            let at = Position {
                tx: d.tx,
                seq: d.seq,
            };
            let before = Position {
                tx: d.tx,
                seq: d.seq - 1,
            };
            let event = log::read_after(&mut tx, before, 1)
                .await?
                .into_iter()
                .find(|e| e.position == at && e.poison.is_none());
            let done = match event {
                Some(e) => projection.apply(&mut tx, std::slice::from_ref(&e)).await,
                None => Err(ProjectionError::Unknown(format!(
                    "event {} is still poison",
                    d.seq
                ))),
            };
            match done {
                Ok(()) => {
                    crate::dead_letters::remove(&mut tx, &d)
                        .await
                        .map_err(db_err)?;
                    tx.commit().await.map_err(db_err)?;
                    applied += 1;
                }
                Err(e) => {
                    tracing::warn!(projection = projection.name(), seq = d.seq, error = %e, "a dead letter still does not apply");
                    let _ = tx.rollback().await;
                    still += 1;
                }
            }
        }
        Ok((applied, still))
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
                match self.apply_batch(projection.as_ref(), &mut tx, &events[start..]).await {
                    Ok(()) => {
                        set_checkpoint(&mut tx, name, last).await?;
                        tx.commit().await.map_err(db_err)?;
                        self.visible(name, &events[start..]);
                    }
                    Err(e) if e.is_connection() => return Err(e),
                    Err(e) => {
                        // One event spoils the batch: find it, alone.
                        tracing::warn!(projection = name, error = %e, "a batch failed; applying its events one by one");
                        let _ = tx.rollback().await;
                        self.isolate(projection.as_ref(), &events[start..]).await?;
                    }
                }
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
        let mut failed = None;
        let mut made = Vec::with_capacity(self.projections.len());
        for (projection, at) in self.projections.iter().zip(&positions) {
            let start = events.partition_point(|e| e.position <= *at);
            if start == events.len() {
                continue;
            }
            let batch = &events[start..];
            if let Err(e) = self.apply_batch(projection.as_ref(), &mut tx, batch).await {
                failed = Some(e);
                break;
            }
            set_checkpoint(&mut tx, projection.name(), last).await?;
            applied += (events.len() - start) as u64;
            made.push((projection.name(), start));
        }
        match failed {
            None => {
                tx.commit().await.map_err(db_err)?;
                for (name, start) in made {
                    self.visible(name, &events[start..]);
                }
            }
            Some(e) if e.is_connection() => return Err(e),
            Some(e) => {
                tracing::warn!(error = %e, "a batch failed; applying its events one by one");
                let _ = tx.rollback().await;
                applied = 0;
                for projection in &self.projections {
                    applied += self.isolate(projection.as_ref(), &events).await?;
                }
            }
        }
        Ok((applied, events.len() as u64))
    }

    /// Applies a batch, setting aside (in the same transaction) the events that are
    /// poison for every projection.
    async fn apply_batch(
        &self,
        projection: &dyn Projection,
        tx: &mut DbTx,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        if events.iter().all(|e| e.poison.is_none()) {
            return projection.apply(tx, events).await;
        }
        let mut good = Vec::with_capacity(events.len());
        for e in events {
            match &e.poison {
                Some(why) if projection.takes(&e.aggregate_type) => {
                    self.set_aside(tx, projection.name(), e, why).await?
                }
                Some(_) => {}
                None => good.push(e.clone()),
            }
        }
        projection.apply(tx, &good).await
    }

    /// Applies events one at a time, each in its own transaction with the checkpoint;
    /// an event that fails `ATTEMPTS` times alone is set aside and the projection goes
    /// on. A store that does not answer stops it (nothing is set aside for that).
    async fn isolate(
        &self,
        projection: &dyn Projection,
        events: &[StoredEvent],
    ) -> Result<u64, ProjectionError> {
        let name = projection.name();
        let db_err = |source| ProjectionError::Database {
            projection: name,
            source,
        };
        let mut applied = 0;
        for event in events {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let mut tx = self.db.begin().await.map_err(db_err)?;
                let at = lock_checkpoint(&mut tx, name).await.map_err(db_err)?;
                if event.position <= at {
                    break;
                }
                let one = std::slice::from_ref(event);
                match self.apply_batch(projection, &mut tx, one).await {
                    Ok(()) => {
                        set_checkpoint(&mut tx, name, event.position).await?;
                        tx.commit().await.map_err(db_err)?;
                        applied += 1;
                        break;
                    }
                    Err(e) if e.is_connection() => return Err(e),
                    Err(e) if attempt < ATTEMPTS => {
                        let _ = tx.rollback().await;
                        tracing::warn!(projection = name, seq = event.position.seq, attempt, error = %e, "an event failed; trying again");
                        tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                    }
                    Err(e) => {
                        let _ = tx.rollback().await;
                        let mut tx = self.db.begin().await.map_err(db_err)?;
                        lock_checkpoint(&mut tx, name).await.map_err(db_err)?;
                        self.set_aside(&mut tx, name, event, &e.to_string()).await?;
                        set_checkpoint(&mut tx, name, event.position).await?;
                        tx.commit().await.map_err(db_err)?;
                        break;
                    }
                }
            }
        }
        Ok(applied)
    }

    /// Records `event` as a dead letter of `projection` (logged and counted).
    async fn set_aside(
        &self,
        tx: &mut DbTx,
        projection: &'static str,
        event: &StoredEvent,
        why: &str,
    ) -> Result<(), ProjectionError> {
        tracing::error!(
            projection,
            seq = event.position.seq,
            tx = event.position.tx,
            aggregate_type = %event.aggregate_type,
            event_type = %event.event_type,
            error = %why,
            "an event was set aside as a dead letter; the projection goes on"
        );
        crate::dead_letters::record(tx, projection, event, why)
            .await
            .map_err(|source| ProjectionError::Database { projection, source })?;
        if let Some(hook) = self.on_dead_letter.get() {
            hook(projection);
        }
        Ok(())
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
