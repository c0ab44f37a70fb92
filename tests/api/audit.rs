//! The support audit view.

use serde_json::json;

use crate::on_both_backends;
use crate::support::*;

on_both_backends!(every_change_is_audited_by_workspace_and_actor_with_filters_and_pages);

async fn every_change_is_audited_by_workspace_and_actor_with_filters_and_pages(b: Backend) {
    let store = Store::fresh(b).await;
    let stripe = stripe_ok().await;
    let server = Server::start(&store, ServerOptions::new(&stripe)).await;
    let r = server
        .http
        .patch(server.url(&config_path("ws-1")))
        .bearer_auth(admin("ws-1"))
        .header("x-request-id", "req-save-1")
        .json(&good_creds())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    server
        .patch(
            &config_path("ws-1"),
            &token("bob@example.com", &["ws-1"], "roaming:write"),
            json!({"pre_auth_cents": 6000}),
        )
        .await;
    server
        .patch(
            &config_path("ws-2"),
            &admin("ws-2"),
            json!({"allow_guest_access": true}),
        )
        .await;

    server.wait_for_audit("ws-2", 1).await;
    let entries = server.wait_for_audit("ws-1", 3).await;
    let types: Vec<&str> = entries
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "WorkspaceOcpiConfigUpdated",
            "WorkspaceStripeCredentialsValidated",
            "WorkspaceStripeCredentialsUpdated"
        ],
        "newest first"
    );
    let saved = &entries[2];
    assert_eq!(saved["actor"], "alice@example.com");
    assert_eq!(saved["request_id"], "req-save-1");
    assert_eq!(saved["workspace_id"], "ws-1");
    assert_eq!(saved["aggregate_type"], "WorkspaceStripeProfile");
    assert!(
        saved["summary"].as_str().unwrap().contains("version 1"),
        "{saved}"
    );
    assert_eq!(entries[0]["actor"], "bob@example.com");
    assert!(entries[0]["summary"]
        .as_str()
        .unwrap()
        .contains("pre_auth_cents=6000"));

    let support = token("support", &["*"], "audit:read");
    let (_, by_actor) = server
        .get("/api/support/audit?actor=bob@example.com", &support)
        .await;
    assert_eq!(by_actor["data"].as_array().unwrap().len(), 1);
    let (_, by_type) = server
        .get(
            "/api/support/audit?workspace_id=ws-1&event_type=WorkspaceStripeCredentialsUpdated",
            &support,
        )
        .await;
    assert_eq!(by_type["data"].as_array().unwrap().len(), 1);

    let (_, page1) = server.get("/api/support/audit?limit=2", &support).await;
    assert_eq!(page1["data"].as_array().unwrap().len(), 2);
    assert_eq!(page1["has_more"], true);
    let last = page1["data"][1]["id"].as_str().unwrap();
    let (_, page2) = server
        .get(
            &format!("/api/support/audit?limit=2&starting_after={last}"),
            &support,
        )
        .await;
    let ids: Vec<&str> = page2["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids
        .iter()
        .all(|id| id.parse::<i64>().unwrap() < last.parse::<i64>().unwrap()));
    assert_eq!(page2["has_more"], false);

    let (_, future) = server
        .get("/api/support/audit?from=2999-01-01T00:00:00Z", &support)
        .await;
    assert_eq!(future["data"].as_array().unwrap().len(), 0);
    let (_, past) = server
        .get(
            "/api/support/audit?from=2000-01-01T00:00:00Z&to=2999-01-01T00:00:00Z",
            &support,
        )
        .await;
    assert_eq!(past["data"].as_array().unwrap().len(), 4);

    let (status, body) = server.get("/api/support/audit?limit=201", &support).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_parameter"))
    );
    let (status, _) = server.get("/api/support/audit", &admin("ws-1")).await;
    assert_eq!(status, 403, "audit:read needed");
    let ws1_support = token("support", &["ws-1"], "audit:read");
    let (_, own) = server.get("/api/support/audit", &ws1_support).await;
    assert!(
        own["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["workspace_id"] == "ws-1"),
        "only its workspaces"
    );
    let (status, _) = server
        .get("/api/support/audit?workspace_id=ws-2", &ws1_support)
        .await;
    assert_eq!(status, 403);
}
