//! Sessions over HTTP: start, complete (capture capped by the hold, 0 releases it),
//! cancel, Stripe faults on capture and cancel, and the session worker.

use serde_json::{json, Value};

use crate::fake_stripe::{FakeStripe, Fault};
use crate::on_both_backends;
use crate::payments::{configure, create, put_location, start, WH_A};
use crate::support::*;

pub fn sessions(ws: &str) -> String {
    token("ocpi-sessions", &[ws], "sessions:write")
}

pub async fn post(server: &Server, path: &str, tok: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = server.http.post(server.url(path)).json(&body);
    if let Some(t) = tok {
        req = req.bearer_auth(t);
    }
    status_json(req.send().await.unwrap()).await
}

/// A configured workspace with LOC-1, and an authorized hold on connector `c`.
pub async fn authorized(
    server: &Server,
    fake: &FakeStripe,
    c: &str,
    setup: bool,
) -> (String, String) {
    if setup {
        configure(server, "ws-1", "sk_test_51HxWorkspaceOneKey", WH_A).await;
        let (status, loc) = put_location(server, "ws-1", "LOC-1", 45).await;
        assert_eq!(status, 200, "{loc}");
    }
    let (status, created) = create(server, "LOC-1", c, None).await;
    assert_eq!(status, 201, "{created}");
    let id = created["charging_intent_id"].as_str().unwrap().to_string();
    let pi = created["payment_intent_id"].as_str().unwrap().to_string();
    fake.set_status(&pi, "requires_capture");
    let (status, body) = post(
        server,
        &format!("/ocpi/charging-intents/{id}/confirm"),
        None,
        json!({}),
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("authorized")),
        "{body}"
    );
    (id, pi)
}

pub fn path(id: &str, step: &str) -> String {
    format!("/ocpi/charging-intents/{id}/{step}")
}

on_both_backends!(
    a_session_starts_completes_and_captures_the_final_amount_once,
    a_capture_above_the_hold_is_capped_and_zero_releases_the_hold,
    cancel_releases_the_hold_and_illegal_steps_are_refused,
    session_steps_need_the_sessions_scope_for_the_intents_workspace,
    a_capture_whose_answer_timed_out_after_stripe_applied_it_is_not_repeated,
    a_capture_stripe_could_not_answer_is_finished_by_the_worker,
    an_intent_stripe_already_reports_captured_completes,
    the_worker_expires_holds_without_a_session,
    a_refused_capture_ends_capture_failed_and_shows_in_payment_health,
    killed_after_stripe_captured_and_before_the_event_the_worker_completes_without_a_second_capture,
    complete_racing_cancel_one_wins,
    a_connector_left_held_by_a_crash_is_freed,
    cancel_faults_end_in_one_release,
    the_worker_flags_holds_close_to_lapsing,
    stripes_capture_before_is_read_and_drives_the_lapse_warning,
);

async fn a_session_starts_completes_and_captures_the_final_amount_once(b: Backend) {
    let (_store, _mock, fake, server) = start(b, &[]).await;
    let (id, pi) = authorized(&server, &fake, "1", true).await;
    let t = sessions("ws-1");
    let (status, body) = post(
        &server,
        &path(&id, "start"),
        Some(&t),
        json!({"ocpi_session_id": "S-1"}),
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("charging")),
        "{body}"
    );
    assert_eq!(body["ocpi_session_id"], "S-1");
    // Busy while charging.
    let (status, _) = create(&server, "LOC-1", "1", None).await;
    assert_eq!(status, 409);

    let (status, body) = post(
        &server,
        &path(&id, "complete"),
        Some(&t),
        json!({"final_amount_cents": 1234, "ocpi_session_id": "S-1"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "completed");
    assert_eq!(body["captured_amount_cents"], 1234);
    assert_eq!(
        fake.applied(),
        vec![("capture".to_string(), pi.clone(), 1234)]
    );
    {
        let st = fake.state.lock().unwrap();
        let (_, _, key, form) = &st.settle_requests[0];
        assert_eq!(
            key.as_deref(),
            Some(format!("roampay:ws-1:{id}:capture").as_str())
        );
        assert_eq!(form["amount_to_capture"], "1234");
    }
    // The same completion again: the same answer, no second capture.
    let (status, again) = post(
        &server,
        &path(&id, "complete"),
        Some(&t),
        json!({"final_amount_cents": 1234, "ocpi_session_id": "S-1"}),
    )
    .await;
    assert_eq!(
        (status, again["captured_amount_cents"].as_i64()),
        (200, Some(1234)),
        "{again}"
    );
    assert_eq!(fake.applied().len(), 1);
    // The connector is free again.
    let (status, next) = create(&server, "LOC-1", "1", None).await;
    assert_eq!(status, 201, "{next}");
    // Support sees the capture in the audit log.
    let entries = server
        .wait_for_audit_where("ws-1", |es| {
            es.iter()
                .any(|e| e["event_type"] == "WorkspaceSessionPaymentCaptured")
        })
        .await;
    assert!(
        entries.iter().any(|e| e["aggregate_id"] == id.as_str()
            && e["summary"].as_str().unwrap().contains("1234 captured")),
        "{entries:?}"
    );
}

async fn a_capture_above_the_hold_is_capped_and_zero_releases_the_hold(b: Backend) {
    let (_store, _mock, fake, server) = start(b, &[]).await;
    let (id, pi) = authorized(&server, &fake, "1", true).await;
    let t = sessions("ws-1");
    let (status, body) = post(
        &server,
        &path(&id, "complete"),
        Some(&t),
        json!({"final_amount_cents": 9000}),
    )
    .await;
    assert_eq!(
        (status, body["captured_amount_cents"].as_i64()),
        (200, Some(5000)),
        "{body}"
    );
    assert_eq!(
        body["final_amount_cents"], 9000,
        "what the session cost is kept"
    );
    assert_eq!(fake.applied(), vec![("capture".to_string(), pi, 5000)]);
    // Support sees what the hold left uncollected, and so does the metric.
    let support = token("support", &["ws-1"], "audit:read");
    let health = eventually("payment-health showing the shortfall", || async {
        let (_, h) = server
            .get("/api/support/workspaces/ws-1/payment-health", &support)
            .await;
        (h["captured_below_cost"] == 1).then_some(h)
    })
    .await;
    assert_eq!(health["uncollected_cents"], 4000, "{health}");
    let audit = server.wait_for_audit("ws-1", 1).await;
    let paid = audit
        .iter()
        .find(|e| e["event_type"] == "WorkspaceSessionPaymentCaptured")
        .expect("the capture is audited");
    assert!(
        paid["summary"]
            .as_str()
            .unwrap()
            .contains("4000 uncollected"),
        "{paid}"
    );
    let listed = server
        .get("/api/support/charging-intents?workspace_id=ws-1", &support)
        .await
        .1;
    assert_eq!(listed["data"][0]["final_amount_cents"], 9000, "{listed}");
    let metric = server
        .metric("roampay_uncollected_cents_total", "currency=\"aud\"")
        .await;
    assert_eq!(metric, 4000.0);

    let (id2, pi2) = authorized(&server, &fake, "2", false).await;
    let (status, body) = post(
        &server,
        &path(&id2, "complete"),
        Some(&t),
        json!({"final_amount_cents": 0}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "completed");
    assert_eq!(body["captured_amount_cents"], 0);
    assert_eq!(fake.applied()[1], ("cancel".to_string(), pi2.clone(), 0));
    assert_eq!(
        fake.state.lock().unwrap().intents[&pi2]["status"],
        "canceled"
    );
    let (status, body) = post(
        &server,
        &path(&id2, "complete"),
        Some(&t),
        json!({"final_amount_cents": -1}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("validation_failed")),
        "{body}"
    );
}

async fn cancel_releases_the_hold_and_illegal_steps_are_refused(b: Backend) {
    let (_store, _mock, fake, server) = start(b, &[]).await;
    let (id, pi) = authorized(&server, &fake, "1", true).await;
    let t = sessions("ws-1");
    let (status, body) = post(&server, &path(&id, "cancel"), Some(&t), json!({})).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("cancelled")),
        "{body}"
    );
    assert_eq!(fake.applied(), vec![("cancel".to_string(), pi, 0)]);
    for (step, body) in [
        ("start", json!({"ocpi_session_id": "S-1"})),
        ("complete", json!({"final_amount_cents": 100})),
    ] {
        let (status, err) = post(&server, &path(&id, step), Some(&t), body).await;
        assert_eq!(status, 409, "{err}");
        assert_eq!(err["code"], "invalid_transition");
        assert!(
            err["detail"].as_str().unwrap().contains("cancelled"),
            "{err}"
        );
    }
    let (status, _) = create(&server, "LOC-1", "1", None).await;
    assert_eq!(status, 201, "the connector is free again");
    let (status, err) = post(&server, &path("nope", "cancel"), Some(&t), json!({})).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (404, Some("charging_intent_not_found"))
    );
}

async fn session_steps_need_the_sessions_scope_for_the_intents_workspace(b: Backend) {
    let (_store, _mock, fake, server) = start(b, &[]).await;
    let (id, _) = authorized(&server, &fake, "1", true).await;
    let body = json!({"ocpi_session_id": "S-1"});
    let (status, err) = post(&server, &path(&id, "start"), None, body.clone()).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (401, Some("unauthenticated"))
    );
    let (status, err) = post(
        &server,
        &path(&id, "start"),
        Some(&token("x", &["ws-1"], "roaming:write")),
        body.clone(),
    )
    .await;
    assert_eq!((status, err["code"].as_str()), (403, Some("forbidden")));
    let (status, err) = post(&server, &path(&id, "start"), Some(&sessions("ws-2")), body).await;
    assert_eq!((status, err["code"].as_str()), (403, Some("forbidden")));
    assert!(fake.applied().is_empty());
}

async fn a_capture_whose_answer_timed_out_after_stripe_applied_it_is_not_repeated(b: Backend) {
    let (_store, _mock, fake, server) = start(b, &[("ROAMPAY_STRIPE_TIMEOUT_MS", "1000")]).await;
    let (id, pi) = authorized(&server, &fake, "1", true).await;
    fake.fault(Fault::ApplyThenTimeout);
    let (status, body) = post(
        &server,
        &path(&id, "complete"),
        Some(&sessions("ws-1")),
        json!({"final_amount_cents": 1500}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "completed");
    assert_eq!(body["captured_amount_cents"], 1500);
    assert_eq!(
        fake.applied(),
        vec![("capture".to_string(), pi, 1500)],
        "one capture"
    );
}

async fn a_capture_stripe_could_not_answer_is_finished_by_the_worker(b: Backend) {
    let (_store, _mock, fake, server) = start(
        b,
        &[
            ("ROAMPAY_STRIPE_MAX_ATTEMPTS", "1"),
            ("ROAMPAY_WORKER_INTERVAL_SECS", "1"),
            ("ROAMPAY_SETTLE_RETRY_SECS", "0"),
        ],
    )
    .await;
    let (id, pi) = authorized(&server, &fake, "1", true).await;
    fake.fault(Fault::ServerError);
    let (status, body) = post(
        &server,
        &path(&id, "complete"),
        Some(&sessions("ws-1")),
        json!({"final_amount_cents": 800}),
    )
    .await;
    assert_eq!(status, 202, "accepted, not yet definite: {body}");
    assert_eq!(body["status"], "authorized");
    assert!(fake.applied().is_empty());
    let last = wait_for_status(&server, &id, "completed").await;
    assert_eq!(last["captured_amount_cents"], 800);
    assert_eq!(fake.applied(), vec![("capture".to_string(), pi, 800)]);
    let keys: Vec<Option<String>> = fake
        .state
        .lock()
        .unwrap()
        .settle_requests
        .iter()
        .map(|r| r.2.clone())
        .collect();
    assert_eq!(
        keys,
        vec![
            Some(format!("roampay:ws-1:{id}:capture")),
            Some(format!("roampay:ws-1:{id}:capture-1"))
        ]
    );
}

async fn an_intent_stripe_already_reports_captured_completes(b: Backend) {
    let (_store, _mock, fake, server) = start(b, &[]).await;
    let (id, pi) = authorized(&server, &fake, "1", true).await;
    {
        let mut st = fake.state.lock().unwrap();
        let p = st.intents.get_mut(&pi).unwrap();
        p["status"] = json!("succeeded");
        p["amount_received"] = json!(4000);
    }
    let (status, body) = post(
        &server,
        &path(&id, "complete"),
        Some(&sessions("ws-1")),
        json!({"final_amount_cents": 4000}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "completed");
    assert_eq!(body["captured_amount_cents"], 4000);
    assert!(fake.applied().is_empty(), "no capture of ours was applied");
}

async fn the_worker_expires_holds_without_a_session(b: Backend) {
    let (_store, _mock, fake, server) = start(
        b,
        &[
            ("ROAMPAY_WORKER_INTERVAL_SECS", "1"),
            ("ROAMPAY_HOLD_TIMEOUT_SECS", "1"),
        ],
    )
    .await;
    let (id, pi) = authorized(&server, &fake, "1", true).await;
    wait_for_status(&server, &id, "expired").await;
    assert_eq!(fake.applied(), vec![("cancel".to_string(), pi, 0)]);
    let (status, _) = create(&server, "LOC-1", "1", None).await;
    assert_eq!(status, 201, "the connector is free again");
}

async fn a_refused_capture_ends_capture_failed_and_shows_in_payment_health(b: Backend) {
    let (_store, _mock, fake, server) = start(b, &[]).await;
    let (done, _) = authorized(&server, &fake, "1", true).await;
    let t = sessions("ws-1");
    let (status, _) = post(
        &server,
        &path(&done, "complete"),
        Some(&t),
        json!({"final_amount_cents": 100}),
    )
    .await;
    assert_eq!(status, 200);
    let (refused, _) = authorized(&server, &fake, "2", false).await;
    fake.fault(Fault::Refuse("charge_expired_for_capture"));
    let (status, body) = post(
        &server,
        &path(&refused, "complete"),
        Some(&t),
        json!({"final_amount_cents": 100}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "capture_failed");
    assert_eq!(body["failure_code"], "charge_expired_for_capture");
    assert!(
        fake.applied().len() == 1,
        "only the first capture was applied"
    );
    // A forged webhook, for the rejected count.
    let (status, _) = crate::payments::deliver(
        &server,
        "/ocpi/stripe/webhook/ws-1",
        b"{}",
        Some("t=1,v1=00"),
    )
    .await;
    assert_eq!(status, 400);

    let support = token("support", &["ws-1"], "audit:read");
    let health = crate::support::eventually("the payment-health view catching up", || async {
        let (status, body) = server
            .get("/api/support/workspaces/ws-1/payment-health", &support)
            .await;
        assert_eq!(status, 200, "{body}");
        // Each projection has its own checkpoint: wait for all three the view reads.
        let caught_up = body["intents_by_status"]["capture_failed"] == 1
            && body["webhooks_rejected_24h"] == 1
            && body["credential_health"]["status"] == "valid";
        caught_up.then_some(body)
    })
    .await;
    assert_eq!(health["credential_health"]["status"], "valid", "{health}");
    assert_eq!(health["credential_health"]["credential_version"], 1);
    assert_eq!(health["intents_by_status"]["completed"], 1, "{health}");
    assert_eq!(health["intents_by_status"]["capture_failed"], 1, "{health}");
    assert_eq!(health["webhooks_rejected_24h"], 1, "{health}");
    assert_eq!(health["settlements_pending"], 0);
    assert!(health["billing"].is_null(), "billing is off: {health}");
    assert_eq!(
        health["recent_failures"][0]["charging_intent_id"],
        refused.as_str()
    );
    assert_eq!(
        health["recent_failures"][0]["failure_code"],
        "charge_expired_for_capture"
    );
    let (status, _) = server
        .get(
            "/api/support/workspaces/ws-1/payment-health",
            &token("s", &["ws-2"], "audit:read"),
        )
        .await;
    assert_eq!(status, 403);
}

async fn killed_after_stripe_captured_and_before_the_event_the_worker_completes_without_a_second_capture(
    b: Backend,
) {
    let store = Store::fresh(b).await;
    let (mock, fake) = FakeStripe::start().await;
    let mut server = Server::start(
        &store,
        ServerOptions::new(&mock)
            .env("ROAMPAY_STRIPE_TIMEOUT_MS", "120000")
            .env("ROAMPAY_SETTLE_RETRY_SECS", "3600"),
    )
    .await;
    let (id, pi) = authorized(&server, &fake, "1", true).await;
    fake.fault(Fault::ApplyThenHang);
    let (url, t) = (server.url(&path(&id, "complete")), sessions("ws-1"));
    let http = server.http.clone();
    let pending = tokio::spawn(async move {
        http.post(url)
            .bearer_auth(t)
            .json(&json!({"final_amount_cents": 2100}))
            .send()
            .await
    });
    crate::support::eventually("the capture reaching Stripe", || async {
        (!fake.applied().is_empty()).then_some(())
    })
    .await;
    assert_eq!(
        fake.applied(),
        vec![("capture".to_string(), pi.clone(), 2100)],
        "Stripe captured"
    );
    server.kill_hard();
    assert!(
        pending.await.unwrap().is_err(),
        "the process died before answering"
    );
    let db = store.db().await;
    let stored: Vec<String> = roampay_projections::on_db!(&db, pool => sqlx::query_scalar(
        "SELECT event_type FROM events WHERE aggregate_id = $1 ORDER BY sequence")
        .bind(&id).fetch_all(pool).await.unwrap());
    assert_eq!(
        stored.last().map(String::as_str),
        Some("SessionCompletionRequested"),
        "{stored:?}"
    );

    let server = Server::start(
        &store,
        ServerOptions::new(&mock)
            .env("ROAMPAY_WORKER_INTERVAL_SECS", "1")
            .env("ROAMPAY_SETTLE_RETRY_SECS", "0"),
    )
    .await;
    let last = wait_for_status(&server, &id, "completed").await;
    assert_eq!(last["captured_amount_cents"], 2100);
    assert_eq!(fake.applied().len(), 1, "no second capture");
    let keys: Vec<Option<String>> = fake
        .state
        .lock()
        .unwrap()
        .settle_requests
        .iter()
        .map(|r| r.2.clone())
        .collect();
    assert!(
        keys.iter()
            .all(|k| k.as_deref() == Some(format!("roampay:ws-1:{id}:capture").as_str())),
        "{keys:?}"
    );
    let (status, _) = create(&server, "LOC-1", "1", None).await;
    assert_eq!(status, 201, "the connector is free again");
}

async fn complete_racing_cancel_one_wins(b: Backend) {
    let (_store, _mock, fake, server) = start(b, &[]).await;
    let (id, _) = authorized(&server, &fake, "1", true).await;
    let t = sessions("ws-1");
    let (pc, px) = (path(&id, "complete"), path(&id, "cancel"));
    let (complete, cancel) = tokio::join!(
        post(&server, &pc, Some(&t), json!({"final_amount_cents": 300})),
        post(&server, &px, Some(&t), json!({})),
    );
    let statuses = [complete.0, cancel.0];
    assert!(
        statuses.contains(&200) && statuses.contains(&409),
        "{complete:?} {cancel:?}"
    );
    let applied = fake.applied();
    assert_eq!(applied.len(), 1, "one Stripe action: {applied:?}");
    let end = crate::payments::intent(&server, &id).await;
    if complete.0 == 200 {
        assert_eq!(
            (end["status"].as_str(), applied[0].0.as_str()),
            (Some("completed"), "capture")
        );
    } else {
        assert_eq!(
            (end["status"].as_str(), applied[0].0.as_str()),
            (Some("cancelled"), "cancel")
        );
    }
}

async fn a_connector_left_held_by_a_crash_is_freed(b: Backend) {
    use roampay::domain::connector_reservation::{ConnectorCommand, ConnectorReservation};
    use roampay::infra::store::{Aggregates, Metadata};
    let (store, _mock, _fake, server) = start(b, &[]).await;
    configure(&server, "ws-1", "sk_test_51HxWorkspaceOneKey", WH_A).await;
    put_location(&server, "ws-1", "LOC-1", 45).await;
    // What a process that died between the reservation and the intent leaves behind.
    let db = store.db().await;
    let connectors = Aggregates::<ConnectorReservation>::new(
        &db,
        (),
        roampay::infra::store::Memory {
            capacity: 100,
            idle: std::time::Duration::from_secs(600),
        },
    );
    let meta = Metadata {
        actor: "test".into(),
        request_id: String::new(),
    };
    for (connector, ghost, age) in [("1", "ghost-old", 10), ("2", "ghost-new", 0)] {
        let cmd = ConnectorCommand::Reserve {
            workspace_id: "ws-1".into(),
            location_id: "LOC-1".into(),
            evse_uid: "EVSE-1".into(),
            connector_id: connector.into(),
            charging_intent_id: ghost.into(),
            at: chrono::Utc::now() - chrono::Duration::minutes(age),
        };
        connectors
            .execute(&format!("LOC-1/EVSE-1/{connector}"), cmd, &meta)
            .await
            .unwrap();
    }
    let (status, body) = create(&server, "LOC-1", "1", None).await;
    assert_eq!(
        status, 201,
        "a reservation whose intent never appeared is released: {body}"
    );
    let (status, body) = create(&server, "LOC-1", "2", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("connector_busy")),
        "a fresh one may still be in flight"
    );
}

async fn wait_for_status(server: &Server, id: &str, want: &str) -> Value {
    crate::support::eventually(&format!("intent {id} becoming {want}"), || async {
        let last = crate::payments::intent(server, id).await;
        (last["status"] == want).then_some(last)
    })
    .await
}

async fn cancel_faults_end_in_one_release(b: Backend) {
    let (_store, _mock, fake, server) = start(
        b,
        &[
            ("ROAMPAY_STRIPE_TIMEOUT_MS", "1000"),
            ("ROAMPAY_STRIPE_MAX_ATTEMPTS", "1"),
            ("ROAMPAY_WORKER_INTERVAL_SECS", "1"),
            ("ROAMPAY_SETTLE_RETRY_SECS", "0"),
        ],
    )
    .await;
    let t = sessions("ws-1");
    // Applied, answer lost: the PaymentIntent read afterwards shows it canceled.
    let (first, pi1) = authorized(&server, &fake, "1", true).await;
    fake.fault(Fault::ApplyThenTimeout);
    let (status, body) = post(&server, &path(&first, "cancel"), Some(&t), json!({})).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("cancelled")),
        "{body}"
    );
    // A 500: accepted, then finished by the worker with the next attempt's key.
    let (second, pi2) = authorized(&server, &fake, "2", false).await;
    fake.fault(Fault::ServerError);
    let (status, body) = post(&server, &path(&second, "cancel"), Some(&t), json!({})).await;
    assert_eq!(status, 202, "{body}");
    wait_for_status(&server, &second, "cancelled").await;
    assert_eq!(
        fake.applied(),
        vec![
            ("cancel".to_string(), pi1, 0),
            ("cancel".to_string(), pi2, 0)
        ],
        "one release each"
    );
}

async fn the_worker_flags_holds_close_to_lapsing(b: Backend) {
    let (_store, _mock, fake, server) = start(
        b,
        &[
            ("ROAMPAY_WORKER_INTERVAL_SECS", "1"),
            ("ROAMPAY_HOLD_LIFETIME_SECS", "3600"),
            ("ROAMPAY_HOLD_WARNING_SECS", "3600"),
        ],
    )
    .await;
    let (id, _) = authorized(&server, &fake, "1", true).await;
    let entries = server
        .wait_for_audit_where("ws-1", |es| {
            es.iter()
                .any(|e| e["event_type"] == "HoldExpiryApproaching")
        })
        .await;
    assert!(entries.iter().any(|e| e["aggregate_id"] == id.as_str()));
    let support = token("support", &["ws-1"], "audit:read");
    let (_, health) = server
        .get("/api/support/workspaces/ws-1/payment-health", &support)
        .await;
    assert_eq!(health["holds_lapsing_soon"], 1, "{health}");
    // Flagged once, not every round: two more rounds of the worker add nothing.
    server.wait_for_job_rounds("session_worker", 2.0).await;
    let entries = server.wait_for_audit("ws-1", 1).await;
    assert_eq!(
        entries
            .iter()
            .filter(|e| e["event_type"] == "HoldExpiryApproaching")
            .count(),
        1
    );
}

/// Two instances on one PostgreSQL: one of them runs the session worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_session_worker_leads_when_instances_share_postgres() {
    let store = Store::fresh(Backend::Postgres).await;
    let (mock, fake) = FakeStripe::start().await;
    let opts = || {
        ServerOptions::new(&mock)
            .env("ROAMPAY_WORKER_INTERVAL_SECS", "1")
            .env("ROAMPAY_HOLD_TIMEOUT_SECS", "1")
    };
    let a = Server::start(&store, opts()).await;
    let b = Server::start(&store, opts()).await;
    let (id, pi) = authorized(&a, &fake, "1", true).await;
    wait_for_status(&b, &id, "expired").await;
    // Two more rounds of whichever instance leads; the other counts none.
    let before = worker_rounds(&a).await + worker_rounds(&b).await;
    crate::support::eventually("two more worker rounds", || async {
        let now = worker_rounds(&a).await + worker_rounds(&b).await;
        (now >= before + 2.0).then_some(())
    })
    .await;
    let leads = |s: &Server| {
        s.logs()
            .matches("this instance runs the session worker")
            .count()
    };
    assert_eq!(leads(&a) + leads(&b), 1, "exactly one leader");
    assert_eq!(fake.applied(), vec![("cancel".to_string(), pi, 0)]);
}

async fn worker_rounds(s: &Server) -> f64 {
    s.metric(
        "roampay_background_job_rounds_total",
        "job=\"session_worker\"",
    )
    .await
}

async fn stripes_capture_before_is_read_and_drives_the_lapse_warning(b: Backend) {
    let (_store, _mock, fake, server) = start(b, &[("ROAMPAY_WORKER_INTERVAL_SECS", "1")]).await;
    configure(&server, "ws-1", "sk_test_51HxWorkspaceOneKey", WH_A).await;
    put_location(&server, "ws-1", "LOC-1", 45).await;
    let (_, created) = create(&server, "LOC-1", "1", None).await;
    let id = created["charging_intent_id"].as_str().unwrap().to_string();
    let pi_id = created["payment_intent_id"].as_str().unwrap().to_string();
    // A Visa hold for a merchant-initiated payment lapses sooner than the 7 days the
    // configuration assumes: here in two hours, within the one-day warning.
    let lapses = chrono::Utc::now().timestamp() + 7200;
    let mut pi = fake.set_status(&pi_id, "requires_capture");
    pi["latest_charge"] = json!("ch_fake1"); // what a webhook carries: not expanded
    fake.update(
        &pi_id,
        json!({"latest_charge": {"id": "ch_fake1", "object": "charge",
        "payment_method_details": {"type": "card", "card": {"capture_before": lapses}}}}),
    );
    let body = crate::payments::stripe_event("evt_authorized", &pi);
    let sig = crate::payments::signature(WH_A, &body, chrono::Utc::now().timestamp());
    let (s, out) =
        crate::payments::deliver(&server, "/ocpi/stripe/webhook/ws-1", &body, Some(&sig)).await;
    assert_eq!(
        (s, out["outcome"].as_str()),
        (200, Some("applied")),
        "{out}"
    );

    let expected = chrono::DateTime::from_timestamp(lapses, 0).unwrap();
    let entries = server
        .wait_for_audit_where("ws-1", |es| {
            es.iter()
                .any(|e| e["event_type"] == "HoldExpiryApproaching")
        })
        .await;
    assert!(entries
        .iter()
        .any(|e| e["event_type"] == "HoldDeadlineRead"));
    let got = crate::payments::intent(&server, &id).await;
    let shown: chrono::DateTime<chrono::Utc> =
        got["capture_before"].as_str().unwrap().parse().unwrap();
    assert_eq!(shown, expected, "{got}");
    let support = token("support", &["ws-1"], "audit:read");
    let health = eventually("the lapsing hold in payment-health", || async {
        let (_, h) = server
            .get("/api/support/workspaces/ws-1/payment-health", &support)
            .await;
        (h["holds_lapsing_soon"] == 1).then_some(h)
    })
    .await;
    assert_eq!(health["holds_lapsing_soon"], 1);
    let retrieves = fake.state.lock().unwrap().retrieves.len();
    server.wait_for_job_rounds("session_worker", 2.0).await;
    assert_eq!(
        fake.state.lock().unwrap().retrieves.len(),
        retrieves,
        "read once"
    );
}
