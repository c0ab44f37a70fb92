//! `webhook_deliveries`: every webhook delivery and what became of it. Written by the
//! service as deliveries are answered (in batches), read by support, pruned by age. Not
//! a projection of the event log: a replay leaves it alone.

use chrono::{DateTime, Utc};

use crate::db::{Bind, Db, Where, WorkspaceScope};
use crate::{bind_all, on_db};

/// One delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// A UUIDv7: ordered by arrival.
    pub id: String,
    pub received_at: DateTime<Utc>,
    /// `workspace`, `shared`, `connect`, `billing`.
    pub endpoint: String,
    pub workspace_id: Option<String>,
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    /// `applied`, `duplicate`, `ignored`, `refused`.
    pub outcome: String,
    pub code: Option<String>,
    pub request_id: String,
    /// The verified event as received (`None` for an unverified delivery).
    pub payload: Option<String>,
}

const COLUMNS: &str = "id, received_at, endpoint, workspace_id, event_id, event_type, outcome, code, request_id, payload";

/// Where the log lives: PostgreSQL's own table (`migrations/postgres`), or on SQLite a
/// file of its own beside the store's (`roampay.db` → `roampay-deliveries.db`): SQLite
/// has one writer at a time, and the log's writes must not make the event log's and the
/// projections' wait.
pub async fn open(db: &Db) -> Result<Db, sqlx::Error> {
    use sqlx::sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
    };
    let Db::Sqlite(pool) = db else {
        return Ok(db.clone());
    };
    let main = pool.connect_options();
    let file = main.get_filename();
    let in_memory = file.as_os_str().is_empty() || file == std::path::Path::new(":memory:");
    let options = if in_memory {
        SqliteConnectOptions::new().in_memory(true)
    } else {
        let stem = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("roampay");
        let path = file.with_file_name(format!("{stem}-deliveries.db"));
        create_private(&path).map_err(sqlx::Error::Io)?;
        SqliteConnectOptions::new().filename(path)
    };
    // A log: a power cut may cost its last rows (WAL, synchronous NORMAL).
    let options = options
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(std::time::Duration::from_secs(10));
    let log = SqlitePoolOptions::new()
        .max_connections(if in_memory { 1 } else { 4 })
        .connect_with(options)
        .await?;
    for ddl in [
        "CREATE TABLE IF NOT EXISTS webhook_deliveries (
             id text PRIMARY KEY, received_at text NOT NULL, endpoint text NOT NULL,
             workspace_id text, event_id text, event_type text, outcome text NOT NULL,
             code text, request_id text NOT NULL, payload text)",
        "CREATE INDEX IF NOT EXISTS webhook_deliveries_workspace ON webhook_deliveries (workspace_id, id)",
        "CREATE INDEX IF NOT EXISTS webhook_deliveries_event ON webhook_deliveries (event_id)",
    ] {
        sqlx::query(ddl).execute(&log).await?;
    }
    Ok(Db::Sqlite(log))
}

/// Creates the file readable by its owner only (it holds webhook payloads), as the
/// store's own; an existing file keeps its mode.
fn create_private(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

/// Keys whose values a support person never needs and a leak must not hold: the
/// PaymentIntent's `client_secret` (whoever holds it can confirm the payment) is shown
/// `redacted`; the card's `fingerprint`, `billing_details` and `receipt_url` are left out.
const REDACTED: &str = "client_secret";
const LEFT_OUT: [&str; 3] = ["fingerprint", "billing_details", "receipt_url"];

/// The payload as kept: the event as received, scrubbed of [`REDACTED`] and
/// [`LEFT_OUT`] at any depth of the parsed JSON. A body that is not JSON is not kept
/// (it cannot be scrubbed, so nothing of it is stored).
pub fn scrubbed(payload: &str) -> Option<String> {
    fn scrub(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                map.retain(|k, _| !LEFT_OUT.contains(&k.as_str()));
                for (k, v) in map.iter_mut() {
                    if k == REDACTED && !v.is_null() {
                        *v = serde_json::Value::String("redacted".into());
                    } else {
                        scrub(v);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(scrub),
            _ => {}
        }
    }
    let mut v = serde_json::from_str::<serde_json::Value>(payload).ok()?;
    scrub(&mut v);
    Some(v.to_string())
}

/// Text PostgreSQL can store: a NUL (which `text` refuses, and JSON may carry as
/// `\u0000`) becomes U+FFFD.
pub fn storable(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    }
}

/// The insert of one row, its values bound.
macro_rules! bound_row {
    ($r:expr) => {
        sqlx::query(ROW_INSERT.as_str())
            .bind(&$r.id)
            .bind($r.received_at)
            .bind(&$r.endpoint)
            .bind(&$r.workspace_id)
            .bind(&$r.event_id)
            .bind(&$r.event_type)
            .bind(&$r.outcome)
            .bind(&$r.code)
            .bind(&$r.request_id)
            .bind(&$r.payload)
    };
}

static ROW_INSERT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "INSERT INTO webhook_deliveries ({COLUMNS})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING"
    )
});

/// Writes a batch in one statement (one refused row refuses the batch: see
/// [`insert_one`]).
pub async fn insert(db: &Db, rows: &[Delivery]) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    match db {
        Db::Postgres(pool) => {
            let col = |f: fn(&Delivery) -> Option<String>| -> Vec<Option<String>> {
                rows.iter().map(f).collect()
            };
            // Like the projections' commits, the log's need not wait for their WAL
            // flush: a server crash loses at most its last fraction of a second, and
            // the log does not compete with commands for fsyncs.
            let mut tx = pool.begin().await?;
            sqlx::query("SET LOCAL synchronous_commit = off")
                .execute(&mut *tx)
                .await?;
            sqlx::query(&format!(
                "INSERT INTO webhook_deliveries ({COLUMNS})
                 SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::text[], $4::text[],
                                      $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
                                      $10::text[])
                 ON CONFLICT (id) DO NOTHING"
            ))
            .bind(col(|r| Some(r.id.clone())))
            .bind(rows.iter().map(|r| r.received_at).collect::<Vec<_>>())
            .bind(col(|r| Some(r.endpoint.clone())))
            .bind(col(|r| r.workspace_id.clone()))
            .bind(col(|r| r.event_id.clone()))
            .bind(col(|r| r.event_type.clone()))
            .bind(col(|r| Some(r.outcome.clone())))
            .bind(col(|r| r.code.clone()))
            .bind(col(|r| Some(r.request_id.clone())))
            .bind(col(|r| r.payload.clone()))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        }
        Db::Sqlite(pool) => {
            let mut tx = pool.begin().await?;
            for r in rows {
                bound_row!(r).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        }
    }
    Ok(())
}

/// Filters of the delivery log; every one optional but the page size.
#[derive(Debug, Clone)]
pub struct DeliveryFilter {
    pub workspaces: WorkspaceScope,
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    pub outcome: Option<String>,
    /// Deliveries older than this one (the page cursor).
    pub before_id: Option<String>,
    pub limit: i64,
}

fn decode<R: sqlx::Row>(r: &R, with_payload: bool) -> Result<Delivery, sqlx::Error>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    Option<String>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    DateTime<Utc>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Delivery {
        id: r.try_get("id")?,
        received_at: r.try_get("received_at")?,
        endpoint: r.try_get("endpoint")?,
        workspace_id: r.try_get("workspace_id")?,
        event_id: r.try_get("event_id")?,
        event_type: r.try_get("event_type")?,
        outcome: r.try_get("outcome")?,
        code: r.try_get("code")?,
        request_id: r.try_get("request_id")?,
        payload: if with_payload {
            r.try_get("payload")?
        } else {
            None
        },
    })
}

/// A page, newest first (payloads left out), and whether more follow.
pub async fn search(db: &Db, f: &DeliveryFilter) -> Result<(Vec<Delivery>, bool), sqlx::Error> {
    let mut w = Where::default();
    w.workspaces(&f.workspaces);
    for (clause, v) in [
        ("event_id = ?", &f.event_id),
        ("event_type = ?", &f.event_type),
        ("outcome = ?", &f.outcome),
        ("id < ?", &f.before_id),
    ] {
        if let Some(v) = v {
            w.push(clause, Bind::Text(v.clone()));
        }
    }
    let (clause, limit) = w.sql_with_limit(f.limit + 1);
    let sql = format!(
        "SELECT id, received_at, endpoint, workspace_id, event_id, event_type, outcome, code, request_id
           FROM webhook_deliveries {clause} ORDER BY id DESC LIMIT {limit}"
    );
    let mut rows: Vec<Delivery> = on_db!(db, pool => {
        bind_all!(sqlx::query(&sql), w.binds())
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| decode(r, false))
            .collect::<Result<_, _>>()?
    });
    let has_more = rows.len() as i64 > f.limit;
    rows.truncate(f.limit as usize);
    Ok((rows, has_more))
}

/// One delivery with its payload.
pub async fn get(db: &Db, id: &str) -> Result<Option<Delivery>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM webhook_deliveries WHERE id = $1");
    on_db!(db, pool => {
        sqlx::query(&sql)
            .bind(id)
            .fetch_optional(pool)
            .await?
            .map(|r| decode(&r, true))
            .transpose()
    })
}

/// Deletes up to `limit` deliveries received before `cutoff`; how many went. Ids are
/// UUIDv7 whose first 48 bits are the arrival in Unix milliseconds, so the oldest are a
/// range of the primary key (no index on the time needed).
pub async fn prune(db: &Db, cutoff: DateTime<Utc>, limit: i64) -> Result<u64, sqlx::Error> {
    let ms = cutoff.timestamp_millis().max(0) as u64;
    let before = format!(
        "{:08x}-{:04x}-0000-0000-000000000000",
        ms >> 16,
        ms & 0xffff
    );
    let sql = "DELETE FROM webhook_deliveries WHERE id IN
                 (SELECT id FROM webhook_deliveries WHERE id < $1 ORDER BY id LIMIT $2)";
    let done = on_db!(db, pool => sqlx::query(sql).bind(&before).bind(limit).execute(pool).await?.rows_affected());
    Ok(done)
}

/// Deletes every delivery of a workspace (its data is purged: payloads name drivers).
pub async fn forget_workspace(db: &Db, ws: &str) -> Result<u64, sqlx::Error> {
    let sql = "DELETE FROM webhook_deliveries WHERE workspace_id = $1";
    let done = on_db!(db, pool => sqlx::query(sql).bind(ws).execute(pool).await?.rows_affected());
    Ok(done)
}

/// Writes one row alone.
pub async fn insert_one(db: &Db, r: &Delivery) -> Result<(), sqlx::Error> {
    on_db!(db, pool => bound_row!(r).execute(pool).await.map(|_| ()))
}
