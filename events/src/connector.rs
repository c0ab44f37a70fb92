//! Events of the `ConnectorReservation` aggregate (one per connector): at most one open
//! charging intent holds a connector. Two drivers racing for it append to the same
//! stream, and the event store's sequence key lets exactly one win.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnectorReservationEvent {
    ConnectorReserved(ConnectorReserved),
    ConnectorReleased(ConnectorReleased),
}

impl ConnectorReservationEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::ConnectorReserved(_) => "ConnectorReserved",
            Self::ConnectorReleased(_) => "ConnectorReleased",
        }
    }
    pub fn workspace_id(&self) -> &str {
        match self {
            Self::ConnectorReserved(e) => &e.workspace_id,
            Self::ConnectorReleased(e) => &e.workspace_id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorReserved {
    pub workspace_id: String,
    pub location_id: String,
    pub evse_uid: String,
    pub connector_id: String,
    pub charging_intent_id: String,
    pub reserved_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorReleased {
    pub workspace_id: String,
    pub charging_intent_id: String,
    /// Why: the intent failed, was cancelled, completed or expired.
    pub reason: String,
    pub released_at: DateTime<Utc>,
}
