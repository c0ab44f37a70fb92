//! Events of the `Location` aggregate: reference data pushed by the CPO side.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LocationEvent {
    LocationPublished(LocationPublished),
    LocationRemoved(LocationRemoved),
}

impl LocationEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::LocationPublished(_) => "LocationPublished",
            Self::LocationRemoved(_) => "LocationRemoved",
        }
    }
    pub fn workspace_id(&self) -> &str {
        match self {
            Self::LocationPublished(e) => &e.workspace_id,
            Self::LocationRemoved(e) => &e.workspace_id,
        }
    }
}

/// A location as published (created or replaced whole) by its workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationPublished {
    pub location_id: String,
    pub workspace_id: String,
    pub location: LocationData,
    pub published_by: String,
    pub published_at: DateTime<Utc>,
}

/// The location is gone (its workspace's data was purged): connectors there take no new
/// sessions, and its id may be published again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationRemoved {
    pub location_id: String,
    pub workspace_id: String,
    pub removed_by: String,
    pub removed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationData {
    pub name: String,
    pub address: String,
    pub city: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    pub country: String,
    pub coordinates: Coordinates,
    pub evses: Vec<Evse>,
}

/// OCPI keeps coordinates as decimal strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"latitude": "-33.868800", "longitude": "151.209300"})))]
pub struct Coordinates {
    pub latitude: String,
    pub longitude: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evse {
    pub uid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evse_id: Option<String>,
    pub connectors: Vec<Connector>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connector {
    pub id: String,
    pub standard: String,
    pub format: String,
    pub power_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_electric_power: Option<i64>,
    pub tariff: Tariff,
}

/// A connector's price: free when both prices are 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"currency": "aud", "price_per_kwh_cents": 45, "flat_fee_cents": 0})))]
pub struct Tariff {
    /// Lower-case ISO 4217.
    pub currency: String,
    pub price_per_kwh_cents: i64,
    pub flat_fee_cents: i64,
}

impl Tariff {
    /// A connector whose prices are both zero never needs Stripe.
    pub fn is_free(&self) -> bool {
        self.price_per_kwh_cents == 0 && self.flat_fee_cents == 0
    }
}
