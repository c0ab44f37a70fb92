//! Killed between commit and projection: nothing is lost, and the projections the
//! restarted service builds equal a replay from zero.

use std::process::Command;

use roampay_projections::{on_db, Db};
use serde_json::json;

use crate::on_both_backends;
use crate::support::*;

on_both_backends!(projections_survive_a_sigkill_between_commit_and_projection);

async fn rows(db: &Db, sql: &str) -> Vec<String> {
    on_db!(db, pool => {
        use sqlx::Row;
        sqlx::query(sql).fetch_all(pool).await.expect("snapshot").iter()
            .map(|r| (0..r.len()).map(|i| {
                r.try_get::<Option<String>, _>(i)
                    .map(|v| v.unwrap_or_default())
                    .or_else(|_| r.try_get::<Option<i64>, _>(i).map(|v| v.map(|n| n.to_string()).unwrap_or_default()))
                    .or_else(|_| r.try_get::<Option<chrono::DateTime<chrono::Utc>>, _>(i).map(|v| v.map(|t| t.to_rfc3339()).unwrap_or_default()))
                    .expect("text, integer or timestamp column")
            }).collect::<Vec<_>>().join("|"))
            .collect()
    })
}

async fn snapshot(db: &Db) -> (Vec<String>, Vec<String>) {
    (
        rows(db, "SELECT workspace_id, status, credential_version, mode, account_id, failure_code, failure_message, checked_at, updated_at FROM credential_health ORDER BY workspace_id").await,
        rows(db, "SELECT id, recorded_at, workspace_id, aggregate_type, aggregate_id, event_type, actor, request_id, summary FROM audit_log ORDER BY id").await,
    )
}

async fn count(db: &Db, table: &str) -> i64 {
    on_db!(db, pool => sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(pool).await.unwrap())
}

async fn projections_survive_a_sigkill_between_commit_and_projection(b: Backend) {
    let store = Store::fresh(b).await;
    let stripe = stripe_ok().await;
    let mut server = Server::start(
        &store,
        ServerOptions::new(&stripe).env("ROAMPAY_NO_PROJECTORS", "true"),
    )
    .await;
    server
        .patch(&config_path("ws-1"), &admin("ws-1"), good_creds())
        .await;
    server
        .patch(
            &config_path("ws-1"),
            &admin("ws-1"),
            json!({"pre_auth_cents": 9000}),
        )
        .await;
    server
        .patch(&config_path("ws-2"), &admin("ws-2"), good_creds())
        .await;
    server
        .patch(
            &config_path("ws-2"),
            &admin("ws-2"),
            json!({"stripe": null}),
        )
        .await;
    let db = store.db().await;
    let events = count(&db, "events").await;
    assert_eq!(events, 6, "committed");
    assert_eq!(count(&db, "audit_log").await, 0, "not projected yet");
    server.kill_hard();

    let server = Server::start(&store, ServerOptions::new(&stripe)).await;
    let support = token("support", &["*"], "audit:read");
    crate::support::eventually(
        "every committed event reaching the audit log after restart",
        || async {
            let (_, body) = server.get("/api/support/audit?limit=200", &support).await;
            (body["data"].as_array().unwrap().len() as i64 == events).then_some(())
        },
    )
    .await;
    let live = snapshot(&db).await;
    assert_eq!(live.0.len(), 2, "{:?}", live.0);
    assert!(
        live.0[0].starts_with("ws-1|valid|1|test|acct_test_1"),
        "{:?}",
        live.0
    );
    assert!(live.0[1].starts_with("ws-2|unconfigured|2"), "{:?}", live.0);
    drop(server);

    let out = Command::new(env!("CARGO_BIN_EXE_roampay"))
        .args(["replay"])
        .env("DATABASE_URL", &store.url)
        .env("ROAMPAY_DATA_DIR", store.data_dir())
        .output()
        .expect("run replay");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        // 6 events × 4 projections (credential_health, audit_log, charging_intents,
        // workspace_billing).
        String::from_utf8_lossy(&out.stdout).contains("replayed 24 event applications"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        snapshot(&db).await,
        live,
        "a replay from zero rebuilds exactly the live tables"
    );
    let index: i64 = match &db {
        Db::Postgres(p) => sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_indexes WHERE indexname = 'audit_log_workspace'",
        )
        .fetch_one(p)
        .await
        .unwrap(),
        Db::Sqlite(p) => sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'audit_log_workspace'",
        )
        .fetch_one(p)
        .await
        .unwrap(),
    };
    assert_eq!(index, 1, "the index dropped for the rebuild is back");

    let out = Command::new(env!("CARGO_BIN_EXE_roampay"))
        .args(["replay", "--projection", "audit_log"])
        .env("DATABASE_URL", &store.url)
        .env("ROAMPAY_DATA_DIR", store.data_dir())
        .output()
        .expect("run replay");
    assert!(out.status.success());
    assert_eq!(snapshot(&db).await, live);
    let out = Command::new(env!("CARGO_BIN_EXE_roampay"))
        .args(["replay", "--projection", "nope"])
        .env("DATABASE_URL", &store.url)
        .env("ROAMPAY_DATA_DIR", store.data_dir())
        .output()
        .expect("run replay");
    assert!(!out.status.success(), "unknown projection refused");
}
