//! A database outage: every endpoint answers 503 `store_unavailable` (never 500), and
//! the service recovers when the database is back. PostgreSQL is reached through a TCP
//! proxy the test cuts, as a network partition or a restarting server would.

use std::sync::{Arc, Mutex};

use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_answers_503_store_unavailable_on_every_endpoint() {
    let store = Store::fresh(Backend::Postgres).await;
    let proxy = Proxy::start(0).await;
    let through_proxy = store.url.replace(":5432/", &format!(":{}/", proxy.port));
    let (_mock, fake, server) = start_with_store(
        &store,
        &through_proxy,
        &[("ROAMPAY_DB_ACQUIRE_TIMEOUT_MS", "300")],
    )
    .await;
    configure(&server, "ws-1", "sk_test_51HxWorkspaceOneKey", WH_A).await;
    put_location(&server, "ws-1", "LOC-1", 45).await;
    let (_, created) = create(&server, "LOC-1", "1", None).await;
    let id = created["charging_intent_id"].as_str().unwrap().to_string();
    let pi = fake.set_status(
        created["payment_intent_id"].as_str().unwrap(),
        "requires_capture",
    );

    proxy.cut();
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
    for (method, path, body) in calls {
        let mut r = server
            .http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                server.url(&path),
            )
            .bearer_auth(&admin);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let (s, p) = status_json(r.send().await.unwrap()).await;
        assert_eq!(
            (s, p["code"].as_str()),
            (503, Some("store_unavailable")),
            "{method} {path}: {p}"
        );
    }
    let r = server
        .http
        .post(server.url(&format!("{intent_path}/refunds").replace("/ocpi/", "/api/support/")))
        .bearer_auth(&admin)
        .header("Idempotency-Key", "5e4d3c2b-1a09-4f8e-9d7c-6b5a4f3e2d1c")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let (s, p) = status_json(r).await;
    assert_eq!(
        (s, p["code"].as_str()),
        (503, Some("store_unavailable")),
        "refund: {p}"
    );
    let (s, p) =
        crate::payments::deliver(&server, "/ocpi/stripe/webhook/ws-1", &webhook, Some(&sig)).await;
    assert_eq!(
        (s, p["code"].as_str()),
        (503, Some("store_unavailable")),
        "webhook: {p}"
    );

    // The database is back: the service answers again without a restart.
    let _back = Proxy::start(proxy.port).await;
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
