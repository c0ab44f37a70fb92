//! Workspace billing: Checkout and Billing Portal sessions (the exact form Stripe
//! receives, on wiremock), the lifecycle driven by signed platform webhooks (duplicates,
//! out-of-order facts, other customers, bad signatures), and new charging intents
//! refused while a workspace is not in good standing (open ones go on).

use serde_json::{json, Value};
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::on_both_backends;
use crate::payments::{configure, create, deliver, put_location, signature, WH_A};
use crate::sessions::{post, sessions};
use crate::support::*;

const PLATFORM_KEY: &str = "sk_test_51HxPlatformAccountKey";
const PLATFORM_WH: &str = "whsec_PlatformBillingEndpoint";

on_both_backends!(
    checkout_and_portal_send_stripe_exactly_its_form,
    signed_platform_webhooks_drive_the_lifecycle_once_and_in_order,
    a_workspace_not_in_good_standing_opens_no_new_intents_but_finishes_open_ones,
    checkout_trial_plan_change_and_action_required_through_the_webhook,
);

pub(crate) fn billing_env(required: bool) -> Vec<(&'static str, &'static str)> {
    vec![
        ("ROAMPAY_PLATFORM_STRIPE_SECRET_KEY", PLATFORM_KEY),
        ("ROAMPAY_PLATFORM_WEBHOOK_SECRET", PLATFORM_WH),
        (
            "ROAMPAY_PLANS",
            "starter=price_starter1,standard=price_standard1",
        ),
        // Operators write 1/0 as often as true/false (localstripe's test says "true").
        ("ROAMPAY_BILLING_REQUIRED", if required { "1" } else { "0" }),
    ]
}

/// roampay with billing on, on `stripe`.
async fn billing_server(store: &Store, stripe: &MockServer, required: bool) -> Server {
    let mut opts = ServerOptions::new(stripe);
    for (k, v) in billing_env(required) {
        opts = opts.env(k, v);
    }
    Server::start(store, opts).await
}

fn billing_admin(ws: &str) -> String {
    token("owner@example.com", &[ws], "billing:read billing:write")
}

async fn mount_platform(mock: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/v1/customers"))
        .and(header(
            "authorization",
            format!("Bearer {PLATFORM_KEY}").as_str(),
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "cus_Ws1", "object": "customer"})),
        )
        .expect(1)
        .mount(mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/checkout/sessions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"id": "cs_test_1", "object": "checkout.session", "url": "https://checkout.stripe.com/c/pay/cs_test_1"}),
        ))
        .mount(mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/billing_portal/sessions"))
        .and(body_string_contains("customer=cus_Ws1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"id": "bps_1", "object": "billing_portal.session", "url": "https://billing.stripe.com/p/session/bps_1"}),
        ))
        .mount(mock)
        .await;
}

fn form(body: &[u8]) -> std::collections::HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

async fn checkout_and_portal_send_stripe_exactly_its_form(b: Backend) {
    let store = Store::fresh(b).await;
    let mock = MockServer::start().await;
    mount_platform(&mock).await;
    let server = billing_server(&store, &mock, false).await;
    let path = "/api/workspaces/ws-1/billing";
    let body = json!({"plan": "standard", "success_url": "https://manage.example.com/ok", "cancel_url": "https://manage.example.com/billing"});
    let (status, portal) = server
        .post_json(
            &format!("{path}/portal"),
            &billing_admin("ws-1"),
            json!({"return_url": "https://manage.example.com/billing"}),
        )
        .await;
    assert_eq!(
        (status, portal["code"].as_str()),
        (409, Some("no_billing_customer")),
        "{portal}"
    );
    let (status, session) = server
        .post_json(
            &format!("{path}/checkout"),
            &billing_admin("ws-1"),
            body.clone(),
        )
        .await;
    assert_eq!(status, 201, "{session}");
    assert_eq!(session["session_id"], "cs_test_1");
    assert_eq!(
        session["url"],
        "https://checkout.stripe.com/c/pay/cs_test_1"
    );
    // Asked again (the admin went back): the same customer, created once.
    let (status, _) = server
        .post_json(
            &format!("{path}/checkout"),
            &billing_admin("ws-1"),
            body.clone(),
        )
        .await;
    assert_eq!(status, 201);
    let received = mock.received_requests().await.unwrap();
    let customer = received
        .iter()
        .find(|r| r.url.path() == "/v1/customers")
        .unwrap();
    assert_eq!(form(&customer.body)["metadata[workspace_id]"], "ws-1");
    assert_eq!(
        customer.headers["idempotency-key"],
        "roampay-billing-customer-ws-1"
    );
    let checkout = received
        .iter()
        .find(|r| r.url.path() == "/v1/checkout/sessions")
        .unwrap();
    assert_eq!(
        checkout.headers["authorization"],
        format!("Bearer {PLATFORM_KEY}").as_str()
    );
    let f = form(&checkout.body);
    for (k, v) in [
        ("mode", "subscription"),
        ("line_items[0][price]", "price_standard1"),
        ("line_items[0][quantity]", "1"),
        ("customer", "cus_Ws1"),
        ("client_reference_id", "ws-1"),
        ("success_url", "https://manage.example.com/ok"),
        ("cancel_url", "https://manage.example.com/billing"),
        ("subscription_data[metadata][workspace_id]", "ws-1"),
    ] {
        assert_eq!(f.get(k).map(String::as_str), Some(v), "{k}: {f:?}");
    }
    let (status, portal) = server
        .post_json(
            &format!("{path}/portal"),
            &billing_admin("ws-1"),
            json!({"return_url": "https://manage.example.com/billing"}),
        )
        .await;
    assert_eq!(
        (status, portal["url"].as_str()),
        (201, Some("https://billing.stripe.com/p/session/bps_1")),
        "{portal}"
    );
    // Refusals: an unknown plan, a bad URL, a token without billing:write.
    let mut unknown = body.clone();
    unknown["plan"] = json!("platinum");
    let (status, p) = server
        .post_json(&format!("{path}/checkout"), &billing_admin("ws-1"), unknown)
        .await;
    assert_eq!(
        (status, p["code"].as_str()),
        (422, Some("unknown_plan")),
        "{p}"
    );
    assert!(p["detail"].as_str().unwrap().contains("standard"));
    let mut bad = body.clone();
    bad["success_url"] = json!("javascript:alert(1)");
    let (status, p) = server
        .post_json(&format!("{path}/checkout"), &billing_admin("ws-1"), bad)
        .await;
    assert_eq!(
        (status, p["code"].as_str()),
        (422, Some("validation_failed")),
        "{p}"
    );
    let reader = token("viewer", &["ws-1"], "billing:read");
    let (status, _) = server
        .post_json(&format!("{path}/checkout"), &reader, body)
        .await;
    assert_eq!(status, 403);
    let (status, view) = server.get(path, &reader).await;
    assert_eq!(status, 200);
    assert_eq!(
        (view["status"].as_str(), view["stripe_customer_id"].as_str()),
        (Some("none"), Some("cus_Ws1"))
    );
}

pub(crate) fn platform_event(id: &str, kind: &str, created: i64, object: Value) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"id": id, "object": "event", "type": kind, "created": created,
        "livemode": false, "data": {"object": object}}),
    )
    .unwrap()
}

pub(crate) fn subscription(ws: &str, status: &str, customer: &str) -> Value {
    json!({"id": "sub_1", "object": "subscription", "status": status, "customer": customer,
        "metadata": {"workspace_id": ws}, "cancel_at_period_end": false,
        "current_period_end": 1_798_000_000,
        "items": {"object": "list", "data": [{"price": {"id": "price_standard1"}}]}})
}

fn invoice(ws: &str, customer: &str) -> Value {
    json!({"id": "in_1", "object": "invoice", "customer": customer, "subscription": "sub_1",
        "subscription_details": {"metadata": {"workspace_id": ws}}})
}

pub(crate) async fn send(server: &Server, body: &[u8]) -> (u16, Value) {
    let sig = signature(PLATFORM_WH, body, chrono::Utc::now().timestamp());
    deliver(server, "/billing/stripe/webhook", body, Some(&sig)).await
}

/// Until the session worker has purged `ws` (its last step recorded).
pub(crate) async fn wait_for_purge(server: &Server, ws: &str) {
    server
        .wait_for_audit_where(ws, |d| {
            d.iter().any(|e| e["event_type"] == "WorkspaceDataPurged")
        })
        .await;
}

pub(crate) async fn status_of(server: &Server, ws: &str) -> Value {
    let (status, view) = server
        .get(&format!("/api/workspaces/{ws}/billing"), &billing_admin(ws))
        .await;
    assert_eq!(status, 200, "{view}");
    view
}

async fn signed_platform_webhooks_drive_the_lifecycle_once_and_in_order(b: Backend) {
    let store = Store::fresh(b).await;
    let stripe = stripe_ok().await;
    let server = billing_server(&store, &stripe, false).await;
    let now = chrono::Utc::now().timestamp();
    let created = platform_event(
        "evt_b1",
        "customer.subscription.created",
        now - 100,
        subscription("ws-1", "active", "cus_A"),
    );
    let (status, out) = send(&server, &created).await;
    assert_eq!(
        (status, out["outcome"].as_str()),
        (200, Some("applied")),
        "{out}"
    );
    let view = status_of(&server, "ws-1").await;
    assert_eq!(
        (view["status"].as_str(), view["plan"].as_str()),
        (Some("active"), Some("standard")),
        "{view}"
    );
    assert_eq!(view["stripe_customer_id"], "cus_A");
    let (_, out) = send(&server, &created).await;
    assert_eq!(out["outcome"], "duplicate");

    let failed = platform_event(
        "evt_b2",
        "invoice.payment_failed",
        now - 90,
        invoice("ws-1", "cus_A"),
    );
    send(&server, &failed).await;
    let view = status_of(&server, "ws-1").await;
    assert_eq!(view["status"], "past_due", "{view}");
    assert!(view["grace_until"].is_string());
    // Support sees it beside the workspace's payment health.
    let (_, health) = server
        .get(
            "/api/support/workspaces/ws-1/payment-health",
            &token("support", &["ws-1"], "audit:read"),
        )
        .await;
    assert_eq!(health["billing"]["status"], "past_due", "{health}");
    assert_eq!(health["billing"]["grace_until"], view["grace_until"]);
    // An older "active" update arriving late moves nothing back or forth.
    let late = platform_event(
        "evt_b0",
        "customer.subscription.updated",
        now - 95,
        subscription("ws-1", "active", "cus_A"),
    );
    send(&server, &late).await;
    assert_eq!(status_of(&server, "ws-1").await["status"], "past_due");
    // An invoice naming only its customer (as most do) is placed by the customer.
    let paid = platform_event(
        "evt_b3",
        "invoice.payment_succeeded",
        now - 80,
        json!({"id": "in_2", "object": "invoice", "customer": "cus_A"}),
    );
    send(&server, &paid).await;
    let view = status_of(&server, "ws-1").await;
    assert_eq!(
        (view["status"].as_str(), view["grace_until"].as_str()),
        (Some("active"), None),
        "{view}"
    );
    // Someone else's customer claiming ws-1: ignored.
    let other = platform_event(
        "evt_b4",
        "customer.subscription.deleted",
        now - 70,
        subscription("ws-1", "canceled", "cus_OTHER"),
    );
    let (_, out) = send(&server, &other).await;
    assert_eq!(out["outcome"], "ignored");
    // ws-1's customer with metadata naming another workspace: ignored too.
    let misnamed = platform_event(
        "evt_b4b",
        "invoice.payment_failed",
        now - 69,
        invoice("ws-2", "cus_A"),
    );
    let (_, out) = send(&server, &misnamed).await;
    assert_eq!(out["outcome"], "ignored");
    assert_eq!(status_of(&server, "ws-1").await["status"], "active");
    assert_eq!(status_of(&server, "ws-2").await["status"], "none");
    let deleted = platform_event(
        "evt_b5",
        "customer.subscription.deleted",
        now - 60,
        subscription("ws-1", "canceled", "cus_A"),
    );
    send(&server, &deleted).await;
    assert_eq!(status_of(&server, "ws-1").await["status"], "cancelled");
    // An event about no workspace, and refusals.
    let stray = platform_event(
        "evt_b6",
        "invoice.payment_failed",
        now,
        json!({"id": "in_9", "customer": "cus_Z"}),
    );
    let (_, out) = send(&server, &stray).await;
    assert_eq!(out["outcome"], "ignored");
    let forged = signature("whsec_NotThePlatforms", &created, now);
    let (status, p) = deliver(&server, "/billing/stripe/webhook", &created, Some(&forged)).await;
    assert_eq!(
        (status, p["code"].as_str()),
        (400, Some("signature_mismatch"))
    );
    let (status, p) = deliver(&server, "/billing/stripe/webhook", &created, None).await;
    assert_eq!(
        (status, p["code"].as_str()),
        (400, Some("missing_signature"))
    );
    let audit = server
        .wait_for_audit_where("ws-1", |d| {
            d.iter()
                .any(|e| e["event_type"] == "WorkspaceSubscriptionCancelled")
        })
        .await;
    let types: Vec<&str> = audit
        .iter()
        .filter_map(|e| e["event_type"].as_str())
        .collect();
    for t in [
        "WorkspaceSubscriptionActivated",
        "WorkspaceInvoicePaymentFailed",
        "WorkspaceReinstated",
    ] {
        assert!(types.contains(&t), "{t}: {types:?}");
    }
}

async fn a_workspace_not_in_good_standing_opens_no_new_intents_but_finishes_open_ones(b: Backend) {
    let store = Store::fresh(b).await;
    let mut env = billing_env(true);
    env.push(("ROAMPAY_RATE_LIMIT_PER_MIN", "1000"));
    let (_mock, fake, server) =
        crate::payments::start_with_store(&store, &store.url.clone(), &env).await;
    configure(&server, "ws-1", "sk_test_51HxWorkspaceOneKey", WH_A).await;
    put_location(&server, "ws-1", "LOC-1", 45).await;
    put_location(&server, "ws-1", "LOC-FREE", 0).await;
    // No subscription yet: no new intent, free ones included.
    for loc in ["LOC-1", "LOC-FREE"] {
        let (status, p) = create(&server, loc, "1", None).await;
        assert_eq!(
            (status, p["code"].as_str()),
            (409, Some("workspace_suspended")),
            "{loc}: {p}"
        );
    }
    let now = chrono::Utc::now().timestamp();
    send(
        &server,
        &platform_event(
            "evt_s1",
            "customer.subscription.created",
            now - 50,
            subscription("ws-1", "active", "cus_A"),
        ),
    )
    .await;
    let (status, open) = create(&server, "LOC-1", "1", None).await;
    assert_eq!(status, 201, "{open}");
    let id = open["charging_intent_id"].as_str().unwrap().to_string();
    fake.set_status(
        open["payment_intent_id"].as_str().unwrap(),
        "requires_capture",
    );
    post(
        &server,
        &format!("/ocpi/charging-intents/{id}/confirm"),
        None,
        json!({}),
    )
    .await;
    // The subscription ends: new intents refused, the open one finishes normally.
    send(
        &server,
        &platform_event(
            "evt_s2",
            "customer.subscription.deleted",
            now - 40,
            subscription("ws-1", "canceled", "cus_A"),
        ),
    )
    .await;
    let (status, p) = create(&server, "LOC-1", "2", None).await;
    assert_eq!(
        (status, p["code"].as_str()),
        (409, Some("workspace_suspended")),
        "{p}"
    );
    let t = sessions("ws-1");
    let (status, started) = post(
        &server,
        &format!("/ocpi/charging-intents/{id}/start"),
        Some(&t),
        json!({"ocpi_session_id": "S-1"}),
    )
    .await;
    assert_eq!(status, 200, "{started}");
    let (status, done) = post(
        &server,
        &format!("/ocpi/charging-intents/{id}/complete"),
        Some(&t),
        json!({"final_amount_cents": 1200}),
    )
    .await;
    assert_eq!(
        (status, done["status"].as_str()),
        (200, Some("completed")),
        "{done}"
    );
    // Admin endpoints keep working.
    let (status, _) = server.get(&config_path("ws-1"), &admin("ws-1")).await;
    assert_eq!(status, 200);
}

on_both_backends!(grace_over_suspends_and_retention_over_purges_the_secrets_for_good);

type VaultRow = (String, i64, String, Vec<u8>, Vec<u8>);

async fn vault_secret_rows(db: &roampay_projections::Db, ws: &str) -> Vec<VaultRow> {
    let sql = "SELECT field, version, fingerprint, nonce, ciphertext FROM vault_secrets
                WHERE workspace_id = $1";
    roampay_projections::on_db!(db, pool => sqlx::query_as(sql).bind(ws).fetch_all(pool).await)
        .unwrap()
}

async fn restore_vault_secret_rows(db: &roampay_projections::Db, rows: &[VaultRow]) {
    let sql =
        "INSERT INTO vault_secrets (workspace_id, field, version, fingerprint, nonce, ciphertext)
                VALUES ('ws-1', $1, $2, $3, $4, $5)";
    for (field, version, fingerprint, nonce, ct) in rows {
        roampay_projections::on_db!(db, pool => sqlx::query(sql)
            .bind(field).bind(version).bind(fingerprint).bind(nonce).bind(ct)
            .execute(pool).await.map(|r| assert_eq!(r.rows_affected(), 1)))
        .unwrap();
    }
}

async fn vault_rows(db: &roampay_projections::Db, ws: &str) -> i64 {
    let sql = "SELECT (SELECT COUNT(*) FROM vault_secrets WHERE workspace_id = $1)
                    + (SELECT COUNT(*) FROM vault_data_keys WHERE workspace_id = $1)";
    match db {
        roampay_projections::Db::Postgres(p) => {
            sqlx::query_scalar(sql).bind(ws).fetch_one(p).await.unwrap()
        }
        roampay_projections::Db::Sqlite(p) => {
            sqlx::query_scalar(sql).bind(ws).fetch_one(p).await.unwrap()
        }
    }
}

async fn grace_over_suspends_and_retention_over_purges_the_secrets_for_good(b: Backend) {
    let store = Store::fresh(b).await;
    let mut env = billing_env(true);
    env.extend([
        ("ROAMPAY_BILLING_GRACE_SECS", "1"),
        ("ROAMPAY_BILLING_RETENTION_SECS", "1"),
        ("ROAMPAY_WORKER_INTERVAL_SECS", "1"),
    ]);
    let (_mock, _fake, server) =
        crate::payments::start_with_store(&store, &store.url.clone(), &env).await;
    configure(&server, "ws-1", "sk_test_51HxWorkspaceOneKey", WH_A).await;
    put_location(&server, "ws-1", "LOC-1", 45).await;
    let db = store.db().await;
    assert!(
        vault_rows(&db, "ws-1").await >= 3,
        "the key and secrets are in the vault"
    );
    let now = chrono::Utc::now().timestamp();
    send(
        &server,
        &platform_event(
            "evt_g1",
            "customer.subscription.created",
            now - 100,
            subscription("ws-1", "active", "cus_A"),
        ),
    )
    .await;
    send(
        &server,
        &platform_event(
            "evt_g2",
            "invoice.payment_failed",
            now - 50,
            invoice("ws-1", "cus_A"),
        ),
    )
    .await;
    eventually("the session worker suspending after grace", || async {
        (status_of(&server, "ws-1").await["status"] == "suspended").then_some(())
    })
    .await;
    let (status, p) = create(&server, "LOC-1", "1", None).await;
    assert_eq!(
        (status, p["code"].as_str()),
        (409, Some("workspace_suspended")),
        "{p}"
    );
    send(
        &server,
        &platform_event(
            "evt_g3",
            "invoice.payment_succeeded",
            now - 40,
            invoice("ws-1", "cus_A"),
        ),
    )
    .await;
    assert_eq!(status_of(&server, "ws-1").await["status"], "active");
    let (status, p) = create(&server, "LOC-1", "1", None).await;
    assert_eq!(status, 201, "reinstated: {p}");

    // The billing deliveries of the workspace are in the delivery log…
    let support = token("support", &["*"], "audit:read");
    let logged = |event: &'static str| {
        let (server, support) = (&server, &support);
        async move {
            let path =
                format!("/api/support/webhook-deliveries?workspace_id=ws-1&event_id={event}");
            let (status, page) = server.get(&path, support).await;
            assert_eq!(status, 200, "{page}");
            page["data"].as_array().unwrap().len()
        }
    };
    assert_eq!(logged("evt_g1").await, 1);
    // A backup taken before the purge: the secrets' rows, ciphertexts included.
    let backup = vault_secret_rows(&db, "ws-1").await;
    assert!(!backup.is_empty());
    send(
        &server,
        &platform_event(
            "evt_g4",
            "customer.subscription.deleted",
            now - 30,
            subscription("ws-1", "canceled", "cus_A"),
        ),
    )
    .await;
    wait_for_purge(&server, "ws-1").await;
    assert_eq!(
        vault_rows(&db, "ws-1").await,
        0,
        "the data key and every secret are gone"
    );
    // …and gone with the rest of its data (payloads name drivers).
    assert_eq!(logged("evt_g1").await, 0);
    // Crypto-shredding: the backup's ciphertexts restored do not decrypt (the data key
    // that wrapped them is gone).
    restore_vault_secret_rows(&db, &backup).await;
    let vault = roampay::infra::vault::DbVault::new(
        db.clone(),
        roampay::infra::vault::MasterKey::from_base64(MASTER_KEY).unwrap(),
        vec![],
    );
    for (field, version, fingerprint, _, _) in &backup {
        let field = match field.as_str() {
            "secret_key" => roampay::infra::vault::SecretField::SecretKey,
            _ => roampay::infra::vault::SecretField::WebhookSigningSecret,
        };
        let read = roampay::infra::vault::SecretVault::get(
            &vault,
            "ws-1",
            field,
            u32::try_from(*version).unwrap(),
            fingerprint,
        )
        .await;
        assert!(read.is_err(), "a restored ciphertext decrypted");
    }
    // The OCPI config reads as never configured; the location is gone.
    let (_, cfg) = server.get(&config_path("ws-1"), &admin("ws-1")).await;
    let (_, never) = server.get(&config_path("ws-9"), &admin("ws-9")).await;
    // (Apart from its id and URL, and the credential version: versions are never
    // handed out twice, so a key saved later cannot be mistaken for a purged one.)
    let without_id = |mut v: Value| {
        v.as_object_mut().unwrap().remove("workspace_id");
        let stripe = v["stripe"].as_object_mut().unwrap();
        stripe.remove("webhook_url");
        stripe.remove("credential_version");
        v
    };
    assert_eq!(without_id(cfg.clone()), without_id(never), "{cfg}");
    let r = server
        .http
        .get(server.url("/emsp/2.2.1/locations/LOC-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(status_of(&server, "ws-1").await["status"], "cancelled");
    // The intents stay: they are financial records.
    let (status, list) = server
        .get(
            "/api/support/charging-intents?workspace_id=ws-1",
            &token("support", &["*"], "audit:read"),
        )
        .await;
    assert_eq!(status, 200, "{list}");
    assert!(!list["data"].as_array().unwrap().is_empty(), "{list}");
    let metric = server
        .metric(
            "roampay_workspaces_by_billing_status",
            "status=\"cancelled\"",
        )
        .await;
    assert_eq!(metric, 1.0);
}

/// The transitions the lifecycle test leaves out: a completed Checkout names the
/// customer (placing the invoices that name only it), a trial, a plan change, a payment
/// needing the customer's action and its payment, a cancellation at period end; and
/// whose token may read and write billing.
async fn checkout_trial_plan_change_and_action_required_through_the_webhook(b: Backend) {
    let store = Store::fresh(b).await;
    let stripe = stripe_ok().await;
    let server = billing_server(&store, &stripe, true).await;
    let now = chrono::Utc::now().timestamp();
    let completed = platform_event(
        "evt_c1",
        "checkout.session.completed",
        now - 100,
        json!({"id": "cs_1", "object": "checkout.session", "client_reference_id": "ws-3",
               "customer": "cus_C", "mode": "subscription"}),
    );
    let (_, out) = send(&server, &completed).await;
    assert_eq!(out["outcome"], "applied", "{out}");
    let view = status_of(&server, "ws-3").await;
    assert_eq!(
        (view["status"].as_str(), view["stripe_customer_id"].as_str()),
        (Some("none"), Some("cus_C")),
        "{view}"
    );
    let sub = |status: &str, price: &str, cancel_at_period_end: bool| {
        json!({"id": "sub_3", "object": "subscription", "status": status, "customer": "cus_C",
            "metadata": {"workspace_id": "ws-3"}, "cancel_at_period_end": cancel_at_period_end,
            "current_period_end": 1_798_000_000,
            "items": {"object": "list", "data": [{"price": {"id": price}}]}})
    };
    let trial = platform_event(
        "evt_c2",
        "customer.subscription.created",
        now - 90,
        sub("trialing", "price_starter1", false),
    );
    send(&server, &trial).await;
    let view = status_of(&server, "ws-3").await;
    assert_eq!(
        (view["status"].as_str(), view["plan"].as_str()),
        (Some("trialing"), Some("starter")),
        "{view}"
    );
    assert_eq!(view["stripe_subscription_id"], "sub_3");
    let upgraded = platform_event(
        "evt_c3",
        "customer.subscription.updated",
        now - 80,
        sub("active", "price_standard1", false),
    );
    send(&server, &upgraded).await;
    let view = status_of(&server, "ws-3").await;
    assert_eq!(
        (view["status"].as_str(), view["plan"].as_str()),
        (Some("active"), Some("standard")),
        "{view}"
    );
    let downgraded = platform_event(
        "evt_c3b",
        "customer.subscription.updated",
        now - 75,
        sub("active", "price_starter1", false),
    );
    send(&server, &downgraded).await;
    assert_eq!(status_of(&server, "ws-3").await["plan"], "starter");
    let invoice = |id: &str| json!({"id": id, "object": "invoice", "customer": "cus_C"});
    let action = platform_event(
        "evt_c4",
        "invoice.payment_action_required",
        now - 70,
        invoice("in_3"),
    );
    let (_, out) = send(&server, &action).await;
    assert_eq!(out["outcome"], "applied", "placed by its customer: {out}");
    assert_eq!(
        status_of(&server, "ws-3").await["payment_action_required"],
        true
    );
    let paid = platform_event(
        "evt_c5",
        "invoice.payment_succeeded",
        now - 60,
        invoice("in_3"),
    );
    send(&server, &paid).await;
    let view = status_of(&server, "ws-3").await;
    assert_eq!(
        (
            view["status"].as_str(),
            view["payment_action_required"].as_bool()
        ),
        (Some("active"), Some(false)),
        "{view}"
    );
    let ending = platform_event(
        "evt_c6",
        "customer.subscription.updated",
        now - 50,
        sub("active", "price_starter1", true),
    );
    send(&server, &ending).await;
    let view = status_of(&server, "ws-3").await;
    assert_eq!(
        (
            view["status"].as_str(),
            view["cancel_at_period_end"].as_bool()
        ),
        (Some("active"), Some(true)),
        "{view}"
    );
    let expected = [
        "WorkspaceBillingCustomerCreated",
        "WorkspaceSubscriptionActivated",
        "WorkspacePlanChanged",
        "WorkspacePaymentActionRequired",
        "WorkspacePaymentActionCompleted",
        "WorkspaceSubscriptionUpdated",
    ];
    // Waits for every one of them (the audit projection lags a little).
    server
        .wait_for_audit_where("ws-3", |d| {
            expected
                .iter()
                .all(|t| d.iter().any(|e| e["event_type"] == *t))
        })
        .await;
    // Scopes: another workspace's admin, and a token without billing scopes.
    let path = "/api/workspaces/ws-3/billing";
    let (status, _) = server.get(path, &billing_admin("ws-4")).await;
    assert_eq!(status, 403);
    let (status, _) = server.get(path, &admin("ws-3")).await;
    assert_eq!(status, 403);
    let (status, _) = server
        .post_json(
            "/api/workspaces/ws-3/billing/portal",
            &token("viewer", &["ws-3"], "billing:read"),
            json!({"return_url": "https://manage.example/billing"}),
        )
        .await;
    assert_eq!(status, 403);
}
