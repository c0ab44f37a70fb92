//! The no-webhook path in the background: intents left `pending_payment` are looked up
//! in Stripe — first within a minute of creation, then less and less often — with a
//! bounded number of Stripe reads per workspace per round.

use std::collections::HashMap;
use std::time::Duration;

use actix_web::web;
use chrono::{DateTime, Utc};
use roampay_projections::on_db;
use sqlx::Row;

use crate::http::payments::sync_from_stripe;
use crate::http::AppState;
use crate::store::Metadata;

pub struct SweepSettings {
    pub interval: Duration,
    pub first_look: chrono::Duration,
    pub per_workspace: usize,
}

/// Longest wait between two looks at one intent.
const MAX_BACKOFF_SECS: i64 = 15 * 60;

pub async fn run(state: web::Data<AppState>, settings: SweepSettings) {
    let meta = Metadata {
        actor: "system:sweep".into(),
        request_id: String::new(),
    };
    // intent id → (next look, current backoff)
    let mut schedule: HashMap<String, (DateTime<Utc>, i64)> = HashMap::new();
    loop {
        tokio::time::sleep(settings.interval).await;
        let now = Utc::now();
        let due = now - settings.first_look;
        let pending: Result<Vec<(String, String)>, sqlx::Error> = on_db!(&state.db, pool => sqlx::query(
            "SELECT charging_intent_id, workspace_id FROM charging_intents
              WHERE status = 'pending_payment' AND created_at <= $1 ORDER BY created_at LIMIT 1000")
            .bind(due)
            .fetch_all(pool)
            .await
            .and_then(|rows| rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()));
        let pending = match pending {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "sweep could not list pending intents");
                continue;
            }
        };
        schedule.retain(|id, _| pending.iter().any(|(p, _)| p == id));
        let mut per_workspace: HashMap<&str, usize> = HashMap::new();
        for (id, ws) in &pending {
            let (next, backoff) = *schedule
                .entry(id.clone())
                .or_insert((now, settings.first_look.num_seconds().max(1)));
            if next > now {
                continue;
            }
            let used = per_workspace.entry(ws.as_str()).or_default();
            if *used >= settings.per_workspace {
                continue; // this workspace's share of Stripe calls is spent this round
            }
            *used += 1;
            let result = async {
                let intent = state
                    .intents
                    .load(id)
                    .await
                    .map_err(crate::http::error::ApiError::internal)?;
                let profile = state
                    .profiles
                    .load(ws)
                    .await
                    .map_err(crate::http::error::ApiError::internal)?;
                sync_from_stripe(&state, &intent, &profile, "sweep", &meta).await
            }
            .await;
            if let Err(e) = result {
                tracing::warn!(charging_intent_id = %id, error = %e, "sweep could not read the PaymentIntent");
            }
            let backoff = (backoff * 2).min(MAX_BACKOFF_SECS);
            schedule.insert(
                id.clone(),
                (now + chrono::Duration::seconds(backoff), backoff),
            );
        }
    }
}
