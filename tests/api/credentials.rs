//! Credentials that prove themselves, against the stateful Stripe fake (which knows
//! accounts, revoked keys and read-only restricted keys): write permission, account
//! match, candidate sets, revocation on the payment path, periodic re-validation,
//! webhook health, and rotation without downtime.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::fake_stripe::FakeStripe;
use crate::on_both_backends;
use crate::payments::{create, deliver, put_location, signature, start_with_store, WH_A};
use crate::support::*;

const PK: &str = "pk_test_51HxPublishableKey";
const SK_A: &str = "sk_test_51HxWorkspaceKeyAAAA";
const SK_B: &str = "sk_test_51HxWorkspaceKeyBBBB";
const RK_READ: &str = "rk_test_51HxReadOnlyKeyRRRR";

on_both_backends!(
    a_read_only_restricted_key_is_permission_denied,
    keys_of_two_accounts_are_an_account_mismatch,
    a_failing_candidate_changes_nothing_and_a_good_one_is_promoted_and_used,
    stripe_refusing_the_active_key_on_a_payment_flips_health_at_once,
    periodic_revalidation_flips_a_revoked_key_without_any_request,
    webhook_health_shows_whether_deliveries_arrive_signed,
    rotation_to_a_good_and_to_a_bad_key_keeps_paid_sessions_going,
);

async fn save(server: &Server, ws: &str, body: Value) -> Value {
    let (status, cfg) = server.patch(&config_path(ws), &admin(ws), body).await;
    assert_eq!(status, 200, "{cfg}");
    cfg
}

fn secret_key(sk: &str) -> Value {
    json!({"stripe": {"secret_key": sk}})
}

/// A workspace with valid credentials (key `SK_A`), guests allowed, one paid location.
async fn serving(
    b: Backend,
    env: &[(&str, &str)],
) -> (Store, wiremock::MockServer, FakeStripe, Server) {
    let store = Store::fresh(b).await;
    let (mock, fake, server) = start_with_store(&store, &store.url.clone(), env).await;
    let mut body = creds(PK, SK_A, WH_A);
    body["allow_guest_access"] = json!(true);
    let cfg = save(&server, "ws-1", body).await;
    assert_eq!(cfg["stripe"]["health"]["status"], "valid", "{cfg}");
    put_location(&server, "ws-1", "LOC-1", 45).await;
    (store, mock, fake, server)
}

/// A paid pre-auth on connector 1, released at once so the next can take it.
async fn pre_auth_and_release(server: &Server) -> (u16, Value) {
    let (status, body) = create(server, "LOC-1", "1", None).await;
    if status == 201 {
        let id = body["charging_intent_id"].as_str().unwrap();
        let t = token("cpo", &["ws-1"], "sessions:write");
        let r = server
            .http
            .post(server.url(&format!("/ocpi/charging-intents/{id}/cancel")))
            .bearer_auth(t)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "released");
    }
    (status, body)
}

async fn a_read_only_restricted_key_is_permission_denied(b: Backend) {
    let store = Store::fresh(b).await;
    let (_mock, fake, server) = start_with_store(&store, &store.url.clone(), &[]).await;
    fake.read_only(RK_READ);
    let cfg = save(&server, "ws-1", creds(PK, RK_READ, WH_A)).await;
    let health = &cfg["stripe"]["health"];
    assert_eq!(
        (health["status"].as_str(), health["failure_code"].as_str()),
        (Some("invalid"), Some("permission_denied")),
        "{cfg}"
    );
    assert!(health["failure_message"]
        .as_str()
        .unwrap()
        .contains("write permission"));
    assert!(fake.open_checks().is_empty(), "{:?}", fake.open_checks());
}

async fn keys_of_two_accounts_are_an_account_mismatch(b: Backend) {
    let store = Store::fresh(b).await;
    let (_mock, fake, server) = start_with_store(&store, &store.url.clone(), &[]).await;
    fake.in_account("pk_test_51HxOtherAccountKey", "acct_other");
    let cfg = save(
        &server,
        "ws-1",
        creds("pk_test_51HxOtherAccountKey", SK_A, WH_A),
    )
    .await;
    let health = &cfg["stripe"]["health"];
    assert_eq!(
        (health["status"].as_str(), health["failure_code"].as_str()),
        (Some("invalid"), Some("account_mismatch")),
        "{cfg}"
    );
    // Fixed by the publishable key of the same account.
    let cfg = save(&server, "ws-1", json!({"stripe": {"publishable_key": PK}})).await;
    assert_eq!(cfg["stripe"]["health"]["status"], "valid", "{cfg}");
    // Every check's PaymentIntent was cancelled, tagged and named the workspace.
    assert!(fake.open_checks().is_empty(), "{:?}", fake.open_checks());
    let st = fake.state.lock().unwrap();
    assert_eq!(st.checks.len(), 2);
    for (_, form) in &st.checks {
        assert_eq!(
            form.get("capture_method").map(String::as_str),
            Some("manual")
        );
        assert_eq!(
            form.get("metadata[workspace_id]").map(String::as_str),
            Some("ws-1")
        );
    }
    assert!(st.creates.is_empty(), "no payment was made");
}

async fn a_failing_candidate_changes_nothing_and_a_good_one_is_promoted_and_used(b: Backend) {
    let (_store, _mock, fake, server) = serving(b, &[]).await;
    fake.revoke(SK_B);
    let cfg = save(&server, "ws-1", secret_key(SK_B)).await;
    let s = &cfg["stripe"];
    assert_eq!(
        s["health"]["status"], "valid",
        "the active set still serves: {cfg}"
    );
    assert_eq!(s["credential_version"], 1);
    assert_eq!(s["secret_key"]["last4"], "AAAA");
    assert_eq!(s["candidate"]["credential_version"], 2, "{cfg}");
    assert_eq!(s["candidate"]["health"]["status"], "invalid");
    assert_eq!(
        s["candidate"]["health"]["failure_code"],
        "authentication_failed"
    );
    let (status, body) = pre_auth_and_release(&server).await;
    assert_eq!(status, 201, "{body}");

    // A good key: proven, promoted, used by the next pre-auth.
    let cfg = save(&server, "ws-1", secret_key("sk_test_51HxWorkspaceKeyCCCC")).await;
    let s = &cfg["stripe"];
    assert_eq!(s["candidate"], Value::Null, "{cfg}");
    assert_eq!(s["health"]["status"], "valid");
    assert_eq!(s["secret_key"]["last4"], "CCCC");
    assert_eq!(s["credential_version"], 3);
    let (status, body) = pre_auth_and_release(&server).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        fake.creating_keys(),
        vec![SK_A.to_string(), "sk_test_51HxWorkspaceKeyCCCC".to_string()],
        "the refused candidate never made a payment"
    );
    let audit = server
        .wait_for_audit_where("ws-1", |d| {
            d.iter()
                .any(|e| e["event_type"] == "WorkspaceStripeCandidatePromoted")
        })
        .await;
    let types: Vec<&str> = audit
        .iter()
        .filter_map(|e| e["event_type"].as_str())
        .collect();
    assert!(
        types.contains(&"WorkspaceStripeCandidateRejected"),
        "{types:?}"
    );
    assert!(fake.open_checks().is_empty(), "{:?}", fake.open_checks());
}

async fn stripe_refusing_the_active_key_on_a_payment_flips_health_at_once(b: Backend) {
    let (_store, _mock, fake, server) = serving(b, &[]).await;
    let before = server
        .metric(
            "roampay_credential_revocations_total",
            "code=\"key_revoked\"",
        )
        .await;
    fake.revoke(SK_A); // rolled in the Dashboard
    let (status, body) = create(&server, "LOC-1", "1", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("workspace_payment_not_ready")),
        "{body}"
    );
    let (_, cfg) = server.get(&config_path("ws-1"), &admin("ws-1")).await;
    let health = &cfg["stripe"]["health"];
    assert_eq!(
        (health["status"].as_str(), health["failure_code"].as_str()),
        (Some("invalid"), Some("key_revoked")),
        "{cfg}"
    );
    let (status, body) = create(&server, "LOC-1", "2", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("workspace_payment_not_ready")),
        "{body}"
    );
    assert_eq!(
        fake.creating_keys().len(),
        1,
        "the second never reached Stripe"
    );
    let after = server
        .metric(
            "roampay_credential_revocations_total",
            "code=\"key_revoked\"",
        )
        .await;
    assert_eq!(after - before, 1.0);
    server
        .wait_for_audit_where("ws-1", |d| {
            d.iter()
                .any(|e| e["event_type"] == "WorkspaceStripeCredentialsRevoked")
        })
        .await;
}

async fn periodic_revalidation_flips_a_revoked_key_without_any_request(b: Backend) {
    let (_store, _mock, fake, server) = serving(
        b,
        &[
            ("ROAMPAY_REVALIDATE_INTERVAL_SECS", "1"),
            ("ROAMPAY_REVALIDATE_VALID_SECS", "1"),
        ],
    )
    .await;
    fake.state.lock().unwrap().read_only.insert(SK_A.into()); // a permission taken away
    let cfg = eventually("the periodic check finding the key refused", || async {
        let (_, cfg) = server.get(&config_path("ws-1"), &admin("ws-1")).await;
        (cfg["stripe"]["health"]["status"] == "invalid").then_some(cfg)
    })
    .await;
    assert_eq!(
        cfg["stripe"]["health"]["failure_code"], "permission_denied",
        "{cfg}"
    );
    let (status, body) = create(&server, "LOC-1", "1", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("workspace_payment_not_ready")),
        "{body}"
    );
    assert!(fake.creating_keys().is_empty(), "no payment was attempted");
    assert!(fake.open_checks().is_empty(), "{:?}", fake.open_checks());
}

async fn webhook_health_shows_whether_deliveries_arrive_signed(b: Backend) {
    let (_store, _mock, _fake, server) = serving(b, &[]).await;
    let webhook = |cfg: &Value| cfg["stripe"]["webhook"].clone();
    let (_, cfg) = server.get(&config_path("ws-1"), &admin("ws-1")).await;
    assert_eq!(
        webhook(&cfg),
        json!({"status": "unverified", "last_verified_at": null, "rejected_24h": 0})
    );
    // Stripe's "send test webhook": any event type signed with the secret counts.
    let test_event = serde_json::to_vec(&json!({
        "id": "evt_test_webhook", "object": "event", "type": "balance.available",
        "livemode": false, "created": chrono::Utc::now().timestamp(),
        "data": {"object": {"object": "balance", "available": []}}
    }))
    .unwrap();
    let now = chrono::Utc::now().timestamp();
    let path = "/ocpi/stripe/webhook/ws-1";
    let (status, _) = deliver(
        &server,
        path,
        &test_event,
        Some(&signature(WH_A, &test_event, now)),
    )
    .await;
    assert_eq!(status, 200);
    let (_, cfg) = server.get(&config_path("ws-1"), &admin("ws-1")).await;
    assert_eq!(webhook(&cfg)["status"], "verified", "{cfg}");
    assert!(webhook(&cfg)["last_verified_at"].is_string());

    // Signed with a wrong secret (the endpoint's secret was not saved here).
    let wrong = signature("whsec_NotTheWorkspacesSecret", &test_event, now);
    let (status, _) = deliver(&server, path, &test_event, Some(&wrong)).await;
    assert_eq!(status, 400);
    let cfg = eventually("the refusal counted", || async {
        let (_, cfg) = server.get(&config_path("ws-1"), &admin("ws-1")).await;
        (cfg["stripe"]["webhook"]["rejected_24h"] == 1).then_some(cfg)
    })
    .await;
    assert_eq!(webhook(&cfg)["status"], "failing", "{cfg}");

    // A credential check's PaymentIntent is no payment: its events are ignored and
    // leave no trace for support.
    let check = serde_json::to_vec(&json!({
        "id": "evt_check_canceled", "object": "event", "type": "payment_intent.canceled",
        "livemode": false, "created": now,
        "data": {"object": {"id": "pi_check0001", "object": "payment_intent", "status": "canceled",
            "amount": 50, "currency": "aud", "livemode": false,
            "metadata": {"roampay_purpose": "credential_check", "workspace_id": "ws-1"}}}
    }))
    .unwrap();
    let (status, out) = deliver(&server, path, &check, Some(&signature(WH_A, &check, now))).await;
    assert_eq!(
        (status, out["outcome"].as_str()),
        (200, Some("ignored")),
        "{out}"
    );
    // Fixed: the next verified delivery shows it at once.
    let (status, _) = deliver(
        &server,
        path,
        &test_event,
        Some(&signature(WH_A, &test_event, now)),
    )
    .await;
    assert_eq!(status, 200);
    let (_, cfg) = server.get(&config_path("ws-1"), &admin("ws-1")).await;
    assert_eq!(webhook(&cfg)["status"], "verified", "{cfg}");
    assert_eq!(webhook(&cfg)["rejected_24h"], 1);
    // Everything up to the last delivery projected: the check's event left no trace.
    let audit = server
        .wait_for_audit_where("ws-1", |d| {
            d.iter()
                .filter(|e| e["event_type"] == "WorkspaceWebhookVerified")
                .count()
                == 2
        })
        .await;
    assert!(
        !audit.iter().any(|e| e["event_type"] == "WebhookIgnored"),
        "{audit:?}"
    );
}

async fn rotation_to_a_good_and_to_a_bad_key_keeps_paid_sessions_going(b: Backend) {
    // One client making 200 pre-auths: the per-address limit is raised for it.
    let (_store, _mock, fake, server) =
        serving(b, &[("ROAMPAY_RATE_LIMIT_PER_MIN", "100000")]).await;
    let server = Arc::new(server);
    let done = Arc::new(AtomicUsize::new(0));
    let driver = {
        let (server, done) = (server.clone(), done.clone());
        tokio::spawn(async move {
            let mut refused = vec![];
            for _ in 0..200 {
                let (status, body) = pre_auth_and_release(&server).await;
                if status != 201 {
                    refused.push(body);
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
            refused
        })
    };
    let reached = |n: usize| {
        let done = done.clone();
        async move {
            eventually("the pre-auth loop going on", || async {
                (done.load(Ordering::SeqCst) >= n).then_some(())
            })
            .await
        }
    };
    reached(40).await;
    let cfg = save(&server, "ws-1", secret_key(SK_B)).await;
    assert_eq!(cfg["stripe"]["secret_key"]["last4"], "BBBB", "{cfg}");
    reached(100).await;
    fake.revoke("sk_test_51HxWorkspaceKeyDDDD");
    let cfg = save(&server, "ws-1", secret_key("sk_test_51HxWorkspaceKeyDDDD")).await;
    assert_eq!(
        cfg["stripe"]["candidate"]["health"]["status"], "invalid",
        "{cfg}"
    );
    let refused = driver.await.unwrap();
    assert!(
        refused.is_empty(),
        "{} refused during rotation, the first: {:?}",
        refused.len(),
        refused.first()
    );
    let keys = fake.creating_keys();
    assert_eq!(keys.len(), 200);
    let first_b = keys
        .iter()
        .position(|k| k == SK_B)
        .expect("the good key was used");
    assert!(keys[..first_b].iter().all(|k| k == SK_A));
    assert!(
        keys[first_b..].iter().all(|k| k == SK_B),
        "the bad key was never used"
    );
    assert!(fake.open_checks().is_empty(), "{:?}", fake.open_checks());
}
