//! OCPI 2.2.1 on the wire: the objects of the credentials and versions modules, the
//! response envelope, tokens in the `Authorization` header, and a client for the
//! partner's endpoints (versions, version details, credentials).

use std::time::Duration;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The OCPI version roampay speaks.
pub const VERSION: &str = "2.2.1";

/// A credentials object (OCPI 2.2.1 §7.3.1). The token is revealed only when the
/// object is written for the partner.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credentials {
    #[serde(serialize_with = "reveal")]
    pub token: SecretString,
    pub url: String,
    pub roles: Vec<CredentialsRole>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CredentialsRole {
    pub role: String,
    pub business_details: BusinessDetails,
    pub party_id: String,
    pub country_code: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BusinessDetails {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website: Option<String>,
}

/// An entry of `GET versions`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Version {
    pub version: String,
    pub url: String,
}

/// `GET {version url}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VersionDetails {
    pub version: String,
    pub endpoints: Vec<Endpoint>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Endpoint {
    pub identifier: String,
    pub role: String,
    pub url: String,
}

/// The envelope every OCPI answer comes in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope<T> {
    #[serde(default)]
    pub data: Option<T>,
    pub status_code: u32,
    #[serde(default)]
    pub status_message: Option<String>,
    pub timestamp: Option<String>,
}

impl Credentials {
    /// Whether the token is one OCPI allows.
    pub fn token_is_valid(&self) -> bool {
        is_token(self.token.expose_secret())
    }
}

/// Writes a token where a partner (or the admin, once) must read it.
pub fn reveal<S: serde::Serializer>(token: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(token.expose_secret())
}

/// [`reveal`] for a token that may be absent.
pub fn reveal_some<S: serde::Serializer>(
    token: &Option<SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match token {
        Some(t) => reveal(t, s),
        None => s.serialize_none(),
    }
}

/// A new token of `connection_id`: `{connection_id}.{31 random characters}` (185 bits).
pub fn new_token(connection_id: &str) -> SecretString {
    use rand::distributions::{Alphanumeric, DistString};
    let secret = Alphanumeric.sample_string(&mut rand::thread_rng(), 31);
    SecretString::from(format!("{connection_id}.{secret}"))
}

/// The connection a token of roampay's names (its 32 hex digits before the dot).
pub fn connection_of(token: &SecretString) -> Option<String> {
    let (id, _) = token.expose_secret().split_once('.')?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_string())
}

/// SHA-256 of a token, hex: what roampay keeps of the tokens it issues.
pub fn digest(token: &SecretString) -> String {
    hex::encode(crate::infra::stripe::key_digest(token))
}

/// The token of an `Authorization: Token …` header: OCPI 2.2.1 sends it base64
/// encoded; a raw token is accepted too (2.1.1 clients, and the 2.2 errata).
pub fn token_of_header(value: &str) -> Option<SecretString> {
    let given = value.strip_prefix("Token ")?.trim();
    if given.is_empty() {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(given)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|t| is_token(t));
    Some(SecretString::from(
        decoded.unwrap_or_else(|| given.to_string()),
    ))
}

/// `Authorization: Token <base64 of token>` for calls to a partner.
pub fn authorization(token: &SecretString) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(token.expose_secret());
    format!("Token {encoded}")
}

/// A credentials token as OCPI allows it: 1 to 64 printable ASCII characters.
pub fn is_token(t: &str) -> bool {
    !t.is_empty() && t.len() <= 64 && t.bytes().all(|b| b.is_ascii_graphic())
}

/// Why a partner's endpoint could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PeerError(pub String);

/// Calls to a partner's OCPI endpoints.
pub struct OcpiClient {
    http: reqwest::Client,
}

impl OcpiClient {
    pub fn new(timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("roampay/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("HTTP client");
        Self { http }
    }

    /// `GET url` with the partner's token: the envelope's `data`.
    pub async fn get<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        token: &SecretString,
    ) -> Result<T, PeerError> {
        let sent = self
            .http
            .get(url)
            .header(reqwest::header::AUTHORIZATION, authorization(token))
            .header("X-Request-ID", uuid::Uuid::now_v7().to_string())
            .header("X-Correlation-ID", uuid::Uuid::now_v7().to_string())
            .send()
            .await;
        read(url, sent).await
    }

    /// `DELETE url` with the partner's token (OCPI: unregister).
    pub async fn delete(&self, url: &str, token: &SecretString) -> Result<(), PeerError> {
        let sent = self
            .http
            .delete(url)
            .header(reqwest::header::AUTHORIZATION, authorization(token))
            .header("X-Request-ID", uuid::Uuid::now_v7().to_string())
            .header("X-Correlation-ID", uuid::Uuid::now_v7().to_string())
            .send()
            .await;
        envelope(url, sent).await.map(|_| ())
    }

    /// `POST url` with `body` and the partner's token: the envelope's `data`.
    pub async fn post<B: Serialize, T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        token: &SecretString,
        body: &B,
    ) -> Result<T, PeerError> {
        let sent = self
            .http
            .post(url)
            .header(reqwest::header::AUTHORIZATION, authorization(token))
            .header("X-Request-ID", uuid::Uuid::now_v7().to_string())
            .header("X-Correlation-ID", uuid::Uuid::now_v7().to_string())
            .json(body)
            .send()
            .await;
        read(url, sent).await
    }
}

async fn read<T: serde::de::DeserializeOwned>(
    url: &str,
    sent: Result<reqwest::Response, reqwest::Error>,
) -> Result<T, PeerError> {
    let data = envelope(url, sent)
        .await?
        .ok_or_else(|| PeerError(format!("{url} answered without data")))?;
    serde_json::from_value(data).map_err(|e| {
        PeerError(format!(
            "{url} answered data that is not what OCPI describes: {e}"
        ))
    })
}

/// A successful answer's `data` (OCPI 1000 on HTTP 2xx), if it has any.
async fn envelope(
    url: &str,
    sent: Result<reqwest::Response, reqwest::Error>,
) -> Result<Option<Value>, PeerError> {
    let response = sent.map_err(|e| {
        PeerError(if e.is_timeout() {
            format!("{url} did not answer in time")
        } else {
            format!("{url} could not be reached")
        })
    })?;
    let status = response.status().as_u16();
    let body: Value = response.json().await.map_err(|_| {
        PeerError(format!(
            "{url} answered HTTP {status} without an OCPI envelope"
        ))
    })?;
    let envelope: Envelope<Value> = serde_json::from_value(body).map_err(|_| {
        PeerError(format!(
            "{url} answered HTTP {status} without an OCPI envelope"
        ))
    })?;
    if !(200..300).contains(&status) || envelope.status_code != 1000 {
        return Err(PeerError(format!(
            "{url} answered HTTP {status}, OCPI {} ({})",
            envelope.status_code,
            envelope.status_message.unwrap_or_default()
        )));
    }
    let data = envelope
        .data
        .ok_or_else(|| PeerError(format!("{url} answered without data")))?;
    serde_json::from_value(data).map_err(|e| {
        PeerError(format!(
            "{url} answered data that is not what OCPI describes: {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_header_is_read_base64_or_raw() {
        let t = "0193a3f0c1b27d4e8f4a6b5c9d0e1f2a.abcdefghijklmnopqrstuvwxyz01234";
        let b64 = base64::engine::general_purpose::STANDARD.encode(t);
        let read = |h: &str| token_of_header(h).map(|s| s.expose_secret().to_string());
        assert_eq!(read(&format!("Token {b64}")).as_deref(), Some(t));
        assert_eq!(read(&format!("Token {t}")).as_deref(), Some(t));
        assert_eq!(read("Bearer x"), None);
        assert_eq!(read("Token "), None);
        let token = SecretString::from(t.to_string());
        assert_eq!(read(&authorization(&token)).as_deref(), Some(t));
        assert_eq!(
            connection_of(&token).as_deref(),
            Some("0193a3f0c1b27d4e8f4a6b5c9d0e1f2a")
        );
        assert_eq!(connection_of(&SecretString::from("x.y".to_string())), None);
    }
}
