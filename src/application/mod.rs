//! The application layer: one use case per function, each owning its side effects
//! (Stripe through the aggregates, the connector release when an intent ends; the
//! projector is nudged by every commit, through the store's `on_commit` hook). HTTP
//! handlers, background jobs and the command line all call these; none of them talks
//! to an aggregate directly.

pub mod billing;
pub mod connect;
mod connect_webhooks;
pub mod credentials;
pub mod delivery_log;
pub mod locations;
mod money_events;
pub mod payments;
pub mod reconcile;
pub mod refunds;
mod revocation;
pub mod sessions;
pub mod webhook_answers;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use cqrs_es::AggregateError;
use roampay_projections::{Db, Projector};
use secrecy::SecretString;

use crate::charging_intent::ChargingIntent;
use crate::clock::Clock;
use crate::connector_reservation::{connector_key, ConnectorCommand, ConnectorReservation};
use crate::foreign_payment_intent::ForeignPaymentIntent;
use crate::location::Location;
use crate::store::{Aggregates, Metadata, OnCommit};
use crate::stripe::webhook::Tolerance;
use crate::stripe::StripeGateway;
use crate::vault::{SecretField, SecretVault};
use crate::webhook_rejections::WebhookRejections;
use crate::workspace_stripe_profile::WorkspaceStripeProfile;
use crate::workspace_subscription::WorkspaceSubscription;

pub use credentials::CredentialError;
pub use locations::LocationError;
pub use payments::PaymentError;
pub use webhooks::{WebhookOutcome, WebhookRefusal};

/// Events between two snapshots of a long-lived aggregate.
const SNAPSHOT_EVERY: usize = 100;

/// Settings the use cases read.
#[derive(Debug, Clone)]
pub struct Settings {
    pub webhook_tolerance: Tolerance,
    /// How long a replaced webhook signing secret keeps verifying.
    pub webhook_overlap: chrono::Duration,
    /// Base of the URLs we show (webhook endpoints).
    pub public_url: String,
    /// How long a credential save waits for the Stripe round trip before answering.
    pub validation_wait: Duration,
    /// How long Stripe keeps an uncaptured hold, and how early a lapse is flagged.
    pub hold_lifetime: chrono::Duration,
    pub hold_warning: chrono::Duration,
    /// Open guest intents waiting for payment a workspace may have at once.
    pub max_pending_guest_intents: i64,
    /// Aggregate states remembered per type, and for how long (see `store::Aggregates`).
    pub memory: crate::store::Memory,
    /// Workspace billing, when a platform Stripe key and plans are configured.
    pub billing: Option<billing::BillingSettings>,
    /// Stripe Connect, when the platform's keys are configured.
    pub connect: Option<connect::ConnectSettings>,
    /// Whether webhook deliveries are logged (`ROAMPAY_DELIVERY_LOG_RETENTION_SECS` 0:
    /// not at all).
    pub delivery_log: bool,
}

/// Everything a use case may reach.
pub struct Services {
    pub db: Db,
    pub profiles: Aggregates<WorkspaceStripeProfile>,
    pub locations: Aggregates<Location>,
    /// Which stream each (case-folded) location id names.
    pub location_keys: crate::store::location_keys::LocationKeys,
    pub connectors: Aggregates<ConnectorReservation>,
    pub intents: Aggregates<ChargingIntent>,
    pub rejections: Aggregates<WebhookRejections>,
    pub foreign: Aggregates<ForeignPaymentIntent>,
    pub subscriptions: Aggregates<WorkspaceSubscription>,
    pub vault: Arc<dyn SecretVault>,
    pub stripe: Arc<dyn StripeGateway>,
    pub projector: Arc<Projector>,
    pub clock: Arc<dyn Clock>,
    pub settings: Settings,
    /// Every webhook delivery and what became of it.
    pub deliveries: delivery_log::DeliveryLog,
    /// Which workspace each key read from the vault belongs to (for refused keys).
    key_owners: Arc<revocation::KeyOwners>,
}

impl Services {
    /// The services; every payment call to Stripe is watched for a refused key.
    pub fn new(
        db: Db,
        vault: Arc<dyn SecretVault>,
        stripe: Arc<dyn StripeGateway>,
        clock: Arc<dyn Clock>,
        settings: Settings,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| {
            let owners = Arc::new(revocation::KeyOwners::default());
            let watched = revocation::Watched::new(stripe, owners.clone(), me.clone());
            Self::with_gateway(db, vault, Arc::new(watched), owners, clock, settings)
        })
    }

    fn with_gateway(
        db: Db,
        vault: Arc<dyn SecretVault>,
        stripe: Arc<dyn StripeGateway>,
        key_owners: Arc<revocation::KeyOwners>,
        clock: Arc<dyn Clock>,
        settings: Settings,
    ) -> Self {
        // Billing's projection runs only with billing on (turned on later, it catches up
        // from its checkpoint): one transaction less per batch otherwise.
        let billing_on = settings.billing.is_some();
        let projections = roampay_projections::all()
            .into_iter()
            .filter(|p| billing_on || p.name() != "workspace_billing")
            .collect();
        let projector = Projector::new(db.clone(), projections, 1000);
        projector.on_dead_letter(Box::new(crate::metrics::dead_letter));
        projector.on_visible(Box::new(crate::metrics::projection_visible));
        // Every commit nudges the read side: projections catch up at once. (A connector
        // reservation always comes with an intent's change, which nudges; waking the
        // projector in the middle of a pre-authorization only competes with it.)
        let nudge: OnCommit = {
            let projector = projector.clone();
            Arc::new(move || projector.nudge())
        };
        let room = settings.memory;
        Self {
            // The streams that grow for years (a check every 6 h, every push of a
            // location, two events per session on a connector) load from snapshots.
            profiles: Aggregates::new(&db, (), room)
                .snapshot_every(SNAPSHOT_EVERY)
                .on_commit(nudge.clone()),
            locations: Aggregates::new(&db, (), room)
                .snapshot_every(SNAPSHOT_EVERY)
                .on_commit(nudge.clone()),
            connectors: Aggregates::new(&db, (), room).snapshot_every(SNAPSHOT_EVERY),
            intents: Aggregates::new(&db, (), room).on_commit(nudge.clone()),
            rejections: Aggregates::new(&db, (), room).on_commit(nudge.clone()),
            foreign: Aggregates::new(&db, (), room).on_commit(nudge.clone()),
            subscriptions: Aggregates::new(&db, (), room).on_commit(nudge),
            projector,
            deliveries: delivery_log::DeliveryLog::new(db.clone(), settings.delivery_log),
            location_keys: crate::store::location_keys::LocationKeys::new(db.clone()),
            db,
            vault,
            stripe,
            clock,
            settings,
            key_owners,
        }
    }

    /// The secret key an intent must use: the one of the credential version it was
    /// created under (a rotation since then does not matter).
    pub async fn secret_key_for(
        &self,
        profile: &WorkspaceStripeProfile,
        workspace_id: &str,
        version: u32,
    ) -> Result<SecretString, String> {
        let k = profile
            .secret_key_for(version)
            .ok_or_else(|| format!("no secret key for credential version {version}"))?;
        let key = self
            .vault
            .get(
                workspace_id,
                SecretField::SecretKey,
                k.version,
                &k.secret.fingerprint,
            )
            .await
            .map_err(|e| e.to_string())?;
        self.key_owners.remember(&key, workspace_id, version);
        Ok(key)
    }

    /// What follows any change of an intent, in one place: an intent that has just
    /// ended frees its connector. (The read side is nudged by every commit.)
    async fn intent_changed(&self, was_final: bool, after: &ChargingIntent, meta: &Metadata) {
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

/// How a store failure reads to a use case: the store did not answer (try again), or
/// something unexpected (logged).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreFault {
    #[error("the event store does not answer")]
    Unavailable,
    #[error("{0}")]
    Internal(String),
}

impl StoreFault {
    /// A read-model query's failure: a lost or refused connection is the store not
    /// answering (503), anything else internal.
    pub fn of_sqlx(e: sqlx::Error) -> Self {
        let down = crate::store::unreachable(&e);
        if down {
            tracing::error!(error = %e, "store unreachable");
            Self::Unavailable
        } else {
            Self::Internal(e.to_string())
        }
    }

    pub fn of<E: std::error::Error>(e: AggregateError<E>) -> Self {
        match e {
            AggregateError::DatabaseConnectionError(e) => {
                tracing::error!(error = %e, "event store unreachable");
                Self::Unavailable
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

/// Metadata of the background work and command line (no request).
pub fn system(actor: &str) -> Metadata {
    Metadata {
        actor: actor.to_string(),
        request_id: String::new(),
    }
}
