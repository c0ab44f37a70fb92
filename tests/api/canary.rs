//! Leak canary: distinctive secrets go through every path; none of them, nor any
//! 8-character piece of them, may show up anywhere but the vault's ciphertext.

use clap::Parser;
use roampay_projections::Db;
use serde_json::{json, Value};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer};

use crate::on_both_backends;
use crate::support::*;

on_both_backends!(no_secret_leaks_through_any_path);

// Every 8-character window holds a letter that is not a hex digit, so a hex dump of
// random ciphertext cannot match by accident.
const SK: &str = "sk_test_QZXcanaryKWJQZXsecretQZXW";
const SK_DENIED: &str = "sk_test_QZXdeniedKWJQZXkeyQZXWJ";
const SK_ROTATED: &str = "rk_test_QZXrotatedKWJQZXkeyQZXWJ";
const WH: &str = "whsec_QZXwebhookKWJQZXsignQZXWJ";
const WH_ROTATED: &str = "whsec_QZXrolledKWJQZXsignQZXWJK";
const MALFORMED: &str = "sk_test_QZXbrokenKWJ QZXkeyQZXWJ";
const MASTER: &str = "UVpYbWFzdGVyS1dKUVpYa2V5UVpYV0pLVVZaWFpYWlg=";
const JWT: &str = "QZXjwtsecretKWJQZXsigningQZXWJQZXlong";

/// The 8-character windows of a secret that include at least one character past its
/// public prefix (`sk_test_`, `whsec_`, …).
fn pieces(secret: &str) -> Vec<String> {
    let prefix = ["sk_test_", "rk_test_", "whsec_"]
        .iter()
        .find(|p| secret.starts_with(**p))
        .map_or(0, |p| p.len());
    let chars: Vec<char> = secret.chars().collect();
    (0..=chars.len() - 8)
        .filter(|i| i + 8 > prefix)
        .map(|i| chars[i..i + 8].iter().collect())
        .collect()
}

fn assert_clean(place: &str, haystack: &str) {
    for secret in [
        SK, SK_DENIED, SK_ROTATED, WH, WH_ROTATED, MALFORMED, MASTER, JWT,
    ] {
        for piece in pieces(secret) {
            assert!(
                !haystack.contains(&piece),
                "{place} contains {piece:?} from a secret"
            );
        }
    }
}

/// Every byte of the store as text (SQLite: the files, WAL included; PostgreSQL: every
/// row of every table), checked to hold `marker` (an event type written).
pub async fn dump(db: &Db, store: &Store, marker: &str) -> String {
    match db {
        Db::Sqlite(_) => {
            // Every byte the database wrote, including the write-ahead log.
            let mut all = String::new();
            for entry in std::fs::read_dir(store.dir.path()).unwrap() {
                let p = entry.unwrap().path();
                if p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("roampay.db")
                {
                    all.push_str(&String::from_utf8_lossy(&std::fs::read(&p).unwrap()));
                }
            }
            assert!(all.contains(marker), "the dump holds the events");
            all
        }
        Db::Postgres(pool) => {
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            let mut all = String::new();
            for t in tables {
                let rows: Vec<String> =
                    sqlx::query_scalar(&format!("SELECT t::text FROM \"{t}\" t"))
                        .fetch_all(pool)
                        .await
                        .unwrap();
                all.push_str(&rows.join("\n"));
            }
            assert!(all.contains(marker), "the dump holds the events");
            all
        }
    }
}

#[derive(Parser, Debug)]
struct ServeCli {
    #[command(flatten)]
    args: roampay::config::ServeArgs,
}

async fn no_secret_leaks_through_any_path(b: Backend) {
    let store = Store::fresh(b).await;
    let stripe = MockServer::start().await;
    // Stripe's own error messages quote part of the key: they must not be passed on.
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .and(header(
            "authorization",
            format!("Bearer {SK_DENIED}").as_str(),
        ))
        .respond_with(stripe_error(
            401,
            "",
            &format!("Invalid API Key provided: {SK_DENIED}"),
        ))
        .mount(&stripe)
        .await;
    mount_ok(&stripe).await;
    let mut opts = ServerOptions::new(&stripe)
        .env("ROAMPAY_MASTER_KEY", MASTER)
        .env("ROAMPAY_JWT_SECRET", JWT);
    opts.log_level = "trace".into();
    let server = Server::start(&store, opts).await;
    let jwt = roampay::http::auth::JwtAuth::new(
        &secrecy::SecretString::from(JWT.to_string()),
        None,
        None,
    );
    let t = jwt.issue(
        "alice",
        &["*".into()],
        "roaming:read roaming:write audit:read",
        3600,
    );
    let mut seen = String::new();
    let mut record = |label: &str, status: u16, body: &Value| {
        seen.push_str(&format!("{label} {status} {body}\n"));
    };

    let (s, body) = server
        .patch(
            &config_path("ws-1"),
            &t,
            creds("pk_test_51HxPublishable", SK, WH),
        )
        .await;
    assert_eq!(body["stripe"]["health"]["status"], "valid", "{body}");
    record("save", s, &body);
    let (s, body) = server
        .post(&format!("{}/stripe/validate", config_path("ws-1")), &t)
        .await;
    record("validate", s, &body);
    let (s, body) = server
        .patch(
            &config_path("ws-1"),
            &t,
            json!({"stripe": {"secret_key": SK_ROTATED, "webhook_signing_secret": WH_ROTATED}}),
        )
        .await;
    assert_eq!(body["stripe"]["credential_version"], 2);
    record("rotate", s, &body);
    let (s, body) = server
        .patch(
            &config_path("ws-2"),
            &t,
            creds("pk_test_51HxPublishable", SK_DENIED, WH),
        )
        .await;
    assert_eq!(
        body["stripe"]["health"]["failure_code"], "authentication_failed",
        "{body}"
    );
    record("denied", s, &body);
    let (s, body) = server
        .patch(
            &config_path("ws-3"),
            &t,
            creds("pk_test_51HxPublishable", MALFORMED, WH),
        )
        .await;
    assert_eq!(s, 422);
    record("malformed", s, &body);
    let (s, body) = server
        .patch(
            &config_path("ws-3"),
            &t,
            json!({"stripe": {"secret_key": 42, "webhook_signing_secret": WH}}),
        )
        .await;
    record("wrong type", s, &body);
    let (s, body) = server
        .patch(
            &config_path("ws-3"),
            &t,
            creds("pk_live_51HxPublishable", SK, WH),
        )
        .await;
    assert_eq!(s, 422);
    record("mixed", s, &body);
    let r = server
        .http
        .patch(server.url(&config_path("ws-3")))
        .bearer_auth(&t)
        .header("content-type", "application/json")
        .body(format!("{{\"stripe\": {{\"secret_key\": \"{SK}\", oops"))
        .send()
        .await
        .unwrap();
    let (s, body) = status_json(r).await;
    assert_eq!(s, 400);
    record("bad json", s, &body);
    let (s, body) = server.get(&config_path("ws-1"), &t).await;
    record("get", s, &body);
    let audit = server.wait_for_audit_as("ws-1", 4, &t).await;
    record("audit", 200, &Value::Array(audit));
    let (s, body) = server.get("/api/support/audit?limit=200", &t).await;
    record("audit all", s, &body);

    assert_clean("HTTP responses", &seen);
    let logs = server.logs();
    assert!(logs.contains("TRACE"), "the server logged at TRACE");
    assert_clean("server logs", &logs);
    drop(server);
    let db = store.db().await;
    assert_clean(
        "database",
        &dump(&db, &store, "WorkspaceStripeCredentialsUpdated").await,
    );

    // Debug output of the configuration types.
    let cli = ServeCli::parse_from(["t", "--master-key", MASTER, "--jwt-secret", JWT]);
    assert_clean("Debug of ServeArgs", &format!("{cli:?}"));
    let key = roampay::domain::workspace_stripe_profile::credentials::StripeSecretKey::parse(
        SK.to_string(),
    )
    .unwrap();
    let wh = roampay::domain::workspace_stripe_profile::credentials::WebhookSigningSecret::parse(
        WH.to_string(),
    )
    .unwrap();
    assert_clean("Debug of credentials", &format!("{key:?} {wh:?}"));
    let master = roampay::infra::vault::MasterKey::from_base64(MASTER).unwrap();
    assert_clean("Debug of the master key", &format!("{master:?}"));
}
