//! Roaming payments: pre-authorization in the workspace's own Stripe account, the
//! driver's view of an intent, and the one path by which anything Stripe says of a
//! PaymentIntent (webhook, confirm, sweep, reconcile) reaches the intent.

use cqrs_es::AggregateError;
use roampay_events::{Connector, HealthStatus, IntentRequest, StripeMode};
use secrecy::SecretString;
use sha2::{Digest, Sha256};

use std::sync::Arc;

use roampay_projections::Db;

use super::accounts::Accounts;
use super::billing::Billing;
use super::locations::Locations;
use super::StoreFault;
use crate::domain::charging_intent::aggregate::{
    hold_request, KEY_REVOKED, PERMISSION_DENIED, STRIPE_UNAVAILABLE,
};
use crate::domain::charging_intent::{
    ChargingIntent, ChargingIntentCommand, ChargingIntentError, Hold, IntentStatus, PaidPreAuth,
    ProcessStripeAuthorizationWebhook, ReleaseStrayHold, RequestRoamingPreAuth,
};
use crate::domain::connector_reservation::{
    connector_key, ConnectorCommand, ConnectorError, ConnectorReservation,
};
use crate::domain::workspace_stripe_profile::WorkspaceStripeProfile;
use crate::infra::clock::Clock;
use crate::infra::store::{Aggregates, Metadata};
use crate::infra::stripe::{PaymentIntentStatus, PaymentIntentView, StripeGateway};

/// Why a payment or session use case refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    #[error("no such location")]
    LocationNotFound,
    /// `evse_not_found` or `connector_not_found`.
    #[error("{0}")]
    NotAtLocation(&'static str),
    #[error("this workspace cannot take payments: its Stripe credentials are {0}")]
    PaymentNotReady(&'static str),
    /// Billing is required and the workspace's subscription is not in good standing.
    #[error("this workspace's subscription is not in good standing")]
    WorkspaceSuspended,
    #[error("another charging intent holds this connector")]
    ConnectorBusy,
    #[error("this workspace has too many guest intents waiting for payment")]
    TooManyPendingIntents,
    #[error("this Idempotency-Key was already used with a different request")]
    IdempotencyKeyReused,
    /// Stripe refused for good; `card` when the card (not the request) was refused.
    #[error("Stripe refused: {code}")]
    StripeRefused { code: String, card: bool },
    #[error("Stripe did not answer")]
    StripeUnavailable,
    #[error("no such charging intent")]
    IntentNotFound,
    #[error("not possible while the charging intent is {0}")]
    InvalidTransition(&'static str),
    #[error("the PaymentIntent does not belong to this workspace's charging intent")]
    OwnershipMismatch,
    #[error("the PaymentIntent's livemode differs from the workspace's mode")]
    LivemodeMismatch,
    #[error("only {refundable} of the capture is left to refund")]
    RefundExceedsCaptured { refundable: i64 },
    /// Not the driver who created the intent.
    #[error("only the driver who created this charging intent may do that")]
    NotTheDriver,
    #[error(transparent)]
    Store(#[from] StoreFault),
}

impl From<AggregateError<ChargingIntentError>> for PaymentError {
    fn from(e: AggregateError<ChargingIntentError>) -> Self {
        use ChargingIntentError as E;
        match e {
            AggregateError::UserError(e) => match e {
                E::IdempotencyKeyReused => Self::IdempotencyKeyReused,
                E::NotFound => Self::IntentNotFound,
                E::StripeUnavailable => Self::StripeUnavailable,
                E::InvalidTransition(s) => Self::InvalidTransition(s),
                E::OwnershipMismatch => Self::OwnershipMismatch,
                E::LivemodeMismatch => Self::LivemodeMismatch,
                E::RefundExceedsCaptured { refundable } => {
                    Self::RefundExceedsCaptured { refundable }
                }
                other => Self::Store(StoreFault::Internal(other.to_string())),
            },
            other => Self::Store(StoreFault::of(other)),
        }
    }
}

pub(super) fn store_error<E: std::error::Error>(e: AggregateError<E>) -> PaymentError {
    PaymentError::Store(StoreFault::of(e))
}

fn internal(e: impl std::fmt::Display) -> PaymentError {
    PaymentError::Store(StoreFault::Internal(e.to_string()))
}

/// A driver's request to charge at a connector, already checked for shape.
#[derive(Debug, Clone)]
pub struct PreAuthRequest {
    pub location_id: String,
    pub evse_uid: String,
    pub connector_id: String,
    pub email: Option<String>,
    /// The client's `Idempotency-Key`: the same key and body answer the same.
    pub idempotency_key: Option<String>,
    /// The driver token's `sub`, `None` for a guest.
    pub driver: Option<String>,
}

/// Who may use a workspace's driver endpoints.
#[derive(Debug, Clone)]
pub struct DriverGate {
    pub workspace_id: String,
    pub allow_guest_access: bool,
}

impl DriverGate {
    fn of(ws: &str, profile: &WorkspaceStripeProfile) -> Self {
        Self {
            workspace_id: ws.to_string(),
            allow_guest_access: profile.settings.allow_guest_access,
        }
    }
}

/// How a pre-authorization went, counted in `roampay_preauths_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreAuthOutcome {
    Created,
    Free,
    Replayed,
}

impl PreAuthOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Free => "free",
            Self::Replayed => "replayed",
        }
    }
}

/// A pre-authorization and what the driver's browser needs to pay it.
#[derive(Debug, Clone)]
pub struct PreAuthorized {
    pub charging_intent_id: String,
    pub intent: ChargingIntent,
    pub client_secret: Option<SecretString>,
    pub publishable_key: Option<String>,
    pub outcome: PreAuthOutcome,
}

/// What Stripe says of an intent's PaymentIntent, and where it came from.
#[derive(Debug, Clone)]
pub struct StripeReport {
    pub charging_intent_id: String,
    pub workspace_id: String,
    pub payment_intent: PaymentIntentView,
    /// The webhook's event id (a redelivery is recognised by it).
    pub stripe_event_id: Option<String>,
    /// `webhook`, `confirm`, `sweep`, `reconcile`.
    pub source: &'static str,
    /// The connected account a Connect webhook came from (the PaymentIntent must live
    /// in it).
    pub connect_account: Option<String>,
}

/// What applying a [`StripeReport`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Events were recorded.
    Applied,
    /// This Stripe event was applied before.
    Duplicate,
    /// Nothing to record: Stripe's state is not ahead of ours.
    Unchanged,
}

fn hash_request(r: &PreAuthRequest) -> String {
    let mut h = Sha256::new();
    for part in [
        r.location_id.as_str(),
        &r.evse_uid,
        &r.connector_id,
        r.email.as_deref().unwrap_or(""),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..16])
}

/// With a client `Idempotency-Key`, the intent id is derived from it (per workspace),
/// so a retry lands on the same intent; without one, a fresh id.
fn intent_id(workspace_id: &str, key: Option<&str>) -> String {
    match key {
        Some(k) => {
            let d = Sha256::digest(format!("{workspace_id}\0{k}").as_bytes());
            let mut b = [0u8; 16];
            b.copy_from_slice(&d[..16]);
            b[6] = (b[6] & 0x0f) | 0x80; // version 8 (custom), RFC 9562
            b[8] = (b[8] & 0x3f) | 0x80;
            uuid::Uuid::from_bytes(b).to_string()
        }
        None => uuid::Uuid::now_v7().to_string(),
    }
}

/// An intent that ended at creation answers with the error it ended with.
fn creation_failure(i: &ChargingIntent) -> Option<PaymentError> {
    if i.status != IntentStatus::Failed || i.payment.is_some() {
        return None;
    }
    let code = i.failure_code.clone().unwrap_or_default();
    Some(if code == STRIPE_UNAVAILABLE {
        PaymentError::StripeUnavailable
    } else if code == KEY_REVOKED || code == PERMISSION_DENIED {
        // Stripe refused the workspace's key: its credentials are invalid now.
        PaymentError::PaymentNotReady(HealthStatus::Invalid.as_str())
    } else {
        let card = code.starts_with("card_") || code == "authentication_required";
        PaymentError::StripeRefused { code, card }
    })
}

/// How long a reservation may wait for its intent's first event before it is taken
/// for the leftover of a crash (creation waits on Stripe for far less).
const STALE_RESERVATION: chrono::Duration = chrono::Duration::minutes(5);

/// Roaming payments: pre-authorization, sessions and their settlement, refunds, and
/// what Stripe says of a PaymentIntent.
pub struct Payments {
    pub(super) intents: Arc<Aggregates<ChargingIntent>>,
    pub(super) connectors: Arc<Aggregates<ConnectorReservation>>,
    /// Read only: credentials and settings at the moment of a payment.
    pub(super) profiles: Arc<Aggregates<WorkspaceStripeProfile>>,
    pub(super) locations: Arc<Locations>,
    /// Whether the workspace may open intents (billing in good standing).
    pub(super) billing: Arc<Billing>,
    pub(super) accounts: Arc<Accounts>,
    /// Watched: a refused key reaches the credentials.
    pub(super) stripe: Arc<dyn StripeGateway>,
    pub(super) db: Db,
    pub(super) clock: Arc<dyn Clock>,
    /// Open guest intents waiting for payment a workspace may have at once.
    pub(super) max_pending_guest_intents: i64,
    /// One Stripe step at a time per intent (a twin finds it done).
    pub(super) steps: super::step_locks::StepLocks,
}

impl Payments {
    async fn profile_recent(&self, ws: &str) -> Result<WorkspaceStripeProfile, PaymentError> {
        self.profiles.load_recent(ws).await.map_err(store_error)
    }

    /// An intent and the workspace it belongs to, for admitting the driver.
    pub async fn intent_gate(
        &self,
        id: &str,
    ) -> Result<(ChargingIntent, DriverGate), PaymentError> {
        let intent = self.load_intent(id).await?;
        let ws = intent
            .request
            .as_ref()
            .expect("loaded")
            .workspace_id
            .clone();
        let profile = self.profile_recent(&ws).await?;
        Ok((intent, DriverGate::of(&ws, &profile)))
    }

    /// The intent, or `IntentNotFound` for an id that names none.
    pub async fn load_intent(&self, id: &str) -> Result<ChargingIntent, PaymentError> {
        if id.is_empty() || id.len() > 64 {
            return Err(PaymentError::IntentNotFound);
        }
        let intent = self.intents.load(id).await.map_err(store_error)?;
        if intent.request.is_none() {
            return Err(PaymentError::IntentNotFound);
        }
        Ok(intent)
    }

    /// `RequestRoamingPreAuth`: reserves the connector, then creates the hold in the
    /// workspace's own Stripe account (a free connector needs neither Stripe nor valid
    /// credentials). A retry with the same `Idempotency-Key` answers as the first did.
    pub async fn pre_authorize(
        &self,
        req: PreAuthRequest,
        meta: &Metadata,
    ) -> Result<PreAuthorized, PaymentError> {
        let (request_id, driver) = (meta.request_id.clone(), req.driver.clone());
        self.pre_authorize_driver(req, &request_id, |_| Ok::<_, PaymentError>(driver))
            .await
    }

    /// [`Self::pre_authorize`] for a driver admitted at the location's workspace by
    /// `admit` (given who may use its driver endpoints; it answers the driver's `sub`,
    /// `None` for a guest): the location and the profile are read once for both.
    pub async fn pre_authorize_driver<E: From<PaymentError>>(
        &self,
        mut req: PreAuthRequest,
        request_id: &str,
        admit: impl FnOnce(&DriverGate) -> Result<Option<String>, E>,
    ) -> Result<PreAuthorized, E> {
        let location = self
            .locations
            .location_named(&req.location_id)
            .await
            .map_err(PaymentError::Store)?;
        let ws = location
            .workspace_id
            .clone()
            .ok_or(PaymentError::LocationNotFound)?;
        let profile = self.profile_recent(&ws).await?;
        req.driver = admit(&DriverGate::of(&ws, &profile))?;
        let meta = Metadata {
            actor: req.driver.clone().unwrap_or_else(|| "guest".into()),
            request_id: request_id.to_string(),
        };
        Ok(self.pre_authorize_at(location, profile, req, &meta).await?)
    }

    async fn pre_authorize_at(
        &self,
        location: crate::domain::location::Location,
        profile: WorkspaceStripeProfile,
        req: PreAuthRequest,
        meta: &Metadata,
    ) -> Result<PreAuthorized, PaymentError> {
        let ws = location
            .workspace_id
            .clone()
            .ok_or(PaymentError::LocationNotFound)?;
        let connector = location
            .connector(&req.evse_uid, &req.connector_id)
            .map_err(PaymentError::NotAtLocation)?
            .clone();
        let id = intent_id(&ws, req.idempotency_key.as_deref());
        let request_hash = hash_request(&req);
        // A twin with the same key waits here, then replays what this one recorded.
        let _step = match &req.idempotency_key {
            Some(_) => Some(self.steps.lock(&id).await),
            None => None,
        };
        if req.idempotency_key.is_some() {
            let existing = self.intents.load(&id).await.map_err(store_error)?;
            if existing.request.is_some() {
                return self
                    .replay(id, existing, &req, &request_hash, &profile)
                    .await;
            }
        }
        // New intents only (a replay above answered as before); free ones included.
        if !self.billing.may_open_intents(&ws).await? {
            return Err(PaymentError::WorkspaceSuspended);
        }
        let paid = self.paid_pre_auth(&ws, &connector, &profile, &req).await?;
        if paid.is_some() && req.driver.is_none() {
            self.check_guest_quota(&ws).await?;
        }
        let request = IntentRequest {
            charging_intent_id: id.clone(),
            workspace_id: ws.clone(),
            // The ids as the CPO published them (the request may differ in case): one
            // connector, one reservation stream.
            location_id: location.location_id.clone(),
            evse_uid: location
                .evse_uid(&req.evse_uid)
                .unwrap_or(&req.evse_uid)
                .to_string(),
            connector_id: connector.id.clone(),
            currency: match paid {
                None => connector.tariff.currency.clone(),
                Some(_) => profile.settings.currency.as_str().to_string(),
            },
            request_hash,
            requested_at: self.clock.now(),
            driver: req.driver.clone(),
        };
        self.reserve_connector(&request, meta).await?;
        let free = paid.is_none();
        // The hold is asked for here, once: the command only records Stripe's answer, so
        // a concurrency retry of the command never calls Stripe again. The client secret
        // goes from that answer to the driver's, and nowhere else.
        let (hold, client_secret) = match paid {
            None => (Hold::Free, None),
            Some(paid) => {
                let create = hold_request(&request, &paid);
                let answer = self.stripe.create_payment_intent(&paid.on, &create).await;
                let secret = answer.as_ref().ok().and_then(|pi| pi.client_secret.clone());
                let answer = answer.map(|pi| pi.id);
                (Hold::Asked { paid, answer }, secret)
            }
        };
        let cmd =
            ChargingIntentCommand::RequestRoamingPreAuth(RequestRoamingPreAuth { request, hold });
        let intent = self.intents.execute(&id, cmd, meta).await?;
        self.intent_changed(false, &intent, meta).await;
        if let Some(err) = creation_failure(&intent) {
            return Err(err);
        }
        // A concurrent twin (same key, same body) recorded its hold first, and this
        // request's own call did not come through: the secret is the hold's, in Stripe.
        let client_secret = match (client_secret, &intent.payment) {
            (None, Some(_)) => {
                self.read_payment_intent(&intent, &profile)
                    .await?
                    .client_secret
            }
            (secret, _) => secret,
        };
        Ok(PreAuthorized {
            publishable_key: self.accounts.publishable_key_for(&profile, &intent),
            client_secret,
            charging_intent_id: id,
            intent,
            outcome: if free {
                PreAuthOutcome::Free
            } else {
                PreAuthOutcome::Created
            },
        })
    }

    /// A retry of a request already made: the same answer, no second PaymentIntent.
    async fn replay(
        &self,
        id: String,
        existing: ChargingIntent,
        req: &PreAuthRequest,
        request_hash: &str,
        profile: &WorkspaceStripeProfile,
    ) -> Result<PreAuthorized, PaymentError> {
        let r = existing.request.as_ref().expect("an existing intent");
        // Another body, or another driver: a key never hands one driver's client
        // secret to another.
        if r.request_hash != request_hash || r.driver != req.driver {
            return Err(PaymentError::IdempotencyKeyReused);
        }
        if let Some(err) = creation_failure(&existing) {
            return Err(err);
        }
        let client_secret = match &existing.payment {
            Some(_) => {
                self.read_payment_intent(&existing, profile)
                    .await?
                    .client_secret
            }
            None => None,
        };
        Ok(PreAuthorized {
            charging_intent_id: id,
            publishable_key: self.accounts.publishable_key_for(profile, &existing),
            intent: existing,
            client_secret,
            outcome: PreAuthOutcome::Replayed,
        })
    }

    /// What a paid connector needs from the workspace: valid credentials and the key of
    /// the active version. `None` for a free connector.
    async fn paid_pre_auth(
        &self,
        ws: &str,
        connector: &Connector,
        profile: &WorkspaceStripeProfile,
        req: &PreAuthRequest,
    ) -> Result<Option<PaidPreAuth>, PaymentError> {
        if connector.tariff.is_free() {
            return Ok(None);
        }
        let health = profile.health_status();
        if health != HealthStatus::Valid {
            return Err(PaymentError::PaymentNotReady(health.as_str()));
        }
        let connected = profile.connection() == Some(roampay_events::StripeConnection::Connect);
        if connected && self.accounts.connect_settings().is_err() {
            // Connect was turned off on the platform: the account cannot be reached.
            return Err(PaymentError::PaymentNotReady(
                HealthStatus::Invalid.as_str(),
            ));
        }
        let amount_cents = profile.settings.pre_auth_cents.cents();
        let email = req.email.clone();
        let on = self
            .accounts
            .workspace_account(profile, ws)
            .await
            .map_err(internal)?;
        let live = self.accounts.workspace_livemode(profile);
        Ok(Some(PaidPreAuth {
            amount_cents,
            credential_version: profile.active_version(),
            mode: if live {
                StripeMode::Live
            } else {
                StripeMode::Test
            },
            application_fee_bps: on
                .connected
                .as_ref()
                .and_then(|_| self.accounts.application_fee_bps(profile)),
            on,
            email,
        }))
    }

    /// Guests cannot squat connectors: a workspace has at most
    /// `max_pending_guest_intents` guest intents waiting for payment (counted on the read
    /// side, so a burst may pass it by the few intents not projected yet).
    async fn check_guest_quota(&self, ws: &str) -> Result<(), PaymentError> {
        let cap = self.max_pending_guest_intents;
        let open = roampay_projections::charging_intents::pending_guest_intents(&self.db, ws, cap)
            .await
            .map_err(|e| PaymentError::Store(StoreFault::of_sqlx(e)))?;
        if open >= cap {
            return Err(PaymentError::TooManyPendingIntents);
        }
        Ok(())
    }

    /// One open intent per connector, decided by the store. A holder that ended without
    /// releasing it, or that never came to exist (the process died between the
    /// reservation and the intent), is released first: leftovers of crashes do not
    /// block a connector.
    async fn reserve_connector(
        &self,
        r: &IntentRequest,
        meta: &Metadata,
    ) -> Result<(), PaymentError> {
        let key = connector_key(&r.location_id, &r.evse_uid, &r.connector_id);
        let reserve = ConnectorCommand::Reserve {
            workspace_id: r.workspace_id.clone(),
            location_id: r.location_id.clone(),
            evse_uid: r.evse_uid.clone(),
            connector_id: r.connector_id.clone(),
            charging_intent_id: r.charging_intent_id.clone(),
            at: self.clock.now(),
        };
        for _ in 0..2 {
            let held_by = match self.connectors.execute(&key, reserve.clone(), meta).await {
                Ok(_) => return Ok(()),
                Err(AggregateError::UserError(ConnectorError::Busy { held_by })) => held_by,
                Err(other) => return Err(store_error(other)),
            };
            let Some(reason) = self.left_over(&key, &held_by).await? else {
                return Err(PaymentError::ConnectorBusy);
            };
            let release = ConnectorCommand::Release {
                workspace_id: r.workspace_id.clone(),
                charging_intent_id: held_by.clone(),
                reason,
                at: self.clock.now(),
            };
            tracing::warn!(connector = %key, charging_intent_id = %held_by, "released a connector left held");
            self.connectors
                .execute(&key, release, meta)
                .await
                .map_err(store_error)?;
        }
        Err(PaymentError::ConnectorBusy)
    }

    /// Why the holder of a connector no longer holds it for real, if it does not.
    async fn left_over(&self, key: &str, held_by: &str) -> Result<Option<String>, PaymentError> {
        let holder = self.intents.load(held_by).await.map_err(store_error)?;
        if holder.status.is_final() {
            return Ok(Some(holder.status.as_str().to_string()));
        }
        let reservation = self.connectors.load(key).await.map_err(store_error)?;
        let stale = holder.request.is_none()
            && reservation
                .held_since
                .is_some_and(|t| t < self.clock.now() - STALE_RESERVATION);
        Ok(stale.then(|| "stale".to_string()))
    }

    /// The intent's PaymentIntent as Stripe has it, read with the intent's own key.
    async fn read_payment_intent(
        &self,
        intent: &ChargingIntent,
        profile: &WorkspaceStripeProfile,
    ) -> Result<PaymentIntentView, PaymentError> {
        let (Some(r), Some(p)) = (&intent.request, &intent.payment) else {
            return Err(PaymentError::IntentNotFound);
        };
        let on = self
            .accounts
            .account_for_payment(profile, &r.workspace_id, p)
            .await
            .map_err(internal)?;
        self.stripe
            .retrieve_payment_intent(&on, &p.payment_intent_id)
            .await
            .map_err(|_| PaymentError::StripeUnavailable)
    }

    /// The intent's PaymentIntent as Stripe has it now (`None` for a free intent).
    pub(super) async fn current_payment_intent(
        &self,
        intent: &ChargingIntent,
    ) -> Result<Option<PaymentIntentView>, PaymentError> {
        let Some(r) = intent.request.as_ref().filter(|_| intent.payment.is_some()) else {
            return Ok(None);
        };
        let profile = self.profile_recent(&r.workspace_id).await?;
        Ok(Some(self.read_payment_intent(intent, &profile).await?))
    }

    /// `confirm`: the driver admitted at the intent's workspace by `admit` (it answers
    /// the step's metadata) has the intent brought up to Stripe's state.
    pub async fn confirm<E: From<PaymentError>>(
        &self,
        id: &str,
        admit: impl FnOnce(&DriverGate) -> Result<Metadata, E>,
    ) -> Result<ChargingIntent, E> {
        let (intent, gate) = self.intent_gate(id).await?;
        let meta = admit(&gate)?;
        Ok(self.sync_from_stripe(intent, "confirm", &meta).await?)
    }

    /// Reads the PaymentIntent from the workspace's account and applies its status
    /// (the no-webhook path: `confirm` and the sweep). Ended intents are left alone.
    pub async fn sync_from_stripe(
        &self,
        intent: ChargingIntent,
        source: &'static str,
        meta: &Metadata,
    ) -> Result<ChargingIntent, PaymentError> {
        let Some(r) = intent.request.clone().filter(|_| !intent.status.is_final()) else {
            return Ok(intent);
        };
        let Some(pi) = self.current_payment_intent(&intent).await? else {
            return Ok(intent); // a free intent: nothing in Stripe
        };
        let report = StripeReport {
            charging_intent_id: r.charging_intent_id.clone(),
            workspace_id: r.workspace_id,
            payment_intent: pi,
            stripe_event_id: None,
            source,
            connect_account: None,
        };
        self.apply_stripe_state(report, meta).await?;
        self.intents
            .load(&r.charging_intent_id)
            .await
            .map_err(store_error)
    }

    /// The one path by which Stripe's word about a PaymentIntent reaches its intent:
    /// ownership and livemode checked by the aggregate, a redelivery recognised, an end
    /// state followed by the connector's release, and a hold on an intent that has
    /// already ended released in Stripe.
    pub async fn apply_stripe_state(
        &self,
        report: StripeReport,
        meta: &Metadata,
    ) -> Result<Applied, PaymentError> {
        let id = report.charging_intent_id.clone();
        let holds = report.payment_intent.status == PaymentIntentStatus::RequiresCapture;
        let pi = report.payment_intent.clone();
        let cmd = ChargingIntentCommand::ProcessStripeAuthorizationWebhook(
            ProcessStripeAuthorizationWebhook {
                charging_intent_id: id.clone(),
                workspace_id: report.workspace_id.clone(),
                payment_intent: report.payment_intent,
                stripe_event_id: report.stripe_event_id,
                source: report.source,
                connect_account: report.connect_account,
                at: self.clock.now(),
            },
        );
        match self.intents.execute(&id, cmd, meta).await {
            Ok(after) => {
                // Events were applied; an end state now means this report ended it.
                self.intent_changed(false, &after, meta).await;
                Ok(Applied::Applied)
            }
            Err(AggregateError::UserError(ChargingIntentError::DuplicateStripeEvent)) => {
                Ok(Applied::Duplicate)
            }
            Err(AggregateError::UserError(ChargingIntentError::NoChange)) if holds => {
                self.release_stray_hold(&id, &report.workspace_id, pi, meta)
                    .await
            }
            Err(AggregateError::UserError(ChargingIntentError::NoChange)) => Ok(Applied::Unchanged),
            Err(e) => Err(e.into()),
        }
    }

    /// A hold on an intent that has ended (the driver retried the card after we
    /// recorded the failure): nobody will capture it, so it is cancelled in Stripe — but
    /// only when a fresh read of the PaymentIntent shows a hold: a late authorization
    /// event about a PaymentIntent already canceled moves nothing.
    async fn release_stray_hold(
        &self,
        id: &str,
        ws: &str,
        reported: PaymentIntentView,
        meta: &Metadata,
    ) -> Result<Applied, PaymentError> {
        let _step = self.steps.lock(id).await;
        let intent = self.intents.load(id).await.map_err(store_error)?;
        let Some(payment) = intent.payment.as_ref().filter(|p| {
            intent.status.ended_without_capture() && p.payment_intent_id == reported.id
        }) else {
            return Ok(Applied::Unchanged);
        };
        if intent.stray_hold_released {
            return Ok(Applied::Duplicate);
        }
        let profile = self.profile_recent(ws).await?;
        let on = self
            .accounts
            .account_for_payment(&profile, ws, payment)
            .await
            .map_err(internal)?;
        let fresh = self
            .stripe
            .retrieve_payment_intent(&on, &payment.payment_intent_id)
            .await
            .map_err(|_| PaymentError::StripeUnavailable)?;
        let Some(key) = intent.stray_hold_key(&fresh) else {
            return Ok(Applied::Unchanged);
        };
        let canceled = match self
            .stripe
            .cancel_payment_intent(&on, &fresh.id, &key)
            .await
        {
            Ok(after) => after.status == PaymentIntentStatus::Canceled,
            // An earlier attempt may have cancelled it: Stripe's state tells.
            Err(_) => self
                .stripe
                .retrieve_payment_intent(&on, &fresh.id)
                .await
                .is_ok_and(|after| after.status == PaymentIntentStatus::Canceled),
        };
        let cmd = ChargingIntentCommand::ReleaseStrayHold(ReleaseStrayHold {
            payment_intent: fresh,
            canceled,
            at: self.clock.now(),
        });
        self.intents.execute(id, cmd, meta).await?;
        Ok(Applied::Applied)
    }

    /// What follows any change of an intent, in one place: an intent that has just
    /// ended frees its connector. (The read side is nudged by every commit.)
    pub(super) async fn intent_changed(
        &self,
        was_final: bool,
        after: &ChargingIntent,
        meta: &Metadata,
    ) {
        if after.status.is_final() && !was_final {
            crate::metrics::intent_ended(after.status.as_str());
            self.release_connector(after, meta).await;
            // What a paid session cost beyond its capture (capped by the hold).
            if let (Some(r), Some(_), Some(cost), Some(captured)) = (
                &after.request,
                &after.payment,
                after.final_amount_cents,
                after.captured_amount_cents,
            ) {
                crate::metrics::uncollected(&r.currency, cost - captured);
            }
        }
    }

    async fn release_connector(&self, i: &ChargingIntent, meta: &Metadata) {
        let Some(r) = &i.request else { return };
        let cmd = ConnectorCommand::Release {
            workspace_id: r.workspace_id.clone(),
            charging_intent_id: r.charging_intent_id.clone(),
            reason: i.status.as_str().to_string(),
            at: self.clock.now(),
        };
        let key = connector_key(&r.location_id, &r.evse_uid, &r.connector_id);
        if let Err(e) = self.connectors.execute(&key, cmd, meta).await {
            tracing::error!(error = %e, connector = %key, "could not release a connector; the next pre-auth on it will");
        }
    }
}
