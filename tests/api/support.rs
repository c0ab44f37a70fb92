//! The test harness: fresh stores, a spawned server, tokens, a fake Stripe.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use roampay::http::auth::JwtAuth;
use roampay_projections::Db;
use secrecy::SecretString;
use serde_json::{json, Value};

use wiremock::MockServer;

pub const JWT_SECRET: &str = "test-jwt-secret-for-roampay-api-tests";
pub const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates one test per backend for an `async fn(Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() { super::$name($crate::support::Backend::Sqlite).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() { super::$name($crate::support::Backend::Postgres).await }
        }
    )*};
}

pub fn pg_admin_url() -> String {
    std::env::var("ROAMPAY_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh, empty store; PostgreSQL databases are dropped with it.
pub struct Store {
    pub url: String,
    pub dir: tempfile::TempDir,
    pg_name: Option<String>,
}

impl Store {
    pub async fn fresh(backend: Backend) -> Store {
        let dir = tempfile::tempdir().expect("temp dir");
        match backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}", dir.path().join("roampay.db").display());
                Store {
                    url,
                    dir,
                    pg_name: None,
                }
            }
            Backend::Postgres => {
                let name = format!("roampay_test_{}", uuid::Uuid::now_v7().simple());
                let admin = sqlx::PgPool::connect(&pg_admin_url())
                    .await
                    .expect("PostgreSQL on 127.0.0.1:5432 is required for the API tests (make test starts it)");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&admin)
                    .await
                    .expect("create test database");
                admin.close().await;
                let base = pg_admin_url();
                let url = format!("{}/{name}", base.rsplit_once('/').expect("db url").0);
                Store {
                    url,
                    dir,
                    pg_name: Some(name),
                }
            }
        }
    }

    pub async fn db(&self) -> Db {
        let db = roampay::infra::store::connect(Some(&self.url), self.dir.path())
            .await
            .expect("connect");
        roampay::infra::store::migrate(&db).await.expect("migrate");
        db
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            // Best effort, synchronously: the runtime may be shutting down.
            let _ = Command::new("psql")
                .args([
                    &pg_admin_url(),
                    "-qc",
                    &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

pub struct ServerOptions {
    pub stripe: String,
    pub env: Vec<(String, String)>,
    pub log_level: String,
}

impl ServerOptions {
    pub fn new(stripe: &MockServer) -> Self {
        Self {
            stripe: stripe.uri(),
            env: vec![],
            log_level: "info".into(),
        }
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
}

/// A running `roampay serve`, killed when dropped.
pub struct Server {
    pub base: String,
    pub child: Child,
    pub log: PathBuf,
    pub http: reqwest::Client,
}

impl Server {
    pub async fn start(store: &Store, opts: ServerOptions) -> Server {
        let log = store
            .dir
            .path()
            .join(format!("server-{}.log", uuid::Uuid::now_v7().simple()));
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_roampay"));
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", &store.url)
            .env("ROAMPAY_DATA_DIR", store.data_dir())
            .env("ROAMPAY_BIND", "127.0.0.1:0")
            .env("ROAMPAY_JWT_SECRET", JWT_SECRET)
            .env("ROAMPAY_MASTER_KEY", MASTER_KEY)
            .env("STRIPE_API_BASE", &opts.stripe)
            .env("ROAMPAY_STRIPE_TIMEOUT_MS", "2000")
            .env("ROAMPAY_VALIDATION_WAIT_MS", "4000")
            .env("ROAMPAY_PROJECTION_POLL_MS", "100")
            .env("RUST_LOG", &opts.log_level)
            .stdout(Stdio::piped())
            .stderr(log_file);
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn roampay");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("roampay listening on ") {
                    let _ = tx.send(
                        rest.split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_string(),
                    );
                }
            }
        });
        let base = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(base) => base,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "server did not start: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        Server {
            base,
            child,
            log,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, p: &str) -> String {
        format!("{}{p}", self.base)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no shutdown hooks, no flushing.
    pub fn kill_hard(&mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }

    pub async fn get(&self, p: &str, token: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(p))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET");
        status_json(r).await
    }

    pub async fn post_json(&self, p: &str, token: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(p))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("POST");
        status_json(r).await
    }

    pub async fn patch(&self, p: &str, token: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .patch(self.url(p))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("PATCH");
        status_json(r).await
    }

    pub async fn post(&self, p: &str, token: &str) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(p))
            .bearer_auth(token)
            .send()
            .await
            .expect("POST");
        status_json(r).await
    }

    /// Polls the audit log until `n` entries exist for the workspace (projections lag).
    pub async fn wait_for_audit(&self, ws: &str, n: usize) -> Vec<Value> {
        self.wait_for_audit_as(ws, n, &token("support", &["*"], "audit:read"))
            .await
    }

    /// Polls the audit log until `ready` holds for the workspace's entries.
    pub async fn wait_for_audit_where(
        &self,
        ws: &str,
        ready: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let token = token("support", &["*"], "audit:read");
        self.audit_until(ws, &token, ready).await
    }

    pub async fn wait_for_audit_as(&self, ws: &str, n: usize, token: &str) -> Vec<Value> {
        self.audit_until(ws, token, |d| d.len() >= n).await
    }

    async fn audit_until(
        &self,
        ws: &str,
        token: &str,
        ready: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let path = format!("/api/support/audit?workspace_id={ws}&limit=200");
        eventually(
            &format!("the audit log of {ws} reaching the expected state"),
            || async {
                let (_, body) = self.get(&path, token).await;
                let data = body["data"].as_array().cloned().unwrap_or_default();
                ready(&data).then_some(data)
            },
        )
        .await
    }

    /// The value of a counter or gauge on `/metrics` whose labels include `labels`
    /// (`key="value"` pairs, comma-separated; "" for a series without labels); 0 when
    /// absent.
    pub async fn metric(&self, name: &str, labels: &str) -> f64 {
        let text = self.metrics_text().await;
        let wanted: Vec<&str> = labels.split(',').filter(|l| !l.is_empty()).collect();
        text.lines()
            .filter_map(|l| {
                let rest = l.strip_prefix(name)?;
                match rest.strip_prefix('{') {
                    Some(labelled) => labelled.split_once("} "),
                    None => Some(("", rest.strip_prefix(' ')?)),
                }
            })
            .find(|(have, _)| wanted.iter().all(|w| have.split(',').any(|h| h == *w)))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// `GET /metrics` as text.
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// A GET without a token (driver and public endpoints): status and JSON body.
    pub async fn get_public(&self, p: &str) -> (u16, Value) {
        status_json(self.http.get(self.url(p)).send().await.unwrap()).await
    }

    /// Waits until the background job has finished `n` more rounds: what it would have
    /// done by then, it has done (instead of sleeping "long enough").
    pub async fn wait_for_job_rounds(&self, job: &str, n: f64) {
        let labels = format!("job=\"{job}\"");
        let from = self
            .metric("roampay_background_job_rounds_total", &labels)
            .await;
        eventually(&format!("{n} more rounds of {job}"), || async {
            let now = self
                .metric("roampay_background_job_rounds_total", &labels)
                .await;
            (now >= from + n).then_some(())
        })
        .await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `probe` until it yields a value (for at most 15 s), then returns it; panics
/// naming `what` otherwise. The one way these tests wait for something to happen.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not happen within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn status_json(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub fn auth() -> JwtAuth {
    JwtAuth::new(&SecretString::from(JWT_SECRET.to_string()), None, None)
}

pub fn token(sub: &str, workspaces: &[&str], scope: &str) -> String {
    let ws: Vec<String> = workspaces.iter().map(|s| s.to_string()).collect();
    auth().issue(sub, &ws, scope, 3600)
}

pub fn admin(ws: &str) -> String {
    token("alice@example.com", &[ws], "roaming:read roaming:write")
}

/// A fake Stripe that accepts any key and knows account `acct_test_1`.
pub async fn stripe_ok() -> MockServer {
    let server = MockServer::start().await;
    mount_ok(&server).await;
    server
}

pub use roampay_testkit::stripe::{check_intent, mount_ok, stripe_error};

pub fn creds(pk: &str, sk: &str, wh: &str) -> Value {
    json!({"stripe": {"publishable_key": pk, "secret_key": sk, "webhook_signing_secret": wh}})
}

pub fn good_creds() -> Value {
    creds(
        "pk_test_51HxPublishableKey",
        "sk_test_51HxSecretKeyZZ9Qa",
        "whsec_SigningSecretWW7fZk",
    )
}

pub fn config_path(ws: &str) -> String {
    format!("/api/permissions/workspace/{ws}/ocpi-config")
}
