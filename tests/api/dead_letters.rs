//! Projections that cannot be stalled: a poisoned event (a NUL character, which
//! PostgreSQL's `text` cannot hold, written straight into the store as an event stored
//! before the boundary refused them would be) and an event a projection's table refuses
//! are set aside as dead letters; hold expiry and the support views go on for every
//! other workspace, and `roampay dead-letters` lists what was set aside.

use std::process::Command;

use roampay_projections::Db;
use serde_json::{json, Value};

use crate::on_both_backends;
use crate::payments::{configure, put_location, start_with_store, WH_A};
use crate::sessions::authorized;
use crate::support::*;

on_both_backends!(
    a_poisoned_event_is_set_aside_and_hold_expiry_goes_on,
    an_event_a_table_refuses_is_set_aside_after_retries_and_the_rest_applies,
);

/// `roampay dead-letters` with `args`: (exit code, stdout).
fn dead_letters(store: &Store, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_roampay"))
        .arg("dead-letters")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &store.url)
        .env("ROAMPAY_DATA_DIR", store.data_dir())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run roampay dead-letters");
    let stdout = String::from_utf8(out.stdout).unwrap();
    (out.status.code().expect("exited"), stdout)
}

/// Writes an event straight into the log, as a buggy or older build could have.
async fn write_raw_event(db: &Db, aggregate_type: &str, id: &str, event_type: &str, payload: &str) {
    let insert = "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type,
                                      event_version, payload, metadata)
                  VALUES ($1, $2, 1, $3, '1.0', $4, '{}')";
    match db {
        Db::Postgres(p) => {
            sqlx::query(&insert.replace("$4,", "$4::json,"))
                .bind(aggregate_type)
                .bind(id)
                .bind(event_type)
                .bind(payload)
                .execute(p)
                .await
                .unwrap();
        }
        Db::Sqlite(p) => {
            sqlx::query(insert)
                .bind(aggregate_type)
                .bind(id)
                .bind(event_type)
                .bind(payload)
                .execute(p)
                .await
                .unwrap();
        }
    }
}

async fn a_poisoned_event_is_set_aside_and_hold_expiry_goes_on(b: Backend) {
    let store = Store::fresh(b).await;
    let env = [
        ("ROAMPAY_WORKER_INTERVAL_SECS", "1"),
        ("ROAMPAY_HOLD_TIMEOUT_SECS", "1"),
    ];
    let (_mock, fake, server) = start_with_store(&store, &store.url.clone(), &env).await;
    configure(&server, "ws-1", "sk_test_51HxWorkspaceOneKey", WH_A).await;
    put_location(&server, "ws-1", "LOC-1", 45).await;
    let db = store.db().await;
    let poisoned = json!({"PaymentAttemptFailed": {
        "charging_intent_id": "ci-evil", "workspace_id": "ws-evil", "payment_intent_id": "pi_evil",
        "stripe_event_id": "evt_evil", "source": "webhook",
        "error": {"code": "card\u{0}declined", "decline_code": null, "message": "nul"},
        "failed_at": "2026-11-26T05:00:00Z"}});
    write_raw_event(
        &db,
        "ChargingIntent",
        "ci-evil",
        "PaymentAttemptFailed",
        &poisoned.to_string(),
    )
    .await;

    // Another workspace's hold still expires (the session worker reads the
    // charging_intents projection, which went past the poison).
    let (id, _pi) = authorized(&server, &fake, "1", false).await;
    eventually("the unused hold expiring", || async {
        let intent = crate::payments::intent(&server, &id).await;
        (intent["status"] == "expired").then_some(())
    })
    .await;
    let support = token("support", &["*"], "audit:read");
    let listed = eventually("the support list showing the expired intent", || async {
        let (status, body) = server
            .get("/api/support/charging-intents?workspace_id=ws-1", &support)
            .await;
        assert_eq!(status, 200, "{body}");
        let data = body["data"].as_array().cloned().unwrap_or_default();
        data.iter()
            .any(|i| i["charging_intent_id"] == id.as_str() && i["status"] == "expired")
            .then_some(data)
    })
    .await;
    assert_eq!(listed.len(), 1);
    server
        .wait_for_audit_where("ws-1", |d| {
            d.iter().any(|e| e["event_type"] == "HoldReleased")
        })
        .await;

    let (code, out) = dead_letters(&store, &[]);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().filter(|l| l.contains("ci-evil")).collect();
    assert_eq!(
        lines.len(),
        2,
        "audit_log and charging_intents set it aside: {out}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("charging_intents\t")),
        "{out}"
    );
    assert!(lines.iter().all(|l| l.contains("NUL")), "{out}");
    assert!(!out.contains('\0'));
    let (code, out) = dead_letters(&store, &["--projection", "charging_intents", "--retry"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 applied, 1 still set aside"), "{out}");
    let (code, out) = dead_letters(&store, &["--projection", "nope"]);
    assert_eq!(code, 2, "{out}");
    assert_eq!(
        server
            .metric(
                "roampay_projection_dead_letters_total",
                "projection=\"charging_intents\""
            )
            .await,
        1.0
    );
}

async fn an_event_a_table_refuses_is_set_aside_after_retries_and_the_rest_applies(b: Backend) {
    let store = Store::fresh(b).await;
    let (_mock, _fake, server) = start_with_store(&store, &store.url.clone(), &[]).await;
    configure(&server, "ws-1", "sk_test_51HxWorkspaceOneKey", WH_A).await;
    server.wait_for_audit("ws-1", 2).await;
    // The audit table refuses one location's event (a constraint the projection does
    // not expect; on PostgreSQL the batch's COPY fails).
    let db = store.db().await;
    match &db {
        Db::Postgres(p) => {
            sqlx::query("ALTER TABLE audit_log ADD CONSTRAINT test_refuses CHECK (aggregate_id NOT LIKE '%BLOCKED%')")
                .execute(p)
                .await
                .unwrap();
        }
        Db::Sqlite(p) => {
            sqlx::query(
                "CREATE TRIGGER test_refuses BEFORE INSERT ON audit_log
                 WHEN NEW.aggregate_id LIKE '%BLOCKED%'
                 BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
            )
            .execute(p)
            .await
            .unwrap();
        }
    }
    let (status, _) = put_location(&server, "ws-1", "LOC-BLOCKED", 45).await;
    assert_eq!(status, 200);
    let (status, _) = put_location(&server, "ws-1", "LOC-AFTER", 45).await;
    assert_eq!(status, 200);
    let audit: Vec<Value> = server
        .wait_for_audit_where("ws-1", |d| {
            d.iter().any(|e| {
                e["aggregate_id"]
                    .as_str()
                    .is_some_and(|a| a.contains("LOC-AFTER"))
            })
        })
        .await;
    assert!(!audit.iter().any(|e| e["aggregate_id"]
        .as_str()
        .is_some_and(|a| a.contains("BLOCKED"))));
    let (code, out) = dead_letters(&store, &["--projection", "audit_log"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("audit_log\t") && l.contains("LOC-BLOCKED")),
        "{out}"
    );
    // Pooled connections are sound after the failed statement: requests still work.
    for _ in 0..20 {
        let (status, body) = server.get(&config_path("ws-1"), &admin("ws-1")).await;
        assert_eq!(status, 200, "{body}");
    }
    // Fixed (the constraint dropped): a retry applies it and empties the list.
    match &db {
        Db::Postgres(p) => {
            sqlx::query("ALTER TABLE audit_log DROP CONSTRAINT test_refuses")
                .execute(p)
                .await
                .unwrap();
        }
        Db::Sqlite(p) => {
            sqlx::query("DROP TRIGGER test_refuses")
                .execute(p)
                .await
                .unwrap();
        }
    }
    let (code, out) = dead_letters(&store, &["--retry"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 applied, 0 still set aside"), "{out}");
    assert!(out.contains("no dead letters"), "{out}");
    server
        .wait_for_audit_where("ws-1", |d| {
            d.iter().any(|e| {
                e["aggregate_id"]
                    .as_str()
                    .is_some_and(|a| a.contains("BLOCKED"))
            })
        })
        .await;
}
