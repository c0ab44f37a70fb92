//! The event store on either backend: pools, migrations, and command execution.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, AggregateContext, AggregateError, CqrsFramework, EventStore};
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

/// Command execution and state loading for one aggregate type, on either backend.
pub enum Aggregates<A: Aggregate> {
    Postgres {
        cqrs: CqrsFramework<A, PgStore<A>>,
        store: PgStore<A>,
    },
    Sqlite {
        cqrs: CqrsFramework<A, LiteStore<A>>,
        store: LiteStore<A>,
    },
}

/// A lost optimistic-concurrency race is retried this many times (reload, decide again).
const CONFLICT_RETRIES: usize = 5;

impl<A> Aggregates<A>
where
    A: Aggregate,
    A::Command: Clone,
{
    pub fn new(db: &Db, services: A::Services) -> Self {
        // Projections catch up from the log; no in-process query dispatch.
        match db {
            Db::Postgres(p) => Self::Postgres {
                cqrs: CqrsFramework::new(
                    PersistedEventStore::new_event_store(PostgresEventRepository::new(p.clone())),
                    vec![],
                    services,
                ),
                store: PersistedEventStore::new_event_store(PostgresEventRepository::new(
                    p.clone(),
                )),
            },
            Db::Sqlite(p) => Self::Sqlite {
                cqrs: CqrsFramework::new(
                    PersistedEventStore::new_event_store(SqliteEventRepository::new(p.clone())),
                    vec![],
                    services,
                ),
                store: PersistedEventStore::new_event_store(SqliteEventRepository::new(p.clone())),
            },
        }
    }

    /// Runs a command; a lost concurrency race reloads and decides again, so a
    /// duplicate becomes a no-op when the aggregate says so.
    pub async fn execute(
        &self,
        id: &str,
        command: A::Command,
        meta: &Metadata,
    ) -> Result<(), AggregateError<A::Error>> {
        let mut attempt = 0;
        loop {
            let result = match self {
                Self::Postgres { cqrs, .. } => {
                    cqrs.execute_with_metadata(id, command.clone(), meta.to_map())
                        .await
                }
                Self::Sqlite { cqrs, .. } => {
                    cqrs.execute_with_metadata(id, command.clone(), meta.to_map())
                        .await
                }
            };
            match result {
                Err(AggregateError::AggregateConflict) if attempt < CONFLICT_RETRIES => {
                    attempt += 1
                }
                other => return other,
            }
        }
    }

    /// The current state, folded from the aggregate's events.
    pub async fn load(&self, id: &str) -> Result<A, AggregateError<A::Error>> {
        Ok(match self {
            Self::Postgres { store, .. } => {
                std::mem::take(store.load_aggregate(id).await?.aggregate())
            }
            Self::Sqlite { store, .. } => {
                std::mem::take(store.load_aggregate(id).await?.aggregate())
            }
        })
    }
}
