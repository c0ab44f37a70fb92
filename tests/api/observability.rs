//! Operability: Prometheus metrics after a scripted flow.

use std::time::Duration;

use crate::on_both_backends;
use crate::payments::*;
use crate::support::*;

/// The value of the one sample of `name` whose labels include all of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ')?;
        let (series_name, label_text) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if series_name != name {
            continue;
        }
        let have: Vec<(&str, &str)> = label_text
            .split(',')
            .filter(|p| !p.is_empty())
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k, v.trim_matches('"')))
            .collect();
        if labels.iter().all(|l| have.contains(l)) {
            assert!(
                found.is_none(),
                "{name}{labels:?} matches more than one series"
            );
            found = Some(value.parse().expect("a number"));
        }
    }
    found
}

async fn scrape(server: &Server) -> String {
    let r = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    r.text().await.unwrap()
}

on_both_backends!(metrics_count_a_scripted_flow);

async fn metrics_count_a_scripted_flow(b: Backend) {
    let (_store, _mock, fake, server) = start(b, &[]).await;
    configure(&server, "ws-1", "sk_test_51HxWorkspaceOneKey", WH_A).await;
    put_location(&server, "ws-1", "LOC-1", 45).await;

    let (status, created) = create(&server, "LOC-1", "1", None).await;
    assert_eq!(status, 201, "{created}");
    let (status, busy) = create(&server, "LOC-1", "1", None).await;
    assert_eq!(
        (status, busy["code"].as_str()),
        (409, Some("connector_busy"))
    );
    let (status, _) = create(&server, "NOPE", "1", None).await;
    assert_eq!(status, 404);

    let pi_id = created["payment_intent_id"].as_str().unwrap();
    let pi = fake.set_status(pi_id, "requires_capture");
    let body = stripe_event("evt_metrics_1", &pi);
    let now = chrono::Utc::now().timestamp();
    let sig = signature(WH_A, &body, now);
    let path = "/ocpi/stripe/webhook/ws-1";
    assert_eq!(deliver(&server, path, &body, Some(&sig)).await.0, 200);
    assert_eq!(deliver(&server, path, &body, Some(&sig)).await.0, 200);
    let forged = signature(WH_B, &body, now);
    assert_eq!(deliver(&server, path, &body, Some(&forged)).await.0, 400);
    assert_eq!(deliver(&server, path, &body, None).await.0, 400);

    // The projectors catch up; the lag gauges then read 0.
    server.wait_for_audit("ws-1", 5).await;
    let mut text = String::new();
    for _ in 0..100 {
        text = scrape(&server).await;
        let behind: f64 = ["audit_log", "charging_intents", "credential_health"]
            .iter()
            .map(|p| sample(&text, "roampay_projection_lag_events", &[("projection", p)]).unwrap())
            .sum();
        if behind == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for p in ["audit_log", "charging_intents", "credential_health"] {
        let labels = [("projection", p)];
        assert_eq!(
            sample(&text, "roampay_projection_lag_events", &labels),
            Some(0.0),
            "{p}"
        );
        assert_eq!(
            sample(&text, "roampay_projection_lag_seconds", &labels),
            Some(0.0),
            "{p}"
        );
    }

    let n = |name: &str, labels: &[(&str, &str)]| sample(&text, name, labels);
    // HTTP by route (the pattern, not the path) and status.
    let http = "roampay_http_requests_total";
    let create_route = ("endpoint", "/ocpi/create-payment-intent");
    assert_eq!(n(http, &[create_route, ("status", "201")]), Some(1.0));
    assert_eq!(n(http, &[create_route, ("status", "409")]), Some(1.0));
    assert_eq!(n(http, &[create_route, ("status", "404")]), Some(1.0));
    let wh_route = ("endpoint", "/ocpi/stripe/webhook/{workspace_id}");
    assert_eq!(n(http, &[wh_route, ("status", "200")]), Some(2.0));
    assert_eq!(n(http, &[wh_route, ("status", "400")]), Some(2.0));
    // Webhooks by outcome and refusal code.
    let wh = "roampay_webhooks_total";
    assert_eq!(n(wh, &[("outcome", "applied")]), Some(1.0));
    assert_eq!(n(wh, &[("outcome", "duplicate")]), Some(1.0));
    assert_eq!(
        n(
            wh,
            &[("outcome", "rejected"), ("code", "signature_mismatch")]
        ),
        Some(1.0)
    );
    assert_eq!(
        n(
            wh,
            &[("outcome", "rejected"), ("code", "missing_signature")]
        ),
        Some(1.0)
    );
    // Pre-auths by outcome.
    let pa = "roampay_preauths_total";
    assert_eq!(n(pa, &[("outcome", "created")]), Some(1.0));
    assert_eq!(
        n(pa, &[("outcome", "refused"), ("code", "connector_busy")]),
        Some(1.0)
    );
    assert_eq!(
        n(
            pa,
            &[("outcome", "refused"), ("code", "location_not_found")]
        ),
        Some(1.0)
    );
    // Stripe calls by operation, status and latency.
    let create_op = ("operation", "POST /v1/payment_intents");
    assert_eq!(
        n(
            "roampay_stripe_requests_total",
            &[create_op, ("status", "200")]
        ),
        Some(1.0)
    );
    assert_eq!(
        n(
            "roampay_stripe_request_duration_seconds_count",
            &[create_op]
        ),
        Some(1.0)
    );
    assert!(n("roampay_stripe_request_duration_seconds_sum", &[create_op]).unwrap() > 0.0);
    // Credential health per status.
    let health = "roampay_credential_health_workspaces";
    assert_eq!(n(health, &[("status", "valid")]), Some(1.0));
    assert_eq!(n(health, &[("status", "invalid")]), Some(0.0));
    assert!(!text.contains("sk_test_51HxWorkspaceOneKey") && !text.contains(WH_A));
}
