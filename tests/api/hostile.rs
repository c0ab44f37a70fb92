//! Attacks from the review of main (issue "A hostile world"), each reproduced as a
//! test: colliding connector keys, and refusals support must see even after a flood.

use serde_json::json;

use crate::on_both_backends;
use crate::payments::{
    configure, create, deliver, signature, start_with_store, stripe_event, WH_A, WH_B,
};
use crate::support::*;

on_both_backends!(
    connector_ids_with_slashes_do_not_collide_across_workspaces,
    a_signed_cross_workspace_attempt_is_recorded_after_a_flood_of_unsigned_junk,
);

async fn connector_ids_with_slashes_do_not_collide_across_workspaces(b: Backend) {
    let store = Store::fresh(b).await;
    let stripe = stripe_ok().await;
    let server = Server::start(&store, ServerOptions::new(&stripe)).await;
    let cpo = |ws: &str| token("cpo", &[ws], "locations:write");
    // Free connectors: ws-1's "LOC-A" / "E/X" / "1" and ws-2's "LOC-A/E" / "X" / "1"
    // once shared the key "LOC-A/E/X/1".
    for (ws, loc, evse) in [("ws-1", "LOC-A", "E/X"), ("ws-2", "LOC-A%2FE", "X")] {
        let (status, _) = server
            .patch(
                &config_path(ws),
                &admin(ws),
                json!({"allow_guest_access": true}),
            )
            .await;
        assert_eq!(status, 200);
        let mut body = crate::payments::location(0);
        body["evses"][0]["uid"] = json!(evse);
        let r = server
            .http
            .put(server.url(&format!("/api/workspaces/{ws}/locations/{loc}")))
            .bearer_auth(cpo(ws))
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, out) = status_json(r).await;
        assert_eq!(status, 200, "{ws}: {out}");
    }
    for (loc, evse) in [("LOC-A/E", "X"), ("LOC-A", "E/X")] {
        let r = server
            .http
            .post(server.url("/ocpi/create-payment-intent"))
            .json(&json!({"location_id": loc, "evse_uid": evse, "connector_id": "1"}))
            .send()
            .await
            .unwrap();
        let (status, out) = status_json(r).await;
        assert_eq!(status, 201, "{loc} {evse}: {out}");
        assert_eq!(out["status"], "authorized", "free: {out}");
    }
}

async fn a_signed_cross_workspace_attempt_is_recorded_after_a_flood_of_unsigned_junk(b: Backend) {
    let store = Store::fresh(b).await;
    let (_mock, fake, server) = start_with_store(&store, &store.url.clone(), &[]).await;
    configure(&server, "ws-a", "sk_test_51HxWorkspaceAKey1", WH_A).await;
    configure(&server, "ws-b", "sk_test_51HxWorkspaceBKey1", WH_B).await;
    crate::payments::put_location(&server, "ws-b", "LOC-B", 45).await;
    let (_, bi) = create(&server, "LOC-B", "1", None).await;
    let b_pi = fake.set_status(
        bi["payment_intent_id"].as_str().unwrap(),
        "requires_capture",
    );
    // 120 unsigned deliveries to ws-a's URL: more than the hourly cap.
    let junk = br#"{"id":"evt_junk","object":"event"}"#;
    for _ in 0..120 {
        let (status, _) = deliver(&server, "/ocpi/stripe/webhook/ws-a", junk, None).await;
        assert_eq!(status, 400);
    }
    // Then someone holding ws-a's secret reaches for ws-b's PaymentIntent.
    let body = stripe_event("evt_forged_after_flood", &b_pi);
    let now = chrono::Utc::now().timestamp();
    let (status, p) = deliver(
        &server,
        "/ocpi/stripe/webhook/ws-a",
        &body,
        Some(&signature(WH_A, &body, now)),
    )
    .await;
    assert_eq!(
        (status, p["code"].as_str()),
        (403, Some("ownership_mismatch"))
    );
    let audit = server
        .wait_for_audit_where("ws-a", |d| {
            d.iter().any(|e| {
                e["event_type"] == "WebhookRejected"
                    && e["summary"]
                        .as_str()
                        .is_some_and(|s| s.contains("ownership_mismatch"))
            })
        })
        .await;
    let junk_recorded = audit
        .iter()
        .filter(|e| {
            e["event_type"] == "WebhookRejected"
                && e["summary"]
                    .as_str()
                    .is_some_and(|s| s.contains("missing_signature"))
        })
        .count();
    assert_eq!(junk_recorded, 100, "unsigned noise stays capped");
}

on_both_backends!(behind_a_trusted_proxy_the_forwarded_client_is_limited_and_audited);

async fn behind_a_trusted_proxy_the_forwarded_client_is_limited_and_audited(b: Backend) {
    let store = Store::fresh(b).await;
    let stripe = stripe_ok().await;
    let limited = |trusted: &str| {
        ServerOptions::new(&stripe)
            .env("ROAMPAY_RATE_LIMIT_PER_MIN", "3")
            .env("ROAMPAY_TRUSTED_PROXIES", trusted)
    };
    let location = |server: &Server, from: &str| {
        server
            .http
            .get(server.url("/emsp/2.2.1/locations/NOPE"))
            .header("x-forwarded-for", from)
            .send()
    };
    // No trusted proxy: the header is the client's own claim, ignored.
    let server = Server::start(&store, limited("")).await;
    let mut statuses = vec![];
    for i in 0..4 {
        statuses.push(
            location(&server, &format!("203.0.113.{i}"))
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(
        statuses,
        vec![404, 404, 404, 429],
        "one bucket whatever the header says"
    );
    drop(server);

    // Behind a trusted load balancer: one bucket per forwarded client.
    let server = Server::start(&store, limited("127.0.0.1/32, ::1/128")).await;
    for _ in 0..3 {
        assert_eq!(
            location(&server, "203.0.113.7").await.unwrap().status(),
            404
        );
    }
    assert_eq!(
        location(&server, "203.0.113.7").await.unwrap().status(),
        429
    );
    assert_eq!(
        location(&server, "198.51.100.4, 127.0.0.1")
            .await
            .unwrap()
            .status(),
        404
    );
    // The audit records the forwarded address of a refused webhook.
    let r = server
        .http
        .post(server.url("/ocpi/stripe/webhook/ws-1"))
        .header("forwarded", "for=198.51.100.77;proto=https")
        .header("content-type", "application/json")
        .body(r#"{"id":"evt_x","object":"event"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (status, _) = server
        .patch(&config_path("ws-1"), &admin("ws-1"), good_creds())
        .await;
    assert_eq!(status, 200);
    let r = server
        .http
        .post(server.url("/ocpi/stripe/webhook/ws-1"))
        .header("forwarded", "for=198.51.100.77;proto=https")
        .header("content-type", "application/json")
        .body(r#"{"id":"evt_x","object":"event"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let audit = server
        .wait_for_audit_where("ws-1", |d| {
            d.iter().any(|e| e["event_type"] == "WebhookRejected")
        })
        .await;
    assert!(
        audit.iter().any(|e| e["event_type"] == "WebhookRejected"
            && e["summary"]
                .as_str()
                .is_some_and(|s| s.contains("198.51.100.77"))),
        "{audit:?}"
    );
}

/// Browsers may call the driver endpoints from the configured origins only; admin
/// and support endpoints never answer CORS. The start line names what is on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_may_call_the_driver_endpoints_from_allowed_origins_only() {
    let store = Store::fresh(Backend::Sqlite).await;
    let stripe = stripe_ok().await;
    let server = Server::start(
        &store,
        ServerOptions::new(&stripe).env(
            "ROAMPAY_CORS_ALLOWED_ORIGINS",
            "https://roam.example.com, http://localhost:5173",
        ),
    )
    .await;
    let preflight = |path: &str, origin: &str| {
        server
            .http
            .request(reqwest::Method::OPTIONS, server.url(path))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type, idempotency-key",
            )
            .send()
    };
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase)
    };
    for path in [
        "/ocpi/create-payment-intent",
        "/ocpi/charging-intents/ci-1/cancel",
    ] {
        let r = preflight(path, "https://roam.example.com").await.unwrap();
        assert_eq!(r.status(), 204, "{path}");
        assert_eq!(
            header(&r, "access-control-allow-origin").as_deref(),
            Some("https://roam.example.com")
        );
        assert!(header(&r, "access-control-allow-methods")
            .unwrap()
            .contains("post"));
        let allowed = header(&r, "access-control-allow-headers").unwrap();
        for h in ["authorization", "content-type", "idempotency-key"] {
            assert!(allowed.contains(h), "{allowed}");
        }
        let r = preflight(path, "https://evil.example.net").await.unwrap();
        assert_eq!(header(&r, "access-control-allow-origin"), None, "{path}");
    }
    // An actual request from an allowed origin carries the header.
    let r = server
        .http
        .get(server.url("/emsp/2.2.1/locations/NOPE"))
        .header("origin", "http://localhost:5173")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "access-control-allow-origin").as_deref(),
        Some("http://localhost:5173")
    );
    // Admin and support endpoints: no CORS.
    for path in [config_path("ws-1"), "/api/support/audit".to_string()] {
        let r = preflight(&path, "https://roam.example.com").await.unwrap();
        assert_eq!(header(&r, "access-control-allow-origin"), None, "{path}");
        let r = server
            .http
            .get(server.url(&path))
            .header("origin", "https://roam.example.com")
            .send()
            .await
            .unwrap();
        assert_eq!(header(&r, "access-control-allow-origin"), None, "{path}");
    }
    let logs = server.logs();
    let start = logs
        .lines()
        .find(|l| l.contains("roampay starting"))
        .expect("a start line");
    for field in [
        "\"version\"",
        "\"store\":\"sqlite\"",
        "\"bind\"",
        "\"public_url\"",
        "\"cors\":true",
        "\"trusted_proxies\":false",
        "\"otlp\":false",
        "\"billing\":false",
    ] {
        assert!(start.contains(field), "{field}: {start}");
    }
    assert!(!start.contains(JWT_SECRET) && !start.contains(MASTER_KEY));
}

#[test]
fn serve_refuses_malformed_proxies_and_origins() {
    for (name, value) in [
        ("ROAMPAY_TRUSTED_PROXIES", "10.0.0.0/33"),
        ("ROAMPAY_CORS_ALLOWED_ORIGINS", "*"),
        (
            "ROAMPAY_CORS_ALLOWED_ORIGINS",
            "https://roam.example.com/app",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_roampay"))
            .arg("serve")
            .env_clear()
            .env("ROAMPAY_DATA_DIR", dir.path())
            .env("ROAMPAY_BIND", "127.0.0.1:0")
            .env(name, value)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}={value}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(name));
    }
}

/// Hundreds of cheap open connections from one address cannot crowd out the rest: past
/// the per-client limit a connection is answered 429 and closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_more_than_its_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let store = Store::fresh(Backend::Sqlite).await;
    let stripe = stripe_ok().await;
    let server = Server::start(
        &store,
        ServerOptions::new(&stripe).env("ROAMPAY_MAX_CONNECTIONS_PER_CLIENT", "3"),
    )
    .await;
    let addr = server.base.trim_start_matches("http://").to_string();
    async fn ask(conn: &mut tokio::net::TcpStream) -> String {
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = conn.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        assert!(ask(&mut c).await.starts_with("HTTP/1.1 200"));
        held.push(c);
    }
    let mut fourth = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let answer = ask(&mut fourth).await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.contains("too_many_connections"), "{answer}");
    // One closed, one more may open.
    drop(held.pop());
    eventually("a freed connection slot", || async {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        ask(&mut c).await.starts_with("HTTP/1.1 200").then_some(())
    })
    .await;
}
