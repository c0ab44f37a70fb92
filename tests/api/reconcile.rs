//! `roampay reconcile` against the stateful Stripe fake: what Stripe and the log
//! disagree about is reported, `--apply` records what Stripe's state justifies, and a
//! second run finds nothing.

use std::process::Command;

use serde_json::{json, Value};

use crate::on_both_backends;
use crate::payments::*;
use crate::support::*;

/// Runs `roampay reconcile` on the test store; (exit code, stdout).
pub fn reconcile(store: &Store, stripe: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_roampay"))
        .arg("reconcile")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &store.url)
        .env("ROAMPAY_DATA_DIR", store.data_dir())
        .env("ROAMPAY_MASTER_KEY", MASTER_KEY)
        .env("STRIPE_API_BASE", stripe)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run roampay reconcile");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let code = out.status.code().expect("exited");
    assert!(
        code == 0 || code == 1,
        "reconcile failed ({code}): {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (code, stdout)
}

fn kinds(report: &Value) -> Vec<(String, String, bool)> {
    let mut k: Vec<_> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_string(),
                f["payment_intent_id"].as_str().unwrap_or("-").to_string(),
                f["applied"].as_bool().unwrap(),
            )
        })
        .collect();
    k.sort();
    k
}

on_both_backends!(
    reconcile_reports_and_fixes_what_stripe_and_the_log_disagree_about,
    reconcile_finds_refunds_and_disputes_the_log_lacks,
);

async fn reconcile_finds_refunds_and_disputes_the_log_lacks(b: Backend) {
    let (store, mock, fake, server) = start(b, &[]).await;
    fake.mount_list(&mock).await;
    let (id, pi) = crate::sessions::authorized(&server, &fake, "1", true).await;
    let t = crate::sessions::sessions("ws-1");
    let done = crate::sessions::post(
        &server,
        &crate::sessions::path(&id, "complete"),
        Some(&t),
        json!({"final_amount_cents": 3000}),
    )
    .await;
    assert_eq!(done.0, 200, "{}", done.1);
    // Made in the Dashboard while the webhook endpoint was down.
    fake.dashboard_refund(&pi, 800);
    fake.dispute(&pi, 3000, "needs_response");

    let (code, out) = reconcile(&store, &mock.uri(), &["--workspace", "ws-1", "--json"]);
    assert_eq!(code, 1, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let found = kinds(&report);
    assert!(
        found.contains(&("refund_missing".into(), pi.clone(), false)),
        "{found:?}"
    );
    assert!(
        found.contains(&("dispute_missing".into(), pi.clone(), false)),
        "{found:?}"
    );

    let (code, out) = reconcile(
        &store,
        &mock.uri(),
        &["--workspace", "ws-1", "--json", "--apply"],
    );
    assert_eq!(code, 0, "{out}");
    let got = intent(&server, &id).await;
    assert_eq!(got["refunded_amount_cents"], 800, "{got}");
    assert_eq!(got["dispute"]["status"], "needs_response", "{got}");
    let (code, out) = reconcile(&store, &mock.uri(), &["--workspace", "ws-1", "--json"]);
    assert_eq!(code, 0, "a second run finds nothing: {out}");
}

async fn reconcile_reports_and_fixes_what_stripe_and_the_log_disagree_about(b: Backend) {
    let (store, mock, fake, server) = start(b, &[]).await;
    fake.mount_list(&mock).await;
    configure(&server, "ws-1", "sk_test_51HxWorkspaceOneKey", WH_A).await;
    put_location(&server, "ws-1", "LOC-1", 45).await;
    put_location(&server, "ws-1", "LOC-2", 45).await;

    // In agreement: authorized by its webhook.
    let (_, agreed) = create(&server, "LOC-1", "1", None).await;
    let agreed_pi = agreed["payment_intent_id"].as_str().unwrap().to_string();
    let pi = fake.set_status(&agreed_pi, "requires_capture");
    let body = stripe_event("evt_rec_1", &pi);
    let sig = signature(WH_A, &body, chrono::Utc::now().timestamp());
    assert_eq!(
        deliver(&server, "/ocpi/stripe/webhook/ws-1", &body, Some(&sig))
            .await
            .0,
        200
    );

    // A status mismatch: the card was confirmed, no webhook arrived.
    let (_, unconfirmed) = create(&server, "LOC-1", "2", None).await;
    let unconfirmed_pi = unconfirmed["payment_intent_id"]
        .as_str()
        .unwrap()
        .to_string();
    fake.set_status(&unconfirmed_pi, "requires_capture");

    // A capture missing from the log: authorized, then captured in the dashboard.
    let (_, captured) = create(&server, "LOC-2", "1", None).await;
    let captured_id = captured["charging_intent_id"].as_str().unwrap().to_string();
    let captured_pi = captured["payment_intent_id"].as_str().unwrap().to_string();
    let pi = fake.set_status(&captured_pi, "requires_capture");
    let body = stripe_event("evt_rec_2", &pi);
    let sig = signature(WH_A, &body, chrono::Utc::now().timestamp());
    assert_eq!(
        deliver(&server, "/ocpi/stripe/webhook/ws-1", &body, Some(&sig))
            .await
            .0,
        200
    );
    fake.update(
        &captured_pi,
        json!({"status": "succeeded", "amount_received": 4200, "amount_capturable": 0}),
    );

    // Made behind roampay's back with this workspace's metadata, and one that is not
    // roampay's at all.
    fake.insert(
        json!({"id": "pi_zzforeign", "object": "payment_intent", "status": "requires_capture",
        "amount": 9900, "amount_capturable": 9900, "currency": "aud", "livemode": false,
        "metadata": {"workspace_id": "ws-1", "charging_intent_id": "not-ours"}}),
    );
    fake.insert(
        json!({"id": "pi_zzshop", "object": "payment_intent", "status": "succeeded",
        "amount": 1500, "currency": "aud", "livemode": false, "metadata": {}}),
    );

    let stripe = mock.uri();
    let (code, out) = reconcile(&store, &stripe, &["--workspace", "ws-1", "--json"]);
    assert_eq!(code, 1, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    // Stripe lists the credential check's PaymentIntent too (tagged, with the
    // workspace's metadata): it is neither counted as ours nor reported.
    assert_eq!(report["stripe_payment_intents"], 6, "{out}");
    assert_eq!(report["roampay_payment_intents"], 4, "{out}");
    assert_eq!(
        kinds(&report),
        vec![
            ("capture_missing".to_string(), captured_pi.clone(), false),
            ("status_mismatch".to_string(), unconfirmed_pi.clone(), false),
            (
                "unknown_payment_intent".to_string(),
                "pi_zzforeign".to_string(),
                false
            ),
        ],
        "{out}"
    );
    // The human report says the same.
    let (code, text) = reconcile(&store, &stripe, &["--workspace", "ws-1"]);
    assert_eq!(code, 1);
    for needle in [
        "capture_missing",
        "status_mismatch",
        "unknown_payment_intent",
        "3 disagreement(s)",
    ] {
        assert!(text.contains(needle), "{needle} in {text}");
    }

    let (code, out) = reconcile(
        &store,
        &stripe,
        &["--workspace", "ws-1", "--apply", "--json"],
    );
    assert_eq!(code, 0, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert!(
        kinds(&report).iter().all(|(_, _, applied)| *applied),
        "{out}"
    );

    let got = intent(&server, &captured_id).await;
    assert_eq!(got["status"], "completed");
    assert_eq!(got["captured_amount_cents"], 4200);
    let got = intent(&server, unconfirmed["charging_intent_id"].as_str().unwrap()).await;
    assert_eq!(got["status"], "authorized");

    let (code, out) = reconcile(&store, &stripe, &["--workspace", "ws-1"]);
    assert_eq!(code, 0, "a second run agrees: {out}");
    assert!(out.contains("Stripe and the event log agree."), "{out}");
    // A hold close to lapsing is a warning, not a disagreement.
    let (code, out) = reconcile(
        &store,
        &stripe,
        &[
            "--workspace",
            "ws-1",
            "--json",
            "--hold-lifetime-secs",
            "3600",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["warnings"].as_array().unwrap().len(), 2, "{out}");
    assert_eq!(report["warnings"][0]["kind"], "hold_near_expiry", "{out}");

    // Support sees what was recorded, with the actor.
    let audit = server
        .wait_for_audit_where("ws-1", |all| {
            all.iter()
                .any(|e| e["event_type"] == "ForeignPaymentIntentRecorded")
        })
        .await;
    let foreign = audit
        .iter()
        .find(|e| e["event_type"] == "ForeignPaymentIntentRecorded")
        .unwrap();
    assert_eq!(foreign["actor"], "system:reconcile");
    assert!(foreign["summary"]
        .as_str()
        .unwrap()
        .contains("pi_zzforeign"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_refuses_a_workspace_without_credentials_with_exit_code_2() {
    let (store, mock, _fake, _server) = start(Backend::Sqlite, &[]).await;
    let out = Command::new(env!("CARGO_BIN_EXE_roampay"))
        .args(["reconcile", "--workspace", "ws-none"])
        .env("DATABASE_URL", &store.url)
        .env("ROAMPAY_DATA_DIR", store.data_dir())
        .env("ROAMPAY_MASTER_KEY", MASTER_KEY)
        .env("STRIPE_API_BASE", mock.uri())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has no Stripe secret key"), "{err}");
}
