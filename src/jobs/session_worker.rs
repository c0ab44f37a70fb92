//! The session worker: releases holds nobody started a session on (`expired`), finishes
//! captures and releases Stripe did not answer definitely (same deterministic keys, the
//! PaymentIntent read first), and flags holds close to lapsing. With several instances
//! on one PostgreSQL only the holder of an advisory lock works; on SQLite there is one
//! process.

use std::time::Duration;

use roampay_projections::charging_intents as read;
use roampay_projections::Db;
use sqlx::pool::PoolConnection;
use sqlx::Postgres;

use crate::application::{system, Services};
use crate::domain::charging_intent::ReleaseReason;

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub interval: Duration,
    /// An authorized hold with no session this long is released.
    pub hold_timeout: chrono::Duration,
    /// A pre-authorization never paid this long is cancelled.
    pub pending_payment_timeout: chrono::Duration,
    pub settle_retry: chrono::Duration,
}

/// The advisory lock key of the session worker (any constant shared by all instances).
const LEADER_LOCK: i64 = 0x726f_616d_7061_7901;
/// Intents handled per kind of work per round.
const BATCH: i64 = 200;

/// Holds the leader lock on PostgreSQL; `None` while another instance holds it.
#[derive(Default)]
pub struct Leadership {
    conn: Option<PoolConnection<Postgres>>,
}

impl Leadership {
    pub async fn lead(&mut self, db: &Db) -> bool {
        let Db::Postgres(pool) = db else {
            return true; // SQLite: one process owns the file
        };
        if let Some(conn) = &mut self.conn {
            // Still ours while the session that took it lives.
            if sqlx::query("SELECT 1").execute(&mut **conn).await.is_ok() {
                return true;
            }
            self.conn = None;
        }
        let Ok(mut conn) = pool.acquire().await else {
            return false;
        };
        let won: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LEADER_LOCK)
            .fetch_one(&mut *conn)
            .await
            .unwrap_or(false);
        if won {
            tracing::info!("this instance runs the session worker");
            self.conn = Some(conn);
        }
        won
    }
}

/// One pass over each kind of work, at the services' clock.
pub async fn round(services: &Services, settings: &WorkerSettings) -> Result<(), sqlx::Error> {
    let meta = system("system:session-worker");
    let now = services.clock.now();
    let db = &services.db;
    for id in read::unsettled(db, now - settings.settle_retry, BATCH).await? {
        report(&id, services.payments.finish_settlement(&id, &meta).await);
    }
    let unused = read::unused(
        db,
        now - settings.hold_timeout,
        now - settings.pending_payment_timeout,
        BATCH,
    );
    for id in unused.await? {
        let done = services
            .payments
            .cancel_intent(&id, ReleaseReason::Expired, &meta)
            .await;
        report(&id, done);
    }
    // When Stripe says each new hold lapses.
    for id in read::deadline_unread(db, BATCH).await? {
        report(&id, services.payments.read_hold_deadline(&id, &meta).await);
    }
    // Holds close to lapsing: by Stripe's deadline, else by the configured lifetime.
    let (lifetime, warning) = (
        services.settings.hold_lifetime,
        services.settings.hold_warning,
    );
    let lapsing = read::lapsing_unflagged(db, now + warning, now - (lifetime - warning), BATCH);
    for id in lapsing.await? {
        let Ok(intent) = services.payments.load_intent(&id).await else {
            continue;
        };
        let estimate = intent.authorized_at.map(|t| t + lifetime);
        let Some(capture_before) = intent.capture_before.or(estimate) else {
            continue;
        };
        tracing::warn!(charging_intent_id = %id, %capture_before, "hold close to lapsing");
        if let Err(e) = services
            .payments
            .flag_lapsing_hold(&id, capture_before, &meta)
            .await
        {
            tracing::warn!(charging_intent_id = %id, error = %e, "could not flag a lapsing hold");
        }
    }
    billing_round(services, now).await
}

/// Workspace billing: past-due workspaces whose grace ended are suspended; cancelled
/// ones whose retention ended are purged.
async fn billing_round(
    services: &Services,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), sqlx::Error> {
    if services.settings.billing.is_none() {
        return Ok(());
    }
    let meta = system("system:billing");
    let db = &services.db;
    for ws in roampay_projections::workspace_billing::grace_over(db, now, BATCH).await? {
        if let Err(e) = services.billing.end_grace(&ws, &meta).await {
            tracing::warn!(workspace_id = %ws, error = %e, "could not suspend a workspace");
        }
    }
    for ws in roampay_projections::workspace_billing::purge_due(db, now, BATCH).await? {
        if let Err(e) = services.billing.purge_workspace(&ws, &meta).await {
            tracing::warn!(workspace_id = %ws, error = %e, "could not purge a workspace");
        }
    }
    Ok(())
}

fn report<T, E: std::fmt::Display>(id: &str, done: Result<T, E>) {
    if let Err(e) = done {
        tracing::warn!(charging_intent_id = %id, error = %e, "session worker could not finish an intent");
    }
}

#[cfg(test)]
mod tests {
    //! The worker's expiry driven by a clock the test moves: no sleep proves anything.

    use std::sync::Arc;

    use roampay_events::{Connector, Coordinates, Evse, IntentStatus, LocationData, Tariff};

    use super::{round, WorkerSettings};
    use crate::application::payments::{PreAuthOutcome, PreAuthRequest};
    use crate::application::{system, Services, Settings};
    use crate::infra::clock::ManualClock;
    use crate::infra::stripe::webhook::Tolerance;
    use crate::infra::stripe::StripeTransport;
    use crate::infra::vault::{DbVault, MasterKey};

    fn free_location() -> LocationData {
        let tariff = Tariff {
            currency: "aud".into(),
            price_per_kwh_cents: 0,
            flat_fee_cents: 0,
        };
        LocationData {
            name: "Depot".into(),
            address: "1 Main St".into(),
            city: "Sydney".into(),
            postal_code: None,
            country: "AUS".into(),
            coordinates: Coordinates {
                latitude: "-33.8688".into(),
                longitude: "151.2093".into(),
            },
            evses: vec![Evse {
                uid: "E1".into(),
                evse_id: None,
                connectors: vec![Connector {
                    id: "1".into(),
                    standard: "IEC_62196_T2".into(),
                    format: "CABLE".into(),
                    power_type: "AC_3_PHASE".into(),
                    max_electric_power: None,
                    tariff,
                }],
            }],
        }
    }

    fn request() -> PreAuthRequest {
        PreAuthRequest {
            location_id: "LOC-1".into(),
            evse_uid: "E1".into(),
            connector_id: "1".into(),
            email: None,
            idempotency_key: None,
            driver: None,
        }
    }

    #[tokio::test]
    async fn an_unused_intent_expires_once_the_clock_passes_the_hold_timeout_and_frees_its_connector(
    ) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::infra::store::connect(None, dir.path())
            .await
            .unwrap();
        crate::infra::store::migrate(&db).await.unwrap();
        let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        let settings = Settings {
            webhook_tolerance: Tolerance::new(300).unwrap(),
            webhook_overlap: chrono::Duration::zero(),
            public_url: String::new(),
            validation_wait: std::time::Duration::ZERO,
            hold_lifetime: chrono::Duration::days(7),
            hold_warning: chrono::Duration::days(1),
            max_pending_guest_intents: 50,
            memory: crate::infra::store::Memory {
                capacity: 100,
                idle: std::time::Duration::from_secs(600),
            },
            billing: None,
            connect: None,
            delivery_log: true,
            ocpi: crate::application::ocpi::OcpiSettings {
                public_url: String::new(),
                country_code: "ZZ".into(),
                party_id: "RPY".into(),
                business_name: "roampay".into(),
            },
        };
        // A free session never needs Stripe: nothing listens where this one points.
        let stripe = Arc::new(StripeTransport::new(
            "http://127.0.0.1:9",
            std::time::Duration::from_millis(200),
            1,
        ));
        let vault = Arc::new(DbVault::new(
            db.clone(),
            MasterKey::from_bytes([7; 32]),
            vec![],
        ));
        let services = Services::new(db, vault, stripe, clock.clone(), settings);
        let worker = WorkerSettings {
            interval: std::time::Duration::from_secs(15),
            hold_timeout: chrono::Duration::minutes(15),
            pending_payment_timeout: chrono::Duration::minutes(10),
            settle_retry: chrono::Duration::seconds(30),
        };
        let meta = system("test");
        services
            .locations
            .publish_location("ws-1", "LOC-1", free_location(), &meta)
            .await
            .unwrap();
        let first = services
            .payments
            .pre_authorize(request(), &meta)
            .await
            .unwrap();
        assert_eq!(first.outcome, PreAuthOutcome::Free);
        let id = first.charging_intent_id;

        // Fourteen minutes on: not due yet.
        clock.advance(chrono::Duration::minutes(14));
        services.projector.catch_up().await.unwrap();
        round(&services, &worker).await.unwrap();
        assert_eq!(
            services.payments.load_intent(&id).await.unwrap().status,
            IntentStatus::Authorized
        );

        // Past the hold timeout: expired, and the connector takes a new intent.
        clock.advance(chrono::Duration::minutes(2));
        round(&services, &worker).await.unwrap();
        assert_eq!(
            services.payments.load_intent(&id).await.unwrap().status,
            IntentStatus::Expired
        );
        let second = services
            .payments
            .pre_authorize(request(), &meta)
            .await
            .unwrap();
        assert_ne!(second.charging_intent_id, id);
    }
}
