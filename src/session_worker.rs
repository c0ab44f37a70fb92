//! The session worker: releases holds nobody started a session on (`expired`), finishes
//! captures and releases Stripe did not answer definitely (same deterministic keys, the
//! PaymentIntent read first), and flags holds close to lapsing. With several instances
//! on one PostgreSQL only the holder of an advisory lock works; on SQLite there is one
//! process.

use std::time::Duration;

use actix_web::web;
use chrono::Utc;
use roampay_projections::{on_db, Db};
use sqlx::pool::PoolConnection;
use sqlx::{Postgres, Row};

use crate::charging_intent::{CancelIntent, ChargingIntentCommand, FlagHoldExpiry, ReleaseReason};
use crate::http::payments::release_connector;
use crate::http::sessions::{session_error, settle};
use crate::http::AppState;
use crate::store::Metadata;

pub struct WorkerSettings {
    pub interval: Duration,
    pub hold_timeout: chrono::Duration,
    pub settle_retry: chrono::Duration,
    pub hold_lifetime: chrono::Duration,
    pub hold_warning: chrono::Duration,
}

/// The advisory lock key of the session worker (any constant shared by all instances).
const LEADER_LOCK: i64 = 0x726f_616d_7061_7901;
/// Intents handled per kind of work per round.
const BATCH: i64 = 200;

/// Holds the leader lock on PostgreSQL; `None` while another instance holds it.
struct Leadership {
    conn: Option<PoolConnection<Postgres>>,
}

impl Leadership {
    async fn lead(&mut self, db: &Db) -> bool {
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

pub async fn run(state: web::Data<AppState>, settings: WorkerSettings) {
    let meta = Metadata {
        actor: "system:session-worker".into(),
        request_id: String::new(),
    };
    let mut leadership = Leadership { conn: None };
    loop {
        tokio::time::sleep(settings.interval).await;
        if !leadership.lead(&state.db).await {
            continue;
        }
        if let Err(e) = round(&state, &settings, &meta).await {
            tracing::warn!(error = %e, "session worker round failed; next round retries");
        }
    }
}

async fn ids(
    state: &AppState,
    sql: &str,
    at: chrono::DateTime<Utc>,
) -> Result<Vec<String>, sqlx::Error> {
    on_db!(&state.db, pool => sqlx::query(sql).bind(at).bind(BATCH).fetch_all(pool).await
        .and_then(|rows| rows.iter().map(|r| r.try_get(0)).collect()))
}

/// One pass over each kind of work. Public for tests that drive the worker directly.
pub async fn round(
    state: &AppState,
    settings: &WorkerSettings,
    meta: &Metadata,
) -> Result<(), sqlx::Error> {
    let now = Utc::now();
    // Captures and releases decided but not confirmed by Stripe.
    let unsettled = ids(
        state,
        "SELECT charging_intent_id FROM charging_intents
          WHERE settlement IS NOT NULL AND updated_at <= $1 ORDER BY updated_at LIMIT $2",
        now - settings.settle_retry,
    )
    .await?;
    for id in unsettled {
        finish(state, &id, None, meta).await;
    }
    // Holds nobody started a session on, and pre-authorizations never paid.
    let stale = ids(
        state,
        "SELECT charging_intent_id FROM charging_intents
          WHERE status IN ('authorized', 'pending_payment') AND settlement IS NULL
            AND COALESCE(authorized_at, created_at) <= $1 ORDER BY created_at LIMIT $2",
        now - settings.hold_timeout,
    )
    .await?;
    for id in stale {
        let cmd = ChargingIntentCommand::CancelIntent(CancelIntent {
            reason: ReleaseReason::Expired,
            at: now,
        });
        finish(state, &id, Some(cmd), meta).await;
    }
    // Holds close to lapsing, not yet flagged.
    let lapsing = ids(
        state,
        "SELECT charging_intent_id FROM charging_intents
          WHERE status IN ('authorized', 'charging') AND capture_before IS NULL
            AND authorized_at <= $1 ORDER BY authorized_at LIMIT $2",
        now - (settings.hold_lifetime - settings.hold_warning),
    )
    .await?;
    for id in lapsing {
        let Ok(intent) = state.intents.load(&id).await else {
            continue;
        };
        let Some(authorized_at) = intent.authorized_at else {
            continue;
        };
        let capture_before = authorized_at + settings.hold_lifetime;
        tracing::warn!(charging_intent_id = %id, %capture_before, "hold close to lapsing");
        let cmd = ChargingIntentCommand::FlagHoldExpiry(FlagHoldExpiry {
            capture_before,
            at: now,
        });
        if let Err(e) = state.intents.execute(&id, cmd, meta).await {
            tracing::warn!(charging_intent_id = %id, error = %e, "could not flag a lapsing hold");
        }
    }
    state.projector.nudge();
    Ok(())
}

/// Runs `cmd` (if any), settles what is pending, frees the connector once ended.
async fn finish(state: &AppState, id: &str, cmd: Option<ChargingIntentCommand>, meta: &Metadata) {
    let result = async {
        let mut intent = state.intents.load(id).await.map_err(session_error)?;
        let was_final = intent.status.is_final();
        if let Some(cmd) = cmd {
            intent = state
                .intents
                .execute(id, cmd, meta)
                .await
                .map_err(session_error)?;
        }
        let after = settle(state, intent, meta).await?;
        if after.status.is_final() && !was_final {
            release_connector(state, &after, after.status.as_str(), meta).await;
        }
        Ok::<_, crate::http::error::ApiError>(after)
    }
    .await;
    match result {
        Ok(after) => {
            tracing::info!(charging_intent_id = %id, status = after.status.as_str(), "session worker")
        }
        Err(e) => {
            tracing::warn!(charging_intent_id = %id, error = %e, "session worker could not finish an intent")
        }
    }
}
