//! A workspace's OCPI 2.2.1 partner connections (one aggregate per workspace): created
//! by an admin (with a token A for the CPO) or by roampay registering with a CPO,
//! registered by the credentials exchange, updated by a `PUT`, ended by either side.
//! The aggregate decides which token opens which door; tokens themselves live in the
//! vault (the partner's) or nowhere (roampay's own: only their digests are kept).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use roampay_events::{
    OcpiConnectionCreated, OcpiConnectionCredentialsUpdated, OcpiConnectionEvent as Event,
    OcpiConnectionRegistered, OcpiConnectionUnregistered, OcpiEndpoint, OcpiParty,
};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

#[cfg(test)]
mod tests;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ConnectionStatus {
    #[default]
    Pending,
    Registered,
    Unregistered,
}

impl ConnectionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Registered => "registered",
            Self::Unregistered => "unregistered",
        }
    }
}

/// One connection as the aggregate keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    pub id: String,
    pub name: String,
    pub status: ConnectionStatus,
    pub token_a_digest: Option<String>,
    pub token_digest: Option<String>,
    pub direction: Option<String>,
    pub party: Option<OcpiParty>,
    pub version: Option<String>,
    pub versions_url: Option<String>,
    pub endpoints: Vec<OcpiEndpoint>,
    pub partner_token_version: Option<u32>,
    /// The vault fingerprints of the partner's token and of the one roampay issued.
    pub partner_token_fingerprint: Option<String>,
    pub issued_token_fingerprint: Option<String>,
    pub created_at: DateTime<Utc>,
    pub registered_at: Option<DateTime<Utc>>,
}

impl Connection {
    /// The URL of one of the partner's modules, from its version details.
    pub fn endpoint(&self, identifier: &str) -> Option<&str> {
        self.endpoints
            .iter()
            .find(|e| e.identifier == identifier)
            .map(|e| e.url.as_str())
    }
}

/// Which of roampay's tokens a request presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented {
    /// Token A of a pending connection: versions, version details and `POST
    /// credentials` only.
    TokenA,
    /// The token of a registered connection (C when the CPO registered, B when
    /// roampay did).
    Registered,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OcpiConnections {
    pub workspace_id: Option<String>,
    pub connections: BTreeMap<String, Connection>,
    /// The vault version of the last partner token stored for this workspace.
    pub last_token_version: u32,
}

impl OcpiConnections {
    /// The vault version the next partner token of this workspace is stored under.
    pub fn next_token_version(&self) -> u32 {
        self.last_token_version + 1
    }

    /// The connection a token opens, and as which token: compared by digest in
    /// constant time; an unregistered connection opens nothing.
    pub fn open(&self, connection_id: &str, digest: &str) -> Option<(&Connection, Presented)> {
        let c = self.connections.get(connection_id)?;
        let same = |d: &Option<String>| {
            d.as_deref()
                .is_some_and(|d| bool::from(d.as_bytes().ct_eq(digest.as_bytes())))
        };
        match c.status {
            ConnectionStatus::Pending if same(&c.token_a_digest) => Some((c, Presented::TokenA)),
            ConnectionStatus::Registered if same(&c.token_digest) => {
                Some((c, Presented::Registered))
            }
            _ => None,
        }
    }
}

/// What the credentials exchange established (either direction, or a `PUT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchanged {
    pub party: OcpiParty,
    pub version: String,
    pub versions_url: String,
    pub endpoints: Vec<OcpiEndpoint>,
    /// SHA-256 of the token the partner uses with roampay from now on.
    pub token_digest: String,
    /// Where the partner's token (which roampay uses with it) and the one roampay
    /// issued were stored, and their vault fingerprints.
    pub partner_token_version: u32,
    pub partner_token_fingerprint: String,
    pub issued_token_fingerprint: String,
}

#[derive(Debug, Clone)]
pub enum OcpiConnectionCommand {
    Create {
        workspace_id: String,
        connection_id: String,
        name: String,
        token_a_digest: Option<String>,
        actor: String,
        at: DateTime<Utc>,
    },
    /// The first exchange: `inbound` (the CPO's `POST credentials`) or `outbound`.
    Register {
        connection_id: String,
        direction: &'static str,
        exchanged: Exchanged,
        at: DateTime<Utc>,
    },
    /// The partner's `PUT credentials`.
    Update {
        connection_id: String,
        exchanged: Exchanged,
        at: DateTime<Utc>,
    },
    /// `by`: `partner` (its `DELETE credentials`) or `admin`.
    Unregister {
        connection_id: String,
        by: &'static str,
        actor: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OcpiConnectionError {
    #[error("no such OCPI connection")]
    NotFound,
    #[error("this connection id is taken")]
    Exists,
    #[error("the connection is already registered (OCPI: use PUT)")]
    AlreadyRegistered,
    #[error("the connection is not registered")]
    NotRegistered,
    /// The partner token was stored under a version another exchange took meanwhile.
    #[error("the partner token's vault version {stored} is not the next one ({next})")]
    StaleTokenVersion { stored: u32, next: u32 },
}

type Error = OcpiConnectionError;

impl OcpiConnections {
    fn connection(&self, id: &str) -> Result<&Connection, Error> {
        self.connections.get(id).ok_or(Error::NotFound)
    }

    fn ws(&self) -> String {
        self.workspace_id.clone().unwrap_or_default()
    }

    fn check_version(&self, e: &Exchanged) -> Result<(), Error> {
        let next = self.next_token_version();
        if e.partner_token_version != next {
            return Err(Error::StaleTokenVersion {
                stored: e.partner_token_version,
                next,
            });
        }
        Ok(())
    }

    fn decide(&self, command: OcpiConnectionCommand) -> Result<Vec<Event>, Error> {
        use OcpiConnectionCommand as C;
        Ok(match command {
            C::Create {
                workspace_id,
                connection_id,
                name,
                token_a_digest,
                actor,
                at,
            } => {
                if self.connections.contains_key(&connection_id) {
                    return Err(Error::Exists);
                }
                vec![Event::OcpiConnectionCreated(OcpiConnectionCreated {
                    connection_id,
                    workspace_id,
                    name,
                    token_a_digest,
                    actor,
                    created_at: at,
                })]
            }
            C::Register {
                connection_id,
                direction,
                exchanged: e,
                at,
            } => {
                match self.connection(&connection_id)?.status {
                    ConnectionStatus::Pending => {}
                    ConnectionStatus::Registered => return Err(Error::AlreadyRegistered),
                    ConnectionStatus::Unregistered => return Err(Error::NotFound),
                }
                self.check_version(&e)?;
                vec![Event::OcpiConnectionRegistered(OcpiConnectionRegistered {
                    connection_id,
                    workspace_id: self.ws(),
                    direction: direction.to_string(),
                    party: e.party,
                    version: e.version,
                    versions_url: e.versions_url,
                    endpoints: e.endpoints,
                    token_digest: e.token_digest,
                    partner_token_version: e.partner_token_version,
                    partner_token_fingerprint: e.partner_token_fingerprint,
                    issued_token_fingerprint: e.issued_token_fingerprint,
                    registered_at: at,
                })]
            }
            C::Update {
                connection_id,
                exchanged: e,
                at,
            } => {
                if self.connection(&connection_id)?.status != ConnectionStatus::Registered {
                    return Err(Error::NotRegistered);
                }
                self.check_version(&e)?;
                vec![Event::OcpiConnectionCredentialsUpdated(
                    OcpiConnectionCredentialsUpdated {
                        connection_id,
                        workspace_id: self.ws(),
                        party: e.party,
                        version: e.version,
                        versions_url: e.versions_url,
                        endpoints: e.endpoints,
                        token_digest: e.token_digest,
                        partner_token_version: e.partner_token_version,
                        partner_token_fingerprint: e.partner_token_fingerprint,
                        issued_token_fingerprint: e.issued_token_fingerprint,
                        updated_at: at,
                    },
                )]
            }
            C::Unregister {
                connection_id,
                by,
                actor,
                at,
            } => {
                let c = self.connection(&connection_id)?;
                match (c.status, by) {
                    (ConnectionStatus::Unregistered, _) => return Ok(vec![]),
                    (ConnectionStatus::Pending, "partner") => return Err(Error::NotRegistered),
                    _ => {}
                }
                vec![Event::OcpiConnectionUnregistered(
                    OcpiConnectionUnregistered {
                        connection_id,
                        workspace_id: self.ws(),
                        by: by.to_string(),
                        actor,
                        unregistered_at: at,
                    },
                )]
            }
        })
    }
}

impl Aggregate for OcpiConnections {
    const TYPE: &'static str = "OcpiConnections";
    type Command = OcpiConnectionCommand;
    type Event = Event;
    type Error = OcpiConnectionError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Event) {
        match event {
            Event::OcpiConnectionCreated(e) => {
                self.workspace_id = Some(e.workspace_id);
                self.connections.insert(
                    e.connection_id.clone(),
                    Connection {
                        id: e.connection_id,
                        name: e.name,
                        status: ConnectionStatus::Pending,
                        token_a_digest: e.token_a_digest,
                        token_digest: None,
                        direction: None,
                        party: None,
                        version: None,
                        versions_url: None,
                        endpoints: vec![],
                        partner_token_version: None,
                        partner_token_fingerprint: None,
                        issued_token_fingerprint: None,
                        created_at: e.created_at,
                        registered_at: None,
                    },
                );
            }
            Event::OcpiConnectionRegistered(e) => {
                self.last_token_version = self.last_token_version.max(e.partner_token_version);
                if let Some(c) = self.connections.get_mut(&e.connection_id) {
                    c.status = ConnectionStatus::Registered;
                    // Token A is spent.
                    c.token_a_digest = None;
                    c.token_digest = Some(e.token_digest);
                    c.direction = Some(e.direction);
                    c.party = Some(e.party);
                    c.version = Some(e.version);
                    c.versions_url = Some(e.versions_url);
                    c.endpoints = e.endpoints;
                    c.partner_token_version = Some(e.partner_token_version);
                    c.partner_token_fingerprint = Some(e.partner_token_fingerprint);
                    c.issued_token_fingerprint = Some(e.issued_token_fingerprint);
                    c.registered_at = Some(e.registered_at);
                }
            }
            Event::OcpiConnectionCredentialsUpdated(e) => {
                self.last_token_version = self.last_token_version.max(e.partner_token_version);
                if let Some(c) = self.connections.get_mut(&e.connection_id) {
                    c.token_digest = Some(e.token_digest);
                    c.party = Some(e.party);
                    c.version = Some(e.version);
                    c.versions_url = Some(e.versions_url);
                    c.endpoints = e.endpoints;
                    c.partner_token_version = Some(e.partner_token_version);
                    c.partner_token_fingerprint = Some(e.partner_token_fingerprint);
                    c.issued_token_fingerprint = Some(e.issued_token_fingerprint);
                }
            }
            Event::OcpiConnectionUnregistered(e) => {
                if let Some(c) = self.connections.get_mut(&e.connection_id) {
                    c.status = ConnectionStatus::Unregistered;
                    c.token_a_digest = None;
                    c.token_digest = None;
                }
            }
        }
    }
}
