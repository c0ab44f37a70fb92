//! What the service benchmarks share: a `roampay serve` child with one paying
//! workspace, and locations with one connector per request.
// Each benchmark uses a part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

pub const JWT: &str = "bench-jwt-secret-at-least-32-bytes-long";
/// On PostgreSQL `serve` generates no master key: every run names one.
pub const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
pub const WORKSPACE: &str = "ws-bench";
pub const WEBHOOK_SECRET: &str = "whsec_BenchSigningSecret";
/// Connectors per location: every request gets a connector of its own.
pub const PER_LOCATION: usize = 100;

pub fn pg_url() -> String {
    std::env::var("ROAMPAY_BENCH_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// What the credential check asks: a tagged PaymentIntent created (ahead of the
/// benchmark's own create mock), read back with the publishable key, cancelled.
pub async fn mount_credential_check(server: &wiremock::MockServer) {
    use wiremock::matchers::{body_string_contains, method, path};
    let check = json!({"id": "pi_check_1", "object": "payment_intent", "status": "requires_payment_method",
        "amount": 50, "currency": "aud", "livemode": false, "client_secret": "pi_check_1_secret_x",
        "metadata": {"roampay_purpose": "credential_check"}});
    wiremock::Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .and(body_string_contains("credential_check"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(check.clone()))
        .with_priority(1)
        .mount(server)
        .await;
    for (m, p) in [
        ("GET", "/v1/payment_intents/pi_check_1"),
        ("POST", "/v1/payment_intents/pi_check_1/cancel"),
    ] {
        wiremock::Mock::given(method(m))
            .and(path(p))
            .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(check.clone()))
            .with_priority(1)
            .mount(server)
            .await;
    }
}

/// A running release `roampay serve`, killed when dropped.
pub struct Roampay {
    child: Child,
    pub base: String,
    /// A driver's token for the workspace (a signed-in driver is not counted against
    /// the guests' quota). Not every benchmark signs in.
    #[allow(dead_code)]
    pub driver: String,
    _dir: tempfile::TempDir,
}

impl Drop for Roampay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts roampay against `stripe` (SQLite default when `database_url` is `None`),
/// saves valid credentials for [`WORKSPACE`] (guests may pay) and publishes enough
/// locations for `requests` pre-authorizations.
pub async fn start(
    stripe: &str,
    database_url: Option<&str>,
    extra_env: &[(&str, &str)],
    requests: usize,
) -> Roampay {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_roampay"));
    cmd.arg("serve")
        .env("ROAMPAY_DATA_DIR", dir.path())
        .env("ROAMPAY_BIND", "127.0.0.1:0")
        .env("ROAMPAY_JWT_SECRET", JWT)
        .env("ROAMPAY_MASTER_KEY", MASTER_KEY)
        .env("STRIPE_API_BASE", stripe)
        .env("ROAMPAY_RATE_LIMIT_PER_MIN", "1000000")
        // One load generator stands for many drivers and clients: no per-address
        // connection cap, no cap on guests' unpaid intents (every request is a guest's).
        .env("ROAMPAY_MAX_CONNECTIONS_PER_CLIENT", "100000")
        .env("ROAMPAY_MAX_PENDING_GUEST_INTENTS", "100000000")
        // Setting up a long run takes minutes: its unpaid intents must not expire
        // meanwhile (nor be forgotten by the instance, which keeps states that long).
        .env("ROAMPAY_PENDING_PAYMENT_TIMEOUT_SECS", "3600")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
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
    let auth = roampay::http::auth::JwtAuth::new(
        &secrecy::SecretString::from(JWT.to_string()),
        None,
        None,
    );
    let roampay = Roampay {
        child,
        base,
        driver: auth.issue(
            "driver@example.com",
            &[WORKSPACE.into()],
            "driver",
            24 * 3600,
        ),
        _dir: dir,
    };

    let http = reqwest::Client::new();
    let admin = auth.issue(
        "bench",
        &[WORKSPACE.into()],
        "roaming:write locations:write",
        3600,
    );
    let r = http
        .patch(format!("{}/api/permissions/workspace/{WORKSPACE}/ocpi-config", roampay.base))
        .bearer_auth(&admin)
        .json(&json!({"allow_guest_access": true, "stripe": {"publishable_key": "pk_test_51HxBenchPublishable",
               "secret_key": "sk_test_51HxBenchSecretKey", "webhook_signing_secret": WEBHOOK_SECRET}}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    for l in 0..requests.div_ceil(PER_LOCATION) {
        let connectors: Vec<_> = (0..PER_LOCATION)
            .map(|c| json!({"id": c.to_string(), "standard": "IEC_62196_T2", "format": "SOCKET", "power_type": "AC_3_PHASE",
                            "tariff": {"currency": "aud", "price_per_kwh_cents": 45, "flat_fee_cents": 0}}))
            .collect();
        let r = http
            .put(format!("{}/api/workspaces/{WORKSPACE}/locations/LOC-{l}", roampay.base))
            .bearer_auth(&admin)
            .json(&json!({"name": "Bench", "address": "1 Main St", "city": "Sydney", "country": "AUS",
                          "coordinates": {"latitude": "0", "longitude": "0"}, "evses": [{"uid": "E", "connectors": connectors}]}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    roampay
}

/// The create-payment-intent body of request `i`.
pub fn preauth_body(i: usize) -> serde_json::Value {
    json!({"location_id": format!("LOC-{}", i / PER_LOCATION), "evse_uid": "E", "connector_id": (i % PER_LOCATION).to_string()})
}

/// Delivers each body once, signed, from 16 clients (the webhook benchmarks' load): as fast as they go, or the i-th
/// no earlier than `i × interval` after the start.
pub async fn deliver(
    base: &str,
    bodies: Vec<Vec<u8>>,
    interval: Option<Duration>,
    done: Arc<AtomicUsize>,
) {
    let http = reqwest::Client::new();
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let secret = secrecy::SecretString::from(WEBHOOK_SECRET.to_string());
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (http, bodies, next, done, secret, url) = (
            http.clone(),
            bodies.clone(),
            next.clone(),
            done.clone(),
            secret.clone(),
            format!("{base}/ocpi/stripe/webhook/{WORKSPACE}"),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { return };
                if let Some(every) = interval {
                    tokio::time::sleep_until(start + every * i as u32).await;
                }
                let t = chrono::Utc::now().timestamp();
                let sig = format!(
                    "t={t},v1={}",
                    roampay::infra::stripe::webhook::sign(&secret, t, body)
                );
                let r = answer(
                    http.post(&url)
                        .header("Stripe-Signature", sig)
                        .body(body.clone()),
                )
                .await;
                assert_eq!(r["outcome"], "applied", "{r}");
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// A pending intent on connector `i`, made by `driver` through the API, and the
/// `requires_capture` webhook body that authorizes it.
pub async fn pending_intent(http: &reqwest::Client, base: &str, driver: &str, i: usize) -> Vec<u8> {
    let r = answer(
        http.post(format!("{base}/ocpi/create-payment-intent"))
            .bearer_auth(driver)
            .json(&preauth_body(i)),
    )
    .await;
    capturable_event(i, &r)
}

/// Sends `req` and reads its answer as JSON (a benchmark stops at the first failure).
async fn answer(req: reqwest::RequestBuilder) -> Value {
    req.send().await.unwrap().json().await.unwrap()
}

/// The signed-later body of a `payment_intent.amount_capturable_updated` event for the
/// intent a create-payment-intent answer `r` describes (event number `i`).
pub fn capturable_event(i: usize, r: &Value) -> Vec<u8> {
    let pi = json!({"id": r["payment_intent_id"], "object": "payment_intent", "status": "requires_capture", "amount": 5000,
                    "amount_capturable": 5000, "currency": "aud", "livemode": false,
                    "metadata": {"workspace_id": WORKSPACE, "charging_intent_id": r["charging_intent_id"]}});
    serde_json::to_vec(&json!({"id": format!("evt_bench_{i}"), "object": "event",
        "type": "payment_intent.amount_capturable_updated", "livemode": false, "data": {"object": pi}}))
    .unwrap()
}
