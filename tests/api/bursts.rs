//! Issue 27: the Stripe call of a step is made once, however many commands race on the
//! intent (twins of a request, retries, conflicting writers): the command only records
//! Stripe's answer, and a twin finds the step already answered.

use futures::future::join_all;
use serde_json::json;

use crate::on_both_backends;
use crate::payments::{configure, create, put_location, start, WH_A};
use crate::sessions::{path, post, sessions};
use crate::support::*;

on_both_backends!(a_burst_of_conflicting_commands_on_one_intent_calls_stripe_once_per_step,);

/// How many requests Stripe received for `method path` whose form names `needle`.
async fn calls(mock: &wiremock::MockServer, method: &str, path: &str, needle: &str) -> usize {
    let received = mock.received_requests().await.unwrap();
    received
        .iter()
        .filter(|r| r.method.as_str() == method && r.url.path() == path)
        .filter(|r| String::from_utf8_lossy(&r.body).contains(needle))
        .count()
}

async fn a_burst_of_conflicting_commands_on_one_intent_calls_stripe_once_per_step(b: Backend) {
    const TWINS: usize = 8;
    let (_store, mock, fake, server) = start(b, &[]).await;
    configure(&server, "ws-1", "sk_test_51HxWorkspaceOneKey", WH_A).await;
    let (status, loc) = put_location(&server, "ws-1", "LOC-1", 45).await;
    assert_eq!(status, 200, "{loc}");

    // Twins of one pre-authorization (one Idempotency-Key): one hold asked of Stripe.
    let key = "0f3a2b9c-5d6e-4f70-8a1b-2c3d4e5f6a7b";
    let created = join_all((0..TWINS).map(|_| create(&server, "LOC-1", "1", Some(key)))).await;
    for (s, body) in &created {
        assert_eq!(*s, 201, "{body}");
        assert_eq!(
            body["charging_intent_id"],
            created[0].1["charging_intent_id"]
        );
        assert!(body["client_secret"].as_str().is_some(), "{body}");
    }
    let id = created[0].1["charging_intent_id"]
        .as_str()
        .unwrap()
        .to_string();
    let pi = created[0].1["payment_intent_id"]
        .as_str()
        .unwrap()
        .to_string();
    let holds = calls(&mock, "POST", "/v1/payment_intents", "charging_intent_id").await;
    assert_eq!(holds, 1, "one PaymentIntent for {TWINS} twins");

    fake.set_status(&pi, "requires_capture");
    let (s, body) = post(
        &server,
        &format!("/ocpi/charging-intents/{id}/confirm"),
        None,
        json!({}),
    )
    .await;
    assert_eq!(
        (s, body["status"].as_str()),
        (200, Some("authorized")),
        "{body}"
    );

    // Completions racing one another and a start on the same stream: one capture.
    let tok = sessions("ws-1");
    let start_path = path(&id, "start");
    let complete_path = path(&id, "complete");
    let starts = (0..TWINS / 2).map(|_| {
        post(
            &server,
            &start_path,
            Some(&tok),
            json!({"ocpi_session_id": "SESS-1"}),
        )
    });
    let completes = (0..TWINS).map(|_| {
        post(
            &server,
            &complete_path,
            Some(&tok),
            json!({"final_amount_cents": 3000}),
        )
    });
    let (_, completed) = futures::future::join(join_all(starts), join_all(completes)).await;
    for (s, body) in completed {
        assert_eq!(
            (s, body["status"].as_str()),
            (200, Some("completed")),
            "{body}"
        );
        assert_eq!(body["captured_amount_cents"], 3000, "{body}");
    }
    let capture = format!("/v1/payment_intents/{pi}/capture");
    assert_eq!(calls(&mock, "POST", &capture, "").await, 1, "one capture");

    // Refunds under three keys, each sent twice at once: three refunds in Stripe.
    let keys = [
        "1b2c3d4e-0000-4000-8000-000000000001",
        "1b2c3d4e-0000-4000-8000-000000000002",
        "1b2c3d4e-0000-4000-8000-000000000003",
    ];
    let url = server.url(&format!("/api/support/charging-intents/{id}/refunds"));
    let support = token("support-agent", &["ws-1"], "refunds:write");
    let refunds = keys.iter().chain(keys.iter()).map(|k| {
        let req = server
            .http
            .post(&url)
            .bearer_auth(&support)
            .header("Idempotency-Key", *k)
            .json(&json!({"amount_cents": 100}));
        async move { status_json(req.send().await.unwrap()).await }
    });
    for (s, body) in join_all(refunds).await {
        assert_eq!(
            (s, body["status"].as_str()),
            (201, Some("succeeded")),
            "{body}"
        );
    }
    assert_eq!(calls(&mock, "POST", "/v1/refunds", "").await, keys.len());
    assert_eq!(fake.refunded(&pi), 300);
}
