//! End to end against localstripe (a stateful Stripe-compatible peer from PyPI, which
//! `make test` installs into `.venv`): credentials validated by the real round trip, a
//! pre-authorization created there, a card attached and confirmed, and the intent
//! authorized — once through the confirm call, once by the background sweep alone —
//! while localstripe's own signed webhooks reach the per-workspace URL.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

use crate::on_both_backends;
use crate::payments::{create, intent, put_location};
use crate::support::*;

const SK: &str = "sk_test_51HxLocalstripeE2eKey";
const WH: &str = "whsec_LocalstripeE2eSigningSecret";

struct Localstripe {
    child: Child,
    base: String,
}

impl Drop for Localstripe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn localstripe_bin() -> PathBuf {
    std::env::var_os("ROAMPAY_LOCALSTRIPE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/localstripe"))
}

async fn start_localstripe() -> Localstripe {
    let bin = localstripe_bin();
    assert!(
        bin.exists(),
        "localstripe is not installed at {} (`make test` installs it)",
        bin.display()
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // localstripe through our wrapper (tests/localstripe/), with the virtualenv's Python.
    let python = bin.with_file_name("python");
    let wrapper =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/localstripe/roampay_localstripe.py");
    let child = Command::new(&python)
        .arg(&wrapper)
        .args(["--port", &port.to_string(), "--from-scratch"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start localstripe");
    // Killed when dropped, also when it never answers.
    let ls = Localstripe {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    let probe = format!("{}/v1/payment_intents?limit=1", ls.base);
    eventually("localstripe answering", || async {
        let answered = http.get(&probe).bearer_auth(SK).send().await.is_ok();
        answered.then_some(())
    })
    .await;
    ls
}

/// What Stripe.js and the driver's card do on localstripe: a card PaymentMethod,
/// attached to the PaymentIntent, then confirmed; the confirm's status and answer.
/// (localstripe only takes secret keys for these calls; real Stripe.js uses the
/// publishable key and the client secret.)
async fn try_card(ls: &Localstripe, pi: &str, number: &str) -> (u16, Value) {
    let http = reqwest::Client::new();
    let pm: Value = http
        .post(format!("{}/v1/payment_methods", ls.base))
        .bearer_auth(SK)
        .form(&[
            ("type", "card"),
            ("card[number]", number),
            ("card[exp_month]", "12"),
            ("card[exp_year]", "2030"),
            ("card[cvc]", "123"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pm = pm["id"].as_str().expect("a PaymentMethod").to_string();
    let r = http
        .post(format!("{}/v1/payment_intents/{pi}", ls.base))
        .bearer_auth(SK)
        .form(&[("payment_method", pm.as_str())])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let r = http
        .post(format!("{}/v1/payment_intents/{pi}/confirm", ls.base))
        .bearer_auth(SK)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn pay_with_card(ls: &Localstripe, pi: &str) -> Value {
    let (status, confirmed) = try_card(ls, pi, "4242424242424242").await;
    assert_eq!(
        (status, confirmed["status"].as_str()),
        (200, Some("requires_capture")),
        "{confirmed}"
    );
    confirmed
}

/// Registers the workspace's webhook endpoint in localstripe (signed with `WH`).
async fn register_webhook(ls: &Localstripe, server: &Server) {
    register_endpoint(
        ls,
        "roampay",
        &server.url("/ocpi/stripe/webhook/ws-e2e"),
        WH,
    )
    .await;
}

/// Registers a webhook endpoint named `name` in localstripe, signed with `secret`.
async fn register_endpoint(ls: &Localstripe, name: &str, url: &str, secret: &str) {
    let reg = reqwest::Client::new()
        .post(format!("{}/_config/webhooks/{name}", ls.base))
        .form(&[("url", url), ("secret", secret)])
        .send()
        .await
        .unwrap();
    assert!(
        reg.status().is_success(),
        "webhook registered in localstripe"
    );
}

/// Server options pointing roampay at this localstripe.
fn on_localstripe(ls: &Localstripe) -> ServerOptions {
    ServerOptions {
        stripe: ls.base.clone(),
        env: vec![],
        log_level: "info".into(),
    }
}

/// Saves the localstripe credentials for `ws` (guests allowed) and checks that the real
/// round trip found them valid; returns the config.
async fn save_credentials(server: &Server, ws: &str) -> Value {
    let mut body = creds("pk_test_51HxLocalstripePublishable", SK, WH);
    body["allow_guest_access"] = json!(true);
    let (status, cfg) = server.patch(&config_path(ws), &admin(ws), body).await;
    assert_eq!(status, 200, "{cfg}");
    assert_eq!(
        cfg["stripe"]["health"]["status"], "valid",
        "the real round trip passed: {cfg}"
    );
    cfg
}

on_both_backends!(
    a_workspace_subscription_lives_through_localstripe,
    a_declined_card_is_retried_on_the_same_payment_intent_against_localstripe,
    a_paid_session_end_to_end_against_localstripe,
    a_signed_balance_available_from_localstripe_marks_the_webhook_verified
);

async fn a_signed_balance_available_from_localstripe_marks_the_webhook_verified(b: Backend) {
    let ls = start_localstripe().await;
    let store = Store::fresh(b).await;
    let server = Server::start(&store, on_localstripe(&ls)).await;
    let cfg = save_credentials(&server, "ws-e2e").await;
    assert_eq!(cfg["stripe"]["webhook"]["status"], "unverified", "{cfg}");
    register_webhook(&ls, &server).await;
    // Reading the balance makes localstripe send `balance.available`, signed with the
    // endpoint's secret (the kind of event Stripe's "send test webhook" sends).
    let balance = reqwest::Client::new()
        .get(format!("{}/v1/balance", ls.base))
        .bearer_auth(SK)
        .send()
        .await
        .unwrap();
    assert!(balance.status().is_success());
    let cfg = eventually(
        "the signed balance.available verifying the endpoint",
        || async {
            let (_, cfg) = server.get(&config_path("ws-e2e"), &admin("ws-e2e")).await;
            (cfg["stripe"]["webhook"]["status"] == "verified").then_some(cfg)
        },
    )
    .await;
    assert!(cfg["stripe"]["webhook"]["last_verified_at"].is_string());
    assert_eq!(cfg["stripe"]["webhook"]["rejected_24h"], 0);
    let audit = server
        .wait_for_audit_where("ws-e2e", |d| {
            d.iter()
                .any(|e| e["event_type"] == "WorkspaceWebhookVerified")
        })
        .await;
    let verified: Vec<&str> = audit
        .iter()
        .filter(|e| e["event_type"] == "WorkspaceWebhookVerified")
        .filter_map(|e| e["summary"].as_str())
        .collect();
    assert!(
        verified.iter().any(|s| s.contains("balance.available")),
        "{verified:?}"
    );
}

async fn a_paid_session_end_to_end_against_localstripe(b: Backend) {
    let ls = start_localstripe().await;
    let store = Store::fresh(b).await;
    let opts = on_localstripe(&ls)
        .env("ROAMPAY_SWEEP_INTERVAL_SECS", "1")
        .env("ROAMPAY_SWEEP_FIRST_LOOK_SECS", "0");
    let server = Server::start(&store, opts).await;
    register_webhook(&ls, &server).await;

    let cfg = save_credentials(&server, "ws-e2e").await;
    assert_eq!(
        cfg["stripe"]["account_id"],
        Value::Null,
        "localstripe has no /v1/account"
    );
    put_location(&server, "ws-e2e", "LOC-E2E", 45).await;

    // Through the confirm call.
    let (status, created) = create(&server, "LOC-E2E", "1", None).await;
    assert_eq!(status, 201, "{created}");
    let pi = created["payment_intent_id"].as_str().unwrap();
    assert!(created["client_secret"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{pi}_secret_")));
    pay_with_card(&ls, pi).await;
    let id = created["charging_intent_id"].as_str().unwrap();
    let r = server
        .http
        .post(server.url(&format!("/ocpi/charging-intents/{id}/confirm")))
        .send()
        .await
        .unwrap();
    let (status, got) = status_json(r).await;
    assert_eq!(
        (status, got["status"].as_str()),
        (200, Some("authorized")),
        "{got}"
    );
    assert_eq!(got["authorized_amount_cents"], 5000);

    // Through the sweep alone.
    let (status, second) = create(&server, "LOC-E2E", "2", None).await;
    assert_eq!(status, 201, "{second}");
    pay_with_card(&ls, second["payment_intent_id"].as_str().unwrap()).await;
    let id2 = second["charging_intent_id"].as_str().unwrap();
    eventually("the sweep finding the hold", || async {
        (intent(&server, id2).await["status"] == "authorized").then_some(())
    })
    .await;

    // Something else happens in the account (its balance is first read): localstripe
    // signs and sends `balance.available` to every endpoint, ours included.
    let r = reqwest::Client::new()
        .get(format!("{}/v1/balance", ls.base))
        .bearer_auth(SK)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());

    // The audit log shows both, and localstripe's signed webhooks were accepted.
    let webhooks = eventually(
        "two authorizations audited and a webhook from localstripe",
        || async {
            let audit = server.wait_for_audit("ws-e2e", 1).await;
            let authorized = audit
                .iter()
                .filter(|e| e["event_type"] == "WorkspacePaymentIntentAuthorizationReceived")
                .count();
            let webhooks: Vec<String> = server
                .logs()
                .lines()
                .filter(|l| l.contains("/ocpi/stripe/webhook/{workspace_id}"))
                .map(str::to_string)
                .collect();
            (authorized == 2 && !webhooks.is_empty()).then_some(webhooks)
        },
    )
    .await;
    assert!(
        webhooks.iter().all(|l| l.contains("\"http.status\":200")),
        "{webhooks:?}"
    );

    // Sessions: the first completes below its hold, the second with 0.
    let t = token("ocpi-sessions", &["ws-e2e"], "sessions:write");
    let post = |path: String, body: Value| {
        let (server, t) = (&server, &t);
        async move {
            status_json(
                server
                    .http
                    .post(server.url(&path))
                    .bearer_auth(t)
                    .json(&body)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let (status, started) = post(
        format!("/ocpi/charging-intents/{id}/start"),
        json!({"ocpi_session_id": "S-E2E-1"}),
    )
    .await;
    assert_eq!(
        (status, started["status"].as_str()),
        (200, Some("charging")),
        "{started}"
    );
    let (status, done) = post(
        format!("/ocpi/charging-intents/{id}/complete"),
        json!({"final_amount_cents": 1234, "ocpi_session_id": "S-E2E-1"}),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["status"], "completed");
    assert_eq!(done["captured_amount_cents"], 1234);
    // localstripe's records: the charge captured, the rest of the hold refunded.
    let http = reqwest::Client::new();
    let get = |path: String| {
        let http = http.clone();
        let base = ls.base.clone();
        async move {
            http.get(format!("{base}{path}"))
                .bearer_auth(SK)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let pi_now = get(format!("/v1/payment_intents/{pi}")).await;
    assert_eq!(pi_now["status"], "succeeded", "{pi_now}");
    let charge_id = pi_now["latest_charge"]
        .as_str()
        .or_else(|| pi_now.pointer("/charges/data/0/id").and_then(Value::as_str))
        .unwrap_or_else(|| panic!("a charge on {pi_now}"))
        .to_string();
    let charge = get(format!("/v1/charges/{charge_id}")).await;
    assert_eq!(charge["captured"], true, "{charge}");
    assert_eq!(
        charge["amount"].as_i64().unwrap() - charge["amount_refunded"].as_i64().unwrap(),
        1234,
        "captured 1234 of the 5000 hold: {charge}"
    );

    let (status, zero) = post(
        format!("/ocpi/charging-intents/{id2}/complete"),
        json!({"final_amount_cents": 0}),
    )
    .await;
    assert_eq!(status, 200, "{zero}");
    assert_eq!(
        (
            zero["status"].as_str(),
            zero["captured_amount_cents"].as_i64()
        ),
        (Some("completed"), Some(0))
    );
    let second_pi = get(format!(
        "/v1/payment_intents/{}",
        second["payment_intent_id"].as_str().unwrap()
    ))
    .await;
    assert_eq!(second_pi["status"], "canceled", "{second_pi}");

    // localstripe's own events about them (payment_intent.succeeded / canceled) are
    // verified and answered 200, changing nothing. It sends every event it lists to
    // our endpoint about a second after the change: wait until all have arrived.
    let sent = get("/v1/events?limit=100".into()).await["data"]
        .as_array()
        .map_or(0, Vec::len);
    assert!(sent >= 2, "localstripe lists its events");
    eventually("every event localstripe sent reaching roampay", || async {
        let delivered = server
            .logs()
            .lines()
            .filter(|l| l.contains("/ocpi/stripe/webhook/{workspace_id}"))
            .count();
        (delivered >= sent).then_some(())
    })
    .await;
    let logs = server.logs();
    let webhooks: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("/ocpi/stripe/webhook/{workspace_id}"))
        .collect();
    assert!(
        webhooks.iter().all(|l| l.contains("\"http.status\":200")),
        "{webhooks:?}"
    );
    assert_eq!(intent(&server, id).await["captured_amount_cents"], 1234);

    // Support refunds part of it, once, whatever the retries.
    let refund = || async {
        let r = server
            .http
            .post(server.url(&format!("/api/support/charging-intents/{id}/refunds")))
            .bearer_auth(token("support-agent", &["ws-e2e"], "refunds:write"))
            .header("Idempotency-Key", "2f0c9d1e-7b6a-4c3d-9e8f-0a1b2c3d4e5f")
            .json(&json!({"amount_cents": 234, "reason": "requested_by_customer"}))
            .send()
            .await
            .unwrap();
        status_json(r).await
    };
    let (status, first) = refund().await;
    assert_eq!(
        (status, first["status"].as_str()),
        (201, Some("succeeded")),
        "{first}"
    );
    let (status, again) = refund().await;
    assert_eq!((status, &again), (201, &first));
    let refunds = get(format!(
        "/v1/refunds?payment_intent={}",
        created_pi_of(&server, id).await
    ))
    .await;
    let refunds = refunds["data"].as_array().cloned().unwrap_or_default();
    let ours: Vec<&Value> = refunds
        .iter()
        .filter(|r| r["id"] == first["refund_id"])
        .collect();
    assert_eq!(ours.len(), 1, "{refunds:?}");
    assert_eq!(
        (ours[0]["amount"].as_i64(), ours[0]["reason"].as_str()),
        (Some(234), Some("requested_by_customer"))
    );
    assert_eq!(intent(&server, id).await["refunded_amount_cents"], 234);
}

async fn created_pi_of(server: &Server, id: &str) -> String {
    intent(server, id).await["payment_intent_id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_against_localstripe() {
    let ls = start_localstripe().await;
    let store = Store::fresh(Backend::Sqlite).await;
    // No sweep: the status mismatch below must be left for reconcile to find.
    let opts = on_localstripe(&ls)
        .env("ROAMPAY_SWEEP_INTERVAL_SECS", "3600")
        .env("ROAMPAY_SWEEP_FIRST_LOOK_SECS", "3600");
    let server = Server::start(&store, opts).await;
    save_credentials(&server, "ws-rec").await;
    put_location(&server, "ws-rec", "LOC-REC", 45).await;
    let http = reqwest::Client::new();

    // Confirmed in Stripe, never told to roampay: a status mismatch.
    let (_, unconfirmed) = create(&server, "LOC-REC", "1", None).await;
    let unconfirmed_pi = unconfirmed["payment_intent_id"]
        .as_str()
        .unwrap()
        .to_string();
    pay_with_card(&ls, &unconfirmed_pi).await;

    // Authorized through roampay, then captured in Stripe directly: a capture missing
    // from the log.
    let (_, captured) = create(&server, "LOC-REC", "2", None).await;
    let captured_pi = captured["payment_intent_id"].as_str().unwrap().to_string();
    let captured_id = captured["charging_intent_id"].as_str().unwrap().to_string();
    pay_with_card(&ls, &captured_pi).await;
    let r = server
        .http
        .post(server.url(&format!("/ocpi/charging-intents/{captured_id}/confirm")))
        .send()
        .await
        .unwrap();
    assert_eq!(status_json(r).await.1["status"], "authorized");
    let done: Value = http
        .post(format!(
            "{}/v1/payment_intents/{captured_pi}/capture",
            ls.base
        ))
        .bearer_auth(SK)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(done["status"], "succeeded", "{done}");

    // Created in the account behind roampay's back, with the workspace's metadata.
    let foreign: Value = http
        .post(format!("{}/v1/payment_intents", ls.base))
        .bearer_auth(SK)
        .form(&[
            ("amount", "7000"),
            ("currency", "aud"),
            ("capture_method", "manual"),
            ("payment_method_types[0]", "card"),
            ("metadata[workspace_id]", "ws-rec"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let foreign_pi = foreign["id"].as_str().expect("created").to_string();

    let run = |extra: &[&str]| {
        let mut args = vec!["--workspace", "ws-rec", "--json"];
        args.extend_from_slice(extra);
        crate::reconcile::reconcile(&store, &ls.base, &args)
    };
    let (code, out) = run(&[]);
    assert_eq!(code, 1, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let mut found: Vec<(String, String)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_string(),
                f["payment_intent_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    found.sort();
    let mut expected = vec![
        ("capture_missing".to_string(), captured_pi.clone()),
        ("status_mismatch".to_string(), unconfirmed_pi.clone()),
        ("unknown_payment_intent".to_string(), foreign_pi.clone()),
    ];
    expected.sort();
    assert_eq!(found, expected, "{out}");

    let (code, out) = run(&["--apply"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(intent(&server, &captured_id).await["status"], "completed");
    let unconfirmed_id = unconfirmed["charging_intent_id"].as_str().unwrap();
    assert_eq!(
        intent(&server, unconfirmed_id).await["status"],
        "authorized"
    );
    let (code, out) = run(&[]);
    assert_eq!(code, 0, "a second run agrees: {out}");
}

async fn a_declined_card_is_retried_on_the_same_payment_intent_against_localstripe(b: Backend) {
    let ls = start_localstripe().await;
    let store = Store::fresh(b).await;
    let server = Server::start(&store, on_localstripe(&ls)).await;
    register_webhook(&ls, &server).await;
    save_credentials(&server, "ws-e2e").await;
    put_location(&server, "ws-e2e", "LOC-DECLINE", 45).await;
    let (status, created) = create(&server, "LOC-DECLINE", "1", None).await;
    assert_eq!(status, 201, "{created}");
    let pi = created["payment_intent_id"].as_str().unwrap();
    let id = created["charging_intent_id"].as_str().unwrap();
    let confirm = || async {
        let r = server
            .http
            .post(server.url(&format!("/ocpi/charging-intents/{id}/confirm")))
            .send()
            .await
            .unwrap();
        status_json(r).await
    };

    // The card is declined on confirm; the intent waits for another card.
    let (status, declined) = try_card(&ls, pi, "4000000000000341").await;
    assert_eq!(status, 402, "{declined}");
    let (status, got) = confirm().await;
    assert_eq!(
        (status, got["status"].as_str()),
        (200, Some("pending_payment")),
        "{got}"
    );
    assert_eq!(got["last_payment_error"]["code"], "card_declined", "{got}");
    // localstripe's own payment_intent.payment_failed arrives a second later: accepted,
    // and the decline is not recorded twice.
    let sent = reqwest::Client::new()
        .get(format!("{}/v1/events?limit=100", ls.base))
        .bearer_auth(SK)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["data"]
        .as_array()
        .map_or(0, Vec::len);
    eventually("localstripe's events reaching roampay", || async {
        let logs = server.logs();
        let delivered: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains("/ocpi/stripe/webhook/{workspace_id}"))
            .collect();
        (delivered.len() >= sent).then(|| {
            assert!(
                delivered.iter().all(|l| l.contains("\"http.status\":200")),
                "{delivered:?}"
            )
        })
    })
    .await;

    // The driver retries with a good card on the same PaymentIntent: authorized.
    pay_with_card(&ls, pi).await;
    let (status, got) = confirm().await;
    assert_eq!(
        (status, got["status"].as_str()),
        (200, Some("authorized")),
        "{got}"
    );
    assert_eq!(got["last_payment_error"], Value::Null);
    let audit = server.wait_for_audit("ws-e2e", 1).await;
    let declines = audit
        .iter()
        .filter(|e| e["event_type"] == "PaymentAttemptFailed")
        .count();
    assert_eq!(declines, 1, "{audit:?}");
}

/// A call to localstripe's API with the platform's key; the answer (asserted 2xx).
async fn ls_post(ls: &Localstripe, path: &str, form: &[(&str, &str)]) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", ls.base))
        .bearer_auth(SK)
        .form(form)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {body}");
    body
}

/// What the customer does on Checkout's page and in the portal: a card becomes the
/// customer's default for invoices.
async fn make_default_card(ls: &Localstripe, customer: &str, number: &str) {
    let pm = ls_post(
        ls,
        "/v1/payment_methods",
        &[
            ("type", "card"),
            ("card[number]", number),
            ("card[exp_month]", "12"),
            ("card[exp_year]", "2030"),
            ("card[cvc]", "123"),
        ],
    )
    .await;
    let pm = pm["id"].as_str().unwrap();
    ls_post(
        ls,
        &format!("/v1/payment_methods/{pm}/attach"),
        &[("customer", customer)],
    )
    .await;
    ls_post(
        ls,
        &format!("/v1/customers/{customer}"),
        &[("invoice_settings[default_payment_method]", pm)],
    )
    .await;
}

/// The workspace's billing status, once it is `want`.
async fn billing_becomes(server: &Server, ws: &str, want: &str) -> Value {
    let admin = token("owner@example.com", &[ws], "billing:read billing:write");
    let path = format!("/api/workspaces/{ws}/billing");
    eventually(&format!("billing {want}"), || async {
        let (_, view) = server.get(&path, &admin).await;
        (view["status"] == want).then_some(view)
    })
    .await
}

/// Workspace billing against localstripe's customers, plans, subscriptions and invoices
/// and its signed webhooks: Checkout's first step creates the customer; a subscription
/// paid with 4242 activates the workspace; a renewal invoice failing on 0341 makes it
/// past due, the grace ends in suspension; paying the invoice again reinstates it.
async fn a_workspace_subscription_lives_through_localstripe(b: Backend) {
    const PLATFORM_WH: &str = "whsec_LocalstripePlatformBilling";
    let ls = start_localstripe().await;
    let store = Store::fresh(b).await;
    let mut opts = on_localstripe(&ls);
    for (k, v) in [
        ("ROAMPAY_PLATFORM_STRIPE_SECRET_KEY", SK),
        ("ROAMPAY_PLATFORM_WEBHOOK_SECRET", PLATFORM_WH),
        ("ROAMPAY_PLANS", "standard=price_e2e_standard"),
        ("ROAMPAY_BILLING_REQUIRED", "true"),
        ("ROAMPAY_BILLING_GRACE_SECS", "3"),
        ("ROAMPAY_WORKER_INTERVAL_SECS", "1"),
    ] {
        opts = opts.env(k, v);
    }
    let server = Server::start(&store, opts).await;
    ls_post(
        &ls,
        "/v1/plans",
        &[
            ("id", "price_e2e_standard"),
            ("amount", "2900"),
            ("currency", "eur"),
            ("interval", "month"),
            ("product[name]", "roampay standard"),
        ],
    )
    .await;
    let url = server.url("/billing/stripe/webhook");
    register_endpoint(&ls, "billing", &url, PLATFORM_WH).await;

    let ws = "ws-bill";
    let admin = token("owner@example.com", &[ws], "billing:read billing:write");
    let (status, session) = server
        .post_json(
            &format!("/api/workspaces/{ws}/billing/checkout"),
            &admin,
            json!({"plan": "standard", "success_url": "https://manage.example/ok",
                   "cancel_url": "https://manage.example/back"}),
        )
        .await;
    assert_eq!(status, 201, "{session}");
    let view = billing_becomes(&server, ws, "none").await;
    let customer = view["stripe_customer_id"]
        .as_str()
        .expect("a customer")
        .to_string();
    let cus: Value = reqwest::Client::new()
        .get(format!("{}/v1/customers/{customer}", ls.base))
        .bearer_auth(SK)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cus["metadata"]["workspace_id"], ws, "{cus}");

    // Checkout: the card, then the subscription with the workspace in its metadata.
    make_default_card(&ls, &customer, "4242424242424242").await;
    let sub = ls_post(
        &ls,
        "/v1/subscriptions",
        &[
            ("customer", customer.as_str()),
            ("items[0][plan]", "price_e2e_standard"),
            ("metadata[workspace_id]", ws),
        ],
    )
    .await;
    assert_eq!(sub["status"], "active", "{sub}");
    let view = billing_becomes(&server, ws, "active").await;
    assert_eq!(view["plan"], "standard", "{view}");

    // The renewal: the card now on file declines; the invoice (which names only the
    // customer) fails.
    make_default_card(&ls, &customer, "4000000000000341").await;
    ls_post(
        &ls,
        "/v1/invoiceitems",
        &[
            ("customer", customer.as_str()),
            ("amount", "2900"),
            ("currency", "eur"),
        ],
    )
    .await;
    let sub_id = sub["id"].as_str().unwrap();
    let invoice = ls_post(
        &ls,
        "/v1/invoices",
        &[("customer", customer.as_str()), ("subscription", sub_id)],
    )
    .await;
    let invoice = invoice["id"].as_str().unwrap().to_string();
    let _ = reqwest::Client::new()
        .post(format!("{}/v1/invoices/{invoice}/pay", ls.base))
        .bearer_auth(SK)
        .send()
        .await
        .unwrap();
    let view = billing_becomes(&server, ws, "past_due").await;
    assert!(view["grace_until"].is_string(), "{view}");
    billing_becomes(&server, ws, "suspended").await;

    // Paid again with a good card: reinstated.
    make_default_card(&ls, &customer, "4242424242424242").await;
    ls_post(&ls, &format!("/v1/invoices/{invoice}/pay"), &[]).await;
    let view = billing_becomes(&server, ws, "active").await;
    assert!(view["grace_until"].is_null(), "{view}");
    let audit = server
        .wait_for_audit_where(ws, |d| {
            d.iter().any(|e| e["event_type"] == "WorkspaceReinstated")
        })
        .await;
    let types: Vec<&str> = audit
        .iter()
        .filter_map(|e| e["event_type"].as_str())
        .collect();
    for t in [
        "WorkspaceBillingCustomerCreated",
        "WorkspaceSubscriptionActivated",
        "WorkspaceInvoicePaymentFailed",
        "WorkspaceSuspended",
    ] {
        assert!(types.contains(&t), "{t}: {types:?}");
    }
}
