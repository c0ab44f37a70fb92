//! The event store on either backend: pools, migrations, and command execution.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, AggregateContext, AggregateError, EventStore};
use postgres_es::PostgresEventRepository;
use roampay_projections::Db;
use sqlite_es::SqliteEventRepository;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// Opens the store named by `database_url` (`postgres://…` or `sqlite:…`), or the
/// SQLite file `roampay.db` under `data_dir` when none is given.
pub async fn connect(database_url: Option<&str>, data_dir: &Path) -> Result<Db, sqlx::Error> {
    match database_url.filter(|u| !u.is_empty()) {
        Some(url) if url.starts_with("postgres:") || url.starts_with("postgresql:") => {
            let pool = PgPoolOptions::new()
                .max_connections(32)
                .acquire_timeout(Duration::from_secs(5))
                .connect(url)
                .await?;
            Ok(Db::Postgres(pool))
        }
        other => {
            let url = match other {
                Some(u) => u.to_string(),
                None => {
                    std::fs::create_dir_all(data_dir).map_err(sqlx::Error::Io)?;
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
                .foreign_keys(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(8)
                .connect_with(options)
                .await?;
            Ok(Db::Sqlite(pool))
        }
    }
}

/// Applies the project's forward-only migrations for the backend.
pub async fn migrate(db: &Db) -> Result<(), sqlx::migrate::MigrateError> {
    match db {
        Db::Postgres(p) => sqlx::migrate!("./migrations/postgres").run(p).await,
        Db::Sqlite(p) => sqlx::migrate!("./migrations/sqlite").run(p).await,
    }
}

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

type PgStore<A> = PersistedEventStore<PostgresEventRepository, A>;
type LiteStore<A> = PersistedEventStore<SqliteEventRepository, A>;

enum Backend<A: Aggregate> {
    Postgres(PgStore<A>),
    Sqlite(LiteStore<A>),
}

/// Command execution and state loading for one aggregate type, on either backend.
/// (cqrs-es's `CqrsFramework` does the same load–handle–commit, but returns nothing:
/// answering with the new state would cost another load.)
pub struct Aggregates<A: Aggregate> {
    store: Backend<A>,
    services: A::Services,
    /// Recently loaded states for the payment path (see `load_recent`).
    recent: std::sync::Mutex<HashMap<String, (std::time::Instant, A)>>,
}

/// How stale a state `load_recent` may answer with. Credential changes must reach the
/// payment path within a second (the spec asks for a minute); this instance's own
/// changes reach it at once.
pub const RECENT: std::time::Duration = std::time::Duration::from_millis(500);

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
    pub fn new(db: &Db, services: A::Services) -> Self {
        // Projections catch up from the log; no in-process query dispatch.
        let store = match db {
            Db::Postgres(p) => Backend::Postgres(PersistedEventStore::new_event_store(
                PostgresEventRepository::new(p.clone()),
            )),
            Db::Sqlite(p) => Backend::Sqlite(PersistedEventStore::new_event_store(
                SqliteEventRepository::new(p.clone()),
            )),
        };
        Self {
            store,
            services,
            recent: std::sync::Mutex::new(HashMap::new()),
        }
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
        let mut attempt = 0;
        loop {
            let result = with_store!(self, store => {
                let mut context = store.load_aggregate(id).await?;
                let sink = EventSink::<A>::default();
                context.aggregate().handle(command.clone(), &self.services, &sink).await.map_err(AggregateError::UserError)?;
                let state = context.aggregate().clone();
                let events = sink.collect().await;
                if events.is_empty() {
                    Ok(state)
                } else {
                    store.commit(events, context, meta.to_map()).await.map(|_| state)
                }
            });
            match result {
                Err(AggregateError::AggregateConflict) if attempt < CONFLICT_RETRIES => {
                    attempt += 1
                }
                other => {
                    // Whatever this instance changed, its payment path sees at once.
                    self.recent.lock().expect("recent states").remove(id);
                    return other;
                }
            }
        }
    }

    /// The state as loaded within the last [`RECENT`], else freshly loaded: for hot,
    /// read-only paths (pre-authorization, webhooks) where a few hundred milliseconds
    /// of staleness is acceptable. Never for read-your-writes views or decisions.
    pub async fn load_recent(&self, id: &str) -> Result<A, AggregateError<A::Error>> {
        if let Some((at, state)) = self.recent.lock().expect("recent states").get(id) {
            if at.elapsed() < RECENT {
                return Ok(state.clone());
            }
        }
        let state = self.load(id).await?;
        let mut recent = self.recent.lock().expect("recent states");
        if recent.len() > 10_000 {
            recent.clear();
        }
        recent.insert(id.to_string(), (std::time::Instant::now(), state.clone()));
        Ok(state)
    }

    /// The current state, folded from the aggregate's events.
    pub async fn load(&self, id: &str) -> Result<A, AggregateError<A::Error>> {
        with_store!(self, store => Ok(std::mem::take(store.load_aggregate(id).await?.aggregate())))
    }
}
