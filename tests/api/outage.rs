//! A database outage: every endpoint answers 503 `store_unavailable` (never 500), and
//! the service recovers when the database is back. PostgreSQL is reached through a TCP
//! proxy the test cuts, as a network partition or a restarting server would. The SQLite
//! file is locked by another process (this test) as a backup tool or a stuck writer
//! would: SQLite's lock bytes in the `-shm` file held, so the server can neither read
//! nor write until they are released.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::on_both_backends;
use crate::payments::{configure, create, put_location, start_with_store, WH_A};
use crate::support::*;

/// A TCP proxy to PostgreSQL that can be cut (every connection dropped, new ones refused).
struct Proxy {
    port: u16,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}
impl Proxy {
    async fn start(port: u16) -> Proxy {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let spawned = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut pg) = TcpStream::connect("127.0.0.1:5432").await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut pg).await;
                    }
                });
                spawned.lock().unwrap().push(conn);
            }
        });
        tasks.lock().unwrap().push(accept);
        Proxy { port, tasks }
    }

    /// The database is gone: open connections dropped, new ones refused.
    fn cut(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

/// Another process holding SQLite's WAL lock bytes (write, checkpoint, recovery and
/// the five read marks, offsets 120–127 of the `-shm` file): every transaction of the
/// server fails once SQLite has retried for about ten seconds.
struct FileLock {
    shm: PathBuf,
    held: Option<File>,
}

impl FileLock {
    fn new(db: PathBuf) -> FileLock {
        let mut shm = db.into_os_string();
        shm.push("-shm");
        FileLock {
            shm: shm.into(),
            held: None,
        }
    }

    /// Takes the lock bytes as soon as no transaction of the server holds them.
    async fn take(&mut self) {
        let file = File::options()
            .read(true)
            .write(true)
            .open(&self.shm)
            .unwrap();
        let lock = libc::flock {
            l_type: libc::F_WRLCK as libc::c_short,
            l_whence: libc::SEEK_SET as libc::c_short,
            l_start: 120,
            l_len: 8,
            l_pid: 0,
        };
        eventually("the SQLite lock bytes free", || async {
            // SAFETY: a valid descriptor and a fully initialised flock.
            let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &lock) };
            (r == 0).then_some(())
        })
        .await;
        self.held = Some(file);
    }

    /// Closing the descriptor releases the lock.
    fn release(&mut self) {
        self.held = None;
    }
}

/// What takes the database away and brings it back.
enum Outage {
    Network(Proxy),
    Locked(FileLock),
}

impl Outage {
    /// The outage and the database URL the server is to use.
    async fn prepare(store: &Store) -> (Outage, String) {
        if store.url.starts_with("sqlite:") {
            let file = PathBuf::from(store.url.trim_start_matches("sqlite://"));
            return (Outage::Locked(FileLock::new(file)), store.url.clone());
        }
        let proxy = Proxy::start(0).await;
        let url = store.url.replace(":5432/", &format!(":{}/", proxy.port));
        (Outage::Network(proxy), url)
    }

    async fn begin(&mut self) {
        match self {
            Outage::Network(proxy) => proxy.cut(),
            Outage::Locked(lock) => lock.take().await,
        }
    }

    async fn end(&mut self) {
        match self {
            Outage::Network(proxy) => *proxy = Proxy::start(proxy.port).await,
            Outage::Locked(lock) => lock.release(),
        }
    }
}

on_both_backends!(a_database_outage_answers_503_store_unavailable_on_every_endpoint);

async fn a_database_outage_answers_503_store_unavailable_on_every_endpoint(backend: Backend) {
    let store = Store::fresh(backend).await;
    let (mut outage, url) = Outage::prepare(&store).await;
    let (_mock, fake, server) =
        start_with_store(&store, &url, &[("ROAMPAY_DB_ACQUIRE_TIMEOUT_MS", "300")]).await;
    configure(&server, "ws-1", "sk_test_51HxWorkspaceOneKey", WH_A).await;
    put_location(&server, "ws-1", "LOC-1", 45).await;
    let (_, created) = create(&server, "LOC-1", "1", None).await;
    let id = created["charging_intent_id"].as_str().unwrap().to_string();
    let pi = fake.set_status(
        created["payment_intent_id"].as_str().unwrap(),
        "requires_capture",
    );

    outage.begin().await;
    // States this instance committed in the last half second answer from memory
    // (`store::RECENT`); past that, every request needs the store.
    tokio::time::sleep(roampay::infra::store::RECENT + std::time::Duration::from_millis(100)).await;
    let admin = token(
        "alice",
        &["ws-1"],
        "roaming:read roaming:write locations:write audit:read sessions:write refunds:write",
    );
    let webhook = crate::payments::stripe_event("evt_outage", &pi);
    let sig = crate::payments::signature(WH_A, &webhook, chrono::Utc::now().timestamp());
    let intent_path = format!("/ocpi/charging-intents/{id}");
    let calls: Vec<(&str, String, Option<serde_json::Value>)> = vec![
        ("GET", "/readyz".into(), None),
        ("GET", config_path("ws-1"), None),
        (
            "PATCH",
            config_path("ws-1"),
            Some(json!({"pre_auth_cents": 6000})),
        ),
        (
            "PUT",
            "/api/workspaces/ws-1/locations/LOC-2".into(),
            Some(crate::payments::location(45)),
        ),
        (
            "GET",
            "/emsp/2.2.1/locations/LOC-1?show_ocpi_cfg=true".into(),
            None,
        ),
        (
            "POST",
            "/ocpi/create-payment-intent".into(),
            Some(json!({"location_id": "LOC-1", "evse_uid": "EVSE-1", "connector_id": "2"})),
        ),
        ("GET", intent_path.clone(), None),
        ("POST", format!("{intent_path}/confirm"), Some(json!({}))),
        (
            "POST",
            format!("{intent_path}/start"),
            Some(json!({"ocpi_session_id": "S-1"})),
        ),
        (
            "POST",
            format!("{intent_path}/complete"),
            Some(json!({"final_amount_cents": 100})),
        ),
        ("POST", format!("{intent_path}/cancel"), Some(json!({}))),
        ("GET", "/api/support/audit?workspace_id=ws-1".into(), None),
        (
            "GET",
            "/api/support/charging-intents?workspace_id=ws-1".into(),
            None,
        ),
        (
            "GET",
            "/api/support/workspaces/ws-1/payment-health".into(),
            None,
        ),
    ];
    let mut requests: Vec<(String, reqwest::RequestBuilder)> = calls
        .into_iter()
        .map(|(method, path, body)| {
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let mut r = server.http.request(method.clone(), server.url(&path));
            if let Some(b) = body {
                r = r.json(&b);
            }
            (format!("{method} {path}"), r.bearer_auth(&admin))
        })
        .collect();
    let refunds = format!("{intent_path}/refunds").replace("/ocpi/", "/api/support/");
    let refund = server.http.post(server.url(&refunds)).bearer_auth(&admin);
    let refund = refund.header("Idempotency-Key", "5e4d3c2b-1a09-4f8e-9d7c-6b5a4f3e2d1c");
    requests.push(("refund".into(), refund.json(&json!({}))));
    let delivery = server
        .http
        .post(server.url("/ocpi/stripe/webhook/ws-1"))
        .header("Stripe-Signature", &sig)
        .header("Content-Type", "application/json")
        .body(webhook.to_vec());
    requests.push(("webhook".into(), delivery));
    // At once: a request waits for the store (SQLite retries a locked file for about
    // ten seconds) before it is answered.
    let answers = futures::future::join_all(
        requests
            .into_iter()
            .map(|(what, r)| async move { (what, status_json(r.send().await.unwrap()).await) }),
    )
    .await;
    for (what, (s, p)) in answers {
        assert_eq!(
            (s, p["code"].as_str()),
            (503, Some("store_unavailable")),
            "{what}: {p}"
        );
    }

    // The database is back: the service answers again without a restart.
    outage.end().await;
    eventually("the service answering again", || async {
        let r = server.http.get(server.url("/readyz")).send().await.unwrap();
        (r.status() == 200).then_some(())
    })
    .await;
    let (s, out) =
        crate::payments::deliver(&server, "/ocpi/stripe/webhook/ws-1", &webhook, Some(&sig)).await;
    assert_eq!(
        (s, out["outcome"].as_str()),
        (200, Some("applied")),
        "{out}"
    );
}
