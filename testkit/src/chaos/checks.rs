//! What must hold once a chaos run has settled, checked against the generator's and the
//! Stripe fake's ledgers, the event log and the read models.

use std::collections::{HashMap, HashSet};

use sqlx::{PgPool, Row};

use super::load::Ack;
use crate::stripe::Applied;

/// One check: how many things it looked at, and what broke.
pub struct Check {
    pub name: &'static str,
    pub checked: usize,
    pub violations: Vec<String>,
}

impl Check {
    fn new(name: &'static str) -> Check {
        Check {
            name,
            checked: 0,
            violations: Vec::new(),
        }
    }

    fn expect(&mut self, ok: bool, what: impl FnOnce() -> String) {
        self.checked += 1;
        if !ok {
            self.violations.push(what());
        }
    }
}

/// Statuses after which an intent holds nothing in Stripe.
const ENDED: [&str; 5] = [
    "completed",
    "cancelled",
    "failed",
    "expired",
    "capture_failed",
];

/// Every 2xx the generator saw left its event in the log.
pub async fn acknowledged(db: &PgPool, acks: &[Ack]) -> Check {
    let mut check = Check::new("every 2xx answer is in the event log");
    let rows = sqlx::query("SELECT DISTINCT aggregate_id, event_type FROM events")
        .fetch_all(db)
        .await
        .unwrap();
    let logged: HashSet<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    for a in acks {
        check.expect(
            a.any_of
                .iter()
                .any(|t| logged.contains(&(a.aggregate_id.clone(), t.to_string()))),
            || {
                format!(
                    "{} on {}: none of {:?} in the log",
                    a.what, a.aggregate_id, a.any_of
                )
            },
        );
    }
    check
}

/// Stripe's ledger: at most one capture, no more than the hold, refunds no more than
/// the capture; and what roampay says it captured and refunded is what Stripe did.
pub async fn money(db: &PgPool, applied: &HashMap<String, Applied>) -> Vec<Check> {
    let mut stripe =
        Check::new("per PaymentIntent: ≤ 1 capture, captured ≤ authorized, refunds ≤ captured");
    for (pi, a) in applied {
        let captured: i64 = a.captures.iter().sum();
        let refunded: i64 = a.refunds.iter().sum();
        stripe.expect(
            a.captures.len() <= 1
                && captured <= a.amount
                && (a.captures.is_empty() || a.authorized)
                && refunded <= captured
                && (a.captures.is_empty() || a.cancels == 0),
            || format!("{pi}: {a:?}"),
        );
    }
    let rows = sqlx::query(
        "SELECT charging_intent_id, status, payment_intent_id, captured_amount_cents, refunded_amount_cents \
         FROM charging_intents WHERE payment_intent_id IS NOT NULL",
    )
    .fetch_all(db)
    .await
    .unwrap();
    let mut agree = Check::new("roampay's captured and refunded amounts are Stripe's");
    let mut holds = Check::new("no hold left open on an ended intent; no intent left open");
    for r in rows {
        let (id, status, pi): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        let a = applied.get(&pi).cloned().unwrap_or_default();
        let captured: i64 = a.captures.iter().sum();
        let refunded: i64 = a.refunds.iter().sum();
        let held = a.authorized && a.captures.is_empty() && a.cancels == 0;
        holds.expect(ENDED.contains(&status.as_str()) && !held, || {
            format!("{id} ({pi}) is {status}, Stripe: {a:?}")
        });
        let ours: Option<i64> = r.get(3);
        agree.expect(
            ours.unwrap_or(0) == captured && r.get::<i64, _>(4) == refunded,
            || {
                format!(
                    "{id} ({pi}) {status}: roampay captured {ours:?} refunded {}, Stripe {a:?}",
                    r.get::<i64, _>(4)
                )
            },
        );
    }
    vec![stripe, agree, holds]
}

/// No connector is held by an intent that has ended.
pub async fn connectors(db: &PgPool) -> Check {
    let mut check = Check::new("no connector held by an ended intent");
    let rows = sqlx::query(
        "SELECT DISTINCT ON (aggregate_id) aggregate_id, event_type, \
                payload::jsonb -> 'ConnectorReserved' ->> 'charging_intent_id' \
         FROM events WHERE aggregate_type = 'ConnectorReservation' \
         ORDER BY aggregate_id, sequence DESC",
    )
    .fetch_all(db)
    .await
    .unwrap();
    let statuses: HashMap<String, String> =
        sqlx::query("SELECT charging_intent_id, status FROM charging_intents")
            .fetch_all(db)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
    for r in rows {
        let (connector, event): (String, String) = (r.get(0), r.get(1));
        let holder: Option<String> = r.get(2);
        let status = holder.as_ref().and_then(|h| statuses.get(h));
        check.expect(
            event != "ConnectorReserved" || !status.is_some_and(|s| ENDED.contains(&s.as_str())),
            || format!("{connector} held by {holder:?} ({status:?})"),
        );
    }
    check
}

pub async fn dead_letters(db: &PgPool) -> Check {
    let mut check = Check::new("no dead letter");
    let rows = sqlx::query(
        "SELECT projection, aggregate_id, event_type, error FROM projection_dead_letters",
    )
    .fetch_all(db)
    .await
    .unwrap();
    check.checked = 1;
    for r in rows {
        check.violations.push(format!(
            "{}: {} {}: {}",
            r.get::<String, _>(0),
            r.get::<String, _>(1),
            r.get::<String, _>(2),
            r.get::<String, _>(3)
        ));
    }
    check
}

/// The read models, table by table, as `roampay replay` rebuilds them from the log.
pub const READ_MODELS: [&str; 3] = ["audit_log", "charging_intents", "credential_health"];

/// Keeps each read model's rows (as text) aside before the replay.
pub async fn keep_read_models(db: &PgPool) {
    for t in READ_MODELS {
        sqlx::query(&format!(
            "CREATE TABLE chaos_kept_{t} AS SELECT x::text AS r FROM {t} x"
        ))
        .execute(db)
        .await
        .unwrap();
    }
}

/// After the replay: each table equals what was kept.
pub async fn replayed(db: &PgPool) -> Check {
    let mut check = Check::new("every read model equals a fresh `roampay replay` (table by table)");
    for t in READ_MODELS {
        let diff: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM ((SELECT x::text FROM {t} x EXCEPT ALL SELECT r FROM chaos_kept_{t}) \
             UNION ALL (SELECT r FROM chaos_kept_{t} EXCEPT ALL SELECT x::text FROM {t} x)) d"
        ))
        .fetch_one(db)
        .await
        .unwrap();
        let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {t}"))
            .fetch_one(db)
            .await
            .unwrap();
        check.checked += rows as usize;
        if diff > 0 {
            let sample: Vec<String> = sqlx::query_scalar(&format!(
                "(SELECT 'live:   ' || r FROM chaos_kept_{t} EXCEPT ALL SELECT 'live:   ' || x::text FROM {t} x) \
                 UNION ALL (SELECT 'replay: ' || x::text FROM {t} x EXCEPT ALL SELECT 'replay: ' || r FROM chaos_kept_{t}) LIMIT 6"
            ))
            .fetch_all(db)
            .await
            .unwrap();
            check
                .violations
                .push(format!("{t}: {diff} rows differ of {rows}: {sample:#?}"));
        }
    }
    check
}
