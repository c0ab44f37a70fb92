//! The webhook delivery log: every delivery to every endpoint (workspace, shared,
//! connect, billing) with its outcome and code, filters and paging, the verified payload
//! on the detail view only, the unverified noise capped, old deliveries pruned.

use serde_json::{json, Value};

use crate::connect::{connect_event, CONNECT_ENV};
use crate::on_both_backends;
use crate::payments::{configure, create, put_location, signature, start, stripe_event, WH_A};
use crate::support::*;

on_both_backends!(
    the_delivery_log_tells_what_came_and_what_was_done,
    old_deliveries_leave_the_log,
);

const CAP: usize = 100;

/// (endpoint, outcome, code, workspace, event id) of a listed delivery.
type Row<'a> = (
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
);

async fn send(
    server: &Server,
    path: &str,
    body: &[u8],
    sig: Option<&str>,
    id: &str,
) -> (u16, Value) {
    let mut req = server
        .http
        .post(server.url(path))
        .header("content-type", "application/json")
        .header("X-Request-Id", id)
        .body(body.to_vec());
    if let Some(s) = sig {
        req = req.header("Stripe-Signature", s);
    }
    status_json(req.send().await.unwrap()).await
}

fn support() -> String {
    token("support", &["*"], "audit:read")
}

async fn page(server: &Server, query: &str) -> Value {
    let (status, body) = server
        .get(
            &format!("/api/support/webhook-deliveries{query}"),
            &support(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// How many deliveries the log lists for `filter`, every page read.
pub(crate) async fn count_listed(server: &Server, filter: &str) -> usize {
    let mut seen = 0;
    let mut after = String::new();
    loop {
        let p = page(server, &format!("?{filter}&limit=200{after}")).await;
        let rows = p["data"].as_array().unwrap();
        seen += rows.len();
        if !p["has_more"].as_bool().unwrap() {
            return seen;
        }
        after = format!(
            "&starting_after={}",
            rows.last().unwrap()["id"].as_str().unwrap()
        );
    }
}

fn ids_of(page: &Value, field: &str) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d[field].as_str().unwrap_or("-").to_string())
        .collect()
}

async fn the_delivery_log_tells_what_came_and_what_was_done(b: Backend) {
    let mut env = CONNECT_ENV.to_vec();
    env.extend([
        (
            "ROAMPAY_PLATFORM_WEBHOOK_SECRET",
            "whsec_PlatformBillingEndpoint",
        ),
        ("ROAMPAY_PLANS", "standard=price_standard1"),
    ]);
    let (_store, _mock, fake, server) = start(b, &env).await;
    configure(&server, "ws-1", "sk_test_51HxWorkspaceOneKey", WH_A).await;
    put_location(&server, "ws-1", "LOC-1", 45).await;
    let (_, created) = create(&server, "LOC-1", "1", None).await;
    let pi = fake.set_status(
        created["payment_intent_id"].as_str().unwrap(),
        "requires_capture",
    );
    let now = chrono::Utc::now().timestamp();
    let event = stripe_event("evt_log1", &pi);
    let sig = signature(WH_A, &event, now);
    let ws_url = "/ocpi/stripe/webhook/ws-1";
    // 1 applied, 2 duplicate, 3 refused (signature), 4 shared ignored,
    // 5 connect ignored, 6 billing refused (no signature).
    let (s, _) = send(&server, ws_url, &event, Some(&sig), "req-log-1").await;
    assert_eq!(s, 200);
    let (s, _) = send(&server, ws_url, &event, Some(&sig), "req-log-2").await;
    assert_eq!(s, 200);
    let forged = signature("whsec_NotTheWorkspaces", &event, now);
    let (s, _) = send(&server, ws_url, &event, Some(&forged), "req-log-3").await;
    assert_eq!(s, 400);
    let again = stripe_event("evt_log2", &pi);
    let (s, body) = send(
        &server,
        "/ocpi/stripe/webhook",
        &again,
        Some(&signature(WH_A, &again, now)),
        "req-log-4",
    )
    .await;
    assert_eq!(
        (s, body["outcome"].as_str()),
        (200, Some("ignored")),
        "{body}"
    );
    let (s, _) = connect_event(
        &server,
        "evt_log3",
        "account.updated",
        "acct_nobodys",
        &json!({}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = send(&server, "/billing/stripe/webhook", b"{}", None, "req-log-6").await;
    assert_eq!(s, 400);

    let all = page(&server, "").await;
    let rows = all["data"].as_array().unwrap();
    assert_eq!(rows.len(), 6, "{all}");
    let got: Vec<Row> = rows
        .iter()
        .rev()
        .map(|d| {
            (
                d["endpoint"].as_str().unwrap(),
                d["outcome"].as_str().unwrap(),
                d["code"].as_str(),
                d["workspace_id"].as_str(),
                d["event_id"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("workspace", "applied", None, Some("ws-1"), Some("evt_log1")),
            (
                "workspace",
                "duplicate",
                None,
                Some("ws-1"),
                Some("evt_log1")
            ),
            (
                "workspace",
                "refused",
                Some("signature_mismatch"),
                Some("ws-1"),
                None
            ),
            ("shared", "ignored", None, Some("ws-1"), Some("evt_log2")),
            ("connect", "ignored", None, None, Some("evt_log3")),
            ("billing", "refused", Some("missing_signature"), None, None),
        ]
    );
    assert_eq!(rows[5]["request_id"], "req-log-1");
    assert_eq!(
        rows[5]["event_type"],
        "payment_intent.amount_capturable_updated"
    );
    assert!(rows[3]["event_type"].is_null(), "unverified: no type");

    // Filters and paging.
    assert_eq!(
        ids_of(&page(&server, "?workspace_id=ws-1").await, "request_id").len(),
        4
    );
    assert_eq!(
        ids_of(&page(&server, "?event_id=evt_log1").await, "request_id"),
        vec!["req-log-2", "req-log-1"]
    );
    assert_eq!(
        ids_of(&page(&server, "?outcome=refused").await, "endpoint"),
        vec!["billing", "workspace"]
    );
    assert_eq!(
        ids_of(
            &page(&server, "?event_type=account.updated").await,
            "endpoint"
        ),
        vec!["connect"]
    );
    let first = page(&server, "?limit=4").await;
    assert_eq!(
        (
            first["data"].as_array().unwrap().len(),
            first["has_more"].as_bool()
        ),
        (4, Some(true))
    );
    let last_id = first["data"][3]["id"].as_str().unwrap();
    let rest = page(&server, &format!("?limit=4&starting_after={last_id}")).await;
    assert_eq!(ids_of(&rest, "request_id"), vec!["req-log-2", "req-log-1"]);
    assert_eq!(rest["has_more"], false);
    let (status, bad) = server
        .get("/api/support/webhook-deliveries?outcome=maybe", &support())
        .await;
    assert_eq!(
        (status, bad["code"].as_str()),
        (400, Some("invalid_parameter"))
    );

    // The detail: the verified event as received; nothing of an unverified one.
    let applied = rows[5]["id"].as_str().unwrap();
    let (status, detail) = server
        .get(
            &format!("/api/support/webhook-deliveries/{applied}"),
            &support(),
        )
        .await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["payload"]["id"], "evt_log1");
    assert_eq!(detail["payload"]["data"]["object"]["id"], pi["id"]);
    // All of it but the PaymentIntent's client secret (support need not confirm payments).
    assert_eq!(
        detail["payload"]["data"]["object"]["client_secret"],
        "redacted"
    );
    assert!(!detail.to_string().contains("_secret_fake"), "{detail}");
    assert_eq!(detail["outcome"], "applied");
    let refused = rows[3]["id"].as_str().unwrap();
    let (_, detail) = server
        .get(
            &format!("/api/support/webhook-deliveries/{refused}"),
            &support(),
        )
        .await;
    assert!(detail["payload"].is_null(), "{detail}");
    // Another workspace's support sees neither its list nor its details.
    let other = token("support", &["ws-2"], "audit:read");
    let (status, _) = server
        .get(
            &format!("/api/support/webhook-deliveries/{applied}"),
            &other,
        )
        .await;
    assert_eq!(status, 404);
    let (_, theirs) = server.get("/api/support/webhook-deliveries", &other).await;
    assert_eq!(theirs["data"], json!([]), "{theirs}");
    let (status, _) = server
        .get("/api/support/webhook-deliveries?workspace_id=ws-1", &other)
        .await;
    assert_eq!(status, 403);

    // Unverified noise is capped per workspace and hour.
    for i in 0..CAP + 5 {
        let (s, _) = send(
            &server,
            "/ocpi/stripe/webhook/ws-9",
            b"{}",
            Some("t=1,v1=00"),
            &format!("noise-{i}"),
        )
        .await;
        assert_eq!(s, 400);
    }
    assert_eq!(count_listed(&server, "workspace_id=ws-9").await, CAP);
    assert_eq!(
        server
            .metric(
                "roampay_webhook_deliveries_unlogged_total",
                "reason=\"unverified_cap\""
            )
            .await,
        5.0
    );
}

async fn old_deliveries_leave_the_log(b: Backend) {
    let (_store, _mock, _fake, server) =
        start(b, &[("ROAMPAY_DELIVERY_LOG_RETENTION_SECS", "2")]).await;
    let (s, _) = send(
        &server,
        "/ocpi/stripe/webhook/ws-1",
        b"{}",
        None,
        "req-old-1",
    )
    .await;
    assert_eq!(s, 400);
    let listed = page(&server, "").await;
    assert_eq!(ids_of(&listed, "request_id"), vec!["req-old-1"]);
    eventually("the old delivery is pruned", || async {
        let p = page(&server, "").await;
        p["data"].as_array().unwrap().is_empty().then_some(())
    })
    .await;
}
