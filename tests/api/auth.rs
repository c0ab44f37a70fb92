//! The bearer-token matrix.

use roampay::http::auth::JwtAuth;
use secrecy::SecretString;

use crate::on_both_backends;
use crate::support::*;

on_both_backends!(every_way_of_failing_authentication_or_authorization_is_refused);

async fn every_way_of_failing_authentication_or_authorization_is_refused(b: Backend) {
    let store = Store::fresh(b).await;
    let stripe = stripe_ok().await;
    let server = Server::start(&store, ServerOptions::new(&stripe)).await;
    let p = config_path("ws-1");

    let r = server.http.get(server.url(&p)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let (_, body) = status_json(r).await;
    assert_eq!(body["code"], "unauthenticated");

    let forged = JwtAuth::new(
        &SecretString::from("another-secret".to_string()),
        None,
        None,
    )
    .issue("mallory", &["ws-1".into()], "roaming:read", 3600);
    let expired = auth().issue("alice", &["ws-1".into()], "roaming:read", -3600);
    for (bad, why) in [
        (forged.as_str(), "bad signature"),
        (expired.as_str(), "expired"),
        ("not.a.jwt", "malformed"),
    ] {
        let (status, body) = server.get(&p, bad).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("unauthenticated")),
            "{why}: {body}"
        );
    }
    let r = server
        .http
        .get(server.url(&p))
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "not a bearer token");

    let (status, body) = server
        .get(&p, &token("alice", &["ws-1"], "audit:read"))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("forbidden")),
        "scope missing"
    );
    let (status, body) = server
        .get(&p, &token("alice", &["ws-2"], "roaming:read"))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("forbidden")),
        "other workspace"
    );
    let (status, _) = server
        .patch(
            &p,
            &token("alice", &["ws-1"], "roaming:read"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 403, "read scope cannot write");

    let (status, _) = server
        .get(&p, &token("staff", &["*"], "roaming:read"))
        .await;
    assert_eq!(status, 200, "platform staff");
    let (status, _) = server
        .get(&p, &token("alice", &["ws-1"], "roaming:read"))
        .await;
    assert_eq!(status, 200);
}

on_both_backends!(
    issuer_and_audience_are_enforced_when_configured_and_the_token_command_signs_usable_tokens
);

async fn issuer_and_audience_are_enforced_when_configured_and_the_token_command_signs_usable_tokens(
    b: Backend,
) {
    let store = Store::fresh(b).await;
    let stripe = stripe_ok().await;
    let server = Server::start(
        &store,
        ServerOptions::new(&stripe)
            .env("ROAMPAY_JWT_ISSUER", "https://auth.example.com")
            .env("ROAMPAY_JWT_AUDIENCE", "roampay"),
    )
    .await;
    let p = config_path("ws-1");
    let (status, _) = server
        .get(&p, &token("alice", &["ws-1"], "roaming:read"))
        .await;
    assert_eq!(status, 401, "no iss/aud");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_roampay"))
        .args([
            "token",
            "--sub",
            "alice@example.com",
            "--workspace",
            "ws-1",
            "--scope",
            "roaming:read",
        ])
        .env("ROAMPAY_JWT_SECRET", JWT_SECRET)
        .env("ROAMPAY_JWT_ISSUER", "https://auth.example.com")
        .env("ROAMPAY_JWT_AUDIENCE", "roampay")
        .env("ROAMPAY_DATA_DIR", store.data_dir())
        .output()
        .expect("roampay token");
    assert!(out.status.success());
    let minted = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let (status, body) = server.get(&p, &minted).await;
    assert_eq!(status, 200, "{body}");
    let other_aud = JwtAuth::new(
        &SecretString::from(JWT_SECRET.to_string()),
        Some("https://auth.example.com".into()),
        Some("someone-else".into()),
    )
    .issue("alice", &["ws-1".into()], "roaming:read", 3600);
    let (status, _) = server.get(&p, &other_aud).await;
    assert_eq!(status, 401, "wrong audience");
}
