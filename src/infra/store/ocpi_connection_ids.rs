//! Which workspace an OCPI connection belongs to (a connection id never moves, so an
//! instance keeps what it has read).

use std::collections::HashMap;
use std::sync::Mutex;

use roampay_projections::{on_db, Db};

/// Mappings an instance keeps at most (past it, it starts over).
const REMEMBERED: usize = 100_000;

pub struct OcpiConnectionIds {
    db: Db,
    known: Mutex<HashMap<String, String>>,
}

impl OcpiConnectionIds {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            known: Mutex::new(HashMap::new()),
        }
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
