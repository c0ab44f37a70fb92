//! Stripe Connect over HTTP, Stripe played by the stateful fake on wiremock (localstripe
//! knows no accounts): onboarding creates one connected account per workspace, every
//! payment call of a connect-mode workspace carries `Stripe-Account` with the platform's
//! key (and a keys-mode workspace's never does), the application fee, Connect webhooks
//! bound to their account, and switching with an intent in flight.

use serde_json::{json, Value};
use wiremock::MockServer;

use crate::fake_stripe::FakeStripe;
use crate::on_both_backends;
use crate::payments::{configure, create, deliver, intent, put_location, signature, start, WH_A};
use crate::sessions::{path, post, sessions};
use crate::support::*;

pub const PLATFORM_SK: &str = "sk_test_51HxPlatformSecretKey";
pub const PLATFORM_PK: &str = "pk_test_51HxPlatformPublishable";
pub const CONNECT_WH: &str = "whsec_PlatformConnectEndpoint";

/// The platform's settings, with a 2.5 % application fee.
pub const CONNECT_ENV: &[(&str, &str)] = &[
    ("ROAMPAY_PLATFORM_STRIPE_SECRET_KEY", PLATFORM_SK),
    ("ROAMPAY_PLATFORM_PUBLISHABLE_KEY", PLATFORM_PK),
    ("ROAMPAY_CONNECT_WEBHOOK_SECRET", CONNECT_WH),
    ("ROAMPAY_CONNECT_FEE_BPS", "250"),
];

on_both_backends!(
    onboarding_creates_one_account_and_payments_go_to_it_with_the_platform_key,
    connect_webhooks_touch_only_the_workspace_of_their_account,
    switching_from_keys_to_connect_keeps_the_intent_in_flight_on_its_keys,
    connect_is_off_without_the_platform_keys,
);

async fn onboard(server: &Server, ws: &str) -> (u16, Value) {
    server
        .post_json(
            &format!("/api/workspaces/{ws}/stripe-connect/onboarding"),
            &admin(ws),
            json!({"return_url": "https://manage.example.com/stripe/done",
                   "refresh_url": "https://manage.example.com/stripe/again",
                   "account_type": "standard"}),
        )
        .await
}

/// A Connect event about `account`, signed with the platform's Connect secret.
pub async fn connect_event(
    server: &Server,
    id: &str,
    kind: &str,
    account: &str,
    object: &Value,
) -> (u16, Value) {
    let body = serde_json::to_vec(&json!({
        "id": id, "object": "event", "type": kind, "account": account, "livemode": false,
        "created": chrono::Utc::now().timestamp(), "data": {"object": object}
    }))
    .unwrap();
    let sig = signature(CONNECT_WH, &body, chrono::Utc::now().timestamp());
    deliver(server, "/ocpi/stripe/connect/webhook", &body, Some(&sig)).await
}

/// Delivers a Connect event twice: applied, then recognised as a duplicate.
async fn applied_once(server: &Server, id: &str, kind: &str, account: &str, object: &Value) {
    for want in ["applied", "duplicate"] {
        let (status, body) = connect_event(server, id, kind, account, object).await;
        assert_eq!(
            (status, body["outcome"].as_str()),
            (200, Some(want)),
            "{id}: {body}"
        );
    }
}

/// A workspace in connect mode whose account Stripe enabled; guests may pay at LOC-`ws`.
async fn connected(server: &Server, fake: &FakeStripe, ws: &str) -> String {
    let (status, body) = onboard(server, ws).await;
    assert_eq!(status, 201, "{body}");
    let acct = body["account_id"].as_str().unwrap().to_string();
    let (status, b) = server
        .patch(
            &config_path(ws),
            &admin(ws),
            json!({"allow_guest_access": true}),
        )
        .await;
    assert_eq!(status, 200, "{b}");
    let account = fake.set_charges(&acct, true);
    let (status, b) = connect_event(
        server,
        &format!("evt_enable_{}", ws.replace('-', "_")),
        "account.updated",
        &acct,
        &account,
    )
    .await;
    assert_eq!(
        (status, b["outcome"].as_str()),
        (200, Some("applied")),
        "{b}"
    );
    let (_, cfg) = server.get(&config_path(ws), &admin(ws)).await;
    assert_eq!(cfg["stripe"]["health"]["status"], "valid", "{cfg}");
    let (status, loc) = put_location(server, ws, &format!("LOC-{ws}"), 45).await;
    assert_eq!(status, 200, "{loc}");
    acct
}

/// Every request Stripe received: (method, path, Authorization, Stripe-Account, form).
async fn requests(mock: &MockServer) -> Vec<(String, String, String, Option<String>, String)> {
    mock.received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let h = |n: &str| {
                r.headers
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            (
                r.method.to_string(),
                r.url.path().to_string(),
                h("authorization").unwrap_or_default(),
                h("stripe-account"),
                String::from_utf8_lossy(&r.body).into_owned(),
            )
        })
        .collect()
}

/// Authorizes a pre-auth's PaymentIntent through a Connect webhook.
async fn authorize_via_connect(server: &Server, fake: &FakeStripe, acct: &str, pi: &str) {
    let object = fake.set_status(pi, "requires_capture");
    let (status, b) = connect_event(
        server,
        &format!("evt_auth_{pi}"),
        "payment_intent.amount_capturable_updated",
        acct,
        &object,
    )
    .await;
    assert_eq!(
        (status, b["outcome"].as_str()),
        (200, Some("applied")),
        "{b}"
    );
}

async fn onboarding_creates_one_account_and_payments_go_to_it_with_the_platform_key(b: Backend) {
    let (_store, mock, fake, server) = start(b, CONNECT_ENV).await;
    // Onboarding puts a workspace with nothing connected in connect mode, pending.
    let (status, first) = onboard(&server, "ws-c").await;
    assert_eq!(status, 201, "{first}");
    let acct = first["account_id"].as_str().unwrap().to_string();
    assert!(first["url"]
        .as_str()
        .unwrap()
        .starts_with("https://connect.stripe.com/"));
    let (_, cfg) = server.get(&config_path("ws-c"), &admin("ws-c")).await;
    assert_eq!(cfg["stripe"]["connection"], "connect", "{cfg}");
    assert_eq!(cfg["stripe"]["health"]["status"], "pending", "{cfg}");
    assert_eq!(cfg["stripe"]["connect"]["account_id"], acct.as_str());
    assert_eq!(cfg["stripe"]["connect"]["charges_enabled"], false);
    assert_eq!(cfg["stripe"]["connect"]["application_fee_bps"], 250);
    // Again: the same account, a fresh link.
    let (status, again) = onboard(&server, "ws-c").await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again["account_id"], acct.as_str());
    assert_ne!(again["url"], first["url"]);
    {
        let st = fake.state.lock().unwrap();
        assert_eq!(st.account_creates.len(), 1, "one account per workspace");
        let (key, form) = &st.account_creates[0];
        assert_eq!(key.as_deref(), Some("roampay-connect-account-ws-c-1"));
        assert_eq!(form["metadata[workspace_id]"], "ws-c");
        assert_eq!(form["type"], "standard");
        assert_eq!(st.account_links.len(), 2);
        for link in &st.account_links {
            assert_eq!(link["account"], acct.as_str());
            assert_eq!(link["type"], "account_onboarding");
            assert_eq!(link["return_url"], "https://manage.example.com/stripe/done");
            assert_eq!(
                link["refresh_url"],
                "https://manage.example.com/stripe/again"
            );
        }
    }
    // Pending: no paid pre-auths yet.
    server
        .patch(
            &config_path("ws-c"),
            &admin("ws-c"),
            json!({"allow_guest_access": true}),
        )
        .await;
    put_location(&server, "ws-c", "LOC-ws-c", 45).await;
    let (status, body) = create(&server, "LOC-ws-c", "1", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("workspace_payment_not_ready")),
        "{body}"
    );
    // Stripe enables charges; a redelivery of that event is a duplicate.
    let account = fake.set_charges(&acct, true);
    applied_once(&server, "evt_upd_1", "account.updated", &acct, &account).await;
    let (_, cfg) = server.get(&config_path("ws-c"), &admin("ws-c")).await;
    assert_eq!(cfg["stripe"]["health"]["status"], "valid", "{cfg}");
    assert_eq!(cfg["stripe"]["connect"]["charges_enabled"], true);

    // The bootstrap gives Stripe.js the platform's key and the account.
    let r = server
        .http
        .get(server.url("/emsp/2.2.1/locations/LOC-ws-c?show_ocpi_cfg=true"))
        .send()
        .await
        .unwrap();
    let (_, boot) = status_json(r).await;
    assert_eq!(
        boot["data"]["ocpi_cfg"]["stripe_publishable_key"], PLATFORM_PK,
        "{boot}"
    );
    assert_eq!(boot["data"]["ocpi_cfg"]["stripe_account_id"], acct.as_str());

    // A keys-mode workspace beside it.
    configure(&server, "ws-k", "sk_test_51HxKeysWorkspaceKey", WH_A).await;
    put_location(&server, "ws-k", "LOC-ws-k", 45).await;

    // Connect: created with the platform's key on the account, with the fee.
    let (status, c) = create(&server, "LOC-ws-c", "1", None).await;
    assert_eq!(status, 201, "{c}");
    assert_eq!(c["publishable_key"], PLATFORM_PK);
    assert_eq!(c["stripe_account_id"], acct.as_str());
    let pi = c["payment_intent_id"].as_str().unwrap().to_string();
    let amount = c["amount_cents"].as_i64().unwrap();
    {
        let st = fake.state.lock().unwrap();
        let (_, auth, form) = st.creates.last().unwrap();
        assert_eq!(auth, &format!("Bearer {PLATFORM_SK}"));
        assert_eq!(
            form["application_fee_amount"],
            (amount * 250 / 10_000).to_string()
        );
        assert_eq!(form["metadata[workspace_id]"], "ws-c");
        assert_eq!(st.pi_accounts[&pi], acct);
    }
    authorize_via_connect(&server, &fake, &acct, &pi).await;
    let id = c["charging_intent_id"].as_str().unwrap().to_string();
    let t = sessions("ws-c");
    let (status, _) = post(
        &server,
        &path(&id, "start"),
        Some(&t),
        json!({"ocpi_session_id": "S-1"}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, done) = post(
        &server,
        &path(&id, "complete"),
        Some(&t),
        json!({"final_amount_cents": 3001, "ocpi_session_id": "S-1"}),
    )
    .await;
    assert_eq!(
        (status, done["status"].as_str()),
        (200, Some("completed")),
        "{done}"
    );
    let refund = server
        .http
        .post(server.url(&format!("/api/support/charging-intents/{id}/refunds")))
        .bearer_auth(token("support-agent", &["ws-c"], "refunds:write"))
        .header("Idempotency-Key", "0d4c7e0c-4c1f-4c5e-9a55-1f6f0a4f9d01")
        .json(&json!({"amount_cents": 1000}))
        .send()
        .await
        .unwrap();
    let (status, r) = status_json(refund).await;
    assert_eq!(status, 201, "{r}");
    // A second intent, cancelled: the release goes to the account too.
    let (_, c2) = create(&server, "LOC-ws-c", "2", None).await;
    let id2 = c2["charging_intent_id"].as_str().unwrap();
    let (status, body) = post(&server, &path(id2, "cancel"), Some(&t), json!({})).await;
    assert_eq!(status, 200, "{body}");

    // Keys mode: the workspace's own key, nothing of Connect.
    let (status, k) = create(&server, "LOC-ws-k", "1", None).await;
    assert_eq!(status, 201, "{k}");
    assert_eq!(k["publishable_key"], "pk_test_51HxPublishableKey");
    assert!(k["stripe_account_id"].is_null(), "{k}");
    let kid = k["charging_intent_id"].as_str().unwrap().to_string();
    fake.set_status(k["payment_intent_id"].as_str().unwrap(), "requires_capture");
    post(
        &server,
        &format!("/ocpi/charging-intents/{kid}/confirm"),
        None,
        json!({}),
    )
    .await;
    let tk = sessions("ws-k");
    post(
        &server,
        &path(&kid, "start"),
        Some(&tk),
        json!({"ocpi_session_id": "S-2"}),
    )
    .await;
    let (status, _) = post(
        &server,
        &path(&kid, "complete"),
        Some(&tk),
        json!({"final_amount_cents": 2000, "ocpi_session_id": "S-2"}),
    )
    .await;
    assert_eq!(status, 200);

    // What Stripe received: every payment call with the platform's key carries the
    // account; none with the workspace's key does; the fee follows the capture.
    let all = requests(&mock).await;
    let payment_call = |p: &str| p.starts_with("/v1/payment_intents") || p == "/v1/refunds";
    let platform: Vec<_> = all
        .iter()
        .filter(|r| r.2 == format!("Bearer {PLATFORM_SK}") && payment_call(&r.1))
        .collect();
    assert!(platform.len() >= 5, "{platform:?}");
    assert!(
        platform
            .iter()
            .all(|r| r.3.as_deref() == Some(acct.as_str())),
        "{platform:?}"
    );
    let keys: Vec<_> = all
        .iter()
        .filter(|r| r.2 == "Bearer sk_test_51HxKeysWorkspaceKey" && payment_call(&r.1))
        .collect();
    assert!(keys.len() >= 3, "{keys:?}");
    assert!(
        keys.iter()
            .all(|r| r.3.is_none() && !r.4.contains("application_fee")),
        "{keys:?}"
    );
    let capture = platform
        .iter()
        .find(|r| r.1 == format!("/v1/payment_intents/{pi}/capture"))
        .expect("a capture on the account");
    assert!(capture.4.contains("amount_to_capture=3001"), "{capture:?}");
    assert!(capture
        .4
        .contains(&format!("application_fee_amount={}", 3001 * 250 / 10_000)));
    let refund = platform
        .iter()
        .find(|r| r.1 == "/v1/refunds")
        .expect("a refund");
    assert!(
        refund.4.contains("refund_application_fee=true"),
        "{refund:?}"
    );
    assert!(
        platform.iter().any(|r| r.1.ends_with("/cancel")),
        "{platform:?}"
    );
    // Account management carries no Stripe-Account (it is the platform's own).
    assert!(all
        .iter()
        .filter(|r| r.1.starts_with("/v1/accounts") || r.1 == "/v1/account_links")
        .all(|r| r.3.is_none() && r.2 == format!("Bearer {PLATFORM_SK}")));

    // The platform loses access (403 `account_invalid`): deauthorized at once.
    fake.lose_access(&acct);
    let (status, body) = create(&server, "LOC-ws-c", "1", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("workspace_payment_not_ready")),
        "{body}"
    );
    let (_, cfg) = server.get(&config_path("ws-c"), &admin("ws-c")).await;
    assert_eq!(
        cfg["stripe"]["health"]["failure_code"], "account_deauthorized",
        "{cfg}"
    );
}

async fn connect_webhooks_touch_only_the_workspace_of_their_account(b: Backend) {
    let (_store, _mock, fake, server) = start(b, CONNECT_ENV).await;
    let acct_a = connected(&server, &fake, "ws-a").await;
    let acct_b = connected(&server, &fake, "ws-b").await;
    let (status, c) = create(&server, "LOC-ws-a", "1", None).await;
    assert_eq!(status, 201, "{c}");
    let pi = c["payment_intent_id"].as_str().unwrap().to_string();
    let id = c["charging_intent_id"].as_str().unwrap().to_string();
    // ws-a's PaymentIntent told under ws-b's account: not ws-a's business.
    let object = fake.set_status(&pi, "requires_capture");
    let (status, body) = connect_event(
        &server,
        "evt_cross",
        "payment_intent.amount_capturable_updated",
        &acct_b,
        &object,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("ownership_mismatch")),
        "{body}"
    );
    let i = intent(&server, &id).await;
    assert_eq!(i["status"], "pending_payment", "{i}");
    // An account no workspace has: ignored.
    let (status, body) = connect_event(
        &server,
        "evt_other",
        "account.updated",
        "acct_nobodys",
        &json!({
            "id": "acct_nobodys", "object": "account", "charges_enabled": false}),
    )
    .await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (200, Some("ignored")),
        "{body}"
    );
    // Under its own account it applies, once.
    applied_once(
        &server,
        "evt_own",
        "payment_intent.amount_capturable_updated",
        &acct_a,
        &object,
    )
    .await;
    let i = intent(&server, &id).await;
    assert_eq!(i["status"], "authorized", "{i}");

    // Charges disabled on ws-a's account: its new paid pre-auths are refused.
    let disabled = fake.set_charges(&acct_a, false);
    let (status, _) =
        connect_event(&server, "evt_dis", "account.updated", &acct_a, &disabled).await;
    assert_eq!(status, 200);
    let (_, cfg) = server.get(&config_path("ws-a"), &admin("ws-a")).await;
    assert_eq!(cfg["stripe"]["health"]["status"], "invalid", "{cfg}");
    assert_eq!(
        cfg["stripe"]["health"]["failure_code"],
        "connect_requirements_due"
    );
    assert_eq!(
        cfg["stripe"]["connect"]["requirements_due"],
        json!(["individual.verification.document"])
    );
    let (status, body) = create(&server, "LOC-ws-a", "2", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("workspace_payment_not_ready")),
        "{body}"
    );
    // ws-b deauthorizes the platform: the same, once; ws-a's state is its own.
    let app = json!({"id": "ca_platform", "object": "application", "name": "roampay"});
    applied_once(
        &server,
        "evt_deauth",
        "account.application.deauthorized",
        &acct_b,
        &app,
    )
    .await;
    let (_, cfg) = server.get(&config_path("ws-b"), &admin("ws-b")).await;
    assert_eq!(
        cfg["stripe"]["health"]["failure_code"], "account_deauthorized",
        "{cfg}"
    );
    let (status, body) = create(&server, "LOC-ws-b", "1", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("workspace_payment_not_ready")),
        "{body}"
    );
    // Support sees both, by the health of their connection.
    let support = token("support", &["*"], "audit:read");
    let listed = eventually("support sees both invalid", || async {
        let (_, page) = server
            .get("/api/support/workspaces?health=invalid", &support)
            .await;
        (page["data"].as_array().map_or(0, Vec::len) == 2).then_some(page)
    })
    .await;
    assert!(listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|w| !w["payment_ready"].as_bool().unwrap()));
    // A fresh onboarding after the deauthorization makes a new account.
    let (status, body) = onboard(&server, "ws-b").await;
    assert_eq!(status, 201, "{body}");
    assert_ne!(body["account_id"], acct_b.as_str());
    let st = fake.state.lock().unwrap();
    assert_eq!(
        st.account_creates.last().unwrap().0.as_deref(),
        Some("roampay-connect-account-ws-b-2")
    );
}

async fn switching_from_keys_to_connect_keeps_the_intent_in_flight_on_its_keys(b: Backend) {
    let (_store, mock, fake, server) = start(b, CONNECT_ENV).await;
    let ws_key = "sk_test_51HxSwitchingWsKey";
    configure(&server, "ws-s", ws_key, WH_A).await;
    put_location(&server, "ws-s", "LOC-S", 45).await;
    let (status, old) = create(&server, "LOC-S", "1", None).await;
    assert_eq!(status, 201, "{old}");
    let old_id = old["charging_intent_id"].as_str().unwrap().to_string();
    fake.set_status(
        old["payment_intent_id"].as_str().unwrap(),
        "requires_capture",
    );
    post(
        &server,
        &format!("/ocpi/charging-intents/{old_id}/confirm"),
        None,
        json!({}),
    )
    .await;
    // Onboarding a keys workspace leaves it on its keys.
    let (status, body) = onboard(&server, "ws-s").await;
    assert_eq!(status, 201, "{body}");
    let acct = body["account_id"].as_str().unwrap().to_string();
    let (_, cfg) = server.get(&config_path("ws-s"), &admin("ws-s")).await;
    assert_eq!(cfg["stripe"]["connection"], "keys", "{cfg}");
    // The account is not ready: no switch.
    let (status, body) = server
        .patch(
            &config_path("ws-s"),
            &admin("ws-s"),
            json!({"connection": "connect"}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("workspace_payment_not_ready")),
        "{body}"
    );
    let account = fake.set_charges(&acct, true);
    connect_event(&server, "evt_ready", "account.updated", &acct, &account).await;
    let (status, cfg) = server
        .patch(
            &config_path("ws-s"),
            &admin("ws-s"),
            json!({"connection": "connect"}),
        )
        .await;
    assert_eq!(status, 200, "{cfg}");
    assert_eq!(cfg["stripe"]["connection"], "connect");
    // New intents go to the connected account; the one in flight completes on the keys.
    let (status, new) = create(&server, "LOC-S", "2", None).await;
    assert_eq!(status, 201, "{new}");
    assert_eq!(new["stripe_account_id"], acct.as_str());
    let new_pi = new["payment_intent_id"].as_str().unwrap().to_string();
    let old_pi = old["payment_intent_id"].as_str().unwrap().to_string();
    let t = sessions("ws-s");
    post(
        &server,
        &path(&old_id, "start"),
        Some(&t),
        json!({"ocpi_session_id": "S-old"}),
    )
    .await;
    let (status, done) = post(
        &server,
        &path(&old_id, "complete"),
        Some(&t),
        json!({"final_amount_cents": 1500, "ocpi_session_id": "S-old"}),
    )
    .await;
    assert_eq!(
        (status, done["status"].as_str()),
        (200, Some("completed")),
        "{done}"
    );
    let all = requests(&mock).await;
    let capture = all
        .iter()
        .find(|r| r.1 == format!("/v1/payment_intents/{old_pi}/capture"))
        .expect("the old intent's capture");
    assert_eq!(capture.2, format!("Bearer {ws_key}"));
    assert!(capture.3.is_none(), "{capture:?}");
    {
        let st = fake.state.lock().unwrap();
        assert_eq!(st.pi_accounts[&new_pi], acct);
        assert_ne!(st.pi_accounts[&old_pi], acct);
    }
    // And back to the keys, which are still valid.
    let (status, cfg) = server
        .patch(
            &config_path("ws-s"),
            &admin("ws-s"),
            json!({"connection": "keys"}),
        )
        .await;
    assert_eq!(
        (status, cfg["stripe"]["connection"].as_str()),
        (200, Some("keys")),
        "{cfg}"
    );
}

async fn connect_is_off_without_the_platform_keys(b: Backend) {
    let (_store, _mock, _fake, server) = start(b, &[]).await;
    let (status, body) = onboard(&server, "ws-1").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("connect_not_enabled")),
        "{body}"
    );
    configure(&server, "ws-1", "sk_test_51HxWorkspaceOneKey", WH_A).await;
    let (status, body) = server
        .patch(
            &config_path("ws-1"),
            &admin("ws-1"),
            json!({"connection": "connect"}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("connect_not_enabled")),
        "{body}"
    );
    let (status, body) = server
        .patch(
            &config_path("ws-1"),
            &admin("ws-1"),
            json!({"stripe_connect": {"application_fee_bps": 2001}}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["code"], "invalid_application_fee");
    let (status, body) = server
        .patch(
            &config_path("ws-1"),
            &admin("ws-1"),
            json!({"connection": "wire"}),
        )
        .await;
    assert_eq!(
        (status, body["errors"][0]["code"].as_str()),
        (422, Some("invalid_connection")),
        "{body}"
    );
    let (status, body) =
        connect_event(&server, "evt_x", "account.updated", "acct_x", &json!({})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("webhook_secret_not_configured")),
        "{body}"
    );
    // Nothing else changed: the keys still serve, no Connect fields.
    let (_, cfg) = server.get(&config_path("ws-1"), &admin("ws-1")).await;
    assert_eq!(cfg["stripe"]["connection"], "keys");
    assert!(cfg["stripe"]["connect"].is_null(), "{cfg}");
}

/// Rolling the secret of a platform endpoint (Connect, billing) leaves Stripe signing with
/// the old one for a while: with `…_PREVIOUS` set, both verify; without it, the old one
/// is refused; a previous secret without a current one stops the service at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_platform_webhook_secret_keeps_verifying_while_it_is_the_previous_one() {
    const ROLLED_CONNECT: &str = "whsec_PlatformConnectEndpointRolled";
    const ROLLED_BILLING: &str = "whsec_PlatformBillingEndpointRolled";
    const BILLING: &str = "whsec_PlatformBillingEndpoint";
    let billing = [
        ("ROAMPAY_PLATFORM_WEBHOOK_SECRET", ROLLED_BILLING),
        ("ROAMPAY_PLANS", "starter=price_starter1"),
    ];
    let connect_body = serde_json::to_vec(&json!({
        "id": "evt_roll_1", "object": "event", "type": "account.updated",
        "account": "acct_NoWorkspaceHere", "livemode": false,
        "created": chrono::Utc::now().timestamp(),
        "data": {"object": {"id": "acct_NoWorkspaceHere", "object": "account"}}
    }))
    .unwrap();
    let billing_body = serde_json::to_vec(&json!({
        "id": "evt_roll_2", "object": "event", "type": "customer.created", "livemode": false,
        "created": chrono::Utc::now().timestamp(),
        "data": {"object": {"id": "cus_1", "object": "customer"}}
    }))
    .unwrap();
    async fn send(server: &Server, path: &str, secret: &str, body: &[u8]) -> (u16, Value) {
        let sig = signature(secret, body, chrono::Utc::now().timestamp());
        deliver(server, path, body, Some(&sig)).await
    }
    let connect_path = "/ocpi/stripe/connect/webhook";
    let billing_path = "/billing/stripe/webhook";

    let mut rolled: Vec<(&str, &str)> = CONNECT_ENV
        .iter()
        .map(|&(k, v)| match k {
            "ROAMPAY_CONNECT_WEBHOOK_SECRET" => (k, ROLLED_CONNECT),
            _ => (k, v),
        })
        .collect();
    rolled.extend(billing);
    let (_a, _m, _f, without_previous) = start(Backend::Sqlite, &rolled).await;
    rolled.push(("ROAMPAY_CONNECT_WEBHOOK_SECRET_PREVIOUS", CONNECT_WH));
    rolled.push(("ROAMPAY_PLATFORM_WEBHOOK_SECRET_PREVIOUS", BILLING));
    let (_b, _n, _g, with_previous) = start(Backend::Sqlite, &rolled).await;

    for (path, body, new, old) in [
        (connect_path, &connect_body, ROLLED_CONNECT, CONNECT_WH),
        (billing_path, &billing_body, ROLLED_BILLING, BILLING),
    ] {
        for (secret, server) in [
            (new, &with_previous),
            (old, &with_previous),
            (new, &without_previous),
        ] {
            let (status, answer) = send(server, path, secret, body).await;
            assert_eq!(
                (status, answer["outcome"].as_str()),
                (200, Some("ignored")),
                "{path} signed with {secret}: {answer}"
            );
        }
        let (status, answer) = send(&without_previous, path, old, body).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (400, Some("signature_mismatch")),
            "{path}: {answer}"
        );
        let (status, answer) = send(&with_previous, path, "whsec_SomeoneElse", body).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (400, Some("signature_mismatch")),
            "{path}: {answer}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_roampay"))
        .arg("serve")
        .envs(
            CONNECT_ENV
                .iter()
                .filter(|(k, _)| *k != "ROAMPAY_CONNECT_WEBHOOK_SECRET")
                .copied(),
        )
        .env("ROAMPAY_CONNECT_WEBHOOK_SECRET_PREVIOUS", CONNECT_WH)
        .env("ROAMPAY_DATA_DIR", dir.path())
        .env("ROAMPAY_BIND", "127.0.0.1:0")
        .env_remove("DATABASE_URL")
        .output()
        .expect("run roampay serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "ROAMPAY_CONNECT_WEBHOOK_SECRET_PREVIOUS is set without ROAMPAY_CONNECT_WEBHOOK_SECRET"
        ),
        "{stderr}"
    );
}

/// The platform's key rolled without updating roampay: every connect-mode pre-auth is
/// refused, but no workspace's credentials are at fault (their health stays as it was);
/// the operator learns it from `roampay_platform_key_refusals_total` and its alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_platform_key_is_the_operators_alert_not_the_workspaces_health() {
    let (_store, _mock, fake, server) = start(Backend::Sqlite, CONNECT_ENV).await;
    connected(&server, &fake, "ws-p").await;
    let refusals = "roampay_platform_key_refusals_total";
    assert_eq!(server.metric(refusals, "").await, 0.0);
    let (status, body) = create(&server, "LOC-ws-p", "1", None).await;
    assert_eq!(status, 201, "{body}");

    fake.revoke(PLATFORM_SK);
    let (status, body) = create(&server, "LOC-ws-p", "2", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("workspace_payment_not_ready")),
        "{body}"
    );
    assert!(server.metric(refusals, "").await >= 1.0);
    let (_, cfg) = server.get(&config_path("ws-p"), &admin("ws-p")).await;
    assert_eq!(cfg["stripe"]["health"]["status"], "valid", "{cfg}");
    assert_eq!(
        server
            .metric(
                "roampay_credential_revocations_total",
                "code=\"key_revoked\""
            )
            .await,
        0.0
    );
}
