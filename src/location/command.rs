use chrono::{DateTime, Utc};
use roampay_events::LocationData;

/// Create or replace a location, whole.
#[derive(Debug, Clone)]
pub struct PublishLocation {
    pub location_id: String,
    pub workspace_id: String,
    pub location: LocationData,
    pub actor: String,
    pub at: DateTime<Utc>,
}
