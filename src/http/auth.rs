//! Bearer JWTs (HS256): `sub` is the actor, `workspaces` the workspaces it may act on
//! (`["*"]` for platform staff), `scope` a space-separated list.

use std::future::{ready, Ready};

use actix_web::HttpMessage;
use actix_web::{web, FromRequest, HttpRequest};
use jsonwebtoken::{
    decode, encode, errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::AppState;

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: i64,
    #[serde(default)]
    pub workspaces: Vec<String>,
    #[serde(default)]
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

pub struct JwtAuth {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
    issuer: Option<String>,
    audience: Option<String>,
}

/// `ROAMPAY_JWT_LEEWAY_SECS`'s default: the clock skew allowed around `exp` and `nbf`.
pub const DEFAULT_LEEWAY_SECS: u64 = 5;

/// An HS256 secret shorter than this is refused (anyone could guess or brute-force it).
pub const MIN_SECRET_BYTES: usize = 32;

/// The scopes tokens may carry (contract "Authentication").
pub const KNOWN_SCOPES: [&str; 9] = [
    "roaming:read",
    "roaming:write",
    "locations:write",
    "audit:read",
    "sessions:write",
    "driver",
    "refunds:write",
    "billing:read",
    "billing:write",
];

impl JwtAuth {
    /// Whether `secret` is long enough to sign tokens with.
    pub fn strong_enough(secret: &SecretString) -> bool {
        crate::infra::vault::key_bytes(secret).len() >= MIN_SECRET_BYTES
    }

    pub fn new(secret: &SecretString, issuer: Option<String>, audience: Option<String>) -> Self {
        let key = crate::infra::vault::key_bytes(secret);
        let bytes = key.as_slice();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = DEFAULT_LEEWAY_SECS;
        validation.validate_nbf = true;
        // A configured issuer or audience must be present, not merely right when present.
        let mut required = vec!["exp", "sub"];
        if issuer.is_some() {
            required.push("iss");
        }
        if audience.is_some() {
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        match &issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match &audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        Self {
            decoding: DecodingKey::from_secret(bytes),
            encoding: EncodingKey::from_secret(bytes),
            validation,
            issuer,
            audience,
        }
    }

    /// Accepts a token this many seconds after its `exp` (and before its `nbf`).
    pub fn with_leeway(mut self, secs: u64) -> Self {
        self.validation.leeway = secs;
        self
    }

    /// Signs a token for `roampay token` and the tests.
    pub fn issue(&self, sub: &str, workspaces: &[String], scope: &str, ttl_secs: i64) -> String {
        let claims = Claims {
            sub: sub.to_string(),
            exp: chrono::Utc::now().timestamp() + ttl_secs,
            workspaces: workspaces.to_vec(),
            scope: scope.to_string(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    pub fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        let data = decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| {
            ApiError::unauthenticated(match e.kind() {
                ErrorKind::ExpiredSignature => "The token has expired.",
                ErrorKind::InvalidSignature => "The token signature does not verify.",
                ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => {
                    "The token was issued for someone else."
                }
                ErrorKind::MissingRequiredClaim(_) => {
                    "The token lacks a required claim (exp, sub)."
                }
                _ => "The token is malformed.",
            })
        })?;
        let c = data.claims;
        if c.sub.trim().is_empty() {
            return Err(ApiError::unauthenticated("The token has an empty subject."));
        }
        Ok(Principal {
            sub: c.sub,
            workspaces: c.workspaces,
            scopes: c.scope.split_whitespace().map(str::to_string).collect(),
        })
    }
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub sub: String,
    pub workspaces: Vec<String>,
    pub scopes: Vec<String>,
}

impl Principal {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    pub fn may_access(&self, workspace_id: &str) -> bool {
        self.workspaces
            .iter()
            .any(|w| w == "*" || w == workspace_id)
    }

    /// Requires the scope, and access to the workspace when one is named.
    pub fn authorize(&self, scope: &str, workspace_id: Option<&str>) -> Result<(), ApiError> {
        if !self.has_scope(scope) {
            return Err(ApiError::forbidden(format!(
                "This needs the scope {scope}."
            )));
        }
        if let Some(ws) = workspace_id {
            if !self.may_access(ws) {
                return Err(ApiError::forbidden(
                    "The token does not grant access to this workspace.",
                ));
            }
        }
        Ok(())
    }
}

/// The bearer token of a request, if any.
pub fn bearer(req: &HttpRequest) -> Result<Option<&str>, ApiError> {
    let Some(value) = req.headers().get(actix_web::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthenticated("The Authorization header is malformed."))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim()))
        }
        _ => Err(ApiError::unauthenticated(
            "Use Authorization: Bearer <token>.",
        )),
    }
}

/// The one workspace a verified token names (for the request log line).
#[derive(Debug, Clone)]
pub struct TokenWorkspace(pub String);

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let state = req
            .app_data::<web::Data<AppState>>()
            .expect("app state is registered");
        let principal = match bearer(req) {
            Ok(Some(token)) => state.auth.verify(token),
            Ok(None) => Err(ApiError::unauthenticated(
                "This endpoint needs a bearer token.",
            )),
            Err(e) => Err(e),
        };
        // A token naming one workspace names it in the request's log line.
        if let Ok(p) = &principal {
            if let [ws] = p.workspaces.as_slice() {
                req.extensions_mut().insert(TokenWorkspace(ws.clone()));
            }
        }
        ready(principal)
    }
}
