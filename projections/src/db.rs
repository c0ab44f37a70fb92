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

    /// True when a trivial query answers.
    pub async fn ping(&self) -> bool {
        crate::on_db!(self, pool => sqlx::query("SELECT 1").execute(pool).await.is_ok())
    }
}

impl DbTx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            DbTx::Postgres(t) => t.commit().await,
            DbTx::Sqlite(t) => t.commit().await,
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
