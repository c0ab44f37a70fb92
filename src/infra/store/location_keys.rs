//! OCPI location ids are CiString: `LOC-A` and `loc-a` name one location. Each folded
//! id maps to the stream its first publication created (which keeps the case it was
//! published with, as audits and intents show it). A mapping never changes once made,
//! so an instance keeps those it has read.

use std::collections::HashMap;
use std::sync::Mutex;

use roampay_projections::{on_db, Db};

/// Mappings an instance keeps at most (past it, it starts over).
const REMEMBERED: usize = 100_000;

pub struct LocationKeys {
    db: Db,
    known: Mutex<HashMap<String, String>>,
}

/// The folded form of an id.
pub fn folded(location_id: &str) -> String {
    location_id.to_ascii_lowercase()
}

impl LocationKeys {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            known: Mutex::new(HashMap::new()),
        }
    }

    fn remember(&self, folded: String, stream: &str) {
        let mut known = self.known.lock().expect("location keys");
        if known.len() >= REMEMBERED {
            known.clear();
        }
        known.insert(folded, stream.to_string());
    }

    /// The stream of the location `location_id` names, if one was ever published.
    pub async fn stream_of(&self, location_id: &str) -> Result<Option<String>, sqlx::Error> {
        let folded = folded(location_id);
        if let Some(s) = self.known.lock().expect("location keys").get(&folded) {
            return Ok(Some(s.clone()));
        }
        let stream: Option<String> = on_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT location_id FROM location_keys WHERE folded = $1")
                .bind(&folded)
                .fetch_optional(pool)
                .await
        })?;
        if let Some(s) = &stream {
            self.remember(folded, s);
        }
        Ok(stream)
    }

    /// The stream `location_id` is published to: the one its folded id has, else a new
    /// one under `location_id` as given (the first of two racing publications wins).
    pub async fn claim(&self, location_id: &str) -> Result<String, sqlx::Error> {
        if let Some(s) = self.stream_of(location_id).await? {
            return Ok(s);
        }
        let folded = folded(location_id);
        let stream: String = on_db!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO location_keys (folded, location_id) VALUES ($1, $2) \
                 ON CONFLICT (folded) DO NOTHING",
            )
            .bind(&folded)
            .bind(location_id)
            .execute(pool)
            .await?;
            sqlx::query_scalar("SELECT location_id FROM location_keys WHERE folded = $1")
                .bind(&folded)
                .fetch_one(pool)
                .await
        })?;
        self.remember(folded, &stream);
        Ok(stream)
    }
}
