//! Stripe misbehaving during pre-authorization: retries reuse the idempotency key, no
//! second PaymentIntent is ever created, and the intent ends in a definite state.

use std::time::Duration;

use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::fake_stripe::FakeStripe;
use crate::on_both_backends;
use crate::payments::{configure, create, intent, put_location, WH_A};
use crate::support::*;

on_both_backends!(retries_keep_the_idempotency_key_and_failures_end_definite);

/// Mounts `fault` for the first `times` create requests, in front of the fake.
async fn with_fault(fault: ResponseTemplate, times: u64) -> (MockServer, FakeStripe) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .and(not_a_credential_check)
        .respond_with(fault)
        .up_to_n_times(times)
        .with_priority(1)
        .mount(&server)
        .await;
    let fake = FakeStripe::default();
    fake.mount(&server).await;
    (server, fake)
}

/// The pre-auth's requests, not the credential check's.
fn not_a_credential_check(r: &wiremock::Request) -> bool {
    !String::from_utf8_lossy(&r.body).contains("credential_check")
}

async fn keys_seen(server: &MockServer) -> Vec<String> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path() == "/v1/payment_intents")
        .filter(|r| not_a_credential_check(r))
        .map(|r| {
            r.headers
                .get("idempotency-key")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        })
        .collect()
}

async fn retries_keep_the_idempotency_key_and_failures_end_definite(b: Backend) {
    let in_use = stripe_error(409, "idempotency_key_in_use", "in use");
    let cases: Vec<(&str, ResponseTemplate, u64, Option<&str>, usize)> = vec![
        // (what, fault, how many times, expected error code or success, attempts)
        (
            "429 then success",
            stripe_error(429, "rate_limit", "slow down"),
            1,
            None,
            2,
        ),
        (
            "500 then success",
            stripe_error(500, "", "boom"),
            1,
            None,
            2,
        ),
        (
            "409 idempotency_key_in_use then success",
            in_use,
            2,
            None,
            3,
        ),
        (
            "timeout then success",
            ResponseTemplate::new(200).set_delay(Duration::from_millis(2500)),
            1,
            None,
            2,
        ),
        (
            "500 with Stripe-Should-Retry: false",
            stripe_error(500, "", "boom").insert_header("Stripe-Should-Retry", "false"),
            5,
            Some("stripe_unavailable"),
            1,
        ),
        (
            "500 every time",
            stripe_error(500, "", "boom"),
            5,
            Some("stripe_unavailable"),
            3,
        ),
        (
            "400 refusal",
            stripe_error(400, "parameter_invalid_integer", "bad amount"),
            5,
            Some("stripe_error"),
            1,
        ),
    ];
    for (what, fault, times, error, attempts) in cases {
        let store = Store::fresh(b).await;
        let (mock, fake) = with_fault(fault, times).await;
        let server = Server::start(&store, ServerOptions::new(&mock)).await;
        configure(&server, "ws-1", "sk_test_51HxWorkspaceOneKey", WH_A).await;
        put_location(&server, "ws-1", "LOC-1", 45).await;
        let (status, body) = create(&server, "LOC-1", "1", Some("retry-key-0000001")).await;
        let keys = keys_seen(&mock).await;
        assert_eq!(keys.len(), attempts, "{what}: attempts {keys:?}");
        assert!(
            keys.windows(2).all(|w| w[0] == w[1]) && keys[0].starts_with("roampay:ws-1:"),
            "{what}: one key {keys:?}"
        );
        assert!(
            fake.distinct_intents() <= 1,
            "{what}: never a second PaymentIntent"
        );
        match error {
            None => {
                assert_eq!(status, 201, "{what}: {body}");
                assert_eq!(
                    intent(&server, body["charging_intent_id"].as_str().unwrap()).await["status"],
                    "pending_payment"
                );
            }
            Some(code) => {
                assert_eq!(body["code"], code, "{what}: {body}");
                assert!(matches!(status, 502 | 503), "{what}: {status}");
                // Definite: failed, and the connector is free for another attempt.
                let support = token("support", &["*"], "audit:read");
                let path = "/api/support/charging-intents?workspace_id=ws-1";
                eventually(&format!("{what}: the intent ending failed"), || async {
                    let (_, list) = server.get(path, &support).await;
                    let d = list["data"].as_array().cloned().unwrap_or_default();
                    (d.len() == 1 && d[0]["status"] == "failed").then_some(())
                })
                .await;
                let (again, _) = create(&server, "LOC-1", "1", Some("retry-key-0000001")).await;
                assert_eq!(again, status, "{what}: the same key answers the same");
                let (s, _) = create(&server, "LOC-1", "1", Some("retry-key-0000002")).await;
                assert!(
                    s == 201 || s == 502 || s == 503,
                    "{what}: connector released ({s})"
                );
                assert_ne!(s, 409, "{what}: connector released");
            }
        }
    }
}
