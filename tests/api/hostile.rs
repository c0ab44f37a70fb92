//! Attacks from the review of main (issue "A hostile world"), each reproduced as a
//! test: colliding connector keys, and refusals support must see even after a flood.

use serde_json::json;

use crate::on_both_backends;
use crate::payments::{
    configure, create, deliver, signature, start_with_store, stripe_event, WH_A, WH_B,
};
use crate::support::*;

on_both_backends!(
    connector_ids_with_slashes_do_not_collide_across_workspaces,
    a_signed_cross_workspace_attempt_is_recorded_after_a_flood_of_unsigned_junk,
);

async fn connector_ids_with_slashes_do_not_collide_across_workspaces(b: Backend) {
    let store = Store::fresh(b).await;
    let stripe = stripe_ok().await;
    let server = Server::start(&store, ServerOptions::new(&stripe)).await;
    let cpo = |ws: &str| token("cpo", &[ws], "locations:write");
    // Free connectors: ws-1's "LOC-A" / "E/X" / "1" and ws-2's "LOC-A/E" / "X" / "1"
    // once shared the key "LOC-A/E/X/1".
    for (ws, loc, evse) in [("ws-1", "LOC-A", "E/X"), ("ws-2", "LOC-A%2FE", "X")] {
        let (status, _) = server
            .patch(
                &config_path(ws),
                &admin(ws),
                json!({"allow_guest_access": true}),
            )
            .await;
        assert_eq!(status, 200);
        let mut body = crate::payments::location(0);
        body["evses"][0]["uid"] = json!(evse);
        let r = server
            .http
            .put(server.url(&format!("/api/workspaces/{ws}/locations/{loc}")))
            .bearer_auth(cpo(ws))
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, out) = status_json(r).await;
        assert_eq!(status, 200, "{ws}: {out}");
    }
    for (loc, evse) in [("LOC-A/E", "X"), ("LOC-A", "E/X")] {
        let r = server
            .http
            .post(server.url("/ocpi/create-payment-intent"))
            .json(&json!({"location_id": loc, "evse_uid": evse, "connector_id": "1"}))
            .send()
            .await
            .unwrap();
        let (status, out) = status_json(r).await;
        assert_eq!(status, 201, "{loc} {evse}: {out}");
        assert_eq!(out["status"], "authorized", "free: {out}");
    }
}

async fn a_signed_cross_workspace_attempt_is_recorded_after_a_flood_of_unsigned_junk(b: Backend) {
    let store = Store::fresh(b).await;
    let (_mock, fake, server) = start_with_store(&store, &store.url.clone(), &[]).await;
    configure(&server, "ws-a", "sk_test_51HxWorkspaceAKey1", WH_A).await;
    configure(&server, "ws-b", "sk_test_51HxWorkspaceBKey1", WH_B).await;
    crate::payments::put_location(&server, "ws-b", "LOC-B", 45).await;
    let (_, bi) = create(&server, "LOC-B", "1", None).await;
    let b_pi = fake.set_status(
        bi["payment_intent_id"].as_str().unwrap(),
        "requires_capture",
    );
    // 120 unsigned deliveries to ws-a's URL: more than the hourly cap.
    let junk = br#"{"id":"evt_junk","object":"event"}"#;
    for _ in 0..120 {
        let (status, _) = deliver(&server, "/ocpi/stripe/webhook/ws-a", junk, None).await;
        assert_eq!(status, 400);
    }
    // Then someone holding ws-a's secret reaches for ws-b's PaymentIntent.
    let body = stripe_event("evt_forged_after_flood", &b_pi);
    let now = chrono::Utc::now().timestamp();
    let (status, p) = deliver(
        &server,
        "/ocpi/stripe/webhook/ws-a",
        &body,
        Some(&signature(WH_A, &body, now)),
    )
    .await;
    assert_eq!(
        (status, p["code"].as_str()),
        (403, Some("ownership_mismatch"))
    );
    let audit = server
        .wait_for_audit_where("ws-a", |d| {
            d.iter().any(|e| {
                e["event_type"] == "WebhookRejected"
                    && e["summary"]
                        .as_str()
                        .is_some_and(|s| s.contains("ownership_mismatch"))
            })
        })
        .await;
    let junk_recorded = audit
        .iter()
        .filter(|e| {
            e["event_type"] == "WebhookRejected"
                && e["summary"]
                    .as_str()
                    .is_some_and(|s| s.contains("missing_signature"))
        })
        .count();
    assert_eq!(junk_recorded, 100, "unsigned noise stays capped");
}
