//! `make bench`: the latency roampay adds to a pre-authorization.
//!
//! At a fixed 50 requests/s, for 500 requests each, on one machine:
//! - baseline: client → fake Stripe (`POST /v1/payment_intents` on wiremock) directly;
//! - measured: client → roampay `POST /ocpi/create-payment-intent` → the same fake Stripe.
//!
//! Added latency = measured − baseline, at p50 and p99 (targets ≤ 3 ms and ≤ 10 ms),
//! for the SQLite default and for PostgreSQL.

mod common;

use std::time::{Duration, Instant};

use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const REQUESTS: usize = 500;
const RATE_PER_SEC: u64 = 50;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Sends `REQUESTS` requests at a fixed rate (open loop) and returns sorted latencies in ms.
async fn at_fixed_rate<F, Fut>(make: F) -> Vec<f64>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = u16> + Send + 'static,
{
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE_PER_SEC));
    let mut tasks = Vec::with_capacity(REQUESTS);
    for i in 0..REQUESTS {
        tick.tick().await;
        let fut = make(i);
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let status = fut.await;
            (status, started.elapsed().as_secs_f64() * 1000.0)
        }));
    }
    let mut out = Vec::with_capacity(REQUESTS);
    for t in tasks {
        let (status, ms) = t.await.unwrap();
        assert!((200..300).contains(&status), "request failed with {status}");
        out.push(ms);
    }
    out.sort_by(|a, b| a.partial_cmp(b).unwrap());
    out
}

async fn fake_stripe() -> MockServer {
    let server = MockServer::start().await;
    let pi = json!({"id": "pi_bench", "object": "payment_intent", "status": "requires_payment_method", "amount": 5000,
                    "currency": "aud", "client_secret": "pi_bench_secret_x", "livemode": false, "metadata": {}});
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(ResponseTemplate::new(200).set_body_json(pi))
        .mount(&server)
        .await;
    common::mount_credential_check(&server).await;
    server
}

async fn run(label: &str, database_url: Option<String>, stripe: &MockServer, baseline: &[f64]) {
    let server = common::start(&stripe.uri(), database_url.as_deref(), &[], REQUESTS).await;
    let base = server.base.clone();
    let http = reqwest::Client::new();
    // Warm up the connection pools, then measure.
    let _ = http.get(format!("{base}/healthz")).send().await;
    let measured = at_fixed_rate(|i| {
        let http = http.clone();
        let url = format!("{base}/ocpi/create-payment-intent");
        let body = common::preauth_body(i);
        async move {
            http.post(url)
                .json(&body)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    })
    .await;
    drop(server);
    let (b50, b99) = (percentile(baseline, 0.5), percentile(baseline, 0.99));
    let (m50, m99) = (percentile(&measured, 0.5), percentile(&measured, 0.99));
    println!("pre-auth latency, {label} ({REQUESTS} requests at {RATE_PER_SEC}/s)");
    println!("  client → fake Stripe            : p50 {b50:6.2} ms  p99 {b99:6.2} ms");
    println!("  client → roampay → fake Stripe  : p50 {m50:6.2} ms  p99 {m99:6.2} ms");
    println!("  added by roampay                : p50 {:6.2} ms  p99 {:6.2} ms   (targets <= 3 ms, <= 10 ms)", m50 - b50, m99 - b99);
}

#[tokio::main]
async fn main() {
    let stripe = fake_stripe().await;
    let http = reqwest::Client::new();
    let form = "amount=5000&currency=aud&capture_method=manual&payment_method_types%5B0%5D=card&metadata%5Bworkspace_id%5D=ws-bench";
    let baseline = at_fixed_rate(|i| {
        let http = http.clone();
        let url = format!("{}/v1/payment_intents", stripe.uri());
        async move {
            http.post(url)
                .bearer_auth("sk_test_51HxBenchSecretKey")
                .header("Idempotency-Key", format!("bench-{i}"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    })
    .await;
    run("SQLite (default store)", None, &stripe, &baseline).await;

    let admin = sqlx::PgPool::connect(&common::pg_url())
        .await
        .expect("PostgreSQL for the benchmark");
    let name = format!("roampay_bench_preauth_{}", std::process::id());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    let url = format!("{}/{name}", common::pg_url().rsplit_once('/').unwrap().0);
    run("PostgreSQL", Some(url), &stripe, &baseline).await;
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&admin)
        .await
        .unwrap();
}
