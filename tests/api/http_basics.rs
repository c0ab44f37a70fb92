//! Request ids, ids, body limits, unknown routes, probes.

use serde_json::json;

use crate::on_both_backends;
use crate::support::*;

on_both_backends!(cross_cutting_http_behaviour_follows_the_contract);

async fn cross_cutting_http_behaviour_follows_the_contract(b: Backend) {
    let store = Store::fresh(b).await;
    let stripe = stripe_ok().await;
    let server = Server::start(&store, ServerOptions::new(&stripe)).await;
    let t = token("staff", &["*"], "roaming:read roaming:write");

    let r = server
        .http
        .get(server.url("/healthz"))
        .header("x-request-id", "req-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "req-abc-123", "echoed");
    let r = server.http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let generated = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(generated.len() >= 32, "generated: {generated}");

    let r = server
        .http
        .get(server.url(&config_path("bad%20id")))
        .bearer_auth(&t)
        .header("x-request-id", "req-400")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let (_, body) = status_json(r).await;
    assert_eq!(body["code"], "invalid_id");
    assert_eq!(
        body["request_id"], "req-400",
        "error bodies carry the request id"
    );
    for key in ["type", "title", "status", "detail"] {
        assert!(body.get(key).is_some(), "problem has {key}: {body}");
    }
    let (status, body) = server.get(&config_path(&"a".repeat(65)), &t).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_id")));

    let big = json!({"currency": "a".repeat(70 * 1024)});
    let (status, body) = server.patch(&config_path("ws-1"), &t, big).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("payload_too_large")),
        "{body}"
    );

    let r = server
        .http
        .patch(server.url(&config_path("ws-1")))
        .bearer_auth(&t)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(r).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_json")));

    let (status, body) = server
        .patch(&config_path("ws-1"), &t, json!({"colour": "blue"}))
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        body["errors"][0],
        json!({"field": "colour", "code": "unknown_field", "message": "This field cannot be set here."})
    );

    let r = server
        .http
        .delete(server.url(&config_path("ws-1")))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(r).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (405, Some("method_not_allowed"))
    );

    let (status, body) = server.get("/no/such/route", &t).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
}

/// `/readyz` answers 503 when the store is gone (PostgreSQL: the database is dropped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_when_the_store_is_unreachable() {
    let store = Store::fresh(Backend::Postgres).await;
    let stripe = stripe_ok().await;
    let server = Server::start(&store, ServerOptions::new(&stripe)).await;
    let r = server.http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let name = store.url.rsplit('/').next().unwrap().to_string();
    let admin = sqlx::PgPool::connect("postgres://postgres@127.0.0.1:5432/postgres")
        .await
        .unwrap();
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&admin)
        .await
        .unwrap();
    let (status, body) =
        status_json(server.http.get(server.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("store_unavailable")),
        "{body}"
    );
    let r = server
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the process is still up");
}

on_both_backends!(a_body_that_is_not_json_is_refused_as_unsupported);

async fn a_body_that_is_not_json_is_refused_as_unsupported(b: Backend) {
    let store = Store::fresh(b).await;
    let stripe = stripe_ok().await;
    let server = Server::start(&store, ServerOptions::new(&stripe)).await;
    let r = server
        .http
        .patch(server.url(&config_path("ws-1")))
        .bearer_auth(admin("ws-1"))
        .header("content-type", "text/plain")
        .body("pre_auth_cents=5000")
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(r).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );
}

/// A webhook tolerance of zero or less is refused at start-up, not discovered later.
#[test]
fn serve_refuses_a_webhook_tolerance_of_zero_or_less() {
    for tolerance in ["0", "-5"] {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_roampay"))
            .arg("serve")
            .env("ROAMPAY_DATA_DIR", dir.path())
            .env("ROAMPAY_BIND", "127.0.0.1:0")
            .env("ROAMPAY_WEBHOOK_TOLERANCE_SECS", tolerance)
            .env_remove("DATABASE_URL")
            .output()
            .expect("run roampay serve");
        assert!(!out.status.success(), "tolerance {tolerance} accepted");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("tolerance must be a positive number"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_payment_endpoints_are_rate_limited_per_address_with_retry_after() {
    let store = Store::fresh(Backend::Sqlite).await;
    let stripe = stripe_ok().await;
    let server = Server::start(
        &store,
        ServerOptions::new(&stripe).env("ROAMPAY_RATE_LIMIT_PER_MIN", "2"),
    )
    .await;
    let get = || async {
        server
            .http
            .get(server.url("/ocpi/charging-intents/nope"))
            .send()
            .await
            .unwrap()
    };
    assert_eq!(get().await.status(), 404);
    assert_eq!(get().await.status(), 404);
    let r = get().await;
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&wait), "{wait}");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited");
    // Other endpoints are not limited.
    let r = server
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

on_both_backends!(hostile_http_is_answered_in_problem_json);

/// Raw bodies over the limit, long paths and wrong methods are answered like every
/// other error; a known path names the methods it takes.
async fn hostile_http_is_answered_in_problem_json(b: Backend) {
    let store = Store::fresh(b).await;
    let stripe = stripe_ok().await;
    let server = Server::start(&store, ServerOptions::new(&stripe)).await;
    let problem = |r: &reqwest::Response| {
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/problem+json"))
    };
    // A webhook body (read raw, not as JSON) over 64 KiB.
    let r = server
        .http
        .post(server.url("/ocpi/stripe/webhook/ws-1"))
        .header("content-type", "application/json")
        .body(vec![b'a'; 70_000])
        .send()
        .await
        .unwrap();
    assert!(problem(&r), "{:?}", r.headers());
    let (status, body) = status_json(r).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    // Long paths, up to what the HTTP parser takes (beyond it: see
    // `a_request_line_too_long_for_the_parser_closes_only_its_connection`).
    for len in [20_000, 65_000] {
        let r = server
            .http
            .get(server.url(&format!("/{}", "a".repeat(len))))
            .send()
            .await
            .unwrap();
        assert!(problem(&r), "{len}: {:?}", r.headers());
        assert!(r.headers().contains_key("x-request-id"), "{len}");
        let (status, body) = status_json(r).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (414, Some("uri_too_long")),
            "{len}"
        );
    }
    // Known paths, wrong methods.
    for (method, path, allow) in [
        ("DELETE", "/ocpi/create-payment-intent", "POST"),
        ("POST", "/healthz", "GET"),
        ("PUT", &config_path("ws-1") as &str, "GET, PATCH"),
        ("GET", "/ocpi/stripe/webhook/ws-1", "POST"),
        ("PATCH", "/api/support/audit", "GET"),
        ("DELETE", "/ocpi/charging-intents/ci-1/cancel", "POST"),
    ] {
        let r = server
            .http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                server.url(path),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.headers().get("allow").and_then(|v| v.to_str().ok()),
            Some(allow),
            "{method} {path}"
        );
        assert!(problem(&r));
        let (status, body) = status_json(r).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (405, Some("method_not_allowed")),
            "{method} {path}"
        );
    }
}

/// A client that sends its headers and one byte of a declared body is answered 408
/// and its connection closed once the body timeout passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_arrive_in_time_is_answered_408_and_the_connection_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let store = Store::fresh(Backend::Sqlite).await;
    let stripe = stripe_ok().await;
    let server = Server::start(
        &store,
        ServerOptions::new(&stripe).env("ROAMPAY_BODY_TIMEOUT_SECS", "1"),
    )
    .await;
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    conn.write_all(
        b"POST /ocpi/create-payment-intent HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        conn.read_to_end(&mut answer),
    )
    .await;
    assert!(read.is_ok(), "the connection was closed by the server");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"request_timeout\""), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
}

/// Everything the server answers on one connection to `bytes`, written in `chunks`
/// pieces, until it closes the connection (or 10 s pass).
async fn answer_to(addr: &str, bytes: &[u8], chunks: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let size = bytes.len().div_ceil(chunks.max(1));
    for piece in bytes.chunks(size) {
        // The server may close early (a refused head): what it answered still counts.
        if conn.write_all(piece).await.is_err() {
            break;
        }
        conn.flush().await.ok();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        conn.read_to_end(&mut answer),
    )
    .await;
    String::from_utf8_lossy(&answer).into_owned()
}

fn statuses(text: &str) -> Vec<&str> {
    text.match_indices("HTTP/1.1 ")
        .map(|(i, _)| &text[i + 9..i + 12])
        .collect()
}

/// Contract v3.5: a request line too long for the HTTP parser (over 64 KiB) is refused
/// by the HTTP layer (400 or 431) and its connection closed, after the requests before
/// it on that connection were answered; other connections go on. The server reads
/// every connection as actix-http does, so how the bytes are cut into segments changes
/// nothing (a private framing scanner once made a whitespace line over 8 KiB swallow
/// the requests after it, depending on the cut).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_line_too_long_for_the_parser_closes_only_its_connection() {
    let store = Store::fresh(Backend::Sqlite).await;
    let stripe = stripe_ok().await;
    let server = Server::start(&store, ServerOptions::new(&stripe)).await;
    let addr = server.base.trim_start_matches("http://").to_string();
    let body = format!("{{\"pad\":\"{}\"}}", "b".repeat(30_000));
    let mut bytes = format!(
        "POST /ocpi/create-payment-intent HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes();
    bytes.extend(format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(100_000)).bytes());
    bytes.extend(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let text = answer_to(&addr, &bytes, 1).await;
    let seen = statuses(&text);
    assert_eq!(seen.first(), Some(&"400"), "the request before: {text}");
    assert!(
        seen.len() == 2 && ["400", "431"].contains(&seen[1]),
        "refused, then closed (the request after it is not read): {seen:?}"
    );
    assert!(
        text.contains("\"code\":\"validation_failed\"")
            || text.contains("application/problem+json")
    );
    let (status, _) = server.get_public("/healthz").await;
    assert_eq!(status, 200, "the next connection is served");

    // A line of spaces over 8 KiB, then two requests: the same answer however cut.
    let mut bytes = vec![b' '; 9_000];
    bytes.extend(b"\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    bytes.extend(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let whole = statuses(&answer_to(&addr, &bytes, 1).await)
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
    assert!(!whole.is_empty(), "the server answers such a connection");
    for chunks in [2, 7, 64] {
        let text = answer_to(&addr, &bytes, chunks).await;
        assert_eq!(statuses(&text), whole, "cut in {chunks}: {text}");
    }
    let (status, _) = server.get_public("/healthz").await;
    assert_eq!(status, 200);
}
