//! Refunds and disputes (contract v2): support refunds once per key and never beyond
//! the capture; refunds and disputes made in Stripe are learnt from webhooks.

use serde_json::{json, Value};

use crate::fake_stripe::FakeStripe;
use crate::on_both_backends;
use crate::payments::{deliver, intent, signature, start, WH_A};
use crate::sessions::{authorized, path, post, sessions};
use crate::support::*;

on_both_backends!(
    support_refunds_once_per_key_and_never_beyond_the_capture,
    refunds_and_disputes_made_in_stripe_are_learnt_from_webhooks,
    a_pending_refund_settles_by_webhook_and_a_failed_one_frees_its_amount,
);

/// A completed intent that captured `amount`: (intent, PaymentIntent).
async fn completed(server: &Server, fake: &FakeStripe, amount: i64) -> (String, String) {
    let (id, pi) = authorized(server, fake, "1", true).await;
    let (status, body) = post(
        server,
        &path(&id, "complete"),
        Some(&sessions("ws-1")),
        json!({"final_amount_cents": amount}),
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("completed")),
        "{body}"
    );
    (id, pi)
}

async fn refund(server: &Server, id: &str, key: Option<&str>, body: Value) -> (u16, Value) {
    let mut r = server
        .http
        .post(server.url(&format!("/api/support/charging-intents/{id}/refunds")))
        .bearer_auth(token("support-agent", &["ws-1"], "refunds:write"))
        .json(&body);
    if let Some(k) = key {
        r = r.header("Idempotency-Key", k);
    }
    status_json(r.send().await.unwrap()).await
}

async fn support_refunds_once_per_key_and_never_beyond_the_capture(b: Backend) {
    let (_store, _mock, fake, server) = start(b, &[]).await;
    let (id, pi) = completed(&server, &fake, 4500).await;

    let (s, p) = refund(&server, &id, None, json!({"amount_cents": 500})).await;
    assert_eq!(
        (s, p["code"].as_str()),
        (400, Some("idempotency_key_required")),
        "{p}"
    );
    let reader = token("support", &["ws-1"], "audit:read");
    let r = server
        .http
        .post(server.url(&format!("/api/support/charging-intents/{id}/refunds")))
        .bearer_auth(reader)
        .header("Idempotency-Key", "6b1d7e0c-4c1f-4c5e-9a55-1f6f0a4f9d01")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "refunds need refunds:write");

    // A partial refund, and the same key again: the same answer, one refund in Stripe.
    let key = "6b1d7e0c-4c1f-4c5e-9a55-1f6f0a4f9d01";
    let body = json!({"amount_cents": 500, "reason": "requested_by_customer"});
    let (s, first) = refund(&server, &id, Some(key), body.clone()).await;
    assert_eq!(
        (s, first["status"].as_str()),
        (201, Some("succeeded")),
        "{first}"
    );
    assert_eq!(first["amount_cents"], 500);
    let (s, again) = refund(&server, &id, Some(key), body).await;
    assert_eq!((s, &again), (201, &first));
    {
        let st = fake.state.lock().unwrap();
        assert_eq!(st.refunds.len(), 1, "one refund in Stripe");
        let form = &st.refund_requests[0].1;
        assert_eq!(
            form.get("reason").map(String::as_str),
            Some("requested_by_customer")
        );
        assert_eq!(form.get("payment_intent"), Some(&pi));
    }
    let (s, p) = refund(&server, &id, Some(key), json!({"amount_cents": 700})).await;
    assert_eq!(
        (s, p["code"].as_str()),
        (422, Some("idempotency_key_reused")),
        "{p}"
    );

    // Two at once that together exceed what is left (4000): exactly one is refused.
    let (a, b2) = tokio::join!(
        refund(
            &server,
            &id,
            Some("0c6f1a52-9d8e-4b7a-8c3d-000000000001"),
            json!({"amount_cents": 3000})
        ),
        refund(
            &server,
            &id,
            Some("0c6f1a52-9d8e-4b7a-8c3d-000000000002"),
            json!({"amount_cents": 3000})
        ),
    );
    let mut codes = [a.0, b2.0];
    codes.sort();
    assert_eq!(codes, [201, 422], "{a:?} {b2:?}");
    let refused = if a.0 == 422 { &a.1 } else { &b2.1 };
    assert_eq!(refused["code"], "refund_exceeds_captured");
    assert_eq!(
        fake.refunded(&pi),
        3500,
        "Stripe holds no more than was captured"
    );

    // The whole rest, and then nothing is left.
    let (s, rest) = refund(
        &server,
        &id,
        Some("0c6f1a52-9d8e-4b7a-8c3d-000000000003"),
        json!({}),
    )
    .await;
    assert_eq!(
        (s, rest["amount_cents"].as_i64()),
        (201, Some(1000)),
        "{rest}"
    );
    let (s, p) = refund(
        &server,
        &id,
        Some("0c6f1a52-9d8e-4b7a-8c3d-000000000004"),
        json!({"amount_cents": 1}),
    )
    .await;
    assert_eq!(
        (s, p["code"].as_str()),
        (422, Some("refund_exceeds_captured")),
        "{p}"
    );
    assert_eq!(fake.refunded(&pi), 4500);
    let got = intent(&server, &id).await;
    assert_eq!(
        (
            got["status"].as_str(),
            got["refunded_amount_cents"].as_i64()
        ),
        (Some("completed"), Some(4500)),
        "{got}"
    );

    // Only completed intents with a capture above 0.
    let (open, _) = authorized(&server, &fake, "2", false).await;
    let (s, p) = refund(
        &server,
        &open,
        Some("0c6f1a52-9d8e-4b7a-8c3d-000000000005"),
        json!({}),
    )
    .await;
    assert_eq!(
        (s, p["code"].as_str()),
        (409, Some("invalid_transition")),
        "{p}"
    );
    let audit = server
        .wait_for_audit_where("ws-1", |a| {
            a.iter()
                .filter(|e| e["event_type"] == "RefundSucceeded")
                .count()
                == 3
        })
        .await;
    assert_eq!(
        audit
            .iter()
            .filter(|e| e["event_type"] == "RefundRequested")
            .count(),
        3
    );
}

async fn refunds_and_disputes_made_in_stripe_are_learnt_from_webhooks(b: Backend) {
    let (_store, _mock, fake, server) = start(b, &[]).await;
    let (id, pi) = completed(&server, &fake, 4500).await;
    let url = "/ocpi/stripe/webhook/ws-1";
    let send = |event_id: &str, kind: &str, object: Value| {
        let body = serde_json::to_vec(&json!({
            "id": event_id, "object": "event", "type": kind, "livemode": false,
            "data": {"object": object}
        }))
        .unwrap();
        let sig = signature(WH_A, &body, chrono::Utc::now().timestamp());
        (body, sig)
    };

    // A refund made in the Dashboard: learnt from refund.updated, and from
    // charge.refunded (whose refunds are read from Stripe) without counting it twice.
    let made = fake.dashboard_refund(&pi, 700);
    let (body, sig) = send("evt_refund_1", "refund.updated", made.clone());
    let (s, out) = deliver(&server, url, &body, Some(&sig)).await;
    assert_eq!(
        (s, out["outcome"].as_str()),
        (200, Some("applied")),
        "{out}"
    );
    let (s, again) = deliver(&server, url, &body, Some(&sig)).await;
    assert_eq!(
        (s, again["outcome"].as_str()),
        (200, Some("duplicate")),
        "{again}"
    );
    let charge =
        json!({"id": "ch_fake1", "object": "charge", "payment_intent": pi, "amount_refunded": 700});
    let (body, sig) = send("evt_charge_refunded", "charge.refunded", charge);
    let (s, out) = deliver(&server, url, &body, Some(&sig)).await;
    assert_eq!(
        (s, out["outcome"].as_str()),
        (200, Some("ignored")),
        "{out}"
    );
    let got = intent(&server, &id).await;
    assert_eq!(got["refunded_amount_cents"], 700, "{got}");
    assert_eq!(got["status"], "completed");

    // A dispute opens, moves, and is won.
    let dispute = |status: &str| {
        json!({"id": "dp_fake1", "object": "dispute", "payment_intent": pi, "amount": 4500,
               "reason": "fraudulent", "status": status})
    };
    for (n, (kind, status)) in [
        ("charge.dispute.created", "needs_response"),
        ("charge.dispute.updated", "under_review"),
        ("charge.dispute.closed", "won"),
    ]
    .into_iter()
    .enumerate()
    {
        let (body, sig) = send(&format!("evt_dispute_{n}"), kind, dispute(status));
        let (s, out) = deliver(&server, url, &body, Some(&sig)).await;
        assert_eq!(
            (s, out["outcome"].as_str()),
            (200, Some("applied")),
            "{kind}: {out}"
        );
        let (s, again) = deliver(&server, url, &body, Some(&sig)).await;
        assert_eq!(
            (s, again["outcome"].as_str()),
            (200, Some("duplicate")),
            "{kind} again"
        );
        let got = intent(&server, &id).await;
        assert_eq!(
            got["dispute"],
            json!({"status": status, "amount_cents": 4500, "reason": "fraudulent"})
        );
    }
    // About a PaymentIntent that is not ours: ignored.
    let stranger = json!({"id": "re_other1", "object": "refund", "payment_intent": "pi_unknown1", "amount": 5, "status": "succeeded"});
    let (body, sig) = send("evt_refund_other", "refund.updated", stranger);
    let (s, out) = deliver(&server, url, &body, Some(&sig)).await;
    assert_eq!(
        (s, out["outcome"].as_str()),
        (200, Some("ignored")),
        "{out}"
    );

    let support = token("support", &["ws-1"], "audit:read");
    let list = eventually(
        "the support list showing the refund and the dispute",
        || async {
            let (_, list) = server
                .get("/api/support/charging-intents?workspace_id=ws-1", &support)
                .await;
            (list["data"][0]["dispute"]["status"] == "won").then_some(list)
        },
    )
    .await;
    assert_eq!(list["data"][0]["refunded_amount_cents"], 700, "{list}");
    let audit = server.wait_for_audit("ws-1", 1).await;
    for kind in [
        "RefundSucceeded",
        "DisputeOpened",
        "DisputeUpdated",
        "DisputeClosed",
    ] {
        assert!(audit.iter().any(|e| e["event_type"] == kind), "{kind}");
    }
}

async fn a_pending_refund_settles_by_webhook_and_a_failed_one_frees_its_amount(b: Backend) {
    let (_store, _mock, fake, server) = start(b, &[]).await;
    let (id, pi) = completed(&server, &fake, 4500).await;

    // Stripe answers `pending`; its refund.updated later says succeeded.
    fake.state.lock().unwrap().refund_status = Some("pending".into());
    let key = "7a1b2c3d-0000-4000-8000-000000000001";
    let (s, pending) = refund(&server, &id, Some(key), json!({"amount_cents": 1000})).await;
    assert_eq!(
        (s, pending["status"].as_str()),
        (201, Some("pending")),
        "{pending}"
    );
    assert_eq!(
        intent(&server, &id).await["refunded_amount_cents"],
        0,
        "not refunded yet"
    );
    let settled = {
        let mut st = fake.state.lock().unwrap();
        st.refunds[0]["status"] = json!("succeeded"); // Stripe settles it
        st.refunds[0].clone()
    };
    let body = serde_json::to_vec(&json!({"id": "evt_refund_done", "object": "event",
        "type": "refund.updated", "livemode": false, "data": {"object": settled}}))
    .unwrap();
    let sig = signature(WH_A, &body, chrono::Utc::now().timestamp());
    let (s, out) = deliver(&server, "/ocpi/stripe/webhook/ws-1", &body, Some(&sig)).await;
    assert_eq!(
        (s, out["outcome"].as_str()),
        (200, Some("applied")),
        "{out}"
    );
    assert_eq!(intent(&server, &id).await["refunded_amount_cents"], 1000);
    let (s, again) = refund(&server, &id, Some(key), json!({"amount_cents": 1000})).await;
    assert_eq!(
        (s, again["status"].as_str()),
        (201, Some("succeeded")),
        "{again}"
    );

    // A refund Stripe fails gives nothing back, and its amount is refundable again.
    fake.state.lock().unwrap().refund_status = Some("failed".into());
    let (s, failed) = refund(
        &server,
        &id,
        Some("7a1b2c3d-0000-4000-8000-000000000002"),
        json!({}),
    )
    .await;
    assert_eq!(
        (
            s,
            failed["status"].as_str(),
            failed["amount_cents"].as_i64()
        ),
        (201, Some("failed"), Some(3500)),
        "{failed}"
    );
    fake.state.lock().unwrap().refund_status = None;
    let (s, rest) = refund(
        &server,
        &id,
        Some("7a1b2c3d-0000-4000-8000-000000000003"),
        json!({}),
    )
    .await;
    assert_eq!(
        (s, rest["status"].as_str(), rest["amount_cents"].as_i64()),
        (201, Some("succeeded"), Some(3500)),
        "{rest}"
    );
    assert_eq!(fake.refunded(&pi), 4500);
    assert_eq!(intent(&server, &id).await["refunded_amount_cents"], 4500);
}
