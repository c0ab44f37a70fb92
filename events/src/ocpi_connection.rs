//! Events of the `OcpiConnections` aggregate (one per workspace): the OCPI 2.2.1
//! partner connections of a workspace's CPO platform, and the credentials exchanged
//! with each. Tokens are never in events: a token's SHA-256 digest is (tokens are
//! random, 160 bits and more), and a partner's token sits in the vault under the
//! version named here.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OcpiConnectionEvent {
    OcpiConnectionCreated(OcpiConnectionCreated),
    OcpiConnectionRegistered(OcpiConnectionRegistered),
    OcpiConnectionCredentialsUpdated(OcpiConnectionCredentialsUpdated),
    OcpiConnectionUnregistered(OcpiConnectionUnregistered),
}

impl OcpiConnectionEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::OcpiConnectionCreated(_) => "OcpiConnectionCreated",
            Self::OcpiConnectionRegistered(_) => "OcpiConnectionRegistered",
            Self::OcpiConnectionCredentialsUpdated(_) => "OcpiConnectionCredentialsUpdated",
            Self::OcpiConnectionUnregistered(_) => "OcpiConnectionUnregistered",
        }
    }

    pub fn workspace_id(&self) -> &str {
        match self {
            Self::OcpiConnectionCreated(e) => &e.workspace_id,
            Self::OcpiConnectionRegistered(e) => &e.workspace_id,
            Self::OcpiConnectionCredentialsUpdated(e) => &e.workspace_id,
            Self::OcpiConnectionUnregistered(e) => &e.workspace_id,
        }
    }

    pub fn connection_id(&self) -> &str {
        match self {
            Self::OcpiConnectionCreated(e) => &e.connection_id,
            Self::OcpiConnectionRegistered(e) => &e.connection_id,
            Self::OcpiConnectionCredentialsUpdated(e) => &e.connection_id,
            Self::OcpiConnectionUnregistered(e) => &e.connection_id,
        }
    }
}

/// The party on the other side, as its credentials name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OcpiParty {
    /// ISO 3166 alpha-2, as sent (compared case-insensitively).
    pub country_code: String,
    pub party_id: String,
    /// `CPO`, `EMSP`, `HUB`, … (OCPI `Role`).
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_name: Option<String>,
}

/// A module the partner offers, from its version details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OcpiEndpoint {
    pub identifier: String,
    /// `SENDER` or `RECEIVER`.
    pub role: String,
    pub url: String,
}

/// An admin created a connection: `token_a` (shown to the admin once) lets the CPO
/// register. Or roampay is about to register with a CPO (`outbound`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OcpiConnectionCreated {
    pub connection_id: String,
    pub workspace_id: String,
    pub name: String,
    /// SHA-256 (hex) of the token A roampay issued; none when roampay registers itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_a_digest: Option<String>,
    pub actor: String,
    pub created_at: DateTime<Utc>,
}

/// The credentials were exchanged: the partner uses the token whose digest is
/// `token_digest` with roampay; roampay uses the partner's token stored in the vault
/// under `partner_token_version` with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OcpiConnectionRegistered {
    pub connection_id: String,
    pub workspace_id: String,
    /// `inbound` (the CPO registered with roampay's token A) or `outbound` (roampay
    /// registered with the CPO's).
    pub direction: String,
    pub party: OcpiParty,
    pub version: String,
    pub versions_url: String,
    pub endpoints: Vec<OcpiEndpoint>,
    pub token_digest: String,
    pub partner_token_version: u32,
    /// The vault's fingerprints of the two tokens stored under `partner_token_version`:
    /// the partner's, and the one roampay issued.
    pub partner_token_fingerprint: String,
    pub issued_token_fingerprint: String,
    pub registered_at: DateTime<Utc>,
}

/// A `PUT` of the credentials: new tokens both ways, the partner's endpoints read again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OcpiConnectionCredentialsUpdated {
    pub connection_id: String,
    pub workspace_id: String,
    pub party: OcpiParty,
    pub version: String,
    pub versions_url: String,
    pub endpoints: Vec<OcpiEndpoint>,
    pub token_digest: String,
    pub partner_token_version: u32,
    pub partner_token_fingerprint: String,
    pub issued_token_fingerprint: String,
    pub updated_at: DateTime<Utc>,
}

/// The connection ended: its tokens no longer work. `by` is `partner` (the CPO's
/// `DELETE` of the credentials) or `admin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OcpiConnectionUnregistered {
    pub connection_id: String,
    pub workspace_id: String,
    pub by: String,
    pub actor: String,
    pub unregistered_at: DateTime<Utc>,
}
