//! `make bench`: webhook ingestion (verified, ownership-checked, applied, durably
//! committed) with 16 concurrent clients, against the store's own write limit:
//! - PostgreSQL: `pgbench` single-row INSERT transactions at 16 clients (target ≥ 0.35);
//! - SQLite default: single-row INSERT transactions from 16 concurrent tasks with the
//!   same durability settings as roampay's pool (WAL, synchronous=FULL) (target ≥ 0.3).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use roampay::stripe::webhook::sign;
use secrecy::SecretString;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const CLIENTS: usize = 16;
const INTENTS: usize = 2000;
const JWT: &str = "bench-jwt-secret";
const WH: &str = "whsec_BenchSigningSecret";

fn pg_url() -> String {
    std::env::var("ROAMPAY_BENCH_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Creates PaymentIntents with unique ids and the metadata it was sent.
struct Create(AtomicUsize);

impl Respond for Create {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        let metadata: serde_json::Map<String, Value> = url::form_urlencoded::parse(&req.body)
            .filter_map(|(k, v)| {
                k.strip_prefix("metadata[")
                    .and_then(|k| k.strip_suffix(']'))
                    .map(|k| (k.to_string(), json!(v)))
            })
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({"id": format!("pi_bench{n}"), "object": "payment_intent",
            "status": "requires_payment_method", "amount": 5000, "currency": "aud", "livemode": false,
            "client_secret": format!("pi_bench{n}_secret"), "metadata": metadata}))
    }
}

async fn fake_stripe() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(Create(AtomicUsize::new(0)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/payment_intents"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"object": "list", "data": []})),
        )
        .mount(&server)
        .await;
    server
}

/// Starts roampay, creates `INTENTS` pending intents, then delivers one signed
/// `requires_capture` webhook per intent from 16 clients. Returns applied webhooks/s.
async fn roampay_ingestion(database_url: Option<&str>) -> f64 {
    let stripe = fake_stripe().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_roampay"));
    cmd.arg("serve")
        .env("ROAMPAY_DATA_DIR", dir.path())
        .env("ROAMPAY_BIND", "127.0.0.1:0")
        .env("ROAMPAY_JWT_SECRET", JWT)
        .env("STRIPE_API_BASE", stripe.uri())
        .env("ROAMPAY_RATE_LIMIT_PER_MIN", "1000000")
        .env("ROAMPAY_SWEEP_FIRST_LOOK_SECS", "3600")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    match database_url {
        Some(u) => cmd.env("DATABASE_URL", u),
        None => cmd.env_remove("DATABASE_URL"),
    };
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .split_whitespace()
        .nth(3)
        .expect("listening line")
        .to_string();
    let http = reqwest::Client::new();
    let auth = roampay::http::auth::JwtAuth::new(&SecretString::from(JWT.to_string()), None, None);
    let admin = auth.issue(
        "bench",
        &["ws-bench".into()],
        "roaming:write locations:write",
        3600,
    );
    http.patch(format!("{base}/api/permissions/workspace/ws-bench/ocpi-config"))
        .bearer_auth(&admin)
        .json(&json!({"allow_guest_access": true, "stripe": {"publishable_key": "pk_test_51HxBenchPublishable",
               "secret_key": "sk_test_51HxBenchSecretKey", "webhook_signing_secret": WH}}))
        .send()
        .await
        .unwrap();
    let per_location = 100;
    for l in 0..INTENTS.div_ceil(per_location) {
        let connectors: Vec<_> = (0..per_location)
            .map(|c| json!({"id": c.to_string(), "standard": "IEC_62196_T2", "format": "SOCKET", "power_type": "AC_3_PHASE",
                            "tariff": {"currency": "aud", "price_per_kwh_cents": 45, "flat_fee_cents": 0}}))
            .collect();
        http.put(format!("{base}/api/workspaces/ws-bench/locations/LOC-{l}"))
            .bearer_auth(&admin)
            .json(&json!({"name": "Bench", "address": "1", "city": "Sydney", "country": "AUS",
                          "coordinates": {"latitude": "0", "longitude": "0"}, "evses": [{"uid": "E", "connectors": connectors}]}))
            .send()
            .await
            .unwrap();
    }
    // The pending intents, and one signed webhook body for each.
    let mut bodies = Vec::with_capacity(INTENTS);
    for i in 0..INTENTS {
        let r: Value = http
            .post(format!("{base}/ocpi/create-payment-intent"))
            .json(&json!({"location_id": format!("LOC-{}", i / per_location), "evse_uid": "E", "connector_id": (i % per_location).to_string()}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let pi = json!({"id": r["payment_intent_id"], "object": "payment_intent", "status": "requires_capture", "amount": 5000,
                        "amount_capturable": 5000, "currency": "aud", "livemode": false,
                        "metadata": {"workspace_id": "ws-bench", "charging_intent_id": r["charging_intent_id"]}});
        bodies.push(serde_json::to_vec(&json!({"id": format!("evt_bench_{i}"), "object": "event",
            "type": "payment_intent.amount_capturable_updated", "livemode": false, "data": {"object": pi}})).unwrap());
    }
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let secret = SecretString::from(WH.to_string());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (http, bodies, next, secret, url) = (
            http.clone(),
            bodies.clone(),
            next.clone(),
            secret.clone(),
            format!("{base}/ocpi/stripe/webhook/ws-bench"),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { return };
                let t = chrono::Utc::now().timestamp();
                let sig = format!("t={t},v1={}", sign(&secret, t, body));
                let r: Value = http
                    .post(&url)
                    .header("Stripe-Signature", sig)
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert_eq!(r["outcome"], "applied", "{r}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rate = INTENTS as f64 / started.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    rate
}

fn pgbench_inserts(url: &str) -> f64 {
    let script = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        script.path(),
        "INSERT INTO bench_inserts (v) VALUES (:client_id);\n",
    )
    .unwrap();
    let out = Command::new("pgbench")
        .args([
            "-n",
            "-c",
            &CLIENTS.to_string(),
            "-j",
            "2",
            "-T",
            "10",
            "-f",
            script.path().to_str().unwrap(),
            url,
        ])
        .output()
        .expect("pgbench (postgresql-contrib / postgresql client)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            l.strip_prefix("tps = ")
                .and_then(|r| r.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or_else(|| {
            panic!(
                "pgbench output: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

async fn sqlite_inserts() -> f64 {
    use sqlx::sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
    };
    let dir = tempfile::tempdir().unwrap();
    let options =
        SqliteConnectOptions::from_str(&format!("sqlite://{}", dir.path().join("b.db").display()))
            .unwrap()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE bench_inserts (id INTEGER PRIMARY KEY, v INTEGER)")
        .execute(&pool)
        .await
        .unwrap();
    let n = 4000;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (pool, next) = (pool.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < n {
                sqlx::query("INSERT INTO bench_inserts (v) VALUES ($1)")
                    .bind(1i64)
                    .execute(&pool)
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let admin = sqlx::PgPool::connect(&pg_url())
        .await
        .expect("PostgreSQL for the benchmark");
    let name = format!("roampay_bench_webhooks_{}", std::process::id());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    let url = format!("{}/{name}", pg_url().rsplit_once('/').unwrap().0);
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query("CREATE TABLE bench_inserts (id bigserial PRIMARY KEY, v integer)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let pgbench = pgbench_inserts(&url);
    let ours = roampay_ingestion(Some(&url)).await;
    println!("webhook ingestion, PostgreSQL ({CLIENTS} clients, {INTENTS} webhooks)");
    println!("  pgbench single-row INSERT      : {pgbench:>9.0} tx/s");
    println!("  roampay webhooks applied       : {ours:>9.0} /s");
    println!(
        "  ratio                          : {:>9.3}   (target >= 0.35)",
        ours / pgbench
    );
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&admin)
        .await
        .unwrap();

    let lite = sqlite_inserts().await;
    let ours = roampay_ingestion(None).await;
    println!("webhook ingestion, SQLite default (WAL, synchronous=FULL, {CLIENTS} clients)");
    println!("  single-row INSERT transactions : {lite:>9.0} tx/s");
    println!("  roampay webhooks applied       : {ours:>9.0} /s");
    println!(
        "  ratio                          : {:>9.3}   (target >= 0.3)",
        ours / lite
    );
}
