//! GET/PATCH ocpi-config and the validate endpoint.

use serde_json::json;
use wiremock::matchers::{body_string_contains, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::on_both_backends;
use crate::support::*;

on_both_backends!(
    a_never_configured_workspace_reads_as_defaults,
    saved_credentials_are_validated_and_read_back_without_secrets,
    malformed_input_is_refused_and_nothing_is_saved,
    each_stripe_refusal_sets_its_failure_code,
    an_unreachable_stripe_leaves_the_set_pending_until_the_background_check_passes,
    one_secret_can_be_rotated_alone_and_the_set_removed,
    the_validate_endpoint_re_runs_the_round_trip,
);

async fn a_never_configured_workspace_reads_as_defaults(b: Backend) {
    let store = Store::fresh(b).await;
    let stripe = stripe_ok().await;
    let server = Server::start(&store, ServerOptions::new(&stripe)).await;
    let (status, body) = server.get(&config_path("ws-1"), &admin("ws-1")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["workspace_id"], "ws-1");
    assert_eq!(body["allow_guest_access"], false);
    assert_eq!(body["allow_user_registration"], false);
    assert_eq!(body["pre_auth_cents"], 5000);
    assert_eq!(body["currency"], "aud");
    assert_eq!(body["stripe"]["health"]["status"], "unconfigured");
    assert_eq!(
        body["stripe"]["secret_key"],
        json!({"configured": false, "kind": null, "last4": null})
    );
    assert_eq!(body["stripe"]["credential_version"], 0);
    assert_eq!(
        body["stripe"]["webhook_url"],
        format!("{}/ocpi/stripe/webhook/ws-1", server.base)
    );
}

async fn saved_credentials_are_validated_and_read_back_without_secrets(b: Backend) {
    let store = Store::fresh(b).await;
    let stripe = MockServer::start().await;
    // Validation must use the workspace's own keys: the secret key creates (and
    // cancels) a tagged PaymentIntent, the publishable key reads it as Stripe.js would.
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .and(header("authorization", "Bearer sk_test_51HxSecretKeyZZ9Qa"))
        .and(body_string_contains(
            "metadata%5Broampay_purpose%5D=credential_check",
        ))
        .and(body_string_contains("capture_method=manual"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(check_intent("requires_payment_method", false)),
        )
        .expect(1)
        .mount(&stripe)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/payment_intents/pi_check_1"))
        .and(header("authorization", "Bearer pk_test_51HxPublishableKey"))
        .and(query_param("client_secret", "pi_check_1_secret_x"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(check_intent("requires_payment_method", false)),
        )
        .expect(1)
        .mount(&stripe)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents/pi_check_1/cancel"))
        .and(header("authorization", "Bearer sk_test_51HxSecretKeyZZ9Qa"))
        .respond_with(ResponseTemplate::new(200).set_body_json(check_intent("canceled", false)))
        .expect(1)
        .mount(&stripe)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/account"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "acct_1Hx", "object": "account"})),
        )
        .mount(&stripe)
        .await;
    let server = Server::start(&store, ServerOptions::new(&stripe)).await;
    let mut body = good_creds();
    body["allow_guest_access"] = json!(true);
    body["pre_auth_cents"] = json!(7500);
    let (status, patched) = server
        .patch(&config_path("ws-1"), &admin("ws-1"), body)
        .await;
    assert_eq!(status, 200, "{patched}");
    let s = &patched["stripe"];
    assert_eq!(s["health"]["status"], "valid", "{patched}");
    assert_eq!(s["account_id"], "acct_1Hx");
    assert_eq!(s["mode"], "test");
    assert_eq!(s["credential_version"], 1);
    assert_eq!(s["publishable_key"], "pk_test_51HxPublishableKey");
    assert_eq!(
        s["secret_key"],
        json!({"configured": true, "kind": "secret", "last4": "Z9Qa"})
    );
    assert_eq!(
        s["webhook_signing_secret"],
        json!({"configured": true, "last4": "7fZk"})
    );
    assert_eq!(s["updated_by"], "alice@example.com");
    assert_eq!(patched["allow_guest_access"], true);
    assert_eq!(patched["pre_auth_cents"], 7500);
    let text = patched.to_string();
    assert!(
        !text.contains("SecretKeyZZ") && !text.contains("SigningSecretWW"),
        "{text}"
    );

    // Read-your-writes: an immediate GET shows exactly what the PATCH answered.
    let (status, got) = server
        .get(
            &config_path("ws-1"),
            &token("bob", &["ws-1"], "roaming:read"),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(got, patched);
}

async fn malformed_input_is_refused_and_nothing_is_saved(b: Backend) {
    let store = Store::fresh(b).await;
    let stripe = stripe_ok().await;
    let server = Server::start(&store, ServerOptions::new(&stripe)).await;
    let t = admin("ws-1");
    let cases = [
        (
            creds(
                "pk_nope_51Hx",
                "sk_test_51HxSecretKeyZZ9Qa",
                "whsec_SigningSecretWW7fZk",
            ),
            "invalid_publishable_key",
        ),
        (
            creds(
                "pk_test_51HxPublishableKey",
                "secret",
                "whsec_SigningSecretWW7fZk",
            ),
            "invalid_secret_key",
        ),
        (
            creds(
                "pk_test_51HxPublishableKey",
                "sk_test_51HxSecretKeyZZ9Qa",
                "wh_nope",
            ),
            "invalid_webhook_signing_secret",
        ),
        (
            creds(
                "pk_live_51HxPublishableKey",
                "sk_test_51HxSecretKeyZZ9Qa",
                "whsec_SigningSecretWW7fZk",
            ),
            "credential_mode_mismatch",
        ),
        (
            json!({"stripe": {"secret_key": "rk_test_51HxRestrictedKey1"}}),
            "incomplete_credentials",
        ),
        (json!({"pre_auth_cents": 49}), "invalid_pre_auth_amount"),
        (
            json!({"pre_auth_cents": 1_000_001}),
            "invalid_pre_auth_amount",
        ),
        (json!({"pre_auth_cents": "5000"}), "invalid_pre_auth_amount"),
        (json!({"currency": "zzz"}), "invalid_currency"),
    ];
    for (body, code) in cases {
        // A valid settings change rides along: it must not be saved either.
        let mut body = body;
        if body.get("allow_guest_access").is_none() {
            body["allow_guest_access"] = json!(true);
        }
        let (status, problem) = server.patch(&config_path("ws-1"), &t, body.clone()).await;
        assert_eq!(status, 422, "{body} -> {problem}");
        assert_eq!(problem["code"], "validation_failed");
        let codes: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["code"].as_str().unwrap())
            .collect();
        assert!(codes.contains(&code), "{body} -> {problem}");
        assert!(problem["request_id"]
            .as_str()
            .is_some_and(|r| !r.is_empty()));
    }
    let (_, got) = server.get(&config_path("ws-1"), &t).await;
    assert_eq!(got["allow_guest_access"], false, "nothing saved");
    assert_eq!(got["stripe"]["credential_version"], 0, "nothing saved");
    assert_eq!(got["pre_auth_cents"], 5000);
}

async fn each_stripe_refusal_sets_its_failure_code(b: Backend) {
    let store = Store::fresh(b).await;
    let stripe = MockServer::start().await;
    const PK: &str = "pk_test_51HxPublishableKey";
    let cases = [
        (
            "ws-401",
            PK,
            "sk_test_51HxUnauthorized1",
            stripe_error(401, "", "Invalid API Key provided: sk_test_****ized1"),
            "invalid",
            "authentication_failed",
        ),
        // A restricted key with PaymentIntents "Read" only.
        (
            "ws-403",
            PK,
            "rk_test_51HxForbidden22",
            stripe_error(
                403,
                "",
                "The provided key does not have the required permissions",
            ),
            "invalid",
            "permission_denied",
        ),
        (
            "ws-live",
            PK,
            "sk_test_51HxLiveAnswer3",
            ResponseTemplate::new(200).set_body_json(check_intent("requires_payment_method", true)),
            "invalid",
            "livemode_mismatch",
        ),
        (
            "ws-500",
            PK,
            "sk_test_51HxServerErr4",
            stripe_error(500, "", "boom"),
            "pending",
            "stripe_unreachable",
        ),
        // The publishable key of another account cannot see the secret key's objects.
        (
            "ws-other",
            "pk_test_51HxOtherAccountKey",
            "sk_test_51HxAccountOne5",
            ResponseTemplate::new(200)
                .set_body_json(check_intent("requires_payment_method", false)),
            "invalid",
            "account_mismatch",
        ),
    ];
    for (_, _, key, response, _, _) in &cases {
        Mock::given(method("POST"))
            .and(path("/v1/payment_intents"))
            .and(header("authorization", format!("Bearer {key}").as_str()))
            .respond_with(response.clone())
            .mount(&stripe)
            .await;
    }
    Mock::given(method("GET"))
        .and(path("/v1/payment_intents/pi_check_1"))
        .and(header(
            "authorization",
            "Bearer pk_test_51HxOtherAccountKey",
        ))
        .respond_with(stripe_error(
            404,
            "resource_missing",
            "No such payment_intent: 'pi_check_1'",
        ))
        .mount(&stripe)
        .await;
    mount_ok(&stripe).await;
    let server = Server::start(&store, ServerOptions::new(&stripe)).await;
    for (ws, pk, key, _, status, code) in cases {
        let (http, body) = server
            .patch(
                &config_path(ws),
                &admin(ws),
                creds(pk, key, "whsec_SigningSecretWW7fZk"),
            )
            .await;
        assert_eq!(http, 200, "{body}");
        let health = &body["stripe"]["health"];
        assert_eq!(health["status"], status, "{ws}: {body}");
        assert_eq!(health["failure_code"], code, "{ws}: {body}");
        let message = health["failure_message"].as_str().unwrap();
        assert!(
            !message.is_empty() && !message.contains("****"),
            "our own words, not Stripe's: {message}"
        );
    }
}

async fn an_unreachable_stripe_leaves_the_set_pending_until_the_background_check_passes(
    b: Backend,
) {
    let store = Store::fresh(b).await;
    let stripe = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(stripe_error(503, "", "down"))
        .up_to_n_times(3) // every attempt of the save's check
        .mount(&stripe)
        .await;
    mount_ok(&stripe).await;
    let server = Server::start(
        &store,
        ServerOptions::new(&stripe).env("ROAMPAY_REVALIDATE_INTERVAL_SECS", "1"),
    )
    .await;
    let t = admin("ws-1");
    let (_, body) = server.patch(&config_path("ws-1"), &t, good_creds()).await;
    assert_eq!(body["stripe"]["health"]["status"], "pending", "{body}");
    assert_eq!(
        body["stripe"]["health"]["failure_code"],
        "stripe_unreachable"
    );
    eventually("the background check retrying and passing", || async {
        let (_, got) = server.get(&config_path("ws-1"), &t).await;
        (got["stripe"]["health"]["status"] == "valid").then_some(())
    })
    .await;
    let audit = server.wait_for_audit("ws-1", 3).await;
    assert_eq!(audit[0]["actor"], "system:revalidator");
    assert_eq!(
        audit[0]["event_type"],
        "WorkspaceStripeCredentialsValidated"
    );
}

async fn one_secret_can_be_rotated_alone_and_the_set_removed(b: Backend) {
    let store = Store::fresh(b).await;
    let stripe = stripe_ok().await;
    let server = Server::start(&store, ServerOptions::new(&stripe)).await;
    let t = admin("ws-1");
    server.patch(&config_path("ws-1"), &t, good_creds()).await;
    let (status, rotated) = server
        .patch(
            &config_path("ws-1"),
            &t,
            json!({"stripe": {"secret_key": "rk_test_51HxRestrictedNEW1"}}),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let s = &rotated["stripe"];
    assert_eq!(s["credential_version"], 2);
    assert_eq!(
        s["secret_key"],
        json!({"configured": true, "kind": "restricted", "last4": "NEW1"})
    );
    assert_eq!(s["webhook_signing_secret"]["last4"], "7fZk", "untouched");
    assert_eq!(
        s["publishable_key"], "pk_test_51HxPublishableKey",
        "untouched"
    );
    assert_eq!(s["health"]["status"], "valid");

    let (_, same) = server
        .patch(
            &config_path("ws-1"),
            &t,
            json!({"stripe": {"secret_key": "rk_test_51HxRestrictedNEW1"}}),
        )
        .await;
    assert_eq!(
        same["stripe"]["credential_version"], 2,
        "the same key again is not a new version"
    );

    let (status, removed) = server
        .patch(&config_path("ws-1"), &t, json!({"stripe": null}))
        .await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!(removed["stripe"]["health"]["status"], "unconfigured");
    assert_eq!(removed["stripe"]["secret_key"]["configured"], false);
    assert_eq!(removed["stripe"]["publishable_key"], json!(null));
    assert_eq!(removed["stripe"]["credential_version"], 3);
}

async fn the_validate_endpoint_re_runs_the_round_trip(b: Backend) {
    let store = Store::fresh(b).await;
    let stripe = stripe_ok().await;
    let server = Server::start(&store, ServerOptions::new(&stripe)).await;
    let t = admin("ws-1");
    let validate = format!("{}/stripe/validate", config_path("ws-1"));
    let (status, problem) = server.post(&validate, &t).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("credentials_not_configured"))
    );
    server.patch(&config_path("ws-1"), &t, good_creds()).await;
    let before = stripe.received_requests().await.unwrap().len();
    let (status, body) = server.post(&validate, &t).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stripe"]["health"]["status"], "valid");
    assert!(
        stripe.received_requests().await.unwrap().len() > before,
        "Stripe was asked again"
    );
    let (status, _) = server
        .post(&validate, &token("bob", &["ws-1"], "roaming:read"))
        .await;
    assert_eq!(status, 403);
}
