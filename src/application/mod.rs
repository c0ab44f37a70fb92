//! The application layer: one service per area (`Services` builds them all), one use
//! case per function. A use case owns its side effects as steps — the aggregate decides
//! and plans, the service calls Stripe or the vault with the step's key, a command
//! records the answer — and what follows a change (an ended intent frees its
//! connector; every commit nudges the projector through the store's `on_commit`). HTTP
//! handlers, background jobs and the command line call these; none of them talks to an
//! aggregate directly.

pub mod accounts;
pub mod billing;
pub mod connect;
mod connect_webhooks;
pub mod credentials;
pub mod delivery_log;
pub mod locations;
mod money_events;
pub mod ocpi;
pub mod payments;
pub mod reconcile;
pub mod refunds;
mod revocation;
pub mod sessions;
mod step_locks;
pub mod webhook_answers;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use cqrs_es::AggregateError;
use roampay_projections::{Db, Projector};

use crate::domain::charging_intent::ChargingIntent;
use crate::domain::connector_reservation::ConnectorReservation;
use crate::domain::foreign_payment_intent::ForeignPaymentIntent;
use crate::domain::location::Location;
use crate::domain::webhook_rejections::WebhookRejections;
use crate::domain::workspace_stripe_profile::WorkspaceStripeProfile;
use crate::domain::workspace_subscription::WorkspaceSubscription;
use crate::infra::clock::Clock;
use crate::infra::store::{Aggregates, Metadata, OnCommit};
use crate::infra::stripe::webhook::Tolerance;
use crate::infra::stripe::StripeGateway;
use crate::infra::vault::SecretVault;

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
    pub memory: crate::infra::store::Memory,
    /// Workspace billing, when a platform Stripe key and plans are configured.
    pub billing: Option<billing::BillingSettings>,
    /// Stripe Connect, when the platform's keys are configured.
    pub connect: Option<connect::ConnectSettings>,
    /// Whether webhook deliveries are logged (`ROAMPAY_DELIVERY_LOG_RETENTION_SECS` 0:
    /// not at all).
    pub delivery_log: bool,
    /// Who roampay is to OCPI partners.
    pub ocpi: ocpi::OcpiSettings,
}

/// The application: one service per area, each holding only what it uses. Built
/// once, leaves first (nothing points back up: a refused key reaches the credentials
/// service through the watched gateway, which holds it).
pub struct Services {
    pub payments: Arc<payments::Payments>,
    pub credentials: Arc<credentials::Credentials>,
    pub connect: Arc<connect::Connect>,
    pub billing: Arc<billing::Billing>,
    pub locations: Arc<locations::Locations>,
    pub webhooks: Arc<webhooks::Webhooks>,
    pub reconciler: Arc<reconcile::Reconciler>,
    pub ocpi: Arc<ocpi::Ocpi>,
    /// Every webhook delivery and what became of it.
    pub deliveries: Arc<delivery_log::DeliveryLog>,
    pub projector: Arc<Projector>,
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub settings: Settings,
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
        // The streams that grow for years (a check every 6 h, every push of a location,
        // two events per session on a connector) load from snapshots.
        let profiles: Arc<Aggregates<WorkspaceStripeProfile>> = Arc::new(
            Aggregates::new(&db, (), room)
                .snapshot_every(SNAPSHOT_EVERY)
                .on_commit(nudge.clone()),
        );
        let locations_store: Arc<Aggregates<Location>> = Arc::new(
            Aggregates::new(&db, (), room)
                .snapshot_every(SNAPSHOT_EVERY)
                .on_commit(nudge.clone()),
        );
        let connectors: Arc<Aggregates<ConnectorReservation>> =
            Arc::new(Aggregates::new(&db, (), room).snapshot_every(SNAPSHOT_EVERY));
        let intents: Arc<Aggregates<ChargingIntent>> =
            Arc::new(Aggregates::new(&db, (), room).on_commit(nudge.clone()));
        let rejections: Aggregates<WebhookRejections> =
            Aggregates::new(&db, (), room).on_commit(nudge.clone());
        let foreign: Aggregates<ForeignPaymentIntent> =
            Aggregates::new(&db, (), room).on_commit(nudge.clone());
        let subscriptions: Aggregates<WorkspaceSubscription> =
            Aggregates::new(&db, (), room).on_commit(nudge.clone());
        let ocpi_connections = Aggregates::new(&db, (), room).on_commit(nudge.clone());
        let ocpi_sessions = Aggregates::new(&db, (), room).on_commit(nudge.clone());
        let ocpi_tariffs = Aggregates::new(&db, (), room).on_commit(nudge);

        let deliveries = Arc::new(delivery_log::DeliveryLog::new(
            db.clone(),
            settings.delivery_log,
        ));

        let owners = Arc::new(accounts::KeyOwners::default());
        let accounts = Arc::new(accounts::Accounts::new(
            vault.clone(),
            owners.clone(),
            settings.connect.clone(),
        ));
        let connect = Arc::new(connect::Connect {
            profiles: profiles.clone(),
            db: db.clone(),
            clock: clock.clone(),
            settings: settings.connect.clone(),
        });
        let credentials = Arc::new(credentials::Credentials {
            profiles: profiles.clone(),
            vault: vault.clone(),
            stripe: stripe.clone(),
            db: db.clone(),
            clock: clock.clone(),
            connect: connect.clone(),
            accounts: accounts.clone(),
            validation_wait: settings.validation_wait,
        });
        // Every payment call goes through the watch: a refused key is reported to the
        // credentials (or, for a connected account, to Connect).
        let watched: Arc<dyn StripeGateway> = Arc::new(revocation::Watched::new(
            stripe,
            owners,
            credentials.clone(),
            connect.clone(),
        ));
        let locations = Arc::new(locations::Locations {
            locations: locations_store,
            location_keys: crate::infra::store::location_keys::LocationKeys::new(db.clone()),
            profiles: profiles.clone(),
            accounts: accounts.clone(),
            db: db.clone(),
            clock: clock.clone(),
        });
        let endpoints = webhook_answers::PlatformEndpoints {
            tolerance: settings.webhook_tolerance,
            clock: clock.clone(),
        };
        let billing = Arc::new(billing::Billing {
            subscriptions,
            credentials: credentials.clone(),
            locations: locations.clone(),
            deliveries: deliveries.clone(),
            endpoints: endpoints.clone(),
            db: db.clone(),
            clock: clock.clone(),
            settings: settings.billing.clone(),
        });
        let payments = Arc::new(payments::Payments {
            intents: intents.clone(),
            connectors,
            profiles: profiles.clone(),
            locations: locations.clone(),
            billing: billing.clone(),
            accounts: accounts.clone(),
            stripe: watched.clone(),
            db: db.clone(),
            clock: clock.clone(),
            max_pending_guest_intents: settings.max_pending_guest_intents,
            steps: Default::default(),
        });
        let webhooks = Arc::new(webhooks::Webhooks {
            profiles: profiles.clone(),
            rejections,
            deliveries: deliveries.clone(),
            vault: vault.clone(),
            payments: payments.clone(),
            connect: connect.clone(),
            accounts: accounts.clone(),
            stripe: watched.clone(),
            endpoints,
            db: db.clone(),
            clock: clock.clone(),
            overlap: settings.webhook_overlap,
        });
        let ocpi = Arc::new(ocpi::Ocpi {
            connections: ocpi_connections,
            sessions: ocpi_sessions,
            tariffs: ocpi_tariffs,
            payments: payments.clone(),
            db: db.clone(),
            ids: crate::infra::store::ocpi_connection_ids::OcpiConnectionIds::new(db.clone()),
            vault,
            client: crate::infra::ocpi::OcpiClient::new(Duration::from_secs(10)),
            clock: clock.clone(),
            settings: settings.ocpi.clone(),
        });
        let reconciler = Arc::new(reconcile::Reconciler {
            profiles,
            intents,
            foreign,
            payments: payments.clone(),
            accounts,
            stripe: watched,
            db: db.clone(),
            clock: clock.clone(),
            hold_lifetime: settings.hold_lifetime,
            hold_warning: settings.hold_warning,
        });
        Arc::new(Self {
            payments,
            credentials,
            connect,
            billing,
            locations,
            webhooks,
            reconciler,
            ocpi,
            deliveries,
            projector,
            db,
            clock,
            settings,
        })
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
        let down = crate::infra::store::unreachable(&e);
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
