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

/// Remove a location of `workspace_id` (when its data is purged).
#[derive(Debug, Clone)]
pub struct RemoveLocation {
    pub location_id: String,
    pub workspace_id: String,
    pub actor: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub enum LocationCommand {
    Publish(PublishLocation),
    Remove(RemoveLocation),
}
