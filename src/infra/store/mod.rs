//! The event store on either backend: pools, migrations, and command execution.

pub mod billing_customers;
mod lite_events;
pub mod location_keys;
pub mod ocpi_connection_ids;
mod pg_events;
mod snapshots;

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};
use tracing::Instrument;

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::EventStoreAggregateContext;
use cqrs_es::persist::{PersistedEventStore, PersistenceError};
use cqrs_es::{Aggregate, AggregateError, EventStore};
use roampay_projections::Db;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// Opens the store named by `database_url` (`postgres://…` or `sqlite:…`), or the
/// SQLite file `roampay.db` under `data_dir` when none is given.
pub async fn connect(database_url: Option<&str>, data_dir: &Path) -> Result<Db, sqlx::Error> {
    connect_with(database_url, data_dir, DEFAULT_ACQUIRE_TIMEOUT).await
}

/// How long a request waits for a connection from the pool before the store counts as
/// not answering (503 `store_unavailable`).
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where `database_url` points, for messages: PostgreSQL's host, port and database
/// (never the password), or the SQLite file.
pub fn describe(database_url: Option<&str>, data_dir: &Path) -> String {
    match database_url.filter(|u| !u.is_empty()) {
        Some(url) if url.starts_with("postgres:") || url.starts_with("postgresql:") => {
            match sqlx::postgres::PgConnectOptions::from_str(url) {
                Ok(o) => format!(
                    "PostgreSQL at {}:{} (database {})",
                    o.get_host(),
                    o.get_port(),
                    o.get_database().unwrap_or("postgres")
                ),
                Err(_) => "a PostgreSQL URL that does not parse".to_string(),
            }
        }
        Some(url) => format!(
            "SQLite {}",
            url.trim_start_matches("sqlite:").trim_start_matches("//")
        ),
        None => format!("SQLite {}", data_dir.join("roampay.db").display()),
    }
}

/// `DATABASE_URL` names a store roampay can open: `postgres:`/`postgresql:`, `sqlite:`,
/// or a path ending in `.db` (unset: the SQLite file in the data directory).
pub fn check_database_url(database_url: Option<&str>) -> Result<(), String> {
    let Some(url) = database_url.filter(|u| !u.is_empty()) else {
        return Ok(());
    };
    let known = ["postgres:", "postgresql:", "sqlite:"];
    if known.iter().any(|p| url.starts_with(p)) || url.ends_with(".db") {
        return Ok(());
    }
    // The scheme only: the rest may hold a password.
    let shown = match url.split_once("://") {
        Some((scheme, _)) => format!("a `{scheme}://` URL"),
        None => format!(
            "`{}`",
            url.rsplit('@')
                .next()
                .unwrap_or_default()
                .chars()
                .take(64)
                .collect::<String>()
        ),
    };
    Err(format!(
        "DATABASE_URL: expected postgres://…, postgresql://…, sqlite:… or a path ending in .db, got {shown}"
    ))
}

/// [`connect`], waiting at most `acquire_timeout` for a pooled connection.
pub async fn connect_with(
    database_url: Option<&str>,
    data_dir: &Path,
    acquire_timeout: Duration,
) -> Result<Db, sqlx::Error> {
    match database_url.filter(|u| !u.is_empty()) {
        Some(url) if url.starts_with("postgres:") || url.starts_with("postgresql:") => {
            // No ping before each checkout (a round trip per statement on the hot
            // path): a connection that died while idle fails one statement and is
            // dropped, and `execute` retries a command whose connection failed.
            let pool = PgPoolOptions::new()
                .max_connections(32)
                .acquire_timeout(acquire_timeout)
                .test_before_acquire(false)
                .idle_timeout(Duration::from_secs(60))
                .connect(url)
                .await?;
            Ok(Db::Postgres(pool))
        }
        other => {
            let url = match other {
                Some(u) => u.to_string(),
                None => {
                    crate::config::create_private_dir(data_dir).map_err(sqlx::Error::Io)?;
                    format!("sqlite://{}", data_dir.join("roampay.db").display())
                }
            };
            // Our own pool (sqlite-es's default panics on error): WAL for concurrent
            // readers, FULL sync so a committed event survives power loss, and a busy
            // timeout so writers queue instead of failing.
            let options = SqliteConnectOptions::from_str(&url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10))
                // Deleted content is overwritten with zeros (a purged workspace's keys
                // leave no bytes behind: `vault::shred`).
                .pragma("secure_delete", "on")
                .foreign_keys(true);
            create_private(options.get_filename()).map_err(sqlx::Error::Io)?;
            let pool = SqlitePoolOptions::new()
                .max_connections(8)
                .acquire_timeout(acquire_timeout)
                .connect_with(options)
                .await?;
            Ok(Db::Sqlite(pool))
        }
    }
}

/// Creates the SQLite file readable by its owner only (it holds the event log and the
/// encrypted vault); SQLite gives its `-wal` and `-shm` files the same mode. An
/// existing file keeps its mode.
fn create_private(file: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if file.as_os_str().is_empty() || file == Path::new(":memory:") {
        return Ok(());
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
    {
        Ok(_) => {
            tracing::info!(path = %file.display(), "created the SQLite database (mode 0600)");
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

pub use roampay_projections::db::unreachable;

/// The event repositories' errors as ours: the crates count only I/O and TLS failures
/// as connection errors; a pool that timed out, a server shutting down or a locked
/// SQLite file is the store not answering too.
fn reclassify(e: PersistenceError) -> PersistenceError {
    match e {
        PersistenceError::UnknownError(inner)
            if inner.downcast_ref::<sqlx::Error>().is_some_and(unreachable) =>
        {
            PersistenceError::ConnectionError(inner)
        }
        other => other,
    }
}

/// Applies the project's forward-only migrations for the backend.
pub async fn migrate(db: &Db) -> Result<(), sqlx::migrate::MigrateError> {
    match db {
        Db::Postgres(p) => sqlx::migrate!("./migrations/postgres").run(p).await,
        Db::Sqlite(p) => sqlx::migrate!("./migrations/sqlite").run(p).await,
    }
}

/// The ids of every aggregate of type `A` that has events (for rare sweeps over all
/// of them, such as a workspace's purge).
pub async fn aggregate_ids<A: Aggregate>(db: &Db) -> Result<Vec<String>, sqlx::Error> {
    roampay_projections::on_db!(db, pool => {
        sqlx::query_scalar("SELECT DISTINCT aggregate_id FROM events WHERE aggregate_type = $1")
            .bind(A::TYPE)
            .fetch_all(pool)
            .await
    })
}

/// The error of an aggregate whose commands are never refused (records of facts).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreachable")]
pub struct Never;

/// Who did it, on which request, when: stored next to every event.
#[derive(Debug, Clone)]
pub struct Metadata {
    pub actor: String,
    pub request_id: String,
}

impl Metadata {
    fn to_map(&self) -> HashMap<String, String> {
        HashMap::from([
            ("actor".to_string(), self.actor.clone()),
            ("request_id".to_string(), self.request_id.clone()),
            (
                "recorded_at".to_string(),
                chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            ),
        ])
    }
}

type PgStore<A> = PersistedEventStore<pg_events::PgEventRepository, A>;
type LiteStore<A> = PersistedEventStore<lite_events::LiteEventRepository, A>;

enum Backend<A: Aggregate> {
    Postgres(PgStore<A>),
    Sqlite(LiteStore<A>),
}

/// A committed state of one aggregate as this instance last saw it.
#[derive(Clone)]
struct Known<A> {
    at: Instant,
    sequence: usize,
    state: A,
}

/// Command execution and state loading for one aggregate type, on either backend.
/// (cqrs-es's `CqrsFramework` does the same load–handle–commit, but returns nothing:
/// answering with the new state would cost another load.)
///
/// The last committed state this instance saw of each aggregate is kept (bounded) and
/// a command starts from it instead of reading the stream again. That is safe because
/// the store only accepts events at the next sequence: if another instance wrote in
/// the meantime the commit conflicts, and the command is decided again on a fresh load.
/// A command that a remembered state refuses, or that changes nothing, is likewise
/// decided again on a fresh load before the answer is given.
pub struct Aggregates<A: Aggregate> {
    store: Backend<A>,
    services: A::Services,
    known: std::sync::Mutex<Remembered<A>>,
    memory: Memory,
    db: Db,
    /// A snapshot every this many events (for streams that grow for years).
    snapshot_every: Option<usize>,
    /// Called after every commit that stored events (the read side's nudge).
    on_commit: Option<OnCommit>,
}

/// How much an instance remembers of each aggregate type.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// At most this many states; past it the older half is forgotten.
    pub capacity: usize,
    /// A state not touched for this long is forgotten (the service uses the
    /// pending-payment timeout: until then a webhook for a new intent may still come).
    pub idle: Duration,
}

struct Remembered<A> {
    states: HashMap<String, Known<A>>,
    /// When states idle too long were last swept out.
    swept: Instant,
}

/// What runs after a commit: one place instead of a call after every command.
pub type OnCommit = std::sync::Arc<dyn Fn() + Send + Sync>;

/// How stale a state `load_recent` may answer with. Credential changes must reach the
/// payment path within a second (the spec asks for a minute); this instance's own
/// changes reach it at once.
pub const RECENT: Duration = Duration::from_millis(500);

/// A lost optimistic-concurrency race is retried this many times (reload, decide again).
const CONFLICT_RETRIES: usize = 5;

macro_rules! with_store {
    ($self:expr, $store:ident => $body:expr) => {
        match &$self.store {
            Backend::Postgres($store) => $body,
            Backend::Sqlite($store) => $body,
        }
    };
}

impl<A> Aggregates<A>
where
    A: Aggregate + Clone,
    A::Command: Clone,
{
    /// `memory`: how many aggregates' last states to keep (at least 2), and how long.
    pub fn new(db: &Db, services: A::Services, memory: Memory) -> Self {
        // Projections catch up from the log; no in-process query dispatch.
        let store = match db {
            Db::Postgres(p) => Backend::Postgres(PersistedEventStore::new_event_store(
                pg_events::PgEventRepository::new(p.clone()),
            )),
            Db::Sqlite(p) => Backend::Sqlite(PersistedEventStore::new_event_store(
                lite_events::LiteEventRepository::new(p.clone()),
            )),
        };
        Self {
            store,
            services,
            known: std::sync::Mutex::new(Remembered {
                states: HashMap::new(),
                swept: Instant::now(),
            }),
            memory: Memory {
                capacity: memory.capacity.max(2),
                idle: memory.idle,
            },
            db: db.clone(),
            snapshot_every: None,
            on_commit: None,
        }
    }

    /// Loads start from a snapshot taken every `events` events (see `snapshots`).
    pub fn snapshot_every(mut self, events: usize) -> Self {
        self.snapshot_every = Some(events.max(1));
        self
    }

    /// Runs `hook` after every commit that stored events.
    pub fn on_commit(mut self, hook: OnCommit) -> Self {
        self.on_commit = Some(hook);
        self
    }

    /// Runs a command and returns the aggregate's state after it. A lost concurrency
    /// race reloads and decides again, so a duplicate becomes a no-op (or the refusal
    /// the aggregate gives a duplicate).
    pub async fn execute(
        &self,
        id: &str,
        command: A::Command,
        meta: &Metadata,
    ) -> Result<A, AggregateError<A::Error>> {
        let span = tracing::info_span!(
            "command",
            otel.name = %format!("command {}", A::TYPE),
            aggregate.type = A::TYPE,
            aggregate.id = %id,
            outcome = tracing::field::Empty,
        );
        let result = self
            .decide_and_commit(id, command, meta)
            .instrument(span.clone())
            .await;
        span.record(
            "outcome",
            match &result {
                Ok(_) => "ok",
                Err(AggregateError::UserError(_)) => "refused",
                Err(_) => "error",
            },
        );
        result
    }

    async fn decide_and_commit(
        &self,
        id: &str,
        command: A::Command,
        meta: &Metadata,
    ) -> Result<A, AggregateError<A::Error>> {
        let mut remembered = self.remembered(id);
        let mut attempt = 0;
        loop {
            let from_memory = remembered.is_some();
            let mut context = match remembered.take() {
                Some(k) => EventStoreAggregateContext {
                    aggregate_id: id.to_string(),
                    aggregate: k.state,
                    current_sequence: k.sequence,
                    current_snapshot: None,
                },
                None => match self.load_context(id).await {
                    Ok(c) => c,
                    Err(e) if self.retries_lost_connection(&e) && attempt < CONFLICT_RETRIES => {
                        attempt += 1;
                        continue;
                    }
                    Err(e) => return Err(e),
                },
            };
            let sink = EventSink::<A>::default();
            let decided = context
                .aggregate
                .handle(command.clone(), &self.services, &sink)
                .await;
            let events = sink.collect().await;
            if from_memory && (decided.is_err() || events.is_empty()) {
                continue; // a refusal or a no-op is only given on a fresh load
            }
            decided.map_err(AggregateError::UserError)?;
            if events.is_empty() {
                self.remember(id, context.current_sequence, &context.aggregate);
                return Ok(context.aggregate);
            }
            // The sink has applied the events to the aggregate already.
            let state = context.aggregate.clone();
            let before = context.current_sequence;
            let sequence = before + events.len();
            let committed =
                with_store!(self, store => store.commit(events, context, meta.to_map()).await);
            match committed {
                Ok(_) => {
                    self.remember(id, sequence, &state);
                    self.snapshot_if_due(id, before, sequence, &state).await;
                    if let Some(hook) = &self.on_commit {
                        hook();
                    }
                    return Ok(state);
                }
                // Lost a race (or a remembered state was behind): decide again on a
                // fresh load. A connection that failed mid-commit may or may not have
                // committed: the fresh load tells, and the aggregate refuses a repeat.
                Err(e)
                    if (matches!(e, AggregateError::AggregateConflict)
                        || self.retries_lost_connection(&e))
                        && attempt < CONFLICT_RETRIES =>
                {
                    attempt += 1;
                    self.forget(id);
                }
                Err(e) => {
                    self.forget(id);
                    return Err(e);
                }
            }
        }
    }

    /// The state as seen within the last [`RECENT`], else freshly loaded: for hot,
    /// read-only paths (pre-authorization, webhooks) where a few hundred milliseconds
    /// of staleness is acceptable. Never for read-your-writes views or decisions.
    pub async fn load_recent(&self, id: &str) -> Result<A, AggregateError<A::Error>> {
        if let Some(k) = self.remembered(id).filter(|k| k.at.elapsed() < RECENT) {
            return Ok(k.state);
        }
        self.load(id).await
    }

    /// The current state, folded from the aggregate's events.
    pub async fn load(&self, id: &str) -> Result<A, AggregateError<A::Error>> {
        Ok(self.load_context(id).await?.aggregate)
    }

    async fn load_context(
        &self,
        id: &str,
    ) -> Result<EventStoreAggregateContext<A>, AggregateError<A::Error>> {
        let snapshot = match self.snapshot_every {
            Some(_) => self.load_from_snapshot(id).await,
            None => None,
        };
        let (context, base) = match snapshot {
            Some(found) => found,
            None => (
                with_store!(self, store => store.load_aggregate(id).await?),
                0,
            ),
        };
        // A long stream read past its last snapshot (or written before snapshots) gets one.
        self.snapshot_if_due(id, base, context.current_sequence, &context.aggregate)
            .await;
        self.remember(id, context.current_sequence, &context.aggregate);
        Ok(context)
    }

    /// The latest snapshot and the events after it, with the snapshot's sequence; `None`
    /// when there is no snapshot or it cannot be read (the whole stream is read instead,
    /// which reports store errors).
    async fn load_from_snapshot(&self, id: &str) -> Option<(EventStoreAggregateContext<A>, usize)> {
        let (base, mut state) = snapshots::latest::<A>(&self.db, id).await.ok()??;
        let mut sequence = base;
        for (s, event) in snapshots::events_after::<A>(&self.db, id, sequence)
            .await
            .ok()?
        {
            state.apply(event);
            sequence = s;
        }
        let context = EventStoreAggregateContext {
            aggregate_id: id.to_string(),
            aggregate: state,
            current_sequence: sequence,
            current_snapshot: None,
        };
        Some((context, base))
    }

    /// Writes a snapshot when the events from `before` to `after` crossed a multiple of
    /// the interval, or were as many as it. A failure is only logged: the log stays the
    /// truth.
    async fn snapshot_if_due(&self, id: &str, before: usize, after: usize, state: &A) {
        let Some(every) = self.snapshot_every else {
            return;
        };
        if after / every == before / every && after - before < every {
            return;
        }
        if let Err(e) = snapshots::write(&self.db, id, after, state).await {
            tracing::warn!(aggregate.type = A::TYPE, aggregate.id = %id, error = %e, "a snapshot was not written");
        }
    }

    fn remembered(&self, id: &str) -> Option<Known<A>> {
        self.known
            .lock()
            .expect("known states")
            .states
            .get(id)
            .cloned()
    }

    /// Keeps `state` unless a later one is already known (a load that started before
    /// a commit of this instance must not bring back the older state).
    fn remember(&self, id: &str, sequence: usize, state: &A) {
        let mut guard = self.known.lock().expect("known states");
        let Remembered { states, swept } = &mut *guard;
        if states.get(id).is_some_and(|k| k.sequence > sequence) {
            return;
        }
        // Idle states go every quarter of the idle time (one pass over the map).
        if swept.elapsed() >= self.memory.idle / 4 {
            let idle = self.memory.idle;
            states.retain(|_, k| k.at.elapsed() < idle);
            *swept = Instant::now();
        }
        if states.len() >= self.memory.capacity {
            let mut ages: Vec<Instant> = states.values().map(|k| k.at).collect();
            let (_, median, _) = ages.select_nth_unstable(self.memory.capacity / 2);
            let cutoff = *median;
            states.retain(|_, k| k.at > cutoff);
        }
        states.insert(
            id.to_string(),
            Known {
                at: Instant::now(),
                sequence,
                state: state.clone(),
            },
        );
    }

    fn forget(&self, id: &str) {
        self.known.lock().expect("known states").states.remove(id);
    }
}

impl<A: Aggregate> Aggregates<A> {
    /// A PostgreSQL connection that died while idle fails one statement: worth another
    /// at once. An SQLite file that does not answer has already waited its busy
    /// timeout; asking again would only multiply the client's wait.
    fn retries_lost_connection(&self, e: &AggregateError<A::Error>) -> bool {
        matches!(self.store, Backend::Postgres(_)) && is_connection(e)
    }
}

fn is_connection<E: std::error::Error>(e: &AggregateError<E>) -> bool {
    matches!(e, AggregateError::DatabaseConnectionError(_))
}

#[cfg(test)]
mod file_mode {
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn the_default_sqlite_store_is_readable_by_its_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let db = super::connect(None, dir.path()).await.unwrap();
        super::migrate(&db).await.unwrap();
        for name in ["roampay.db", "roampay.db-wal", "roampay.db-shm"] {
            let mode = std::fs::metadata(dir.path().join(name))
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
    }
}
