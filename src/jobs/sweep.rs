//! The no-webhook path in the background: intents left `pending_payment` are looked up
//! in Stripe — first within a minute of creation, then less and less often — with a
//! bounded number of Stripe reads per workspace per round.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::application::{system, Services};

#[derive(Debug, Clone)]
pub struct SweepSettings {
    pub interval: Duration,
    pub first_look: chrono::Duration,
    pub per_workspace: usize,
}

/// Longest wait between two looks at one intent.
const MAX_BACKOFF_SECS: i64 = 15 * 60;

/// When each pending intent is looked at next: intent id → (next look, backoff secs).
#[derive(Debug, Default)]
pub struct Schedule(HashMap<String, (DateTime<Utc>, i64)>);

/// One sweep: looks up the intents that are due, within each workspace's share.
pub async fn round(
    services: &Services,
    settings: &SweepSettings,
    schedule: &mut Schedule,
) -> Result<(), sqlx::Error> {
    let meta = system("system:sweep");
    let now = services.clock.now();
    let pending = roampay_projections::charging_intents::pending_payment(
        &services.db,
        now - settings.first_look,
        1000,
    )
    .await?;
    schedule
        .0
        .retain(|id, _| pending.iter().any(|(p, _)| p == id));
    let mut per_workspace: HashMap<&str, usize> = HashMap::new();
    for (id, ws) in &pending {
        let (next, backoff) = *schedule
            .0
            .entry(id.clone())
            .or_insert((now, settings.first_look.num_seconds().max(1)));
        let used = per_workspace.entry(ws.as_str()).or_default();
        if next > now || *used >= settings.per_workspace {
            continue; // not due, or this workspace's share of Stripe calls is spent
        }
        *used += 1;
        let looked = match services.payments.load_intent(id).await {
            Ok(intent) => {
                services
                    .payments
                    .sync_from_stripe(intent, "sweep", &meta)
                    .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = looked {
            tracing::warn!(charging_intent_id = %id, error = %e, "sweep could not read the PaymentIntent");
        }
        let backoff = (backoff * 2).min(MAX_BACKOFF_SECS);
        schedule.0.insert(
            id.clone(),
            (now + chrono::Duration::seconds(backoff), backoff),
        );
    }
    Ok(())
}
