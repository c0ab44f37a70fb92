//! Support finds any payment by what a driver or Stripe tells them, newest first by
//! creation; strict parameters; CSV that says what the JSON says; and which
//! workspaces cannot take payments.

use serde_json::{json, Value};

use crate::on_both_backends;
use crate::payments::{configure, create, put_location, start_with_store, WH_A, WH_B};
use crate::sessions::{post, sessions};
use crate::support::*;

on_both_backends!(
    every_filter_finds_exactly_its_intents_newest_first,
    unknown_parameters_and_bad_values_are_refused_by_every_list,
    csv_says_what_the_json_says,
    the_workspaces_that_cannot_take_payments_are_listed_with_why,
);

fn support() -> String {
    token("support", &["*"], "audit:read")
}

async fn list(server: &Server, query: &str) -> Value {
    let (status, body) = server
        .get(
            &format!("/api/support/charging-intents?{query}"),
            &support(),
        )
        .await;
    assert_eq!(status, 200, "{query}: {body}");
    body
}

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["charging_intent_id"].as_str().unwrap().to_string())
        .collect()
}

/// Four intents on connectors 1 and 2 of two locations, every other one created with
/// an Idempotency-Key (whose ids are not time-ordered); returns them oldest first.
async fn four_intents(server: &Server) -> Vec<Value> {
    let mut out = vec![];
    for (i, (loc, conn)) in [
        ("LOC-1", "1"),
        ("LOC-1", "2"),
        ("LOC-2", "1"),
        ("LOC-2", "2"),
    ]
    .into_iter()
    .enumerate()
    {
        let key = format!(
            "{:08x}-support-search-{i}",
            0xffff_ffffu32 - i as u32 * 0x1111_1111
        );
        let key = (i % 2 == 0).then_some(key);
        let (status, created) = create(server, loc, conn, key.as_deref()).await;
        assert_eq!(status, 201, "{created}");
        out.push(created);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    out
}

async fn every_filter_finds_exactly_its_intents_newest_first(b: Backend) {
    let store = Store::fresh(b).await;
    let (_mock, fake, server) = start_with_store(&store, &store.url.clone(), &[]).await;
    configure(&server, "ws-1", "sk_test_51HxWorkspaceOneKey", WH_A).await;
    put_location(&server, "ws-1", "LOC-1", 45).await;
    put_location(&server, "ws-1", "LOC-2", 45).await;
    let created = four_intents(&server).await;
    let id = |i: usize| {
        created[i]["charging_intent_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // The third is authorized and charging under an OCPI session.
    let pi = created[2]["payment_intent_id"].as_str().unwrap();
    fake.set_status(pi, "requires_capture");
    let (status, _) = post(
        &server,
        &format!("/ocpi/charging-intents/{}/confirm", id(2)),
        None,
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    let start = format!("/ocpi/charging-intents/{}/start", id(2));
    let (status, _) = post(
        &server,
        &start,
        Some(&sessions("ws-1")),
        json!({"ocpi_session_id": "SESS-77"}),
    )
    .await;
    assert_eq!(status, 200);

    let newest_first: Vec<String> = (0..4).rev().map(id).collect();
    let all = eventually("all four projected, the third charging", || async {
        let page = list(&server, "workspace_id=ws-1").await;
        (ids(&page) == newest_first && page["data"][1]["status"] == "charging").then_some(page)
    })
    .await;
    let reference = all["data"][1]["authorization_reference"]
        .as_str()
        .unwrap()
        .to_string();
    for (query, want) in [
        (format!("payment_intent_id={pi}"), vec![id(2)]),
        ("ocpi_session_id=SESS-77".to_string(), vec![id(2)]),
        (format!("authorization_reference={reference}"), vec![id(2)]),
        ("status=charging".to_string(), vec![id(2)]),
        (
            "status=pending_payment&workspace_id=ws-1".to_string(),
            vec![id(3), id(1), id(0)],
        ),
        ("payment_intent_id=pi_nope".to_string(), vec![]),
    ] {
        assert_eq!(ids(&list(&server, &query).await), want, "{query}");
    }
    // Created between the second and the third.
    let created_at = |i: usize| {
        all["data"][3 - i]["created_at"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let enc = |t: String| t.replace('+', "%2B");
    let q = format!(
        "created_from={}&created_to={}",
        enc(created_at(1)),
        enc(created_at(2))
    );
    assert_eq!(ids(&list(&server, &q).await), vec![id(2), id(1)], "{q}");
    // Pages follow the same order.
    let page1 = list(&server, "limit=3").await;
    assert_eq!(
        (ids(&page1), page1["has_more"].as_bool()),
        (newest_first[..3].to_vec(), Some(true))
    );
    let page2 = list(
        &server,
        &format!("limit=3&starting_after={}", newest_first[2]),
    )
    .await;
    assert_eq!(
        (ids(&page2), page2["has_more"].as_bool()),
        (vec![id(0)], Some(false))
    );
}

async fn unknown_parameters_and_bad_values_are_refused_by_every_list(b: Backend) {
    let store = Store::fresh(b).await;
    let stripe = stripe_ok().await;
    let server = Server::start(&store, ServerOptions::new(&stripe)).await;
    for (path, code) in [
        (
            "/api/support/charging-intents?payment_intent_idd=pi_1",
            "unknown_parameter",
        ),
        (
            "/api/support/charging-intents?status=bogus",
            "invalid_parameter",
        ),
        (
            "/api/support/charging-intents?created_from=yesterday",
            "invalid_parameter",
        ),
        ("/api/support/charging-intents?limit=0", "invalid_parameter"),
        (
            "/api/support/charging-intents?limit=201",
            "invalid_parameter",
        ),
        (
            "/api/support/charging-intents?status=charging&status=completed",
            "invalid_parameter",
        ),
        ("/api/support/audit?workspace=ws-1", "unknown_parameter"),
        ("/api/support/audit?to=tomorrow", "invalid_parameter"),
        ("/api/support/workspaces?health=broken", "invalid_parameter"),
        (
            "/api/support/workspaces?workspace_id=ws-1",
            "unknown_parameter",
        ),
    ] {
        let (status, body) = server.get(path, &support()).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some(code)),
            "{path}: {body}"
        );
        if code == "unknown_parameter" {
            assert!(
                body["detail"].as_str().unwrap().contains("limit"),
                "names what it takes"
            );
        }
    }
}

async fn csv_of(server: &Server, path: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let r = server
        .http
        .get(server.url(path))
        .bearer_auth(support())
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/csv"), "{ct}");
    let text = r.text().await.unwrap();
    assert!(text.contains("\r\n"), "RFC 4180 line ends");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    let rows = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect();
    (header, rows)
}

/// The CSV rows are the JSON entries: every field, nested objects as JSON text.
fn same(json: &Value, header: &[String], rows: &[Vec<String>]) {
    let data = json["data"].as_array().unwrap();
    assert_eq!(rows.len(), data.len());
    let first = data[0].as_object().unwrap();
    let mut keys: Vec<&String> = first.keys().collect();
    keys.sort();
    let mut head: Vec<&String> = header.iter().collect();
    head.sort();
    assert_eq!(head, keys, "the header row is the JSON field names");
    for (entry, row) in data.iter().zip(rows) {
        for (name, cell) in header.iter().zip(row) {
            let want = match &entry[name] {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            assert_eq!(cell, &want, "{name}");
        }
    }
}

async fn csv_says_what_the_json_says(b: Backend) {
    let store = Store::fresh(b).await;
    let (_mock, fake, server) = start_with_store(&store, &store.url.clone(), &[]).await;
    configure(&server, "ws-1", "sk_test_51HxWorkspaceOneKey", WH_A).await;
    put_location(&server, "ws-1", "LOC-1", 45).await;
    put_location(&server, "ws-1", "LOC-2", 45).await;
    let created = four_intents(&server).await;
    // A decline gives one intent a nested last_payment_error.
    let pi = created[0]["payment_intent_id"].as_str().unwrap();
    fake.update(pi, json!({"last_payment_error": {"code": "card_declined", "decline_code": "insufficient_funds", "message": "Your card has insufficient funds, \"really\"."}}));
    let id = created[0]["charging_intent_id"].as_str().unwrap();
    post(
        &server,
        &format!("/ocpi/charging-intents/{id}/confirm"),
        None,
        json!({}),
    )
    .await;
    let json = eventually("the decline projected", || async {
        let page = list(&server, "workspace_id=ws-1").await;
        (page["data"].as_array().unwrap().len() == 4
            && !page["data"][3]["last_payment_error"].is_null())
        .then_some(page)
    })
    .await;
    let (header, rows) = csv_of(&server, "/api/support/charging-intents?workspace_id=ws-1").await;
    same(&json, &header, &rows);
    let (_, audit) = server
        .get("/api/support/audit?workspace_id=ws-1", &support())
        .await;
    let (header, rows) = csv_of(&server, "/api/support/audit?workspace_id=ws-1").await;
    same(&audit, &header, &rows);
    let (_, ws) = server.get("/api/support/workspaces", &support()).await;
    let (header, rows) = csv_of(&server, "/api/support/workspaces").await;
    same(&ws, &header, &rows);
}

async fn the_workspaces_that_cannot_take_payments_are_listed_with_why(b: Backend) {
    let store = Store::fresh(b).await;
    let (_mock, fake, server) = start_with_store(&store, &store.url.clone(), &[]).await;
    configure(&server, "ws-a", "sk_test_51HxWorkspaceAKey1", WH_A).await;
    configure(&server, "ws-b", "sk_test_51HxWorkspaceBKey1", WH_B).await;
    fake.revoke("sk_test_51HxWorkspaceCKey1");
    let (status, _) = server
        .patch(
            &config_path("ws-c"),
            &admin("ws-c"),
            creds(
                "pk_test_51HxPublishableKey",
                "sk_test_51HxWorkspaceCKey1",
                WH_A,
            ),
        )
        .await;
    assert_eq!(status, 200);
    let all = eventually("three workspaces listed, ws-c refused", || async {
        let (status, body) = server.get("/api/support/workspaces", &support()).await;
        assert_eq!(status, 200, "{body}");
        let data = body["data"].as_array().unwrap();
        (data.len() == 3 && data[2]["health"]["status"] == "invalid").then_some(body)
    })
    .await;
    let names: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["workspace_id"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["ws-a", "ws-b", "ws-c"]);
    let (_, broken) = server
        .get("/api/support/workspaces?health=invalid", &support())
        .await;
    let broken = broken["data"].as_array().unwrap().clone();
    assert_eq!(broken.len(), 1, "{broken:?}");
    let w = &broken[0];
    assert_eq!(w["workspace_id"], "ws-c");
    assert_eq!(w["payment_ready"], false);
    assert_eq!(w["health"]["status"], "invalid");
    assert_eq!(w["health"]["failure_code"], "authentication_failed");
    assert_eq!(w["webhook"]["status"], "unverified");
    assert_eq!(all["data"][0]["payment_ready"], true);
    // Paging, and a token of one workspace sees that one only.
    let (_, page) = server
        .get("/api/support/workspaces?limit=2", &support())
        .await;
    assert_eq!(page["has_more"], true);
    let (_, rest) = server
        .get(
            "/api/support/workspaces?limit=2&starting_after=ws-b",
            &support(),
        )
        .await;
    assert_eq!(rest["data"][0]["workspace_id"], "ws-c");
    let (_, own) = server
        .get(
            "/api/support/workspaces",
            &token("support", &["ws-b"], "audit:read"),
        )
        .await;
    let own: Vec<&str> = own["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["workspace_id"].as_str().unwrap())
        .collect();
    assert_eq!(own, vec!["ws-b"]);
}
