//! Roaming payments end to end over HTTP, Stripe played by a stateful fake.

use roampay::infra::stripe::webhook::sign;
use secrecy::SecretString;
use serde_json::{json, Value};

use crate::fake_stripe::FakeStripe;
use crate::on_both_backends;
use crate::support::*;

pub const WH_A: &str = "whsec_WorkspaceAsSigningSecret";
pub const WH_B: &str = "whsec_WorkspaceBsSigningSecret";

pub fn location(price: i64) -> Value {
    json!({
        "name": "Depot A", "address": "1 Main St", "city": "Sydney", "postal_code": "2000", "country": "AUS",
        "coordinates": {"latitude": "-33.868800", "longitude": "151.209300"},
        "evses": [{"uid": "EVSE-1", "evse_id": "AU*BFL*E1", "connectors": [
            {"id": "1", "standard": "IEC_62196_T2_COMBO", "format": "CABLE", "power_type": "DC", "max_electric_power": 50000,
             "tariff": {"currency": "aud", "price_per_kwh_cents": price, "flat_fee_cents": 0}},
            {"id": "2", "standard": "IEC_62196_T2", "format": "SOCKET", "power_type": "AC_3_PHASE",
             "tariff": {"currency": "aud", "price_per_kwh_cents": price, "flat_fee_cents": 0}}
        ]}]
    })
}

pub async fn put_location(server: &Server, ws: &str, id: &str, price: i64) -> (u16, Value) {
    let t = token("cpo", &[ws], "locations:write");
    let r = server
        .http
        .put(server.url(&format!("/api/workspaces/{ws}/locations/{id}")))
        .bearer_auth(t)
        .json(&location(price))
        .send()
        .await
        .unwrap();
    status_json(r).await
}

/// A workspace with valid test-mode credentials that lets guests pay.
pub async fn configure(server: &Server, ws: &str, sk: &str, wh: &str) {
    let mut body = creds("pk_test_51HxPublishableKey", sk, wh);
    body["allow_guest_access"] = json!(true);
    let (status, b) = server.patch(&config_path(ws), &admin(ws), body).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["stripe"]["health"]["status"], "valid", "{b}");
}

pub async fn create(
    server: &Server,
    location: &str,
    connector: &str,
    key: Option<&str>,
) -> (u16, Value) {
    let mut req = server
        .http
        .post(server.url("/ocpi/create-payment-intent"))
        .json(&json!({"location_id": location, "evse_uid": "EVSE-1", "connector_id": connector, "email": "d@example.com"}));
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    status_json(req.send().await.unwrap()).await
}

/// A Stripe event about a PaymentIntent, signed with `secret` now.
pub fn stripe_event(event_id: &str, pi: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": event_id, "object": "event", "type": "payment_intent.amount_capturable_updated",
        "livemode": pi["livemode"], "created": chrono::Utc::now().timestamp(),
        "data": {"object": pi}
    }))
    .unwrap()
}

pub fn signature(secret: &str, body: &[u8], at: i64) -> String {
    format!(
        "t={at},v1={}",
        sign(&SecretString::from(secret.to_string()), at, body)
    )
}

pub async fn deliver(server: &Server, path: &str, body: &[u8], sig: Option<&str>) -> (u16, Value) {
    let mut req = server
        .http
        .post(server.url(path))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(s) = sig {
        req = req.header("Stripe-Signature", s);
    }
    status_json(req.send().await.unwrap()).await
}

pub async fn intent(server: &Server, id: &str) -> Value {
    let (status, body) = server
        .get_public(&format!("/ocpi/charging-intents/{id}"))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

pub async fn start(
    b: Backend,
    extra: &[(&str, &str)],
) -> (Store, wiremock::MockServer, FakeStripe, Server) {
    let store = Store::fresh(b).await;
    let (mock, fake) = FakeStripe::start().await;
    let mut opts = ServerOptions::new(&mock);
    for (k, v) in extra {
        opts = opts.env(k, v);
    }
    let server = Server::start(&store, opts).await;
    (store, mock, fake, server)
}

/// A server on `store` reached through `database_url` (e.g. a proxy in front of it).
pub async fn start_with_store(
    store: &Store,
    database_url: &str,
    extra: &[(&str, &str)],
) -> (wiremock::MockServer, FakeStripe, Server) {
    let (mock, fake) = FakeStripe::start().await;
    let mut opts = ServerOptions::new(&mock).env("DATABASE_URL", database_url);
    for (k, v) in extra {
        opts = opts.env(k, v);
    }
    let server = Server::start(store, opts).await;
    (mock, fake, server)
}

on_both_backends!(
    a_paid_session_is_pre_authorized_in_the_workspaces_own_account_and_authorized_by_its_webhook,
    a_free_connector_needs_neither_stripe_nor_credentials,
    a_workspace_without_valid_credentials_cannot_start_paid_sessions,
    one_open_intent_per_connector,
    client_idempotency_keys_replay_the_answer_and_refuse_another_body,
    a_webhook_signed_by_one_workspace_cannot_touch_anothers_intent,
    twenty_concurrent_deliveries_of_one_event_apply_once,
    rotation_with_an_intent_in_flight,
    refused_webhooks_are_answered_with_their_codes_and_recorded,
    without_webhooks_confirm_and_the_sweep_apply_stripes_status,
    drivers_need_a_token_unless_guests_are_allowed,
    a_declined_card_is_retried_on_the_same_payment_intent_and_only_a_real_stray_hold_is_released,
    verified_events_about_unknown_intents_are_ignored_and_malformed_ids_are_refused,
);

async fn a_paid_session_is_pre_authorized_in_the_workspaces_own_account_and_authorized_by_its_webhook(
    b: Backend,
) {
    let (_store, _mock, fake, server) = start(b, &[]).await;
    configure(&server, "ws-1", "sk_test_51HxWorkspaceOneKey", WH_A).await;
    let (status, loc) = put_location(&server, "ws-1", "LOC-1", 45).await;
    assert_eq!(status, 200, "{loc}");
    assert_eq!(loc["evses"][0]["connectors"][0]["free"], false);

    let r = server
        .http
        .get(server.url("/emsp/2.2.1/locations/LOC-1?show_ocpi_cfg=true"))
        .send()
        .await
        .unwrap();
    let (status, env) = status_json(r).await;
    assert_eq!(status, 200, "{env}");
    assert_eq!(env["status_code"], 1000);
    let cfg = &env["data"]["ocpi_cfg"];
    assert_eq!(cfg["stripe_publishable_key"], "pk_test_51HxPublishableKey");
    assert_eq!(cfg["payment_ready"], true);
    assert_eq!(cfg["payment_error"], Value::Null);
    assert!(
        !env.to_string().contains("WorkspaceOneKey"),
        "no secret in the bootstrap"
    );
    let r = server
        .http
        .get(server.url("/emsp/2.2.1/locations/NOPE"))
        .send()
        .await
        .unwrap();
    let (status, env) = status_json(r).await;
    assert_eq!((status, env["status_code"].as_i64()), (404, Some(2003)));

    let (status, created) = create(&server, "LOC-1", "1", None).await;
    assert_eq!(status, 201, "{created}");
    let id = created["charging_intent_id"].as_str().unwrap().to_string();
    assert_eq!(created["status"], "pending_payment");
    assert_eq!(created["payment_required"], true);
    assert_eq!(created["amount_cents"], 5000);
    assert_eq!(created["currency"], "aud");
    assert_eq!(created["workspace_id"], "ws-1");
    assert_eq!(created["publishable_key"], "pk_test_51HxPublishableKey");
    let pi_id = created["payment_intent_id"].as_str().unwrap().to_string();
    assert_eq!(created["client_secret"], format!("{pi_id}_secret_fake"));
    {
        let st = fake.state.lock().unwrap();
        let (key, auth, form) = &st.creates[0];
        assert_eq!(
            key.as_deref(),
            Some(format!("roampay:ws-1:{id}:create").as_str())
        );
        assert_eq!(
            auth, "Bearer sk_test_51HxWorkspaceOneKey",
            "the workspace's own key"
        );
        assert_eq!(form["capture_method"], "manual");
        assert_eq!(form["amount"], "5000");
        assert_eq!(form["metadata[workspace_id]"], "ws-1");
        assert_eq!(form["metadata[charging_intent_id]"], id);
        assert_eq!(form["metadata[credential_version]"], "1");
        assert_eq!(form["metadata[location_id]"], "LOC-1");
        assert_eq!(form["metadata[evse_uid]"], "EVSE-1");
        assert_eq!(form["metadata[connector_id]"], "1");
    }
    assert_eq!(intent(&server, &id).await["status"], "pending_payment");

    let pi = fake.set_status(&pi_id, "requires_capture");
    let body = stripe_event("evt_auth_1", &pi);
    let now = chrono::Utc::now().timestamp();
    let (status, out) = deliver(
        &server,
        "/ocpi/stripe/webhook/ws-1",
        &body,
        Some(&signature(WH_A, &body, now)),
    )
    .await;
    assert_eq!(
        (status, out["outcome"].as_str()),
        (200, Some("applied")),
        "{out}"
    );
    let got = intent(&server, &id).await;
    assert_eq!(got["status"], "authorized");
    assert_eq!(got["authorized_amount_cents"], 5000);
    let (status, out) = deliver(
        &server,
        "/ocpi/stripe/webhook",
        &body,
        Some(&signature(WH_A, &body, now)),
    )
    .await;
    assert_eq!(
        (status, out["outcome"].as_str()),
        (200, Some("duplicate")),
        "the same event again, on the shared URL"
    );

    let audit = server
        .wait_for_audit_where("ws-1", |d| {
            d.iter()
                .any(|e| e["event_type"] == "WorkspacePaymentIntentAuthorizationReceived")
        })
        .await;
    let types: Vec<&str> = audit
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert!(
        types.contains(&"WorkspacePaymentIntentCreated")
            && types.contains(&"WorkspacePaymentIntentAuthorizationReceived"),
        "{types:?}"
    );
    let support = token("support", &["*"], "audit:read");
    let path = "/api/support/charging-intents?workspace_id=ws-1&status=authorized";
    let list = eventually("the support list showing the authorized intent", || async {
        let (_, list) = server.get(path, &support).await;
        (list["data"].as_array().unwrap().len() == 1).then_some(list)
    })
    .await;
    assert_eq!(list["data"][0]["payment_intent_id"], pi_id);
}

async fn a_free_connector_needs_neither_stripe_nor_credentials(b: Backend) {
    let (_store, mock, _fake, server) = start(b, &[]).await;
    server
        .patch(
            &config_path("ws-1"),
            &admin("ws-1"),
            json!({"allow_guest_access": true}),
        )
        .await;
    put_location(&server, "ws-1", "LOC-F", 0).await;
    let before = mock.received_requests().await.unwrap().len();
    let (status, created) = create(&server, "LOC-F", "1", None).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["payment_required"], false);
    assert_eq!(created["status"], "authorized");
    assert!(created.get("payment_intent_id").is_none() && created.get("client_secret").is_none());
    assert_eq!(
        mock.received_requests().await.unwrap().len(),
        before,
        "Stripe was not called"
    );
}

async fn a_workspace_without_valid_credentials_cannot_start_paid_sessions(b: Backend) {
    let (_store, _mock, _fake, server) = start(b, &[]).await;
    server
        .patch(
            &config_path("ws-1"),
            &admin("ws-1"),
            json!({"allow_guest_access": true}),
        )
        .await;
    put_location(&server, "ws-1", "LOC-1", 45).await;
    let (status, problem) = create(&server, "LOC-1", "1", None).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("workspace_payment_not_ready")),
        "{problem}"
    );
    assert!(problem["detail"].as_str().unwrap().contains("unconfigured"));
    let (_, env) = status_json(
        server
            .http
            .get(server.url("/emsp/2.2.1/locations/LOC-1?show_ocpi_cfg=true"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(env["data"]["ocpi_cfg"]["payment_ready"], false);
    assert_eq!(
        env["data"]["ocpi_cfg"]["payment_error"]["code"],
        "workspace_payment_not_ready"
    );
    for (path, code) in [("LOC-X", "location_not_found")] {
        let (status, p) = create(&server, path, "1", None).await;
        assert_eq!((status, p["code"].as_str()), (404, Some(code)));
    }
    let (status, p) = create(&server, "LOC-1", "9", None).await;
    assert_eq!(
        (status, p["code"].as_str()),
        (404, Some("connector_not_found"))
    );
    let (status, p) = put_location(&server, "ws-2", "LOC-1", 45).await;
    assert_eq!(
        (status, p["code"].as_str()),
        (409, Some("location_owned_by_other_workspace"))
    );
}

async fn one_open_intent_per_connector(b: Backend) {
    let (_store, _mock, fake, server) = start(b, &[]).await;
    configure(&server, "ws-1", "sk_test_51HxWorkspaceOneKey", WH_A).await;
    put_location(&server, "ws-1", "LOC-1", 45).await;
    // Concurrent requests for one connector: exactly one wins.
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let http = server.http.clone();
        let url = server.url("/ocpi/create-payment-intent");
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .json(&json!({"location_id": "LOC-1", "evse_uid": "EVSE-1", "connector_id": "1"}))
                .send()
                .await
                .unwrap();
            status_json(r).await
        }));
    }
    let mut statuses = Vec::new();
    let mut winner = None;
    for t in tasks {
        let (s, body) = t.await.unwrap();
        if s == 201 {
            winner = Some(body.clone());
        } else {
            assert_eq!(body["code"], "connector_busy", "{body}");
        }
        statuses.push(s);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    let (status, _) = create(&server, "LOC-1", "2", None).await;
    assert_eq!(status, 201, "another connector is free");
    // The winner's payment fails: the connector is free again.
    let winner = winner.unwrap();
    let pi = fake.set_status(winner["payment_intent_id"].as_str().unwrap(), "canceled");
    let body = stripe_event("evt_cancel", &pi);
    let (s, out) = deliver(
        &server,
        "/ocpi/stripe/webhook/ws-1",
        &body,
        Some(&signature(WH_A, &body, chrono::Utc::now().timestamp())),
    )
    .await;
    assert_eq!((s, out["outcome"].as_str()), (200, Some("applied")));
    assert_eq!(
        intent(&server, winner["charging_intent_id"].as_str().unwrap()).await["status"],
        "cancelled"
    );
    let (status, body) = create(&server, "LOC-1", "1", None).await;
    assert_eq!(status, 201, "{body}");
}

async fn client_idempotency_keys_replay_the_answer_and_refuse_another_body(b: Backend) {
    let (_store, _mock, fake, server) = start(b, &[]).await;
    configure(&server, "ws-1", "sk_test_51HxWorkspaceOneKey", WH_A).await;
    put_location(&server, "ws-1", "LOC-1", 45).await;
    let (s1, first) = create(&server, "LOC-1", "1", Some("order-42-7d1f0c3a-2b")).await;
    let (s2, second) = create(&server, "LOC-1", "1", Some("order-42-7d1f0c3a-2b")).await;
    assert_eq!((s1, s2), (201, 201), "{second}");
    assert_eq!(first, second, "the same answer again");
    assert_eq!(fake.distinct_intents(), 1, "no second PaymentIntent");
    let (s3, problem) = create(&server, "LOC-1", "2", Some("order-42-7d1f0c3a-2b")).await;
    assert_eq!(
        (s3, problem["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
    // The driver's email is Stripe's receipt_email.
    let form = fake.state.lock().unwrap().creates[0].2.clone();
    assert_eq!(
        form.get("receipt_email").map(String::as_str),
        Some("d@example.com")
    );

    // A key is 16 to 255 printable ASCII characters.
    for bad in ["short-key", "with space 0123456789", &"k".repeat(256)] {
        let (s, p) = create(&server, "LOC-1", "3", Some(bad)).await;
        assert_eq!(
            (s, p["code"].as_str()),
            (422, Some("invalid_idempotency_key")),
            "{bad:?}"
        );
    }

    // A key never hands one driver's client secret to another.
    let body = json!({"location_id": "LOC-1", "evse_uid": "EVSE-1", "connector_id": "2"});
    let as_driver = |sub: &str| {
        let t = token(sub, &["ws-1"], "driver");
        server
            .http
            .post(server.url("/ocpi/create-payment-intent"))
            .bearer_auth(t)
            .header("Idempotency-Key", "a3f1c2d4-0b9e-4f7a-9c1d-2e3f4a5b6c7d")
            .json(&body)
            .send()
    };
    let (s, first) = status_json(as_driver("driver-1").await.unwrap()).await;
    assert_eq!(s, 201, "{first}");
    let (s, again) = status_json(as_driver("driver-1").await.unwrap()).await;
    assert_eq!(
        (s, &again),
        (201, &first),
        "the same driver gets the same answer"
    );
    let (s, other) = status_json(as_driver("driver-2").await.unwrap()).await;
    assert_eq!(
        (s, other["code"].as_str()),
        (422, Some("idempotency_key_reused")),
        "{other}"
    );
    assert!(other.get("client_secret").is_none());
}

async fn a_webhook_signed_by_one_workspace_cannot_touch_anothers_intent(b: Backend) {
    let (_store, _mock, fake, server) = start(b, &[]).await;
    configure(&server, "ws-a", "sk_test_51HxWorkspaceAKey1", WH_A).await;
    configure(&server, "ws-b", "sk_test_51HxWorkspaceBKey1", WH_B).await;
    put_location(&server, "ws-a", "LOC-A", 45).await;
    put_location(&server, "ws-b", "LOC-B", 45).await;
    let (_, a) = create(&server, "LOC-A", "1", None).await;
    let (_, bi) = create(&server, "LOC-B", "1", None).await;
    let b_pi = fake.set_status(
        bi["payment_intent_id"].as_str().unwrap(),
        "requires_capture",
    );
    let now = chrono::Utc::now().timestamp();

    // A signs an event about B's PaymentIntent and sends it to A's URL.
    let body = stripe_event("evt_forged_1", &b_pi);
    let (s, p) = deliver(
        &server,
        "/ocpi/stripe/webhook/ws-a",
        &body,
        Some(&signature(WH_A, &body, now)),
    )
    .await;
    assert_eq!(
        (s, p["code"].as_str()),
        (403, Some("ownership_mismatch")),
        "{p}"
    );
    // On the shared URL, claiming to be A in the metadata.
    let mut claimed = b_pi.clone();
    claimed["metadata"]["workspace_id"] = json!("ws-a");
    let body = stripe_event("evt_forged_2", &claimed);
    let (s, p) = deliver(
        &server,
        "/ocpi/stripe/webhook",
        &body,
        Some(&signature(WH_A, &body, now)),
    )
    .await;
    assert_eq!(
        (s, p["code"].as_str()),
        (403, Some("ownership_mismatch")),
        "{p}"
    );
    assert_eq!(
        intent(&server, bi["charging_intent_id"].as_str().unwrap()).await["status"],
        "pending_payment",
        "unchanged"
    );

    // A's event ids do not pre-empt B's: the same id applies in each workspace.
    let a_pi = fake.set_status(a["payment_intent_id"].as_str().unwrap(), "requires_capture");
    let body = stripe_event("evt_shared_id", &a_pi);
    let (_, out) = deliver(
        &server,
        "/ocpi/stripe/webhook/ws-a",
        &body,
        Some(&signature(WH_A, &body, now)),
    )
    .await;
    assert_eq!(out["outcome"], "applied");
    let body = stripe_event("evt_shared_id", &b_pi);
    let (_, out) = deliver(
        &server,
        "/ocpi/stripe/webhook/ws-b",
        &body,
        Some(&signature(WH_B, &body, now)),
    )
    .await;
    assert_eq!(out["outcome"], "applied", "B's own event with the same id");

    let audit = server
        .wait_for_audit_where("ws-a", |a| {
            a.iter().any(|e| e["event_type"] == "WebhookRejected")
        })
        .await;
    let rejected: Vec<&Value> = audit
        .iter()
        .filter(|e| e["event_type"] == "WebhookRejected")
        .collect();
    assert!(!rejected.is_empty(), "refusals are recorded for support");
    assert!(rejected[0]["summary"]
        .as_str()
        .unwrap()
        .contains("ownership_mismatch"));
}

async fn twenty_concurrent_deliveries_of_one_event_apply_once(b: Backend) {
    let (store, _mock, fake, server) = start(b, &[]).await;
    configure(&server, "ws-1", "sk_test_51HxWorkspaceOneKey", WH_A).await;
    put_location(&server, "ws-1", "LOC-1", 45).await;
    let (_, created) = create(&server, "LOC-1", "1", None).await;
    let pi = fake.set_status(
        created["payment_intent_id"].as_str().unwrap(),
        "requires_capture",
    );
    let body = stripe_event("evt_concurrent", &pi);
    let sig = signature(WH_A, &body, chrono::Utc::now().timestamp());
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (http, url, body, sig) = (
            server.http.clone(),
            server.url("/ocpi/stripe/webhook/ws-1"),
            body.clone(),
            sig.clone(),
        );
        tasks.push(tokio::spawn(async move {
            status_json(
                http.post(url)
                    .header("Stripe-Signature", sig)
                    .body(body)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        let (s, out) = t.await.unwrap();
        assert_eq!(s, 200, "{out}");
        outcomes.push(out["outcome"].as_str().unwrap().to_string());
    }
    assert_eq!(
        outcomes.iter().filter(|o| *o == "applied").count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.iter().filter(|o| *o == "duplicate").count(),
        19,
        "{outcomes:?}"
    );
    let db = store.db().await;
    let n: i64 = roampay_projections::on_db!(&db, pool => sqlx::query_scalar(
        "SELECT COUNT(*) FROM events WHERE event_type = 'WorkspacePaymentIntentAuthorizationReceived'").fetch_one(pool).await.unwrap());
    assert_eq!(n, 1);
}

async fn rotation_with_an_intent_in_flight(b: Backend) {
    let (_store, _mock, fake, server) = start(b, &[]).await;
    configure(&server, "ws-1", "sk_test_51HxOldSecretKey1", WH_A).await;
    put_location(&server, "ws-1", "LOC-1", 45).await;
    let (_, created) = create(&server, "LOC-1", "1", None).await;
    let id = created["charging_intent_id"].as_str().unwrap().to_string();
    let pi_id = created["payment_intent_id"].as_str().unwrap().to_string();
    // Both secrets are rotated while the intent waits for its authorization.
    let (s, body) = server
        .patch(&config_path("ws-1"), &admin("ws-1"), json!({"stripe": {"secret_key": "sk_test_51HxNewSecretKey2", "webhook_signing_secret": "whsec_TheNewSigningSecret"}}))
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["stripe"]["credential_version"], 2);
    // The old signing secret still verifies within the overlap window.
    let pi = fake.set_status(&pi_id, "requires_capture");
    let ev = stripe_event("evt_old_secret", &pi);
    let (s, out) = deliver(
        &server,
        "/ocpi/stripe/webhook/ws-1",
        &ev,
        Some(&signature(WH_A, &ev, chrono::Utc::now().timestamp())),
    )
    .await;
    assert_eq!(
        (s, out["outcome"].as_str()),
        (200, Some("applied")),
        "{out}"
    );
    // The intent keeps using the key it was created with; new intents use the new one.
    fake.state.lock().unwrap().retrieves.clear();
    let r = server
        .http
        .post(server.url(&format!("/ocpi/charging-intents/{id}/confirm")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        fake.state.lock().unwrap().retrieves.last().unwrap().1,
        "Bearer sk_test_51HxOldSecretKey1"
    );
    let (status, second) = create(&server, "LOC-1", "2", None).await;
    assert_eq!(status, 201, "{second}");
    let st = fake.state.lock().unwrap();
    assert_eq!(
        st.creates.last().unwrap().1,
        "Bearer sk_test_51HxNewSecretKey2"
    );
    assert_eq!(
        st.creates.last().unwrap().2["metadata[credential_version]"],
        "2"
    );
    assert_eq!(second["status"], "pending_payment");
}

async fn refused_webhooks_are_answered_with_their_codes_and_recorded(b: Backend) {
    let (_store, _mock, fake, server) = start(b, &[]).await;
    configure(&server, "ws-1", "sk_test_51HxWorkspaceOneKey", WH_A).await;
    server
        .patch(
            &config_path("ws-nocreds"),
            &admin("ws-nocreds"),
            json!({"allow_guest_access": true}),
        )
        .await;
    put_location(&server, "ws-1", "LOC-1", 45).await;
    let (_, created) = create(&server, "LOC-1", "1", None).await;
    let pi = fake.set_status(
        created["payment_intent_id"].as_str().unwrap(),
        "requires_capture",
    );
    let body = stripe_event("evt_x", &pi);
    let now = chrono::Utc::now().timestamp();
    let good = signature(WH_A, &body, now);
    let url = "/ocpi/stripe/webhook/ws-1";
    type Case<'a> = (String, Vec<u8>, Option<String>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (url.into(), body.clone(), None, 400, "missing_signature"),
        (
            url.into(),
            body.clone(),
            Some("garbage".into()),
            400,
            "invalid_signature_header",
        ),
        (
            url.into(),
            body.clone(),
            Some(signature("whsec_NotTheRightSecret", &body, now)),
            400,
            "signature_mismatch",
        ),
        (
            url.into(),
            body.clone(),
            Some(signature(WH_A, &body, now - 3600)),
            400,
            "timestamp_out_of_tolerance",
        ),
        (
            url.into(),
            b"{not json".to_vec(),
            Some(signature(WH_A, b"{not json", now)),
            400,
            "invalid_payload",
        ),
        (
            "/ocpi/stripe/webhook/ws-unknown".into(),
            body.clone(),
            Some(good.clone()),
            400,
            "unknown_workspace",
        ),
        (
            "/ocpi/stripe/webhook/ws-nocreds".into(),
            body.clone(),
            Some(good.clone()),
            400,
            "webhook_secret_not_configured",
        ),
    ];
    for (path, body, sig, status, code) in cases {
        let (s, p) = deliver(&server, &path, &body, sig.as_deref()).await;
        assert_eq!((s, p["code"].as_str()), (status, Some(code)), "{path}: {p}");
    }
    let mut live = pi.clone();
    live["livemode"] = json!(true);
    let lb = stripe_event("evt_live", &live);
    let (s, p) = deliver(&server, url, &lb, Some(&signature(WH_A, &lb, now))).await;
    assert_eq!((s, p["code"].as_str()), (403, Some("livemode_mismatch")));
    assert_eq!(
        intent(&server, created["charging_intent_id"].as_str().unwrap()).await["status"],
        "pending_payment",
        "nothing applied"
    );
    // Other verified events are acknowledged and ignored.
    let other = serde_json::to_vec(&json!({"id": "evt_bal", "object": "event", "type": "balance.available", "data": {"object": {"object": "balance"}}})).unwrap();
    let (s, out) = deliver(&server, url, &other, Some(&signature(WH_A, &other, now))).await;
    assert_eq!((s, out["outcome"].as_str()), (200, Some("ignored")));
    // Six refusals name ws-1 (the unknown and the unconfigured workspace are recorded apart).
    server
        .wait_for_audit_where("ws-1", |a| {
            a.iter()
                .filter(|e| e["event_type"] == "WebhookRejected")
                .count()
                >= 6
        })
        .await;
}

async fn without_webhooks_confirm_and_the_sweep_apply_stripes_status(b: Backend) {
    let (_store, _mock, fake, server) = start(
        b,
        &[
            ("ROAMPAY_SWEEP_INTERVAL_SECS", "1"),
            ("ROAMPAY_SWEEP_FIRST_LOOK_SECS", "0"),
        ],
    )
    .await;
    configure(&server, "ws-1", "sk_test_51HxWorkspaceOneKey", WH_A).await;
    put_location(&server, "ws-1", "LOC-1", 45).await;
    let (_, one) = create(&server, "LOC-1", "1", None).await;
    fake.set_status(
        one["payment_intent_id"].as_str().unwrap(),
        "requires_capture",
    );
    let r = server
        .http
        .post(server.url(&format!(
            "/ocpi/charging-intents/{}/confirm",
            one["charging_intent_id"].as_str().unwrap()
        )))
        .send()
        .await
        .unwrap();
    let (s, got) = status_json(r).await;
    assert_eq!(
        (s, got["status"].as_str()),
        (200, Some("authorized")),
        "{got}"
    );

    let (_, two) = create(&server, "LOC-1", "2", None).await;
    fake.set_status(
        two["payment_intent_id"].as_str().unwrap(),
        "requires_capture",
    );
    let id = two["charging_intent_id"].as_str().unwrap();
    eventually("the sweep authorizing the intent", || async {
        (intent(&server, id).await["status"] == "authorized").then_some(())
    })
    .await;
    // The audit log catches up a moment later.
    server
        .wait_for_audit_where("ws-1", |audit| {
            audit.iter().any(|e| e["actor"] == "system:sweep")
        })
        .await;
}

async fn drivers_need_a_token_unless_guests_are_allowed(b: Backend) {
    let (_store, _mock, _fake, server) = start(b, &[]).await;
    let (s, _) = server
        .patch(
            &config_path("ws-1"),
            &admin("ws-1"),
            creds(
                "pk_test_51HxPublishableKey",
                "sk_test_51HxWorkspaceOneKey",
                WH_A,
            ),
        )
        .await;
    assert_eq!(s, 200);
    put_location(&server, "ws-1", "LOC-1", 45).await;
    let (s, p) = create(&server, "LOC-1", "1", None).await;
    assert_eq!(
        (s, p["code"].as_str()),
        (401, Some("driver_token_required"))
    );
    let r = server
        .http
        .get(server.url("/emsp/2.2.1/locations/LOC-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let driver = token("driver-1", &["ws-1"], "driver");
    let r = server
        .http
        .post(server.url("/ocpi/create-payment-intent"))
        .bearer_auth(&driver)
        .json(&json!({"location_id": "LOC-1", "evse_uid": "EVSE-1", "connector_id": "1"}))
        .send()
        .await
        .unwrap();
    let (s, created) = status_json(r).await;
    assert_eq!(s, 201, "{created}");
    let other = token("driver-2", &["ws-2"], "driver");
    let r = server
        .http
        .get(server.url(&format!(
            "/ocpi/charging-intents/{}",
            created["charging_intent_id"].as_str().unwrap()
        )))
        .bearer_auth(other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a driver of another workspace");
}

async fn a_declined_card_is_retried_on_the_same_payment_intent_and_only_a_real_stray_hold_is_released(
    b: Backend,
) {
    let (_store, _mock, fake, server) = start(b, &[]).await;
    configure(&server, "ws-1", "sk_test_51HxWorkspaceOneKey", WH_A).await;
    put_location(&server, "ws-1", "LOC-1", 45).await;
    let (_, created) = create(&server, "LOC-1", "1", None).await;
    let id = created["charging_intent_id"].as_str().unwrap().to_string();
    let pi_id = created["payment_intent_id"].as_str().unwrap().to_string();
    let path = "/ocpi/stripe/webhook/ws-1";
    let send = |event: &str, pi: &Value| {
        let body = stripe_event(event, pi);
        let sig = signature(WH_A, &body, chrono::Utc::now().timestamp());
        (body, sig)
    };
    let current = || fake.state.lock().unwrap().intents[&pi_id].clone();

    // The card is declined: Stripe leaves the PaymentIntent open, and so does roampay.
    fake.update(&pi_id, json!({"status": "requires_payment_method", "last_payment_error": {"code": "card_declined", "decline_code": "insufficient_funds", "message": "Your card has insufficient funds."}}));
    let (body, sig) = send("evt_declined", &current());
    let (status, out) = deliver(&server, path, &body, Some(&sig)).await;
    assert_eq!(
        (status, out["outcome"].as_str()),
        (200, Some("applied")),
        "{out}"
    );
    let got = intent(&server, &id).await;
    assert_eq!(got["status"], "pending_payment", "{got}");
    assert_eq!(
        got["last_payment_error"]["decline_code"],
        "insufficient_funds"
    );
    let (busy, _) = create(&server, "LOC-1", "1", None).await;
    assert_eq!(
        busy, 409,
        "the connector is still held for the driver's retry"
    );

    // The driver retries another card on the same PaymentIntent: it authorizes.
    fake.update(&pi_id, json!({"status": "requires_capture", "amount_capturable": 5000, "last_payment_error": null}));
    let stale_hold = current();
    let (body, sig) = send("evt_retried", &stale_hold);
    let (status, out) = deliver(&server, path, &body, Some(&sig)).await;
    assert_eq!(
        (status, out["outcome"].as_str()),
        (200, Some("applied")),
        "{out}"
    );
    let got = intent(&server, &id).await;
    assert_eq!(got["status"], "authorized", "{got}");
    assert_eq!(got["last_payment_error"], Value::Null);

    // Cancelled (the hold released in Stripe); then a late event still showing the hold
    // arrives: a fresh read shows no hold, so nothing is cancelled again.
    let t = token("ocpi-sessions", &["ws-1"], "sessions:write");
    let r = server
        .http
        .post(server.url(&format!("/ocpi/charging-intents/{id}/cancel")))
        .bearer_auth(&t)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(current()["status"], "canceled");
    let (body, sig) = send("evt_late", &stale_hold);
    let (status, out) = deliver(&server, path, &body, Some(&sig)).await;
    assert_eq!(
        (status, out["outcome"].as_str()),
        (200, Some("ignored")),
        "{out}"
    );
    assert_eq!(
        fake.state.lock().unwrap().settle_requests.len(),
        1,
        "only the cancel"
    );

    // Stripe really holds money on the ended intent: that hold is released, once.
    fake.update(
        &pi_id,
        json!({"status": "requires_capture", "amount_capturable": 5000}),
    );
    let (body, sig) = send("evt_stray", &current());
    let (status, out) = deliver(&server, path, &body, Some(&sig)).await;
    assert_eq!(
        (status, out["outcome"].as_str()),
        (200, Some("applied")),
        "{out}"
    );
    {
        let st = fake.state.lock().unwrap();
        assert_eq!(st.intents[&pi_id]["status"], "canceled");
        let last = st
            .settle_requests
            .last()
            .map(|r| (r.0.clone(), r.2.clone()));
        let key = format!("roampay:ws-1:{id}:cancel-stray");
        assert_eq!(last, Some(("cancel".to_string(), Some(key))));
    }
    assert_eq!(
        intent(&server, &id).await["status"],
        "cancelled",
        "the intent stays as it ended"
    );
    let audit = server
        .wait_for_audit_where("ws-1", |all| {
            all.iter().any(|e| e["event_type"] == "StrayHoldReleased")
        })
        .await;
    let strays = audit
        .iter()
        .filter(|e| e["event_type"] == "StrayHoldReleased")
        .count();
    assert_eq!(strays, 1);
    assert!(audit
        .iter()
        .any(|e| e["event_type"] == "PaymentAttemptFailed"));

    // The same event again changes nothing and calls Stripe no more.
    let (status, out) = deliver(&server, path, &body, Some(&sig)).await;
    assert_eq!(
        (status, out["outcome"].as_str()),
        (200, Some("duplicate")),
        "{out}"
    );
    assert_eq!(fake.state.lock().unwrap().settle_requests.len(), 2);
}

async fn verified_events_about_unknown_intents_are_ignored_and_malformed_ids_are_refused(
    b: Backend,
) {
    let (_store, _mock, fake, server) = start(b, &[]).await;
    configure(&server, "ws-1", "sk_test_51HxWorkspaceOneKey", WH_A).await;
    put_location(&server, "ws-1", "LOC-1", 45).await;
    let (_, created) = create(&server, "LOC-1", "1", None).await;
    let id = created["charging_intent_id"].as_str().unwrap();
    let pi = fake.set_status(
        created["payment_intent_id"].as_str().unwrap(),
        "requires_capture",
    );
    let url = "/ocpi/stripe/webhook/ws-1";
    let signed = |body: &[u8]| signature(WH_A, body, chrono::Utc::now().timestamp());

    // Verified, about intents this service does not know (another deployment on the same
    // Stripe account): 200 ignored, never a 4xx Stripe would retry for days.
    for ws in ["ws-1", "ws-9"] {
        let mut unknown = pi.clone();
        unknown["id"] = json!("pi_OtherDeployment1");
        unknown["metadata"]["workspace_id"] = json!(ws);
        unknown["metadata"]["charging_intent_id"] = json!(uuid::Uuid::now_v7().to_string());
        let body = stripe_event("evt_other_deployment", &unknown);
        let (s, out) = deliver(&server, url, &body, Some(&signed(&body))).await;
        assert_eq!(
            (s, out["outcome"].as_str()),
            (200, Some("ignored")),
            "{ws}: {out}"
        );
    }
    // Kept for support as information, not as a warning.
    let audit = server
        .wait_for_audit_where("ws-1", |a| {
            a.iter()
                .filter(|e| e["event_type"] == "WebhookIgnored")
                .count()
                == 2
        })
        .await;
    let info = audit
        .iter()
        .find(|e| e["event_type"] == "WebhookIgnored")
        .unwrap();
    assert!(
        info["summary"]
            .as_str()
            .unwrap()
            .starts_with("information:"),
        "{info}"
    );

    // A NUL, a space or 300 characters in a Stripe id or code: refused, stored nowhere.
    type Mutation = fn(&mut Value);
    let mutations: Vec<(&str, Mutation)> = vec![
        ("NUL in the PaymentIntent id", |e| {
            e["data"]["object"]["id"] = json!("pi_\u{0}x")
        }),
        ("space in the PaymentIntent id", |e| {
            e["data"]["object"]["id"] = json!("pi_a b")
        }),
        ("300-character PaymentIntent id", |e| {
            e["data"]["object"]["id"] = json!("p".repeat(300))
        }),
        ("NUL in the event id", |e| e["id"] = json!("evt_\u{0}")),
        ("space in the event id", |e| e["id"] = json!("evt_a b")),
        ("NUL in a decline code", |e| {
            e["data"]["object"]["last_payment_error"] =
                json!({"code": "card_declined", "decline_code": "x\u{0}"})
        }),
        ("300-character code", |e| {
            e["data"]["object"]["last_payment_error"] = json!({"code": "c".repeat(300)})
        }),
    ];
    for (what, mutate) in mutations {
        let mut event: Value = serde_json::from_slice(&stripe_event("evt_bad", &pi)).unwrap();
        mutate(&mut event);
        let body = serde_json::to_vec(&event).unwrap();
        let (s, p) = deliver(&server, url, &body, Some(&signed(&body))).await;
        assert_eq!(
            (s, p["code"].as_str()),
            (400, Some("invalid_payload")),
            "{what}: {p}"
        );
    }
    assert_eq!(
        intent(&server, id).await["status"],
        "pending_payment",
        "nothing applied"
    );

    // The next normal event is applied and reaches the read side.
    let body = stripe_event("evt_good", &pi);
    let (s, out) = deliver(&server, url, &body, Some(&signed(&body))).await;
    assert_eq!(
        (s, out["outcome"].as_str()),
        (200, Some("applied")),
        "{out}"
    );
    let support = token("support", &["ws-1"], "audit:read");
    let path = "/api/support/charging-intents?workspace_id=ws-1&status=authorized";
    eventually("the authorized intent in the support list", || async {
        let (_, list) = server.get(path, &support).await;
        (list["data"].as_array().unwrap().len() == 1).then_some(())
    })
    .await;
    // Refusals were recorded without any of the refused values.
    let audit = server
        .wait_for_audit_where("ws-1", |a| {
            a.iter()
                .filter(|e| e["event_type"] == "WebhookRejected")
                .count()
                >= 7
        })
        .await;
    let text = serde_json::to_string(&audit).unwrap();
    assert!(
        !text.contains("\\u0000") && !text.contains("pi_a b") && !text.contains("ppppp"),
        "{text}"
    );
}

/// A connector's standard, format and power type are OCPI 2.2.1's words: anything else
/// is refused field by field, and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_location_with_connector_words_ocpi_does_not_know_is_refused_field_by_field() {
    let (_store, _mock, _fake, server) = start(Backend::Sqlite, &[]).await;
    let mut body = location(45);
    let c = &mut body["evses"][0]["connectors"][1];
    c["standard"] = json!("TYPE2");
    c["format"] = json!("cable");
    c["power_type"] = json!("AC");
    let r = server
        .http
        .put(server.url("/api/workspaces/ws-1/locations/LOC-9"))
        .bearer_auth(token("cpo", &["ws-1"], "locations:write"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, p) = status_json(r).await;
    assert_eq!(
        (status, p["code"].as_str()),
        (422, Some("validation_failed")),
        "{p}"
    );
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    let at = "evses[0].connectors[1]";
    assert_eq!(
        fields,
        [
            format!("{at}.standard"),
            format!("{at}.format"),
            format!("{at}.power_type")
        ],
        "{p}"
    );
    let r = server
        .http
        .get(server.url("/emsp/2.2.1/locations/LOC-9"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
