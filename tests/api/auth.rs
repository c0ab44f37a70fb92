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

/// `roampay …` with only the given environment: (exit code, stdout, stderr).
fn roampay(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_roampay"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .expect("run roampay");
    (
        out.status.code().expect("exited"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Anyone could mint platform-staff tokens with a guessable secret: `serve` refuses a
/// short one, and an empty one, before touching the store.
#[test]
fn serve_refuses_a_short_or_empty_jwt_secret() {
    for secret in ["", "x", "short-but-not-32-bytes-long"] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let data_dir = data.to_str().unwrap();
        let env = [
            ("ROAMPAY_DATA_DIR", data_dir),
            ("ROAMPAY_BIND", "127.0.0.1:0"),
            ("ROAMPAY_JWT_SECRET", secret),
        ];
        let (code, _, stderr) = roampay(&["serve"], &env);
        assert_eq!(code, 2, "secret {secret:?} accepted: {stderr}");
        assert!(stderr.contains("ROAMPAY_JWT_SECRET"), "{stderr}");
        assert!(!stderr.contains(secret) || secret.len() < 2, "{stderr}");
        assert!(!data.exists(), "nothing created before refusing");
    }
    // A stored secret that is too short is refused too, naming the file.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jwt.secret"), "tiny").unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let (code, _, stderr) = roampay(
        &["serve"],
        &[
            ("ROAMPAY_DATA_DIR", data_dir),
            ("ROAMPAY_BIND", "127.0.0.1:0"),
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("jwt.secret"), "{stderr}");
}

/// `roampay token` signs with a secret that exists, never a new one, and only scopes
/// the contract names; secrets given as flags are warned about (never echoed).
#[test]
fn the_token_command_never_creates_a_secret_and_refuses_unknown_scopes() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let mint = ["token", "--sub", "a", "--workspace", "ws-1", "--scope"];
    let with = |scope: &str| {
        let mut args = mint.to_vec();
        args.push(scope);
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let args = with("roaming:read");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = roampay(&args, &[("ROAMPAY_DATA_DIR", data_dir)]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("no JWT secret"), "{stderr}");
    assert!(!dir.path().join("jwt.secret").exists(), "no secret created");

    let env = [
        ("ROAMPAY_DATA_DIR", data_dir),
        ("ROAMPAY_JWT_SECRET", JWT_SECRET),
    ];
    let args = with("roaming:read bogus:scope");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _, stderr) = roampay(&args, &env);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("unknown scope bogus:scope"), "{stderr}");

    let args = with("roaming:read refunds:write");
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = roampay(&args, &env);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim().split('.').count(), 3, "a JWT: {stdout}");

    args.extend(["--jwt-secret", JWT_SECRET]);
    let (code, _, stderr) = roampay(
        &args,
        &[("ROAMPAY_DATA_DIR", data_dir), ("RUST_LOG", "warn")],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("--jwt-secret") && stderr.contains("visible to other users"),
        "{stderr}"
    );
    assert!(!stderr.contains(JWT_SECRET), "{stderr}");
}

/// The data directory holds the keys and the embedded store: its owner's only.
#[test]
fn the_data_directory_is_created_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nested").join("data");
    let (code, _, stderr) = roampay(
        &["migrate"],
        &[("ROAMPAY_DATA_DIR", data.to_str().unwrap())],
    );
    assert_eq!(code, 0, "{stderr}");
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{mode:o}");
}

on_both_backends!(a_token_that_is_not_valid_yet_is_refused);

async fn a_token_that_is_not_valid_yet_is_refused(b: Backend) {
    use jsonwebtoken::{encode, EncodingKey, Header};
    let store = Store::fresh(b).await;
    let stripe = stripe_ok().await;
    let server = Server::start(&store, ServerOptions::new(&stripe)).await;
    let now = chrono::Utc::now().timestamp();
    let signed = |nbf: i64| {
        let claims = serde_json::json!({
            "sub": "alice", "exp": now + 3600, "nbf": nbf,
            "workspaces": ["ws-1"], "scope": "roaming:read"
        });
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
        )
        .unwrap()
    };
    let (status, body) = server.get(&config_path("ws-1"), &signed(now + 3600)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("unauthenticated")),
        "{body}"
    );
    let (status, body) = server.get(&config_path("ws-1"), &signed(now - 60)).await;
    assert_eq!(status, 200, "{body}");
}
