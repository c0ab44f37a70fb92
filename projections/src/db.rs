//! One handle over the two supported stores. Queries are written once with `$N`
//! placeholders (sqlx binds them by number on SQLite too) and run on either backend
//! through [`on_db!`] / [`on_tx!`].

use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};

#[derive(Clone, Debug)]
pub enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

pub enum DbTx {
    Postgres(Transaction<'static, Postgres>),
    Sqlite(Transaction<'static, Sqlite>),
}

impl Db {
    pub fn backend(&self) -> &'static str {
        match self {
            Db::Postgres(_) => "postgres",
            Db::Sqlite(_) => "sqlite",
        }
    }

    pub async fn begin(&self) -> Result<DbTx, sqlx::Error> {
        Ok(match self {
            Db::Postgres(p) => DbTx::Postgres(p.begin().await?),
            Db::Sqlite(p) => DbTx::Sqlite(p.begin().await?),
        })
    }

    /// True when a trivial query answers. On SQLite the query reads the file (a
    /// `SELECT 1` would answer without it, locked or gone).
    pub async fn ping(&self) -> bool {
        match self {
            Db::Postgres(p) => sqlx::query("SELECT 1").execute(p).await.is_ok(),
            Db::Sqlite(p) => sqlx::query("SELECT count(*) FROM sqlite_master")
                .execute(p)
                .await
                .is_ok(),
        }
    }
}

impl DbTx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            DbTx::Postgres(t) => t.commit().await,
            DbTx::Sqlite(t) => t.commit().await,
        }
    }

    /// Rolls back now (a failed statement, a failed COPY included, leaves the
    /// connection clean for the pool: the server has answered the failure and the
    /// transaction ends here, not on some later checkout).
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self {
            DbTx::Postgres(t) => t.rollback().await,
            DbTx::Sqlite(t) => t.rollback().await,
        }
    }
}

/// Runs `$body` with `$pool` bound to the concrete pool of either backend.
#[macro_export]
macro_rules! on_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Postgres($pool) => $body,
            $crate::db::Db::Sqlite($pool) => $body,
        }
    };
}

/// Runs `$body` with `$conn` bound to the concrete connection of an open transaction.
#[macro_export]
macro_rules! on_tx {
    ($tx:expr, $conn:ident => $body:expr) => {
        match $tx {
            $crate::db::DbTx::Postgres(t) => {
                let $conn = &mut **t;
                $body
            }
            $crate::db::DbTx::Sqlite(t) => {
                let $conn = &mut **t;
                $body
            }
        }
    };
}

/// A value bound to a `$N` placeholder of a query built at run time.
#[derive(Debug, Clone)]
pub enum Bind {
    Text(String),
    Int(i64),
    Time(chrono::DateTime<chrono::Utc>),
}

/// A `WHERE` clause built from optional filters, with its binds numbered in order.
#[derive(Debug, Default)]
pub struct Where {
    clauses: Vec<String>,
    binds: Vec<Bind>,
}

impl Where {
    /// Adds `clause`, whose one `?` stands for `bind`.
    pub fn push(&mut self, clause: &str, bind: Bind) {
        self.binds.push(bind);
        self.clauses
            .push(clause.replace('?', &format!("${}", self.binds.len())));
    }

    /// `column IN (…)` over `values`.
    pub fn any_of(&mut self, column: &str, values: &[String]) {
        let mut placeholders = Vec::new();
        for v in values {
            self.binds.push(Bind::Text(v.clone()));
            placeholders.push(format!("${}", self.binds.len()));
        }
        self.clauses
            .push(format!("{column} IN ({})", placeholders.join(",")));
    }

    /// Restricts to the workspaces a caller may see.
    pub fn workspaces(&mut self, scope: &WorkspaceScope) {
        match scope {
            WorkspaceScope::All => {}
            WorkspaceScope::One(ws) => self.push("workspace_id = ?", Bind::Text(ws.clone())),
            WorkspaceScope::Any(list) => self.any_of("workspace_id", list),
        }
    }

    /// The clause alone.
    pub fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        }
    }

    /// The clause, and a placeholder for one more bind (the page size).
    pub fn sql_with_limit(&mut self, limit: i64) -> (String, String) {
        self.binds.push(Bind::Int(limit));
        let clause = if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        };
        (clause, format!("${}", self.binds.len()))
    }

    pub fn binds(self) -> Vec<Bind> {
        self.binds
    }
}

/// Which workspaces a support query covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum WorkspaceScope {
    /// Platform staff.
    #[default]
    All,
    One(String),
    /// The workspaces a token names.
    Any(Vec<String>),
}

/// Binds every value of `binds` to `query`, on either backend.
#[macro_export]
macro_rules! bind_all {
    ($query:expr, $binds:expr) => {{
        let mut q = $query;
        for b in $binds {
            q = match b {
                $crate::db::Bind::Text(s) => q.bind(s),
                $crate::db::Bind::Int(i) => q.bind(i),
                $crate::db::Bind::Time(t) => q.bind(t),
            };
        }
        q
    }};
}

/// The store did not answer: a lost or refused connection, the pool exhausted or
/// closed, a connection cut mid-message, PostgreSQL shutting down or restarting
/// (SQLSTATE class 08, 57P0x), or the SQLite file locked by another process past the
/// busy timeout, unreadable, gone or full. Answered 503 `store_unavailable`, never 500.
pub fn unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) if d.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() => {
            d.code()
                .and_then(|c| c.parse::<i32>().ok())
                .is_some_and(|c| {
                    // The primary result code is the extended code's low byte.
                    matches!(
                        c & 0xff,
                        SQLITE_BUSY
                            | SQLITE_READONLY
                            | SQLITE_IOERR
                            | SQLITE_FULL
                            | SQLITE_CANTOPEN
                            | SQLITE_PROTOCOL
                    )
                })
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}

// SQLite's primary result codes (sqlite3.h) that mean "the file does not answer".
const SQLITE_BUSY: i32 = 5;
const SQLITE_READONLY: i32 = 8;
const SQLITE_IOERR: i32 = 10;
const SQLITE_FULL: i32 = 13;
const SQLITE_CANTOPEN: i32 = 14;
const SQLITE_PROTOCOL: i32 = 15;
