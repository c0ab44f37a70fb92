//! What a webhook delivery is answered, for every webhook use case (workspace, shared,
//! Connect, billing): its outcome or the refusal and what was learnt before it, where a
//! verified event came from, and the event's head as read at the boundary.

use std::sync::Arc;

use secrecy::SecretString;
use serde_json::Value;

use crate::domain::ids::WorkspaceId;
use crate::infra::clock::Clock;
use crate::infra::stripe::boundary::{checked, is_object_id};
use crate::infra::stripe::webhook::{verify, SignatureError, Tolerance};

/// A verified delivery's outcome (answered 200).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookOutcome {
    Applied,
    Duplicate,
    /// Verified, but an event type or object this service does not track.
    Ignored,
}

impl WebhookOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Duplicate => "duplicate",
            Self::Ignored => "ignored",
        }
    }
}

/// Why a delivery was refused; each is recorded for support (store trouble aside).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WebhookRefusal {
    #[error("no Stripe-Signature header")]
    MissingSignature,
    #[error("the Stripe-Signature header has no timestamp or no v1 signature")]
    InvalidSignatureHeader,
    #[error("no signature matches this workspace's webhook signing secrets")]
    SignatureMismatch,
    #[error("the signature's timestamp is outside the tolerance")]
    TimestampOutOfTolerance,
    #[error("the body is not a Stripe event")]
    InvalidPayload,
    #[error("the event names no workspace this service knows")]
    UnknownWorkspace,
    #[error("this workspace has no webhook signing secret")]
    WebhookSecretNotConfigured,
    #[error("the PaymentIntent does not belong to this workspace's charging intent")]
    OwnershipMismatch,
    #[error("the event's livemode differs from the workspace's Stripe mode")]
    LivemodeMismatch,
    #[error("the event store does not answer")]
    StoreUnavailable,
    #[error("Stripe did not answer")]
    StripeUnavailable,
}

impl WebhookRefusal {
    /// The signature is missing, malformed, stale or wrong.
    fn bad_signature(self) -> bool {
        matches!(
            self,
            Self::MissingSignature
                | Self::InvalidSignatureHeader
                | Self::SignatureMismatch
                | Self::TimestampOutOfTolerance
        )
    }

    /// Refused before any signature was verified: anyone could have sent it.
    pub fn unsigned(self) -> bool {
        self.bad_signature()
            || matches!(
                self,
                Self::UnknownWorkspace | Self::WebhookSecretNotConfigured
            )
    }

    pub fn code(self) -> &'static str {
        match self {
            WebhookRefusal::MissingSignature => "missing_signature",
            WebhookRefusal::InvalidSignatureHeader => "invalid_signature_header",
            WebhookRefusal::SignatureMismatch => "signature_mismatch",
            WebhookRefusal::TimestampOutOfTolerance => "timestamp_out_of_tolerance",
            WebhookRefusal::InvalidPayload => "invalid_payload",
            WebhookRefusal::UnknownWorkspace => "unknown_workspace",
            WebhookRefusal::WebhookSecretNotConfigured => "webhook_secret_not_configured",
            WebhookRefusal::OwnershipMismatch => "ownership_mismatch",
            WebhookRefusal::LivemodeMismatch => "livemode_mismatch",
            WebhookRefusal::StoreUnavailable => "store_unavailable",
            WebhookRefusal::StripeUnavailable => "stripe_unavailable",
        }
    }

    /// Refusals that say the admin's endpoint is not set up right: the signature, or a
    /// PaymentIntent of another workspace.
    pub(super) fn says_endpoint_fails(self) -> bool {
        self.bad_signature() || self == Self::OwnershipMismatch
    }

    pub(super) fn of_signature(e: SignatureError) -> Self {
        match e {
            SignatureError::MissingSignature => Self::MissingSignature,
            SignatureError::InvalidSignatureHeader => Self::InvalidSignatureHeader,
            SignatureError::SignatureMismatch => Self::SignatureMismatch,
            SignatureError::TimestampOutOfTolerance => Self::TimestampOutOfTolerance,
        }
    }
}

/// A refusal and what was learnt before it (recorded only once trustworthy).
pub(super) struct Refused {
    pub(super) why: WebhookRefusal,
    pub(super) workspace_id: Option<String>,
    pub(super) event_id: Option<String>,
    pub(super) payment_intent_id: Option<String>,
}

impl From<WebhookRefusal> for Refused {
    fn from(why: WebhookRefusal) -> Self {
        Self {
            why,
            workspace_id: None,
            event_id: None,
            payment_intent_id: None,
        }
    }
}

impl Refused {
    pub(super) fn in_workspace(mut self, ws: &WorkspaceId) -> Self {
        self.workspace_id = Some(ws.to_string());
        self
    }
}

/// Where a verified event came from: the mode it must be in, and on the Connect endpoint
/// the connected account it is about.
#[derive(Debug, Clone)]
pub(super) struct Via {
    pub(super) live: bool,
    pub(super) connect_account: Option<String>,
}

/// The event's id and type, checked at the boundary.
pub(super) fn event_head(event: &Value) -> Result<(String, Option<String>), WebhookRefusal> {
    let invalid = |_| WebhookRefusal::InvalidPayload;
    let event_id = checked(event, "/id", "id", is_object_id)
        .map_err(invalid)?
        .filter(|id| id.starts_with("evt_"))
        .ok_or(WebhookRefusal::InvalidPayload)?;
    let kind = checked(event, "/type", "type", is_event_type).map_err(invalid)?;
    Ok((event_id, kind))
}

/// Event types: `^[a-z0-9_.]{1,100}$` (`payment_intent.succeeded`, …).
fn is_event_type(s: &str) -> bool {
    (1..=100).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
}

/// The platform's own webhook endpoints (billing, Connect): verified with the
/// configured secrets, the current one first.
#[derive(Clone)]
pub struct PlatformEndpoints {
    pub tolerance: Tolerance,
    pub clock: Arc<dyn Clock>,
}

impl PlatformEndpoints {
    pub fn verify(
        &self,
        body: &[u8],
        signature: Option<&str>,
        secrets: &[SecretString],
        endpoint: &'static str,
    ) -> Result<(), WebhookRefusal> {
        if secrets.is_empty() {
            return Err(WebhookRefusal::WebhookSecretNotConfigured);
        }
        let refs: Vec<&SecretString> = secrets.iter().collect();
        let now = self.clock.now().timestamp();
        let matched = verify(body, signature, &refs, self.tolerance, now)
            .map_err(WebhookRefusal::of_signature)?;
        if matched > 0 {
            tracing::info!(
                endpoint,
                "verified with the endpoint's previous signing secret (remove it once Stripe no longer uses it)"
            );
        }
        Ok(())
    }
}
