//! `make bench`: replay throughput against the database's own limit.
//!
//! Baseline: `COPY events TO STDOUT` of the same 100,000 events on the same
//! PostgreSQL, in the same run (how fast the database can hand the log out at all).
//! Measured: rebuilding every projection from zero (reset + catch-up) over that log.
//! Reported: events/s of each and the ratio (target ≥ 0.2).

use std::time::Instant;

use roampay_projections::{Db, Projector};

const EVENTS: i64 = 100_000;
const WORKSPACES: i64 = 1_000;
const REPLAY_BATCH: i64 = roampay_projections::REPLAY_BATCH;

fn pg_url() -> String {
    std::env::var("ROAMPAY_BENCH_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A realistic mix of stored events: settings changes, credential saves, validations.
const SEED: &str = r#"
INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
SELECT 'WorkspaceStripeProfile', 'ws-' || (g % $2), g / $2 + 1,
       CASE g % 4 WHEN 0 THEN 'WorkspaceOcpiConfigUpdated' WHEN 1 THEN 'WorkspaceStripeCredentialsUpdated'
                  WHEN 2 THEN 'WorkspaceStripeCredentialsValidated' ELSE 'WorkspaceStripeCredentialsValidationFailed' END,
       '1.0',
       (CASE g % 4
         WHEN 0 THEN json_build_object('WorkspaceOcpiConfigUpdated', json_build_object(
              'workspace_id', 'ws-' || (g % $2), 'pre_auth_cents', 5000 + g % 100,
              'updated_by', 'alice@example.com', 'updated_at', '2026-11-22T05:00:00Z'))
         WHEN 1 THEN json_build_object('WorkspaceStripeCredentialsUpdated', json_build_object(
              'workspace_id', 'ws-' || (g % $2), 'credential_version', g / $2 + 1, 'mode', 'test',
              'publishable_key', 'pk_test_51HxBenchPublishable',
              'secret_key', json_build_object('fingerprint', md5(g::text), 'last4', 'x9Qa'),
              'secret_key_kind', 'restricted',
              'webhook_signing_secret', json_build_object('fingerprint', md5((g + 1)::text), 'last4', '7fZk'),
              'updated_by', 'alice@example.com', 'updated_at', '2026-11-22T05:00:00Z'))
         WHEN 2 THEN json_build_object('WorkspaceStripeCredentialsValidated', json_build_object(
              'workspace_id', 'ws-' || (g % $2), 'credential_version', g / $2 + 1, 'mode', 'test',
              'account_id', 'acct_1HxBench', 'validated_at', '2026-11-22T05:00:01Z'))
         ELSE json_build_object('WorkspaceStripeCredentialsValidationFailed', json_build_object(
              'workspace_id', 'ws-' || (g % $2), 'credential_version', g / $2 + 1,
              'failure_code', 'permission_denied', 'failure_message', 'The key may not read PaymentIntents.',
              'validated_at', '2026-11-22T05:00:01Z'))
        END),
       json_build_object('actor', 'alice@example.com', 'request_id', md5(g::text),
                         'recorded_at', '2026-11-22T05:00:00.000000Z')
  FROM generate_series(0, $1 - 1) AS g"#;

#[tokio::main]
async fn main() {
    let admin = sqlx::PgPool::connect(&pg_url())
        .await
        .expect("PostgreSQL for the benchmark");
    let name = format!("roampay_bench_{}", std::process::id());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    let url = format!("{}/{name}", pg_url().rsplit_once('/').unwrap().0);
    let db = roampay::infra::store::connect(Some(&url), std::path::Path::new("/tmp"))
        .await
        .unwrap();
    roampay::infra::store::migrate(&db).await.unwrap();
    let Db::Postgres(pool) = &db else {
        unreachable!()
    };
    sqlx::query(SEED)
        .bind(EVENTS)
        .bind(WORKSPACES)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("VACUUM ANALYZE events")
        .execute(pool)
        .await
        .unwrap();

    // Baseline, best of 3.
    let mut copy_secs = f64::MAX;
    for _ in 0..3 {
        let mut conn = pool.acquire().await.unwrap();
        let started = Instant::now();
        let mut stream = conn.copy_out_raw("COPY events TO STDOUT").await.unwrap();
        let mut bytes = 0usize;
        use futures::StreamExt;
        while let Some(chunk) = stream.next().await {
            bytes += chunk.unwrap().len();
        }
        copy_secs = copy_secs.min(started.elapsed().as_secs_f64());
        assert!(bytes > 0);
    }

    // Rebuild of every projection from zero (as `roampay replay`), best of 3.
    // ROAMPAY_BENCH_ONLY=name measures one projection alone (for diagnosis).
    let only = std::env::var("ROAMPAY_BENCH_ONLY").ok();
    let chosen = roampay_projections::all()
        .into_iter()
        .filter(|p| only.as_deref().is_none_or(|o| o == p.name()))
        .collect();
    let batch = std::env::var("ROAMPAY_BENCH_BATCH")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(REPLAY_BATCH);
    let projector = Projector::new(db.clone(), chosen, batch);
    let mut replay_secs = f64::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        let applied = projector.rebuild(|_| {}).await.unwrap();
        replay_secs = replay_secs.min(started.elapsed().as_secs_f64());
        assert_eq!(applied as i64, EVENTS * projector.names().len() as i64);
    }
    let audit: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
        .fetch_one(pool)
        .await
        .unwrap();
    assert!(only.is_some() || audit == EVENTS, "every event projected");

    let copy_rate = EVENTS as f64 / copy_secs;
    let replay_rate = EVENTS as f64 / replay_secs;
    println!(
        "replay benchmark ({EVENTS} events, {} projections, PostgreSQL)",
        projector.names().len()
    );
    println!("  baseline COPY events TO STDOUT : {copy_rate:>12.0} events/s ({copy_secs:.3} s)");
    println!(
        "  replay of all projections       : {replay_rate:>12.0} events/s ({replay_secs:.3} s)"
    );
    println!(
        "  ratio replay / COPY             : {:>12.3}   (target >= 0.2)",
        replay_rate / copy_rate
    );

    drop(projector);
    db_close(db).await;
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&admin)
        .await
        .unwrap();
}

async fn db_close(db: Db) {
    if let Db::Postgres(p) = db {
        p.close().await;
    }
}
