//! Events of the `OcpiTariff` aggregate (one per workspace, CPO party and tariff id):
//! a tariff as the CPO pushes it (OCPI 2.2.1 Tariffs module), for sizing holds and
//! showing prices.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OcpiTariffEvent {
    OcpiTariffUpdated(OcpiTariffUpdated),
    OcpiTariffRemoved(OcpiTariffRemoved),
}

impl OcpiTariffEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::OcpiTariffUpdated(_) => "OcpiTariffUpdated",
            Self::OcpiTariffRemoved(_) => "OcpiTariffRemoved",
        }
    }

    pub fn workspace_id(&self) -> &str {
        match self {
            Self::OcpiTariffUpdated(e) => &e.workspace_id,
            Self::OcpiTariffRemoved(e) => &e.workspace_id,
        }
    }
}

/// The tariff as the CPO `PUT` it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OcpiTariffUpdated {
    pub workspace_id: String,
    pub connection_id: String,
    pub country_code: String,
    pub party_id: String,
    pub tariff_id: String,
    /// As sent (upper-case ISO 4217).
    pub currency: String,
    pub last_updated: DateTime<Utc>,
    /// The OCPI Tariff object as sent.
    pub tariff: serde_json::Value,
}

/// The CPO deleted the tariff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OcpiTariffRemoved {
    pub workspace_id: String,
    pub connection_id: String,
    pub country_code: String,
    pub party_id: String,
    pub tariff_id: String,
    pub removed_at: DateTime<Utc>,
}
