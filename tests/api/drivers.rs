//! Drivers and their intents (contract v2): cancelling one's own intent before
//! charging, pre-authorizations never paid expiring, and the cap on guests' open
//! intents.

use serde_json::{json, Value};

use crate::fake_stripe::FakeStripe;
use crate::on_both_backends;
use crate::payments::{configure, create, put_location, start, WH_A};
use crate::support::*;

on_both_backends!(
    the_driver_who_created_an_intent_may_cancel_it_before_charging,
    an_intent_never_paid_expires_and_frees_its_connector,
    guests_have_a_cap_on_intents_waiting_for_payment,
);

/// `POST /ocpi/create-payment-intent` as a driver with a token.
async fn create_as(server: &Server, sub: &str, location: &str, connector: &str) -> (u16, Value) {
    let r = server
        .http
        .post(server.url("/ocpi/create-payment-intent"))
        .bearer_auth(token(sub, &["ws-1"], "driver"))
        .json(&json!({"location_id": location, "evse_uid": "EVSE-1", "connector_id": connector}))
        .send()
        .await
        .unwrap();
    status_json(r).await
}

async fn cancel(
    server: &Server,
    id: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = server
        .http
        .post(server.url(&format!("/ocpi/charging-intents/{id}/cancel")));
    if let Some(t) = bearer {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    status_json(r.send().await.unwrap()).await
}

async fn the_driver_who_created_an_intent_may_cancel_it_before_charging(b: Backend) {
    let (_store, _mock, fake, server) = start(b, &[]).await;
    configure(&server, "ws-1", "sk_test_51HxWorkspaceOneKey", WH_A).await;
    put_location(&server, "ws-1", "LOC-1", 45).await;

    // A guest proves the intent is theirs with the PaymentIntent's client secret.
    let (_, guest) = create(&server, "LOC-1", "1", None).await;
    let id = guest["charging_intent_id"].as_str().unwrap();
    let (s, p) = cancel(&server, id, None, None).await;
    assert_eq!(
        (s, p["code"].as_str()),
        (401, Some("unauthenticated")),
        "{p}"
    );
    let wrong = json!({"client_secret": "pi_fake0001_secret_guessed"});
    let (s, p) = cancel(&server, id, None, Some(wrong)).await;
    assert_eq!((s, p["code"].as_str()), (403, Some("forbidden")), "{p}");
    let right = json!({"client_secret": guest["client_secret"]});
    let (s, got) = cancel(&server, id, None, Some(right.clone())).await;
    assert_eq!(
        (s, got["status"].as_str()),
        (200, Some("cancelled")),
        "{got}"
    );
    let pi = guest["payment_intent_id"].as_str().unwrap().to_string();
    assert_eq!(
        fake.applied(),
        vec![("cancel".to_string(), pi, 0)],
        "released in Stripe"
    );
    let (s, again) = create(&server, "LOC-1", "1", None).await;
    assert_eq!(s, 201, "the connector is free again: {again}");
    let (s, p) = cancel(&server, id, None, Some(right)).await;
    assert_eq!(
        (s, p["code"].as_str()),
        (409, Some("invalid_transition")),
        "{p}"
    );

    // A driver with a token: only the one who created it.
    let (s, mine) = create_as(&server, "driver-1", "LOC-1", "2").await;
    assert_eq!(s, 201, "{mine}");
    let id = mine["charging_intent_id"].as_str().unwrap();
    let other = token("driver-2", &["ws-1"], "driver");
    let (s, p) = cancel(&server, id, Some(&other), None).await;
    assert_eq!((s, p["code"].as_str()), (403, Some("forbidden")), "{p}");
    let elsewhere = token("driver-1", &["ws-2"], "driver");
    let (s, _) = cancel(&server, id, Some(&elsewhere), None).await;
    assert_eq!(s, 403, "a token for another workspace");
    assert_eq!(
        crate::payments::intent(&server, id).await["status"],
        "pending_payment"
    );
    let own = token("driver-1", &["ws-1"], "driver");
    let (s, got) = cancel(&server, id, Some(&own), None).await;
    assert_eq!(
        (s, got["status"].as_str()),
        (200, Some("cancelled")),
        "{got}"
    );

    // Once charging has started, only the session module may cancel.
    let (_, started) = create_as(&server, "driver-1", "LOC-1", "2").await;
    let id = started["charging_intent_id"].as_str().unwrap();
    fake.set_status(
        started["payment_intent_id"].as_str().unwrap(),
        "requires_capture",
    );
    let sessions = token("ocpi", &["ws-1"], "sessions:write");
    let r = server
        .http
        .post(server.url(&format!("/ocpi/charging-intents/{id}/confirm")))
        .bearer_auth(&own)
        .send()
        .await
        .unwrap();
    assert_eq!(status_json(r).await.1["status"], "authorized");
    let r = server
        .http
        .post(server.url(&format!("/ocpi/charging-intents/{id}/start")))
        .bearer_auth(&sessions)
        .json(&json!({"ocpi_session_id": "S-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, p) = cancel(&server, id, Some(&own), None).await;
    assert_eq!(
        (s, p["code"].as_str()),
        (409, Some("invalid_transition")),
        "{p}"
    );
    let (s, got) = cancel(&server, id, Some(&sessions), None).await;
    assert_eq!(
        (s, got["status"].as_str()),
        (200, Some("cancelled")),
        "{got}"
    );
}

async fn an_intent_never_paid_expires_and_frees_its_connector(b: Backend) {
    let (_store, _mock, fake, server) = start(
        b,
        &[
            ("ROAMPAY_WORKER_INTERVAL_SECS", "1"),
            ("ROAMPAY_PENDING_PAYMENT_TIMEOUT_SECS", "1"),
        ],
    )
    .await;
    configure(&server, "ws-1", "sk_test_51HxWorkspaceOneKey", WH_A).await;
    put_location(&server, "ws-1", "LOC-1", 45).await;
    let (_, created) = create(&server, "LOC-1", "1", None).await;
    let id = created["charging_intent_id"].as_str().unwrap();
    let pi = created["payment_intent_id"].as_str().unwrap().to_string();
    eventually("the unpaid intent expiring", || async {
        (crate::payments::intent(&server, id).await["status"] == "expired").then_some(())
    })
    .await;
    assert_eq!(
        fake.applied(),
        vec![("cancel".to_string(), pi, 0)],
        "cancelled in Stripe"
    );
    let (s, again) = create(&server, "LOC-1", "1", None).await;
    assert_eq!(s, 201, "the connector is free: {again}");
}

async fn guests_have_a_cap_on_intents_waiting_for_payment(b: Backend) {
    let (_store, _mock, _fake, server): (_, _, FakeStripe, _) =
        start(b, &[("ROAMPAY_MAX_PENDING_GUEST_INTENTS", "2")]).await;
    configure(&server, "ws-1", "sk_test_51HxWorkspaceOneKey", WH_A).await;
    put_location(&server, "ws-1", "LOC-1", 45).await;
    put_location(&server, "ws-1", "LOC-2", 45).await;
    for c in ["1", "2"] {
        let (s, body) = create(&server, "LOC-1", c, None).await;
        assert_eq!(s, 201, "{body}");
    }
    let support = token("support", &["ws-1"], "audit:read");
    eventually("both guest intents projected", || async {
        let (_, list) = server
            .get(
                "/api/support/charging-intents?workspace_id=ws-1&status=pending_payment",
                &support,
            )
            .await;
        (list["data"].as_array().unwrap().len() == 2).then_some(())
    })
    .await;
    let r = server
        .http
        .post(server.url("/ocpi/create-payment-intent"))
        .json(&json!({"location_id": "LOC-2", "evse_uid": "EVSE-1", "connector_id": "1"}))
        .send()
        .await
        .unwrap();
    assert!(r.headers().contains_key("retry-after"));
    let (s, p) = status_json(r).await;
    assert_eq!(
        (s, p["code"].as_str()),
        (429, Some("too_many_pending_intents")),
        "{p}"
    );
    // Drivers with a token are not guests.
    let (s, body) = create_as(&server, "driver-1", "LOC-2", "1").await;
    assert_eq!(s, 201, "{body}");
}

on_both_backends!(the_guest_quota_counts_no_further_than_the_cap);

/// The projector reads the rows it folds by primary key, one lookup per id, even on a
/// table that grew since it was last analyzed (the webhook benchmark's table was read
/// whole on every batch with `= ANY($1)`: an eighth of PostgreSQL's statement time).
#[tokio::test]
async fn the_projector_reads_intents_by_key_on_a_table_never_analyzed() {
    let store = Store::fresh(Backend::Postgres).await;
    let db = store.db().await;
    let roampay_projections::Db::Postgres(pool) = &db else {
        unreachable!("a PostgreSQL store")
    };
    let seed = "INSERT INTO charging_intents (charging_intent_id, workspace_id, status,
            payment_required, currency, location_id, evse_uid, connector_id, created_at, updated_at)
        SELECT 'ci-' || i, 'ws-big', 'authorized', true, 'aud', 'LOC', 'E', 'c' || i,
               '2026-11-26T00:00:00Z', '2026-11-26T00:00:00Z' FROM generate_series(1, 20000) i";
    sqlx::query(seed).execute(pool).await.unwrap();
    // 300 ids that exist, and one that does not.
    let mut ids: Vec<String> = (1..=300).map(|i| format!("ci-{}", i * 61)).collect();
    ids.push("ci-none".into());
    let sql = roampay_projections::charging_intents::rows_by_id_sql();
    let mut found: Vec<String> =
        sqlx::query_scalar(&format!("SELECT charging_intent_id FROM ({sql}) AS r"))
            .bind(&ids)
            .fetch_all(pool)
            .await
            .unwrap();
    found.sort();
    let mut existing = ids[..300].to_vec();
    existing.sort();
    assert_eq!(found, existing);
    let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {sql}"))
        .bind(&ids)
        .fetch_all(pool)
        .await
        .unwrap();
    assert!(
        plan.iter()
            .any(|l| l.contains("Index Scan using charging_intents_pkey"))
            && !plan.iter().any(|l| l.contains("Seq Scan")),
        "{plan:#?}"
    );
}

/// The guest quota is asked on every guest pre-authorization: its count stops at the
/// cap, on a partial index, instead of growing with every intent ever made (the 60,000
/// webhook benchmark spent most of its setup in this count).
async fn the_guest_quota_counts_no_further_than_the_cap(b: Backend) {
    let store = Store::fresh(b).await;
    let db = store.db().await;
    let seed = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
        INSERT INTO charging_intents (charging_intent_id, workspace_id, status, payment_required,
            currency, location_id, evse_uid, connector_id, created_at, updated_at)
        SELECT 'ci-' || i, 'ws-big', 'pending_payment', true, 'aud', 'LOC', 'E', 'c' || i,
               '2026-11-26T00:00:00Z', '2026-11-26T00:00:00Z' FROM n";
    roampay_projections::on_db!(&db, pool => sqlx::query(seed).execute(pool).await.map(|_| ()))
        .unwrap();
    let count =
        |cap| roampay_projections::charging_intents::pending_guest_intents(&db, "ws-big", cap);
    assert_eq!(count(50).await.unwrap(), 50);
    assert_eq!(count(10_000).await.unwrap(), 5000);
    if let roampay_projections::Db::Postgres(pool) = &db {
        let mut conn = pool.acquire().await.unwrap();
        sqlx::query("SET enable_seqscan = off")
            .execute(&mut *conn)
            .await
            .unwrap();
        let plan: Vec<String> = sqlx::query_scalar(
            "EXPLAIN SELECT COUNT(*) FROM (SELECT 1 FROM charging_intents
              WHERE workspace_id = 'ws-big' AND status = 'pending_payment' AND driver IS NULL
              LIMIT 50) AS capped",
        )
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        assert!(
            plan.iter()
                .any(|l| l.contains("charging_intents_pending_guests")),
            "{plan:#?}"
        );
    }
}
