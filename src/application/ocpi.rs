//! OCPI 2.2.1 partner connections of a workspace (contract v3.1): an admin creates a
//! connection and hands its token A to the CPO, or has roampay register with a CPO; the
//! credentials module exchanges tokens both ways; either side ends it. Every token
//! roampay keeps is in the vault; roampay's own are known to the aggregate only by
//! digest. A token is `{connection id}.{secret}`: the id finds the workspace, whose
//! aggregate says whether the token opens anything.

use std::sync::Arc;

use cqrs_es::AggregateError;
use roampay_events::{OcpiEndpoint, OcpiParty};
use secrecy::SecretString;

use roampay_projections::Db;
use serde_json::Value;

use super::payments::{PaymentError, Payments};
use super::sessions::SessionStep;
use super::StoreFault;
use crate::domain::charging_intent::{IntentStatus, ReleaseReason};
use crate::domain::ocpi_connections::{
    Connection, Exchanged, OcpiConnectionCommand as Cmd, OcpiConnectionError as E, OcpiConnections,
    Presented,
};
use crate::domain::ocpi_session::{stream_id, ObjectKey, OcpiSession, OcpiSessionCommand};
use crate::domain::ocpi_tariff::{OcpiTariff, OcpiTariffCommand, OcpiTariffError};
use crate::infra::clock::Clock;
use crate::infra::ocpi::{
    connection_of, digest, new_token, BusinessDetails, Credentials, CredentialsRole, OcpiClient,
    PeerError, Version, VersionDetails, VERSION,
};
use crate::infra::store::ocpi_connection_ids::OcpiConnectionIds;
use crate::infra::store::{Aggregates, Metadata};
use crate::infra::vault::{SecretField, SecretVault};

/// Who roampay is on OCPI (its own credentials' role).
#[derive(Debug, Clone)]
pub struct OcpiSettings {
    /// Where partners find roampay's versions (`{public_url}/ocpi/versions`).
    pub public_url: String,
    pub country_code: String,
    pub party_id: String,
    pub business_name: String,
}

/// The modules roampay serves as an eMSP, as its version details list them.
pub const SERVED: &[(&str, &str)] = &[
    ("credentials", "RECEIVER"),
    ("sessions", "RECEIVER"),
    ("tariffs", "RECEIVER"),
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OcpiError {
    /// No token, or one that opens nothing (OCPI 2000, HTTP 401).
    #[error("unknown or missing credentials token")]
    Unauthorized,
    /// Token A opens only versions, version details and `POST credentials`.
    #[error("this token may only register")]
    OnlyRegistration,
    #[error("no such OCPI connection")]
    NotFound,
    /// `POST credentials` on a registered connection (OCPI: use PUT), or `PUT`/`DELETE`
    /// on one not registered: HTTP 405.
    #[error("{0}")]
    MethodNotAllowed(&'static str),
    /// Bad input: OCPI 2001, naming the field.
    #[error("{0}")]
    Invalid(String),
    /// The partner's versions or endpoints could not be used (OCPI 3001).
    #[error("{0}")]
    PartnerUnusable(String),
    /// The partner does not speak 2.2.1 (OCPI 3002).
    #[error("the partner offers no OCPI {VERSION}")]
    UnsupportedVersion,
    /// An object of another party than the connection's (HTTP 403, OCPI 2000).
    #[error("this connection pushes for {0}, not for the party in the request")]
    OtherParty(String),
    /// Roampay's own registration with a CPO failed (HTTP 502 on the admin API).
    #[error("{0}")]
    RegistrationFailed(String),
    #[error(transparent)]
    Store(#[from] StoreFault),
}

impl From<AggregateError<E>> for OcpiError {
    fn from(e: AggregateError<E>) -> Self {
        match e {
            AggregateError::UserError(E::NotFound) => Self::NotFound,
            AggregateError::UserError(E::AlreadyRegistered) => Self::MethodNotAllowed(
                "this connection is registered already: use PUT to update its credentials",
            ),
            AggregateError::UserError(E::NotRegistered) => {
                Self::MethodNotAllowed("this connection is not registered")
            }
            other => Self::Store(StoreFault::of(other)),
        }
    }
}

fn vault_failed(e: crate::infra::vault::VaultError) -> OcpiError {
    OcpiError::Store(StoreFault::Internal(e.to_string()))
}

/// A caller whose token opened a connection.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub workspace_id: String,
    pub connection: Connection,
    pub presented: Presented,
}

/// A connection as the admin API shows it (tokens never).
pub struct ConnectionView {
    pub connection: Connection,
    pub last_request_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A new connection and its token A (shown once).
pub struct Created {
    pub connection: Connection,
    pub token_a: Option<SecretString>,
}

pub struct Ocpi {
    pub(super) connections: Aggregates<OcpiConnections>,
    pub(super) sessions: Aggregates<OcpiSession>,
    pub(super) tariffs: Aggregates<OcpiTariff>,
    /// Sessions start and release the holds of the intents they name.
    pub(super) payments: Arc<Payments>,
    pub(super) db: Db,
    pub(super) ids: OcpiConnectionIds,
    pub(super) vault: Arc<dyn SecretVault>,
    pub(super) client: OcpiClient,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) settings: OcpiSettings,
}

impl Ocpi {
    pub fn settings(&self) -> &OcpiSettings {
        &self.settings
    }

    /// roampay's versions URL.
    pub fn versions_url(&self) -> String {
        format!("{}/ocpi/versions", self.settings.public_url)
    }

    /// The URL of roampay's 2.2.1 version details, and of a module under it.
    pub fn version_url(&self, module: Option<&str>) -> String {
        let base = format!("{}/ocpi/{VERSION}", self.settings.public_url);
        match module {
            Some(m) => format!("{base}/{m}"),
            None => base,
        }
    }

    fn own_credentials(&self, token: &SecretString) -> Credentials {
        Credentials {
            token: token.clone(),
            url: self.versions_url(),
            roles: vec![CredentialsRole {
                role: "EMSP".into(),
                business_details: BusinessDetails {
                    name: self.settings.business_name.clone(),
                    website: None,
                },
                party_id: self.settings.party_id.clone(),
                country_code: self.settings.country_code.clone(),
            }],
        }
    }

    /// The workspace's connections, oldest first, with when each partner last called.
    pub async fn list(&self, ws: &str) -> Result<Vec<ConnectionView>, OcpiError> {
        let state = self.connections.load(ws).await?;
        let mut all: Vec<Connection> = state.connections.into_values().collect();
        all.sort_by_key(|c| c.created_at);
        let ids: Vec<String> = all.iter().map(|c| c.id.clone()).collect();
        let last = self
            .ids
            .last_requests(&ids)
            .await
            .map_err(StoreFault::of_sqlx)?;
        Ok(all
            .into_iter()
            .map(|c| ConnectionView {
                last_request_at: last.get(&c.id).copied(),
                connection: c,
            })
            .collect())
    }

    async fn connection(&self, ws: &str, id: &str) -> Result<Connection, OcpiError> {
        let state = self.connections.load(ws).await?;
        state
            .connections
            .get(id)
            .cloned()
            .ok_or(OcpiError::NotFound)
    }

    /// A connection for a CPO to register with: its token A is answered once.
    pub async fn create(
        &self,
        ws: &str,
        name: &str,
        meta: &Metadata,
    ) -> Result<Created, OcpiError> {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let token_a = new_token(&id);
        let state = self
            .open(ws, &id, name, Some(digest(&token_a)), meta)
            .await?;
        let connection = state
            .connections
            .get(&id)
            .cloned()
            .ok_or(OcpiError::NotFound)?;
        Ok(Created {
            connection,
            token_a: Some(token_a),
        })
    }

    async fn open(
        &self,
        ws: &str,
        id: &str,
        name: &str,
        token_a_digest: Option<String>,
        meta: &Metadata,
    ) -> Result<OcpiConnections, OcpiError> {
        self.ids.record(id, ws).await.map_err(StoreFault::of_sqlx)?;
        let cmd = Cmd::Create {
            workspace_id: ws.to_string(),
            connection_id: id.to_string(),
            name: name.to_string(),
            token_a_digest,
            actor: meta.actor.clone(),
            at: self.clock.now(),
        };
        Ok(self.connections.execute(ws, cmd, meta).await?)
    }

    /// The admin ends a connection: its tokens stop working at once, and a registered
    /// partner is told (`DELETE` of its credentials; a failure is logged, the
    /// connection is ended either way).
    pub async fn remove(&self, ws: &str, id: &str, meta: &Metadata) -> Result<(), OcpiError> {
        let before = self.connection(ws, id).await?;
        let cmd = Cmd::Unregister {
            connection_id: id.to_string(),
            by: "admin",
            actor: meta.actor.clone(),
            at: self.clock.now(),
        };
        self.connections.execute(ws, cmd, meta).await?;
        if before.status == crate::domain::ocpi_connections::ConnectionStatus::Registered {
            self.tell_partner(ws, &before).await;
        }
        Ok(())
    }

    async fn tell_partner(&self, ws: &str, c: &Connection) {
        let (Some(url), Some(version), Some(fp)) = (
            c.endpoint("credentials"),
            c.partner_token_version,
            c.partner_token_fingerprint.as_deref(),
        ) else {
            return;
        };
        let token = self
            .vault
            .get(ws, SecretField::OcpiPartnerToken, version, fp)
            .await;
        let told = match token {
            Ok(token) => self.client.delete(url, &token).await,
            Err(e) => Err(PeerError(e.to_string())),
        };
        if let Err(e) = told {
            tracing::warn!(connection = %c.id, error = %e, "the partner could not be told that its connection ended");
        }
    }

    /// The connection a presented token opens.
    pub async fn admit(&self, token: Option<&SecretString>) -> Result<Admitted, OcpiError> {
        let token = token.ok_or(OcpiError::Unauthorized)?;
        let id = connection_of(token).ok_or(OcpiError::Unauthorized)?;
        let id = id.as_str();
        let ws = self
            .ids
            .workspace_of(id)
            .await
            .map_err(StoreFault::of_sqlx)?;
        let ws = ws.ok_or(OcpiError::Unauthorized)?;
        let state = self
            .connections
            .load_recent(&ws)
            .await
            .map_err(|e| OcpiError::Store(StoreFault::of(e)))?;
        let (connection, presented) = state
            .open(id, &digest(token))
            .ok_or(OcpiError::Unauthorized)?;
        if let Err(e) = self.ids.touch(id, self.clock.now()).await {
            tracing::warn!(error = %e, connection = %id, "could not note an OCPI request's time");
        }
        Ok(Admitted {
            workspace_id: ws,
            connection: connection.clone(),
            presented,
        })
    }

    /// `GET credentials`: roampay's credentials as the partner uses them now.
    pub async fn credentials(&self, who: &Admitted) -> Result<Credentials, OcpiError> {
        registered(who)?;
        let version = who.connection.partner_token_version.unwrap_or_default();
        let fingerprint = who.connection.issued_token_fingerprint.clone();
        let token = self
            .vault
            .get(
                &who.workspace_id,
                SecretField::OcpiIssuedToken,
                version,
                &fingerprint.unwrap_or_default(),
            )
            .await
            .map_err(vault_failed)?;
        Ok(self.own_credentials(&token))
    }

    /// `POST credentials` (token A: register) or `PUT` (the registered token: update):
    /// the partner's versions read with its token, a new token issued.
    pub async fn exchange(
        &self,
        who: &Admitted,
        theirs: Credentials,
        update: bool,
        meta: &Metadata,
    ) -> Result<Credentials, OcpiError> {
        match (who.presented, update) {
            (Presented::TokenA, false) | (Presented::Registered, true) => {}
            (Presented::Registered, false) => {
                return Err(OcpiError::MethodNotAllowed(
                    "this connection is registered already: use PUT to update its credentials",
                ))
            }
            (Presented::TokenA, true) => {
                return Err(OcpiError::MethodNotAllowed(
                    "this connection is not registered",
                ))
            }
        }
        let party = party_of(&theirs)?;
        let partner_token = theirs.token.clone();
        let details = self.partner_endpoints(&theirs.url, &partner_token).await?;
        let id = who.connection.id.clone();
        let ours = new_token(&id);
        let ws = &who.workspace_id;
        for attempt in 1..=5 {
            let version = self.connections.load(ws).await?.next_token_version();
            let (partner_fp, issued_fp) = self
                .store_tokens(ws, version, &partner_token, &ours)
                .await?;
            let exchanged = Exchanged {
                party: party.clone(),
                version: VERSION.into(),
                versions_url: theirs.url.clone(),
                endpoints: details.clone(),
                token_digest: digest(&ours),
                partner_token_version: version,
                partner_token_fingerprint: partner_fp,
                issued_token_fingerprint: issued_fp,
            };
            let at = self.clock.now();
            let cmd = match update {
                false => Cmd::Register {
                    connection_id: id.clone(),
                    direction: "inbound",
                    exchanged,
                    at,
                },
                true => Cmd::Update {
                    connection_id: id.clone(),
                    exchanged,
                    at,
                },
            };
            match self.connections.execute(ws, cmd, meta).await {
                Err(AggregateError::UserError(E::StaleTokenVersion { .. })) if attempt < 5 => {
                    continue
                }
                done => {
                    done?;
                    return Ok(self.own_credentials(&ours));
                }
            }
        }
        unreachable!("the last attempt returns")
    }

    /// `DELETE credentials`: the partner unregisters.
    pub async fn unregister(&self, who: &Admitted, meta: &Metadata) -> Result<(), OcpiError> {
        registered(who)?;
        let cmd = Cmd::Unregister {
            connection_id: who.connection.id.clone(),
            by: "partner",
            actor: meta.actor.clone(),
            at: self.clock.now(),
        };
        self.connections
            .execute(&who.workspace_id, cmd, meta)
            .await?;
        Ok(())
    }

    /// roampay registers with a CPO given its versions URL and token A: a connection
    /// whose token B works (for versions and details) while the CPO reads roampay's
    /// versions, then the exchange; a failure ends the connection (no token stays).
    pub async fn register_with(
        &self,
        ws: &str,
        name: &str,
        versions_url: &str,
        their_token_a: SecretString,
        meta: &Metadata,
    ) -> Result<Created, OcpiError> {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let token_b = new_token(&id);
        self.open(ws, &id, name, Some(digest(&token_b)), meta)
            .await?;
        match self
            .register_outbound(ws, &id, versions_url, &their_token_a, &token_b, meta)
            .await
        {
            Ok(()) => Ok(Created {
                connection: self.connection(ws, &id).await?,
                token_a: None,
            }),
            Err(e) => {
                self.remove(ws, &id, meta).await?;
                Err(match e {
                    OcpiError::PartnerUnusable(m) | OcpiError::Invalid(m) => {
                        OcpiError::RegistrationFailed(m)
                    }
                    OcpiError::UnsupportedVersion => OcpiError::RegistrationFailed(e.to_string()),
                    other => other,
                })
            }
        }
    }

    async fn register_outbound(
        &self,
        ws: &str,
        id: &str,
        versions_url: &str,
        their_token_a: &SecretString,
        token_b: &SecretString,
        meta: &Metadata,
    ) -> Result<(), OcpiError> {
        let endpoints = self.partner_endpoints(versions_url, their_token_a).await?;
        let url = endpoints
            .iter()
            .find(|e| e.identifier == "credentials")
            .map(|e| e.url.clone())
            .ok_or_else(|| {
                OcpiError::PartnerUnusable("the CPO lists no credentials endpoint".into())
            })?;
        let theirs: Credentials = self
            .client
            .post(&url, their_token_a, &self.own_credentials(token_b))
            .await
            .map_err(|e| OcpiError::PartnerUnusable(e.0))?;
        let party = party_of(&theirs)?;
        let token_c = theirs.token.clone();
        let version = self.connections.load(ws).await?.next_token_version();
        let (partner_fp, issued_fp) = self.store_tokens(ws, version, &token_c, token_b).await?;
        let cmd = Cmd::Register {
            connection_id: id.to_string(),
            direction: "outbound",
            exchanged: Exchanged {
                party,
                version: VERSION.into(),
                versions_url: theirs.url,
                endpoints,
                token_digest: digest(token_b),
                partner_token_version: version,
                partner_token_fingerprint: partner_fp,
                issued_token_fingerprint: issued_fp,
            },
            at: self.clock.now(),
        };
        self.connections.execute(ws, cmd, meta).await?;
        Ok(())
    }

    /// The partner's 2.2.1 endpoints, read with its token.
    async fn partner_endpoints(
        &self,
        versions_url: &str,
        token: &SecretString,
    ) -> Result<Vec<OcpiEndpoint>, OcpiError> {
        crate::config::check_http_url("versions url", versions_url)
            .map_err(|_| OcpiError::Invalid("url: must be an absolute http(s) URL".into()))?;
        let unusable = |e: PeerError| OcpiError::PartnerUnusable(e.0);
        let versions: Vec<Version> = self
            .client
            .get(versions_url, token)
            .await
            .map_err(unusable)?;
        let ours = versions
            .iter()
            .find(|v| v.version == VERSION)
            .ok_or(OcpiError::UnsupportedVersion)?;
        let details: VersionDetails = self.client.get(&ours.url, token).await.map_err(unusable)?;
        Ok(details
            .endpoints
            .into_iter()
            .map(|e| OcpiEndpoint {
                identifier: e.identifier,
                role: e.role,
                url: e.url,
            })
            .collect())
    }

    /// The partner's token and roampay's new one, both in the vault under `version`:
    /// their fingerprints.
    async fn store_tokens(
        &self,
        ws: &str,
        version: u32,
        partner: &SecretString,
        ours: &SecretString,
    ) -> Result<(String, String), OcpiError> {
        let mut fingerprints = Vec::new();
        for (field, token) in [
            (SecretField::OcpiPartnerToken, partner),
            (SecretField::OcpiIssuedToken, ours),
        ] {
            let fp = self
                .vault
                .fingerprint(ws, field, token)
                .await
                .map_err(vault_failed)?;
            self.vault
                .put(ws, field, version, &fp, token)
                .await
                .map_err(vault_failed)?;
            fingerprints.push(fp);
        }
        let issued = fingerprints.pop().expect("two tokens");
        Ok((fingerprints.pop().expect("two tokens"), issued))
    }
}

fn registered(who: &Admitted) -> Result<(), OcpiError> {
    match who.presented {
        Presented::Registered => Ok(()),
        Presented::TokenA => Err(OcpiError::OnlyRegistration),
    }
}

/// The partner's party: its CPO role (else its first), every field checked.
fn party_of(c: &Credentials) -> Result<OcpiParty, OcpiError> {
    let invalid = |m: &str| OcpiError::Invalid(m.to_string());
    if !c.token_is_valid() {
        return Err(invalid("token: 1 to 64 printable ASCII characters"));
    }
    let role = c
        .roles
        .iter()
        .find(|r| r.role.eq_ignore_ascii_case("CPO"))
        .or_else(|| c.roles.first())
        .ok_or_else(|| invalid("roles: at least one role"))?;
    let ok = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_alphanumeric());
    if !ok(&role.country_code, 2) {
        return Err(invalid(
            "roles[].country_code: two letters (ISO 3166-1 alpha-2)",
        ));
    }
    if !ok(&role.party_id, 3) {
        return Err(invalid("roles[].party_id: three characters"));
    }
    Ok(OcpiParty {
        country_code: role.country_code.to_ascii_uppercase(),
        party_id: role.party_id.to_ascii_uppercase(),
        role: role.role.to_ascii_uppercase(),
        business_name: Some(role.business_details.name.clone()).filter(|n| !n.is_empty()),
    })
}

/// A pushed object's place: the CPO party of its URL and its id.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub country_code: String,
    pub party_id: String,
    pub id: String,
}

impl Ocpi {
    /// The session key of a push, once the URL's party is the connection's.
    fn object_key(&self, who: &Admitted, at: &Pushed) -> Result<ObjectKey, OcpiError> {
        registered(who)?;
        let party = who
            .connection
            .party
            .as_ref()
            .ok_or(OcpiError::Unauthorized)?;
        if !party.country_code.eq_ignore_ascii_case(&at.country_code)
            || !party.party_id.eq_ignore_ascii_case(&at.party_id)
        {
            return Err(OcpiError::OtherParty(format!(
                "{}/{}",
                party.country_code, party.party_id
            )));
        }
        Ok(ObjectKey {
            workspace_id: who.workspace_id.clone(),
            connection_id: who.connection.id.clone(),
            country_code: at.country_code.clone(),
            party_id: at.party_id.clone(),
            object_id: at.id.clone(),
        })
    }

    /// `PUT` (whole) or `PATCH` (merged) of a session: recorded unless stale, then the
    /// intent it names is started or released.
    pub async fn push_session(
        &self,
        who: &Admitted,
        at: &Pushed,
        object: Value,
        patch: bool,
        meta: &Metadata,
    ) -> Result<(), OcpiError> {
        let key = self.object_key(who, at)?;
        let stream = stream_id(
            &key.workspace_id,
            &key.country_code,
            &key.party_id,
            &key.object_id,
        );
        let cmd = match patch {
            false => OcpiSessionCommand::Put { key, object },
            true => OcpiSessionCommand::Patch {
                key,
                fields: object,
            },
        };
        let session = self
            .sessions
            .execute(&stream, cmd, meta)
            .await
            .map_err(session_error)?;
        self.link(&who.workspace_id, &session, meta).await
    }

    /// `GET` of a session: as stored.
    pub async fn session(&self, who: &Admitted, at: &Pushed) -> Result<Value, OcpiError> {
        let key = self.object_key(who, at)?;
        let stream = stream_id(
            &key.workspace_id,
            &key.country_code,
            &key.party_id,
            &key.object_id,
        );
        let s = self.sessions.load(&stream).await.map_err(session_error)?;
        s.session.ok_or(OcpiError::NotFound)
    }

    /// What a session does to the intent its `authorization_reference` names: charging
    /// once the CPO reports it active (or energy delivered), released when it is
    /// invalid before charging. An unknown reference moves nothing (counted).
    async fn link(&self, ws: &str, s: &OcpiSession, meta: &Metadata) -> Result<(), OcpiError> {
        let (Some(reference), Some(status), Some(object)) =
            (&s.authorization_reference, &s.status, &s.session)
        else {
            return Ok(());
        };
        let found = roampay_projections::charging_intents::by_authorization_reference(
            &self.db, ws, reference,
        );
        let Some(intent_id) = found.await.map_err(StoreFault::of_sqlx)? else {
            tracing::warn!(workspace_id = %ws, authorization_reference = %reference, "an OCPI session names no payment of this workspace");
            crate::metrics::ocpi_unmatched("session", "unknown_authorization_reference");
            return Ok(());
        };
        let intent = self
            .payments
            .load_intent(&intent_id)
            .await
            .map_err(payment_error)?;
        let kwh = object.get("kwh").and_then(Value::as_f64).unwrap_or(0.0);
        let session_id = object.get("id").and_then(Value::as_str).unwrap_or_default();
        let step = match (status.as_str(), intent.status) {
            ("INVALID", IntentStatus::PendingPayment | IntentStatus::Authorized) => {
                SessionStep::Cancel(ReleaseReason::Cancelled)
            }
            ("ACTIVE", IntentStatus::Authorized) => SessionStep::Start {
                ocpi_session_id: session_id.to_string(),
            },
            (s, IntentStatus::Authorized) if s != "INVALID" && kwh > 0.0 => SessionStep::Start {
                ocpi_session_id: session_id.to_string(),
            },
            _ => return Ok(()),
        };
        let admit = |_: &str| Ok::<_, PaymentError>(meta.clone());
        match self
            .payments
            .session_step_for(&intent_id, step, admit)
            .await
        {
            Ok(_) | Err(PaymentError::InvalidTransition(_)) => Ok(()),
            Err(e) => Err(payment_error(e)),
        }
    }
}

impl Ocpi {
    /// `PUT` of a tariff (unless older than the stored one), or its `DELETE`.
    pub async fn push_tariff(
        &self,
        who: &Admitted,
        at: &Pushed,
        object: Option<Value>,
        meta: &Metadata,
    ) -> Result<(), OcpiError> {
        let key = self.object_key(who, at)?;
        let stream = stream_id(
            &key.workspace_id,
            &key.country_code,
            &key.party_id,
            &key.object_id,
        );
        let cmd = match object {
            Some(object) => OcpiTariffCommand::Put { key, object },
            None => OcpiTariffCommand::Delete {
                key,
                at: self.clock.now(),
            },
        };
        let done = self.tariffs.execute(&stream, cmd, meta).await;
        done.map(|_| ()).map_err(|e| match e {
            AggregateError::UserError(OcpiTariffError::NotFound) => OcpiError::NotFound,
            AggregateError::UserError(OcpiTariffError::Invalid(m)) => OcpiError::Invalid(m),
            other => OcpiError::Store(StoreFault::of(other)),
        })
    }
}

fn session_error(e: AggregateError<crate::domain::ocpi_session::OcpiSessionError>) -> OcpiError {
    use crate::domain::ocpi_session::OcpiSessionError as S;
    match e {
        AggregateError::UserError(S::NotFound) => OcpiError::NotFound,
        AggregateError::UserError(S::Invalid(m)) => OcpiError::Invalid(m),
        other => OcpiError::Store(StoreFault::of(other)),
    }
}

fn payment_error(e: PaymentError) -> OcpiError {
    match e {
        PaymentError::Store(f) => OcpiError::Store(f),
        other => OcpiError::Store(StoreFault::Internal(other.to_string())),
    }
}
