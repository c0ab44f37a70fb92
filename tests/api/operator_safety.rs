//! Issue 26, the second attack review: each finding reproduced as it was reported
//! (every test here failed on 4255d22), on both stores where the store matters.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::billing::{billing_env, platform_event, send as send_billing, status_of, subscription};
use crate::on_both_backends;
use crate::payments::{
    configure, create, deliver, put_location, signature, start, start_with_store, stripe_event,
    WH_A, WH_B,
};
use crate::support::*;

on_both_backends!(
    a_backdated_cancellation_starts_retention_at_receipt_and_purges_nothing_now,
    a_delivery_the_store_refuses_costs_no_other_delivery_its_row,
    a_purge_leaves_no_key_bytes_in_the_database_files,
    request_ids_that_are_formulas_reach_the_csv_exports_inert,
    unverified_noise_is_capped_per_client_address_and_slowed_by_the_rate_limit,
    payloads_are_kept_without_client_secret_fingerprint_billing_details_or_receipt_url,
    location_ids_are_compared_case_insensitively,
    a_redelivered_completed_checkout_is_a_duplicate,
    another_master_key_than_the_stores_stops_serve,
    rotate_master_rewraps_every_data_key_while_the_store_is_in_use,
);

/// What `roampay serve` did with `env` (the test's usual settings, less `remove`):
/// `Err(stderr)` when it exited (with its code), `Ok(())` when it started listening (it is
/// stopped then).
fn serve_outcome(env: &[(&str, &str)], remove: &[&str]) -> Result<(), (Option<i32>, String)> {
    serve_in(tempfile::tempdir().unwrap().path(), env, remove)
}

/// [`serve_outcome`] with `cwd` as the working directory (and its data directory there).
fn serve_in(
    cwd: &std::path::Path,
    env: &[(&str, &str)],
    remove: &[&str],
) -> Result<(), (Option<i32>, String)> {
    let dir = tempfile::tempdir().unwrap();
    let err_path = dir.path().join("stderr.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_roampay"));
    cmd.arg("serve")
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ROAMPAY_DATA_DIR", dir.path().join("data"))
        .env("ROAMPAY_BIND", "127.0.0.1:0")
        .env("ROAMPAY_JWT_SECRET", JWT_SECRET)
        .env("ROAMPAY_MASTER_KEY", MASTER_KEY)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&err_path).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    for k in remove {
        cmd.env_remove(k);
    }
    let mut child = cmd.spawn().expect("spawn roampay");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("roampay listening on ") {
                let _ = tx.send(());
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if rx.try_recv().is_ok() {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(());
        }
        if let Some(status) = child.try_wait().unwrap() {
            return Err((status.code(), std::fs::read_to_string(&err_path).unwrap()));
        }
        assert!(
            Instant::now() < deadline,
            "serve neither started nor exited"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn refused(env: &[(&str, &str)], remove: &[&str]) -> String {
    refused_in(tempfile::tempdir().unwrap().path(), env, remove)
}

fn refused_in(cwd: &std::path::Path, env: &[(&str, &str)], remove: &[&str]) -> String {
    match serve_in(cwd, env, remove) {
        Ok(()) => panic!("serve started with {env:?}"),
        Err((code, stderr)) => {
            assert_eq!(code, Some(2), "{stderr}");
            stderr
        }
    }
}

/// Finding 1: an empty (or made-up) platform webhook secret verified HMACs made with
/// the empty key; such settings now stop `serve`, naming the setting.
#[test]
fn weak_platform_webhook_secrets_stop_serve() {
    for setting in [
        "ROAMPAY_PLATFORM_WEBHOOK_SECRET",
        "ROAMPAY_PLATFORM_WEBHOOK_SECRET_PREVIOUS",
        "ROAMPAY_CONNECT_WEBHOOK_SECRET",
        "ROAMPAY_CONNECT_WEBHOOK_SECRET_PREVIOUS",
    ] {
        for weak in ["", "whsec_", "whsec_short", "not-a-whsec-but-long-enough"] {
            let current = setting.trim_end_matches("_PREVIOUS");
            let mut env = vec![(setting, weak)];
            if current != setting {
                env.push((current, "whsec_TheCurrentEndpointSecret"));
            }
            let stderr = refused(&env, &[]);
            assert!(stderr.contains(setting), "{setting}={weak:?}: {stderr}");
            assert!(
                !stderr.contains("TheCurrentEndpoint"),
                "no secret in the log"
            );
        }
    }
    assert_eq!(
        serve_outcome(
            &[
                (
                    "ROAMPAY_PLATFORM_WEBHOOK_SECRET",
                    "whsec_PlatformBillingEndpoint"
                ),
                (
                    "ROAMPAY_CONNECT_WEBHOOK_SECRET_PREVIOUS",
                    "whsec_PlatformConnectEndpoint"
                ),
                (
                    "ROAMPAY_CONNECT_WEBHOOK_SECRET",
                    "whsec_PlatformConnectEndpoint2"
                ),
            ],
            &[]
        ),
        Ok(())
    );
}

/// Finding 1, second half: `purge_after` counted from the event's `created`, so a
/// cancellation stamped 100 days back purged the workspace within a second.
async fn a_backdated_cancellation_starts_retention_at_receipt_and_purges_nothing_now(b: Backend) {
    let store = Store::fresh(b).await;
    let mut env = billing_env(false);
    env.push(("ROAMPAY_WORKER_INTERVAL_SECS", "1"));
    let (_mock, _fake, server) = start_with_store(&store, &store.url.clone(), &env).await;
    configure(&server, "ws-1", "sk_test_51HxWorkspaceOneKey", WH_A).await;
    put_location(&server, "ws-1", "LOC-1", 45).await;
    let long_ago = chrono::Utc::now().timestamp() - 100 * 86_400;
    let before = chrono::Utc::now();
    let (status, out) = send_billing(
        &server,
        &platform_event(
            "evt_backdated",
            "customer.subscription.deleted",
            long_ago,
            subscription("ws-1", "canceled", "cus_A"),
        ),
    )
    .await;
    assert_eq!((status, out["outcome"].as_str()), (200, Some("applied")));
    let view = status_of(&server, "ws-1").await;
    assert_eq!(view["status"], "cancelled", "{view}");
    let audit = server
        .wait_for_audit_where("ws-1", |d| {
            d.iter()
                .any(|e| e["event_type"] == "WorkspaceSubscriptionCancelled")
        })
        .await;
    let summary = audit
        .iter()
        .find(|e| e["event_type"] == "WorkspaceSubscriptionCancelled")
        .unwrap()["summary"]
        .as_str()
        .unwrap()
        .to_string();
    let purge_after: chrono::DateTime<chrono::Utc> = summary
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("{summary}: {e}"));
    let retention = chrono::Duration::seconds(7_776_000);
    assert!(purge_after >= before + retention, "{summary}");
    // Several worker rounds later the workspace still has its data.
    server.wait_for_job_rounds("session_worker", 3.0).await;
    let (status, _) = server.get_public("/emsp/2.2.1/locations/LOC-1").await;
    assert_eq!(status, 200);
    let (_, cfg) = server.get(&config_path("ws-1"), &admin("ws-1")).await;
    assert_eq!(cfg["stripe"]["secret_key"]["configured"], true, "{cfg}");
}

/// Finding 2: a body with a raw NUL signed by a tenant joined the log's batch, the
/// store refused the batch, and every delivery in it went unlogged.
async fn a_delivery_the_store_refuses_costs_no_other_delivery_its_row(b: Backend) {
    let (_store, _mock, _fake, server) =
        start(b, &[("ROAMPAY_RATE_LIMIT_PER_MIN", "100000")]).await;
    configure(&server, "ws-1", "sk_test_51HxWorkspaceOneKey", WH_A).await;
    configure(&server, "ws-2", "sk_test_51HxWorkspaceTwoKey", WH_B).await;
    let poison = b"{\"id\":\"evt_\0nul\",\"object\":\"event\",\"type\":\"x\\u0000y\"}".to_vec();
    let escaped = br#"{"id":"evt_\u0000esc","object":"event","type":"a\u0000b","created":1,"data":{"object":{}}}"#.to_vec();
    let now = chrono::Utc::now().timestamp();
    let mut sent = 0;
    for round in 0..10 {
        let asks = (0..3).map(|i| {
            let server = &server;
            let (poison, escaped) = (&poison, &escaped);
            async move {
                match i {
                    0 => {
                        deliver(
                            server,
                            "/ocpi/stripe/webhook/ws-1",
                            poison,
                            Some(&signature(WH_A, poison, now)),
                        )
                        .await
                    }
                    1 => {
                        deliver(
                            server,
                            "/ocpi/stripe/webhook/ws-1",
                            escaped,
                            Some(&signature(WH_A, escaped, now)),
                        )
                        .await
                    }
                    _ => {
                        let body = format!(r#"{{"id":"evt_other_{round}","object":"event"}}"#);
                        deliver(server, "/ocpi/stripe/webhook/ws-2", body.as_bytes(), None).await
                    }
                }
            }
        });
        let answers = futures::future::join_all(asks).await;
        assert_eq!(answers[2].0, 400);
        sent += 3;
    }
    let support = token("support", &["*"], "audit:read");
    let count = |ws: &'static str| {
        let (server, support) = (&server, &support);
        async move {
            let (status, page) = server
                .get(
                    &format!("/api/support/webhook-deliveries?workspace_id={ws}&limit=200"),
                    support,
                )
                .await;
            assert_eq!(status, 200, "{page}");
            page["data"].as_array().unwrap().len()
        }
    };
    eventually("every delivery logged", || async {
        (count("ws-1").await + count("ws-2").await == sent).then_some(())
    })
    .await;
    assert_eq!(count("ws-2").await, 10, "the other tenant's deliveries");
    assert_eq!(
        server
            .metric(
                "roampay_webhook_deliveries_unlogged_total",
                "reason=\"store_failed\""
            )
            .await,
        0.0
    );
}

/// The bytes of `needle` occur in the file at `path` (a missing file holds nothing).
fn file_holds(path: &std::path::Path, needle: &[u8]) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    bytes.windows(needle.len()).any(|w| w == needle)
}

/// The files that hold the vault: SQLite's database and WAL, or PostgreSQL's relation
/// files of the two vault tables (after a checkpoint wrote their pages).
async fn vault_files(store: &Store, db: &roampay_projections::Db) -> Vec<std::path::PathBuf> {
    match db {
        roampay_projections::Db::Sqlite(_) => {
            let file = store.dir.path().join("roampay.db");
            vec![file.clone(), file.with_extension("db-wal")]
        }
        roampay_projections::Db::Postgres(pool) => {
            sqlx::query("CHECKPOINT").execute(pool).await.unwrap();
            let dir: String = sqlx::query_scalar("SHOW data_directory")
                .fetch_one(pool)
                .await
                .unwrap();
            let mut files = vec![];
            for table in ["vault_data_keys", "vault_secrets"] {
                let rel: String = sqlx::query_scalar("SELECT pg_relation_filepath($1)")
                    .bind(table)
                    .fetch_one(pool)
                    .await
                    .unwrap();
                files.push(std::path::Path::new(&dir).join(rel));
            }
            files
        }
    }
}

/// Finding 3: a purge deleted the vault rows, but SQLite (no `secure_delete`) kept the
/// wrapped data key and the ciphertexts in its file and WAL, and PostgreSQL in the dead
/// tuples of `vault_data_keys`.
async fn a_purge_leaves_no_key_bytes_in_the_database_files(b: Backend) {
    let store = Store::fresh(b).await;
    let mut env = billing_env(false);
    env.extend([
        ("ROAMPAY_BILLING_RETENTION_SECS", "3"),
        ("ROAMPAY_WORKER_INTERVAL_SECS", "1"),
    ]);
    let (_mock, _fake, server) = start_with_store(&store, &store.url.clone(), &env).await;
    configure(&server, "ws-1", "sk_test_51HxWorkspaceOneKey", WH_A).await;
    let db = store.db().await;
    let sql = "SELECT wrapped_key FROM vault_data_keys WHERE workspace_id = 'ws-1'
               UNION ALL SELECT ciphertext FROM vault_secrets WHERE workspace_id = 'ws-1'";
    let secrets: Vec<Vec<u8>> =
        roampay_projections::on_db!(&db, pool => sqlx::query_scalar(sql).fetch_all(pool).await)
            .unwrap();
    assert!(secrets.len() >= 3, "a data key and two secrets");
    let before = vault_files(&store, &db).await;
    for s in &secrets {
        assert!(
            before.iter().any(|f| file_holds(f, s)),
            "the test can see the bytes before the purge"
        );
    }
    let now = chrono::Utc::now().timestamp();
    send_billing(
        &server,
        &platform_event(
            "evt_p1",
            "customer.subscription.deleted",
            now,
            subscription("ws-1", "canceled", "cus_A"),
        ),
    )
    .await;
    eventually("the cancellation seen", || async {
        (status_of(&server, "ws-1").await["status"] == "cancelled").then_some(())
    })
    .await;
    // On PostgreSQL a transaction with an id in any database of the cluster keeps dead
    // tuples alive: one runs in another database while the purge happens (begun once
    // the cancellation is seen: it would hold up the read side too).
    let holder = match b {
        Backend::Sqlite => None,
        Backend::Postgres => {
            let (ready, holding) = tokio::sync::oneshot::channel();
            let store_url = store.url.clone();
            let task = tokio::spawn(async move {
                use sqlx::Connection;
                let mut other = sqlx::PgConnection::connect(&pg_admin_url()).await.unwrap();
                let mut tx = other.begin().await.unwrap();
                let _: i64 = sqlx::query_scalar("SELECT txid_current()")
                    .fetch_one(&mut *tx)
                    .await
                    .unwrap();
                ready.send(()).unwrap();
                // Held until the purge has deleted the rows, and a moment longer.
                let mut vault = sqlx::PgConnection::connect(&store_url).await.unwrap();
                let keys = "SELECT count(*) FROM vault_data_keys WHERE workspace_id = 'ws-1'";
                for _ in 0..600 {
                    let left: i64 = sqlx::query_scalar(keys)
                        .fetch_one(&mut vault)
                        .await
                        .unwrap();
                    if left == 0 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                tx.commit().await.unwrap();
            });
            holding.await.unwrap();
            Some(task)
        }
    };
    crate::billing::wait_for_purge(&server, "ws-1").await;
    if let Some(holder) = holder {
        holder.await.unwrap();
    }
    let mut files = vault_files(&store, &db).await;
    files.extend(before);
    for s in &secrets {
        for f in &files {
            assert!(!file_holds(f, s), "{} still holds vault bytes", f.display());
        }
    }
}

/// Finding 4: a request id written as a formula reached the CSV exports as it was.
async fn request_ids_that_are_formulas_reach_the_csv_exports_inert(b: Backend) {
    let (_store, _mock, _fake, server) = start(b, &[]).await;
    configure(&server, "ws-1", "sk_test_51HxWorkspaceOneKey", WH_A).await;
    let formula = r#"=HYPERLINK("http://evil.example/x","open")"#;
    let r = server
        .http
        .post(server.url("/ocpi/stripe/webhook/ws-1"))
        .header("content-type", "application/json")
        .header("X-Request-Id", formula)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["x-request-id"], formula);
    let support = token("support", &["*"], "audit:read");
    for path in [
        "/api/support/webhook-deliveries?workspace_id=ws-1",
        "/api/support/audit?workspace_id=ws-1&event_type=WebhookRejected",
    ] {
        let text = eventually("the refusal listed", || async {
            let r = server
                .http
                .get(server.url(path))
                .bearer_auth(&support)
                .header("accept", "text/csv")
                .send()
                .await
                .unwrap();
            let text = r.text().await.unwrap();
            text.contains("HYPERLINK").then_some(text)
        })
        .await;
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let header = reader.headers().unwrap().clone();
        let column = header.iter().position(|h| h == "request_id").unwrap();
        let cells: Vec<String> = reader
            .records()
            .map(|r| r.unwrap()[column].to_string())
            .filter(|c| c.contains("HYPERLINK"))
            .collect();
        assert_eq!(cells, vec![format!("'{formula}")], "{path}");
    }
}

/// Finding 5: the cap on unverified deliveries was per workspace id, which the sender
/// chooses: 400 made-up ids made 400 rows; and the webhook routes had no rate limit.
async fn unverified_noise_is_capped_per_client_address_and_slowed_by_the_rate_limit(b: Backend) {
    let (_store, _mock, _fake, server) =
        start(b, &[("ROAMPAY_RATE_LIMIT_PER_MIN", "100000")]).await;
    for i in 0..400 {
        let (status, _) = deliver(
            &server,
            &format!("/ocpi/stripe/webhook/made-up-{i}"),
            b"{}",
            None,
        )
        .await;
        assert_eq!(status, 400);
    }
    let logged = crate::deliveries::count_listed(&server, "").await;
    assert_eq!(
        logged, 200,
        "twice a workspace's allowance per address and hour"
    );
    assert_eq!(
        server
            .metric(
                "roampay_webhook_deliveries_unlogged_total",
                "reason=\"unverified_cap\""
            )
            .await,
        200.0
    );
    drop(server);

    // With the default limit (120 a minute), refused deliveries spend the address's
    // allowance; past it the answer is 429.
    let (_store, _mock, _fake, server) = start(b, &[]).await;
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..150 {
        let (status, body) = deliver(
            &server,
            &format!("/ocpi/stripe/webhook/made-up-{i}"),
            b"{}",
            None,
        )
        .await;
        if status == 429 {
            assert_eq!(body["code"], "rate_limited");
        }
        *statuses.entry(status).or_insert(0) += 1;
    }
    assert!(
        statuses.get(&429).copied().unwrap_or(0) >= 20,
        "{statuses:?}"
    );
    let billing = deliver(&server, "/billing/stripe/webhook", b"{}", None).await;
    assert_eq!(billing.0, 429, "the billing route counts too");
}

/// Finding 7: payloads kept `billing_details`, card `fingerprint`, `receipt_url`, and
/// `client_secret` was removed by text replacement (an escaped key survived).
async fn payloads_are_kept_without_client_secret_fingerprint_billing_details_or_receipt_url(
    b: Backend,
) {
    let (_store, _mock, fake, server) = start(b, &[]).await;
    configure(&server, "ws-1", "sk_test_51HxWorkspaceOneKey", WH_A).await;
    put_location(&server, "ws-1", "LOC-1", 45).await;
    let (status, created) = create(&server, "LOC-1", "1", None).await;
    assert_eq!(status, 201, "{created}");
    let pi_id = created["payment_intent_id"].as_str().unwrap();
    let mut pi = fake.set_status(pi_id, "requires_capture");
    pi["latest_charge"] = json!({
        "id": "ch_1", "object": "charge", "receipt_url": "https://pay.stripe.com/receipts/secret-receipt",
        "billing_details": {"email": "driver@example.com", "name": "Dana Driver"},
        "payment_method_details": {"card": {"brand": "visa", "last4": "4242", "fingerprint": "Xt5EWLLDS7FJjR1c"}}
    });
    pi["client_secret"] = json!(format!("{pi_id}_secret_abc123"));
    let body = stripe_event("evt_scrub", &pi);
    // The key escaped as JSON allows: the same document, a different text.
    let text = String::from_utf8(body).unwrap().replacen(
        "\"client_secret\"",
        "\"client\\u005fsecret\"",
        1,
    );
    let body = text.into_bytes();
    let sig = signature(WH_A, &body, chrono::Utc::now().timestamp());
    let (status, out) = deliver(&server, "/ocpi/stripe/webhook/ws-1", &body, Some(&sig)).await;
    assert_eq!(status, 200, "{out}");
    let support = token("support", &["*"], "audit:read");
    let (_, page) = server
        .get(
            "/api/support/webhook-deliveries?event_id=evt_scrub",
            &support,
        )
        .await;
    let id = page["data"][0]["id"].as_str().unwrap().to_string();
    let (status, detail) = server
        .get(&format!("/api/support/webhook-deliveries/{id}"), &support)
        .await;
    assert_eq!(status, 200, "{detail}");
    let kept = detail["payload"].to_string();
    for gone in [
        "abc123",
        "secret-receipt",
        "driver@example.com",
        "Dana Driver",
        "Xt5EWLLDS7FJjR1c",
    ] {
        assert!(!kept.contains(gone), "{gone} kept: {kept}");
    }
    let object = &detail["payload"]["data"]["object"];
    assert_eq!(object["client_secret"], "redacted");
    assert_eq!(
        object["latest_charge"]["payment_method_details"]["card"]["last4"],
        "4242"
    );
    assert!(object["latest_charge"].get("billing_details").is_none());
}

/// Finding 7: `LOC-A` of one workspace and `loc-a` of another were two locations, and
/// the driver endpoint served whichever the case named.
async fn location_ids_are_compared_case_insensitively(b: Backend) {
    let (_store, _mock, _fake, server) = start(b, &[]).await;
    configure(&server, "ws-a", "sk_test_51HxWorkspaceAKey1", WH_A).await;
    configure(&server, "ws-b", "sk_test_51HxWorkspaceBKey1", WH_B).await;
    let (status, _) = put_location(&server, "ws-a", "LOC-A", 45).await;
    assert_eq!(status, 200);
    let (status, p) = put_location(&server, "ws-b", "loc-a", 45).await;
    assert_eq!(
        (status, p["code"].as_str()),
        (409, Some("location_owned_by_other_workspace")),
        "{p}"
    );
    for asked in ["loc-a", "LOC-A", "Loc-A"] {
        let (status, loc) = server
            .get_public(&format!("/emsp/2.2.1/locations/{asked}?show_ocpi_cfg=true"))
            .await;
        assert_eq!(status, 200, "{loc}");
        assert_eq!(loc["data"]["id"], "LOC-A", "{loc}");
        assert_eq!(loc["data"]["ocpi_cfg"]["workspace_id"], "ws-a", "{loc}");
    }
    // One connector, whatever the case: the second driver finds it busy.
    let (status, first) = create(&server, "loc-a", "1", None).await;
    assert_eq!(status, 201, "{first}");
    let r = server
        .http
        .post(server.url("/ocpi/create-payment-intent"))
        .json(&json!({"location_id": "LOC-A", "evse_uid": "evse-1", "connector_id": "1", "email": "e@example.com"}))
        .send()
        .await
        .unwrap();
    let (status, second) = status_json(r).await;
    assert_eq!(
        (status, second["code"].as_str()),
        (409, Some("connector_busy")),
        "{second}"
    );
    assert_eq!(intent_location(&server, &first).await, "LOC-A");
}

async fn intent_location(server: &Server, created: &Value) -> String {
    let id = created["charging_intent_id"].as_str().unwrap();
    let view = crate::payments::intent(server, id).await;
    view["location_id"].as_str().unwrap_or_default().to_string()
}

/// Finding 7: a redelivered `checkout.session.completed` answered `applied` again.
async fn a_redelivered_completed_checkout_is_a_duplicate(b: Backend) {
    let store = Store::fresh(b).await;
    let (_mock, _fake, server) =
        start_with_store(&store, &store.url.clone(), &billing_env(false)).await;
    let completed = platform_event(
        "evt_checkout_1",
        "checkout.session.completed",
        chrono::Utc::now().timestamp(),
        json!({"id": "cs_1", "object": "checkout.session", "client_reference_id": "ws-3",
               "customer": "cus_C", "mode": "subscription"}),
    );
    let (_, first) = send_billing(&server, &completed).await;
    assert_eq!(first["outcome"], "applied", "{first}");
    let (_, again) = send_billing(&server, &completed).await;
    assert_eq!(again["outcome"], "duplicate", "{again}");
    assert_eq!(
        status_of(&server, "ws-3").await["stripe_customer_id"],
        "cus_C"
    );
}

const OTHER_MASTER_KEY: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

fn master_id(base64_key: &str) -> String {
    roampay::infra::vault::MasterKey::from_base64(base64_key)
        .unwrap()
        .id()
        .to_string()
}

/// Finding 6: two instances with their own master keys on one store both started; the
/// second answered 500 on the first payment. Now the second stops at start, naming
/// `ROAMPAY_MASTER_KEY` and both key ids.
async fn another_master_key_than_the_stores_stops_serve(b: Backend) {
    let store = Store::fresh(b).await;
    let (_mock, _fake, server) = start_with_store(&store, &store.url.clone(), &[]).await;
    configure(&server, "ws-1", "sk_test_51HxWorkspaceOneKey", WH_A).await;
    let url = store.url.clone();
    let stderr = refused(
        &[
            ("DATABASE_URL", &url),
            ("ROAMPAY_MASTER_KEY", OTHER_MASTER_KEY),
        ],
        &[],
    );
    assert!(stderr.contains("ROAMPAY_MASTER_KEY"), "{stderr}");
    assert!(stderr.contains(&master_id(MASTER_KEY)), "{stderr}");
    assert!(stderr.contains(&master_id(OTHER_MASTER_KEY)), "{stderr}");
    // Without a key: PostgreSQL never makes one up; SQLite's would be another one.
    let stderr = refused(&[("DATABASE_URL", &url)], &["ROAMPAY_MASTER_KEY"]);
    assert!(stderr.contains("ROAMPAY_MASTER_KEY"), "{stderr}");
    if b == Backend::Sqlite {
        assert!(stderr.contains(&master_id(MASTER_KEY)), "{stderr}");
    }
    // The old key as ROAMPAY_MASTER_KEY_PREVIOUS beside the new one: it starts.
    assert_eq!(
        serve_outcome(
            &[
                ("DATABASE_URL", &url),
                ("ROAMPAY_MASTER_KEY", OTHER_MASTER_KEY),
                ("ROAMPAY_MASTER_KEY_PREVIOUS", MASTER_KEY),
            ],
            &[]
        ),
        Ok(())
    );
}

/// PostgreSQL: no master key or JWT secret is ever generated (each instance would make
/// its own), even on an empty store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_serve_generates_no_master_key_or_jwt_secret() {
    let store = Store::fresh(Backend::Postgres).await;
    let url = store.url.clone();
    for missing in ["ROAMPAY_MASTER_KEY", "ROAMPAY_JWT_SECRET"] {
        let stderr = refused(&[("DATABASE_URL", &url)], &[missing]);
        assert!(
            stderr.contains(&format!("{missing} is not set")),
            "{stderr}"
        );
        assert!(stderr.contains("PostgreSQL"), "{stderr}");
    }
}

/// `roampay keys rotate-master`: every data key re-wrapped under the new key while an
/// instance runs on new + previous; afterwards the new key alone serves the secrets.
async fn rotate_master_rewraps_every_data_key_while_the_store_is_in_use(b: Backend) {
    let store = Store::fresh(b).await;
    let url = store.url.clone();
    let (mock, _fake, server) = start_with_store(&store, &url, &[]).await;
    for (n, ws) in ["ws-1", "ws-2", "ws-3"].into_iter().enumerate() {
        configure(&server, ws, &format!("sk_test_51HxWorkspace{n}Key"), WH_A).await;
        put_location(&server, ws, &format!("LOC-{ws}"), 45).await;
    }
    drop(server);
    // The instance learns the new key first, the old one as previous.
    let rolling = ServerOptions::new(&mock)
        .env("DATABASE_URL", &url)
        .env("ROAMPAY_MASTER_KEY", OTHER_MASTER_KEY)
        .env("ROAMPAY_MASTER_KEY_PREVIOUS", MASTER_KEY);
    let server = Server::start(&store, rolling).await;
    let key_file = store.dir.path().join("new.key");
    std::fs::write(&key_file, format!("{OTHER_MASTER_KEY}\n")).unwrap();
    let rotate = || {
        Command::new(env!("CARGO_BIN_EXE_roampay"))
            .args(["keys", "rotate-master", "--new-key-file"])
            .arg(&key_file)
            .env_clear()
            .env("DATABASE_URL", &url)
            .env("ROAMPAY_DATA_DIR", store.data_dir())
            .env("ROAMPAY_MASTER_KEY", MASTER_KEY)
            .output()
            .unwrap()
    };
    let out = rotate();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("re-wrapped 3 data keys"), "{stdout}");
    assert!(stdout.contains(&master_id(OTHER_MASTER_KEY)), "{stdout}");
    // Resumable: a second run finds nothing left to do.
    let again = rotate();
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(
        stdout.contains("re-wrapped 0 data keys") && stdout.contains("3 already"),
        "{stdout}"
    );
    let (status, body) = create(&server, "LOC-ws-1", "1", None).await;
    assert_eq!(status, 201, "the running instance keeps paying: {body}");
    drop(server);
    // The old key is gone: the new one alone serves every workspace's secrets…
    let new_only = ServerOptions::new(&mock)
        .env("DATABASE_URL", &url)
        .env("ROAMPAY_MASTER_KEY", OTHER_MASTER_KEY);
    let server = Server::start(&store, new_only).await;
    for ws in ["ws-2", "ws-3"] {
        let (status, body) = create(&server, &format!("LOC-{ws}"), "1", None).await;
        assert_eq!(status, 201, "{ws}: {body}");
    }
    drop(server);
    // …and the old key alone no longer starts.
    let stderr = refused(&[("DATABASE_URL", &url)], &[]);
    assert!(stderr.contains(&master_id(OTHER_MASTER_KEY)), "{stderr}");
}

/// Finding 8: settings that could not work were accepted (an SQLite file named
/// `localhost:5432`, `mysql://…` read as a path, URLs without a scheme), and errors named
/// the wrong thing or nothing.
#[test]
fn bad_settings_stop_serve_with_one_line_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    for (env, named) in [
        (vec![("DATABASE_URL", "localhost:5432")], "DATABASE_URL"),
        (
            vec![("DATABASE_URL", "mysql://root:hunter2@db/roampay")],
            "DATABASE_URL",
        ),
        (
            vec![("STRIPE_API_BASE", "localhost:12111")],
            "STRIPE_API_BASE",
        ),
        (
            vec![("ROAMPAY_PUBLIC_URL", "pay.example.com")],
            "ROAMPAY_PUBLIC_URL",
        ),
        (
            vec![("ROAMPAY_PUBLIC_URL", "ftp://pay.example.com")],
            "ROAMPAY_PUBLIC_URL",
        ),
        (
            vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318")],
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ),
    ] {
        let stderr = refused_in(dir.path(), &env, &[]);
        assert!(stderr.contains(named), "{env:?}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
    assert!(!dir.path().join("localhost:5432").exists());
    // A busy address: one line naming it and the setting.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let stderr = refused(&[("ROAMPAY_BIND", &addr)], &[]);
    assert!(
        stderr.contains("ROAMPAY_BIND") && stderr.contains(&addr),
        "{stderr}"
    );
    // A data directory that cannot be one (a file is in its way).
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let stderr = refused(&[("ROAMPAY_DATA_DIR", file.to_str().unwrap())], &[]);
    assert!(stderr.contains("ROAMPAY_DATA_DIR"), "{stderr}");
    assert!(!stderr.contains("DATABASE_URL"), "{stderr}");
    // A master key file that cannot be read is named, not "File exists".
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("master.key")).unwrap();
    let stderr = refused(
        &[("ROAMPAY_DATA_DIR", data.to_str().unwrap())],
        &["ROAMPAY_MASTER_KEY"],
    );
    assert!(stderr.contains("master.key"), "{stderr}");
    assert!(!stderr.contains("File exists"), "{stderr}");
}

/// Finding 9: a token was accepted 30 s past its `exp` (undocumented); the leeway is
/// `ROAMPAY_JWT_LEEWAY_SECS`, 5 by default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tokens_get_only_the_configured_leeway() {
    let store = Store::fresh(Backend::Sqlite).await;
    let stripe = stripe_ok().await;
    let server = Server::start(&store, ServerOptions::new(&stripe)).await;
    let path = config_path("ws-1");
    let with_ttl = |ttl| auth().issue("alice", &["ws-1".into()], "roaming:read", ttl);
    assert_eq!(server.get(&path, &with_ttl(-2)).await.0, 200, "within 5 s");
    assert_eq!(server.get(&path, &with_ttl(-10)).await.0, 401, "past 5 s");
    drop(server);
    let strict = ServerOptions::new(&stripe).env("ROAMPAY_JWT_LEEWAY_SECS", "0");
    let server = Server::start(&store, strict).await;
    assert_eq!(server.get(&path, &with_ttl(-2)).await.0, 401);
    assert_eq!(server.get(&path, &with_ttl(60)).await.0, 200);
}

/// Finding 9: two dashboard panels read series a fresh instance did not export.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_instance_exports_what_the_dashboard_reads() {
    let store = Store::fresh(Backend::Sqlite).await;
    let stripe = stripe_ok().await;
    let server = Server::start(&store, ServerOptions::new(&stripe)).await;
    let text = server.metrics_text().await;
    for name in [
        "roampay_uncollected_cents_total",
        "roampay_workspaces_by_billing_status{status=\"cancelled\"} 0",
    ] {
        assert!(text.contains(name), "{name} missing");
    }
    let alerts = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("monitoring/alerts.yml"),
    )
    .unwrap();
    for alert in [
        "RoampayInstanceDown",
        "RoampayHighErrorRatio",
        "RoampayHighLatency",
    ] {
        assert!(alerts.contains(&format!("alert: {alert}")), "{alert}");
    }
    assert!(!alerts.contains(" runbook:"), "annotations say runbook_url");
    assert_eq!(
        alerts.matches("alert: ").count(),
        alerts.matches("runbook_url: ").count()
    );
}
