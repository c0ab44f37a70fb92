//! `make bench`: webhook ingestion (verified, ownership-checked, applied, durably
//! committed) with 16 concurrent clients, against the store's own write limit:
//! - PostgreSQL: `pgbench` single-row INSERT transactions at 16 clients (target ≥ 0.35);
//! - SQLite default: single-row INSERT transactions from 16 concurrent tasks with the
//!   same durability settings as roampay's pool (WAL, synchronous=FULL) (target ≥ 0.3).
//!
//! Then 2,000 more webhooks at half the rate just measured, and from the service's
//! `roampay_projection_visible_seconds` histogram the p50 and p99 of the time from commit
//! to visible in each read model (target p99 ≤ 100 ms).

mod common;

use std::process::Command;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const CLIENTS: usize = 16;
const INTENTS: usize = 6000;

/// `ROAMPAY_BENCH_INTENTS` overrides the number of webhooks (for profiling).
fn intents() -> usize {
    std::env::var("ROAMPAY_BENCH_INTENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(INTENTS)
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
    common::mount_credential_check(&server).await;
    server
}

/// Starts roampay, creates `INTENTS` pending intents, then delivers one signed
/// `requires_capture` webhook per intent from 16 clients (applied webhooks/s), then
/// more at half that rate (the projections' lag).
async fn roampay_ingestion(database_url: Option<&str>) -> Ingestion {
    let stripe = fake_stripe().await;
    let server = common::start(
        &stripe.uri(),
        database_url,
        &[("ROAMPAY_SWEEP_FIRST_LOOK_SECS", "3600")],
        intents() + PACED,
    )
    .await;
    let base = server.base.clone();
    let http = reqwest::Client::new();
    // The pending intents, and one signed webhook body for each: `intents()` for the
    // rate at full speed, then [`PACED`] more at half that rate for the projection lag.
    // Made 16 at a time (each on a connector of its own), so that a longer delivery —
    // `ROAMPAY_BENCH_INTENTS`, fewer runs decided by a few seconds of the machine — does
    // not cost a setup of many minutes.
    use futures::StreamExt;
    let mut bodies = futures::stream::iter(0..intents() + PACED)
        .map(|i| common::pending_intent(&http, &base, &server.driver, i))
        .buffered(16)
        .collect::<Vec<_>>()
        .await;
    let paced = bodies.split_off(intents());
    eprintln!(
        "delivering {} webhooks; projection lag before: {}",
        bodies.len(),
        projection_lag(&http, &base).await
    );
    let done = Arc::new(AtomicUsize::new(0));
    let slices = tokio::spawn(report_slices(done.clone(), bodies.len()));
    let started = Instant::now();
    common::deliver(&base, bodies.clone(), None, done).await;
    let rate = bodies.len() as f64 / started.elapsed().as_secs_f64();
    slices.await.unwrap();
    eprintln!(
        "projection lag after: {}",
        projection_lag(&http, &base).await
    );
    // Projection lag at half the rate just measured.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = metrics(&http, &base).await;
    let interval = Duration::from_secs_f64(2.0 / rate);
    common::deliver(&base, paced, Some(interval), Arc::new(AtomicUsize::new(0))).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = metrics(&http, &base).await;
    let lag = PROJECTIONS
        .iter()
        .map(|p| {
            let b = visible_buckets(&after, p, &visible_buckets(&before, p, &[]));
            (*p, quantile(&b, 0.5), quantile(&b, 0.99))
        })
        .collect();
    drop(server);
    Ingestion { rate, lag }
}

/// Webhooks delivered at half the full rate, to measure the projections' lag.
const PACED: usize = 2000;
const PROJECTIONS: [&str; 3] = ["audit_log", "charging_intents", "credential_health"];

/// The full rate, and per projection the p50 and p99 (seconds) of the time from commit
/// to visible at half that rate.
struct Ingestion {
    rate: f64,
    lag: Vec<(&'static str, f64, f64)>,
}

async fn metrics(http: &reqwest::Client, base: &str) -> String {
    http.get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The cumulative buckets (upper bound, count) of the projection's
/// `roampay_projection_visible_seconds`, less `minus` (an earlier reading).
fn visible_buckets(text: &str, projection: &str, minus: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let prefix =
        format!("roampay_projection_visible_seconds_bucket{{projection=\"{projection}\",le=\"");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .enumerate()
        .map(|(i, (le, n)): (usize, (f64, f64))| (le, n - minus.get(i).map_or(0.0, |m| m.1)))
        .collect()
}

/// The `q` quantile of cumulative buckets, interpolated within its bucket.
fn quantile(buckets: &[(f64, f64)], q: f64) -> f64 {
    let total = buckets.last().map_or(0.0, |b| b.1);
    let want = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, n) in buckets {
        if n >= want && n > lower.1 {
            if le.is_infinite() {
                return lower.0;
            }
            return lower.0 + (le - lower.0) * (want - lower.1) / (n - lower.1);
        }
        lower = (le, n);
    }
    f64::NAN
}

/// The lag lines of a report.
fn print_lag(lag: &[(&'static str, f64, f64)]) {
    println!("  projection lag at half that rate ({PACED} webhooks), commit to visible:");
    for (p, p50, p99) in lag {
        println!(
            "    {p:<18} p50 {:>6.1} ms   p99 {:>6.1} ms   (target p99 <= 100 ms)",
            p50 * 1e3,
            p99 * 1e3
        );
    }
}

/// The process's resident memory and the read models' lag (events) as `/metrics`
/// states them, projection by projection.
async fn projection_lag(http: &reqwest::Client, base: &str) -> String {
    let text = metrics(http, base).await;
    let rss = text
        .lines()
        .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(String::new(), |b| format!("rss={:.0}MB ", b / 1e6));
    rss + &text
        .lines()
        .filter(|l| l.starts_with("roampay_projection_lag_events{"))
        .filter_map(|l| {
            let name = l.split("projection=\"").nth(1)?.split('"').next()?;
            Some(format!("{name}={}", l.rsplit(' ').next()?))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The delivery rate in tenths of the run, to stderr: does it fall as the log grows?
async fn report_slices(done: Arc<AtomicUsize>, total: usize) {
    let tenth = total.div_ceil(10);
    let (mut mark, mut at) = (0, Instant::now());
    while mark < total {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = done.load(Ordering::Relaxed);
        if now >= (mark + tenth).min(total) {
            let rate = (now - mark) as f64 / at.elapsed().as_secs_f64();
            eprintln!("  webhooks {mark:>6}..{now:<6} {rate:>8.0} /s");
            (mark, at) = (now, Instant::now());
        }
    }
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
    // `ROAMPAY_BENCH_STORES=postgres` (or `sqlite`) measures one store only.
    let stores = std::env::var("ROAMPAY_BENCH_STORES").unwrap_or_default();
    if !stores.contains("sqlite") || stores.contains("postgres") {
        postgres_run().await;
    }
    if !stores.contains("postgres") || stores.contains("sqlite") {
        sqlite_run().await;
    }
}

async fn postgres_run() {
    let admin = sqlx::PgPool::connect(&common::pg_url())
        .await
        .expect("PostgreSQL for the benchmark");
    let name = format!("roampay_bench_webhooks_{}", std::process::id());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    let url = format!("{}/{name}", common::pg_url().rsplit_once('/').unwrap().0);
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query("CREATE TABLE bench_inserts (id bigserial PRIMARY KEY, v integer)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    // The machine's own rate moves from run to run: measured before and after, averaged.
    let before = pgbench_inserts(&url);
    let Ingestion { rate: ours, lag } = roampay_ingestion(Some(&url)).await;
    let after = pgbench_inserts(&url);
    let pgbench = (before + after) / 2.0;
    println!(
        "webhook ingestion, PostgreSQL ({CLIENTS} clients, {} webhooks)",
        intents()
    );
    println!("  pgbench single-row INSERT      : {pgbench:>9.0} tx/s (before {before:.0}, after {after:.0})");
    println!("  roampay webhooks applied       : {ours:>9.0} /s");
    println!(
        "  ratio                          : {:>9.3}   (target >= 0.35)",
        ours / pgbench
    );
    print_lag(&lag);
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&admin)
        .await
        .unwrap();
}

async fn sqlite_run() {
    let before = sqlite_inserts().await;
    let Ingestion { rate: ours, lag } = roampay_ingestion(None).await;
    let after = sqlite_inserts().await;
    let lite = (before + after) / 2.0;
    println!("webhook ingestion, SQLite default (WAL, synchronous=FULL, {CLIENTS} clients)");
    println!("  single-row INSERT transactions : {lite:>9.0} tx/s (before {before:.0}, after {after:.0})");
    println!("  roampay webhooks applied       : {ours:>9.0} /s");
    println!(
        "  ratio                          : {:>9.3}   (target >= 0.3)",
        ours / lite
    );
    print_lag(&lag);
}
