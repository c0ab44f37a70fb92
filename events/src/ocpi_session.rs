//! Events of the `OcpiSession` aggregate (one per workspace, CPO party and session id):
//! a charging session as the CPO reports it (OCPI 2.2.1 Sessions module). It holds the
//! telemetry; the money stays with the charging intent it links to.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OcpiSessionEvent {
    OcpiSessionUpdated(OcpiSessionUpdated),
}

impl OcpiSessionEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::OcpiSessionUpdated(_) => "OcpiSessionUpdated",
        }
    }

    pub fn workspace_id(&self) -> &str {
        match self {
            Self::OcpiSessionUpdated(e) => &e.workspace_id,
        }
    }
}

/// The session as it stands after a `PUT` (whole) or `PATCH` (merged) from the CPO.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OcpiSessionUpdated {
    pub workspace_id: String,
    pub connection_id: String,
    pub country_code: String,
    pub party_id: String,
    pub session_id: String,
    /// `ACTIVE`, `COMPLETED`, `INVALID`, `PENDING`, `RESERVATION`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_reference: Option<String>,
    pub last_updated: DateTime<Utc>,
    /// The OCPI Session object as it stands (the CPO's fields; no secret).
    pub session: serde_json::Value,
}
