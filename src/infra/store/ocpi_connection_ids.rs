//! Which workspace an OCPI connection belongs to (a connection id never moves, so an
//! instance keeps what it has read), and when its partner last called (written at most
//! once a minute per connection and instance).

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use roampay_projections::{on_db, Db};

/// Mappings an instance keeps at most (past it, it starts over).
const REMEMBERED: usize = 100_000;

/// How stale `last_request_at` may be: an instance writes it at most this often.
const TOUCH_EVERY: chrono::Duration = chrono::Duration::minutes(1);

pub struct OcpiConnectionIds {
    db: Db,
    known: Mutex<HashMap<String, String>>,
    touched: Mutex<HashMap<String, DateTime<Utc>>>,
}

impl OcpiConnectionIds {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            known: Mutex::new(HashMap::new()),
            touched: Mutex::new(HashMap::new()),
        }
    }

    /// The partner called with this connection's token at `at`.
    pub async fn touch(&self, connection_id: &str, at: DateTime<Utc>) -> Result<(), sqlx::Error> {
        {
            let mut touched = self.touched.lock().expect("connection touches");
            if touched
                .get(connection_id)
                .is_some_and(|last| at - *last < TOUCH_EVERY)
            {
                return Ok(());
            }
            if touched.len() >= REMEMBERED {
                touched.clear();
            }
            touched.insert(connection_id.to_string(), at);
        }
        on_db!(&self.db, pool => {
            sqlx::query("UPDATE ocpi_connection_ids SET last_request_at = $1 WHERE connection_id = $2")
                .bind(at)
                .bind(connection_id)
                .execute(pool)
                .await
                .map(|_| ())
        })
    }

    /// When each of `ids` last called (absent: never).
    pub async fn last_requests(
        &self,
        ids: &[String],
    ) -> Result<HashMap<String, DateTime<Utc>>, sqlx::Error> {
        let mut out = HashMap::new();
        for id in ids {
            let at: Option<Option<DateTime<Utc>>> = on_db!(&self.db, pool => {
                sqlx::query_scalar(
                    "SELECT last_request_at FROM ocpi_connection_ids WHERE connection_id = $1",
                )
                .bind(id)
                .fetch_optional(pool)
                .await
            })?;
            if let Some(Some(at)) = at {
                out.insert(id.clone(), at);
            }
        }
        Ok(out)
    }

    /// Records the workspace of a new connection.
    pub async fn record(&self, connection_id: &str, workspace_id: &str) -> Result<(), sqlx::Error> {
        on_db!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO ocpi_connection_ids (connection_id, workspace_id) VALUES ($1, $2) \
                 ON CONFLICT (connection_id) DO NOTHING",
            )
            .bind(connection_id)
            .bind(workspace_id)
            .execute(pool)
            .await
            .map(|_| ())
        })
    }

    /// The workspace of a connection, if the id names one.
    pub async fn workspace_of(&self, connection_id: &str) -> Result<Option<String>, sqlx::Error> {
        if let Some(ws) = self
            .known
            .lock()
            .expect("connection ids")
            .get(connection_id)
        {
            return Ok(Some(ws.clone()));
        }
        let ws: Option<String> = on_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT workspace_id FROM ocpi_connection_ids WHERE connection_id = $1")
                .bind(connection_id)
                .fetch_optional(pool)
                .await
        })?;
        if let Some(ws) = &ws {
            let mut known = self.known.lock().expect("connection ids");
            if known.len() >= REMEMBERED {
                known.clear();
            }
            known.insert(connection_id.to_string(), ws.clone());
        }
        Ok(ws)
    }
}
