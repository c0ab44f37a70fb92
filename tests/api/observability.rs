//! Operability: Prometheus metrics after a scripted flow.

use crate::on_both_backends;
use crate::payments::*;
use crate::support::*;

/// The value of the one sample of `name` whose labels include all of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
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
    let text = eventually("every projection caught up", || async {
        let text = scrape(&server).await;
        let behind: f64 = ["audit_log", "charging_intents", "credential_health"]
            .iter()
            .map(|p| sample(&text, "roampay_projection_lag_events", &[("projection", p)]).unwrap())
            .sum();
        (behind == 0.0).then_some(text)
    })
    .await;
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
    // Stripe calls by operation, status and latency: the credential check's
    // PaymentIntent and the pre-auth's.
    let create_op = ("operation", "POST /v1/payment_intents");
    assert_eq!(
        n(
            "roampay_stripe_requests_total",
            &[create_op, ("status", "200")]
        ),
        Some(2.0)
    );
    assert_eq!(
        n(
            "roampay_stripe_request_duration_seconds_count",
            &[create_op]
        ),
        Some(2.0)
    );
    assert!(n("roampay_stripe_request_duration_seconds_sum", &[create_op]).unwrap() > 0.0);
    // Credential health per status.
    let health = "roampay_credential_health_workspaces";
    assert_eq!(n(health, &[("status", "valid")]), Some(1.0));
    assert_eq!(n(health, &[("status", "invalid")]), Some(0.0));
    assert!(!text.contains("sk_test_51HxWorkspaceOneKey") && !text.contains(WH_A));
}

/// `METHOD /path` pairs named in CONTRACT.md (headings and bullets), with every path
/// parameter written `{}` so `{id}` and `{charging_intent_id}` compare equal.
fn contract_routes(contract: &str) -> std::collections::BTreeSet<(String, String)> {
    let mut out = std::collections::BTreeSet::new();
    // Headings and list items name routes; so does any quoted `METHOD /path` (the
    // delivery log's are in running text). Stripe's own `/v1/…` paths are not ours.
    for line in contract.lines().filter(|l| {
        l.starts_with("### ")
            || l.starts_with("- `")
            || l.starts_with("- **v2** `")
            || l.contains("`GET /api/")
    }) {
        let words: Vec<&str> = line
            .split(|c: char| c.is_whitespace() || c == '`')
            .filter(|w| !w.is_empty())
            .collect();
        for pair in words.windows(2) {
            if ["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&pair[0])
                && pair[1].starts_with('/')
            {
                let path = pair[1].split('?').next().unwrap();
                if !path.starts_with("/v1/") {
                    out.insert((pair[0].to_string(), normalize(path)));
                }
            }
        }
    }
    out
}

fn normalize(path: &str) -> String {
    path.split('/')
        .map(|s| if s.starts_with('{') { "{}" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

fn spec_routes(spec: &serde_json::Value) -> std::collections::BTreeSet<(String, String)> {
    let mut out = std::collections::BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            out.insert((method.to_uppercase(), normalize(path)));
        }
    }
    out
}

/// Routes served that CONTRACT.md does not list (the operability endpoints of the
/// issue that added them).
const BEYOND_CONTRACT: [(&str, &str); 1] = [("GET", "/metrics")];

/// Routes of the contract that open issues have still to build (v3.1 OCPI connections:
/// issue 28; v3.4 console: issue 31). Each must be in the contract and not yet in the
/// spec: serving one without taking it off this list fails the test.
const NOT_YET_SERVED: [(&str, &str); 2] =
    [("GET", "/api/support/ocpi/unmatched"), ("GET", "/console")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_spec_covers_exactly_the_served_routes_of_the_contract() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let contract = std::fs::read_to_string(root.join("docs/CONTRACT.md")).unwrap();
    // The copy kept in the repository must be the binding one where that is at hand.
    if let Ok(binding) = std::fs::read_to_string(root.join("../shared/CONTRACT.md")) {
        assert_eq!(
            contract, binding,
            "docs/CONTRACT.md differs from ../shared/CONTRACT.md"
        );
    }
    let wanted = contract_routes(&contract);
    assert!(
        wanted.len() >= 18,
        "the contract parser found only {wanted:?}"
    );

    let (_store, _mock, _fake, server) = start(Backend::Sqlite, &[]).await;
    let r = server
        .http
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let spec: serde_json::Value = r.json().await.unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    let documented = spec_routes(&spec);
    for (m, p) in NOT_YET_SERVED {
        let route = (m.to_string(), p.to_string());
        assert!(wanted.contains(&route), "{m} {p} is not in the contract");
        assert!(
            !documented.contains(&route),
            "{m} {p} is served now: take it off NOT_YET_SERVED"
        );
    }
    let wanted: std::collections::BTreeSet<_> = wanted
        .into_iter()
        .filter(|(m, p)| !NOT_YET_SERVED.contains(&(m.as_str(), p.as_str())))
        .collect();

    // Every operation has its own operationId (generated clients name methods by it).
    let mut ids = std::collections::BTreeSet::new();
    for item in spec["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            let id = op["operationId"].as_str().expect("an operationId");
            assert!(ids.insert(id.to_string()), "operationId {id} is used twice");
        }
    }

    let missing: Vec<_> = wanted.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "routes of CONTRACT.md missing from the spec: {missing:?}"
    );
    let extra: Vec<_> = documented
        .difference(&wanted)
        .filter(|(m, p)| !BEYOND_CONTRACT.contains(&(m.as_str(), p.as_str())))
        .collect();
    assert!(
        extra.is_empty(),
        "the spec lists routes CONTRACT.md does not: {extra:?}"
    );

    // Every documented route is served: the catch-all answers `not_found` for an unknown
    // path and a known path `method_not_allowed` for another method, so a probe that
    // gets neither hit a handler.
    for (method, path) in &documented {
        let url = server.url(&path.replace("{}", "x"));
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = server
            .http
            .request(method.clone(), &url)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        assert!(
            !(status == 404 && body["code"] == "not_found") && body["code"] != "method_not_allowed",
            "{method} {path} is in the spec but not served"
        );
    }
    for (method, path, code) in [
        (reqwest::Method::GET, "/no-such-route", "not_found"),
        (reqwest::Method::DELETE, "/healthz", "method_not_allowed"),
    ] {
        let r = server
            .http
            .request(method, server.url(path))
            .send()
            .await
            .unwrap();
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["code"], code, "the probe can tell a missing route");
    }

    // Every documented error response uses the problem schema (an unknown OCPI
    // location, and every OCPI module's error, is answered in the OCPI envelope, as
    // OCPI requires).
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (status, resp) in op["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    let ocpi = op["tags"]
                        .as_array()
                        .is_some_and(|t| t.contains(&"ocpi".into()));
                    let (media, schema) = if path.starts_with("/emsp/") && status == "404" {
                        ("application/json", "#/components/schemas/OcpiEnvelope")
                    } else if ocpi {
                        // What a CPO calls answers errors in the OCPI envelope too.
                        ("application/json", "#/components/schemas/OcpiStatus")
                    } else {
                        ("application/problem+json", "#/components/schemas/Problem")
                    };
                    assert_eq!(
                        resp["content"][media]["schema"]["$ref"], schema,
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
}

async fn text(server: &Server, path: &str) -> String {
    let r = server.http.get(server.url(path)).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swagger_ui_is_served_from_vendored_assets_only() {
    let (_store, _mock, _fake, server) = start(Backend::Sqlite, &[]).await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirects.get(server.url("/docs")).send().await.unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["location"], "/docs/");

    let html = text(&server, "/docs/").await;
    assert!(html.contains("swagger-ui"), "{html}");
    let mut assets = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for part in html.split(attr).skip(1) {
            assets.push(part.split('"').next().unwrap().to_string());
        }
    }
    assert!(assets.len() >= 5, "{assets:?}");
    for asset in &assets {
        assert!(
            !asset.contains("://") && !asset.starts_with("//"),
            "external asset {asset}"
        );
        let url = server.url(&format!("/docs/{}", asset.trim_start_matches("./")));
        let r = server.http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
    }
    let init = text(&server, "/docs/swagger-initializer.js").await;
    assert!(
        init.contains("\"url\": \"../openapi.json\""),
        "relative, so it works behind a path prefix: {init}"
    );
    assert!(
        init.contains("\"validatorUrl\": \"none\""),
        "no call to validator.swagger.io: {init}"
    );
}

/// The documented schemas have exactly the fields of real answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_shapes_match_real_answers() {
    let (_store, _mock, _fake, server) = start(Backend::Sqlite, &[]).await;
    configure(&server, "ws-1", "sk_test_51HxWorkspaceOneKey", WH_A).await;
    put_location(&server, "ws-1", "LOC-1", 45).await;
    let (status, created) = create(&server, "LOC-1", "1", None).await;
    assert_eq!(status, 201);
    let id = created["charging_intent_id"].as_str().unwrap();
    let got = intent(&server, id).await;
    let (_, config) = server.get(&config_path("ws-1"), &admin("ws-1")).await;
    let (status, problem) = create(&server, "LOC-1", "1", None).await;
    assert_eq!(status, 409);
    let spec: serde_json::Value = server
        .http
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fields = |schema: &str| -> std::collections::BTreeSet<String> {
        spec["components"]["schemas"][schema]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("no schema {schema}"))
            .keys()
            .cloned()
            .collect()
    };
    let keys = |v: &serde_json::Value| -> std::collections::BTreeSet<String> {
        v.as_object().unwrap().keys().cloned().collect()
    };
    assert_eq!(fields("CreatedPaymentIntent"), keys(&created));
    assert_eq!(fields("ChargingIntentView"), keys(&got));
    assert_eq!(fields("OcpiConfig"), keys(&config));
    assert_eq!(fields("StripeConfig"), keys(&config["stripe"]));
    assert_eq!(fields("Health"), keys(&config["stripe"]["health"]));
    // Statuses are enums in the schema, and the answer's status is one of them.
    let schemas = &spec["components"]["schemas"];
    let status_ref = &schemas["ChargingIntentView"]["properties"]["status"]["$ref"];
    assert_eq!(status_ref, "#/components/schemas/IntentStatus");
    let statuses = schemas["IntentStatus"]["enum"].as_array().expect("an enum");
    assert!(statuses.contains(&got["status"]), "{statuses:?}");
    assert!(schemas["HealthStatus"]["enum"].as_array().is_some());
    let mut problem_fields = fields("Problem");
    problem_fields.remove("errors"); // only on validation failures
    assert_eq!(problem_fields, keys(&problem));
}

/// Every span the OTLP stub received, flattened: (trace id, span id, parent id, name,
/// attributes as (key, value text)).
struct Span {
    trace: String,
    id: String,
    parent: String,
    name: String,
    attrs: Vec<(String, String)>,
}

async fn received_spans(stub: &wiremock::MockServer) -> Vec<Span> {
    let mut out = Vec::new();
    for req in stub.received_requests().await.unwrap_or_default() {
        assert_eq!(req.url.path(), "/v1/traces");
        let body: serde_json::Value = serde_json::from_slice(&req.body).expect("OTLP/JSON");
        for rs in body["resourceSpans"].as_array().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    let attrs = s["attributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|a| {
                            let v = &a["value"];
                            let text = v["stringValue"]
                                .as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| v.to_string());
                            (a["key"].as_str().unwrap().to_string(), text)
                        })
                        .collect();
                    out.push(Span {
                        trace: s["traceId"].as_str().unwrap_or_default().to_lowercase(),
                        id: s["spanId"].as_str().unwrap_or_default().to_lowercase(),
                        parent: s["parentSpanId"]
                            .as_str()
                            .unwrap_or_default()
                            .to_lowercase(),
                        name: s["name"].as_str().unwrap().to_string(),
                        attrs,
                    });
                }
            }
        }
    }
    out
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    span.attrs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_is_traced_over_otlp_with_the_callers_trace_and_no_secret() {
    use wiremock::matchers::{method, path};
    let stub = wiremock::MockServer::start().await;
    wiremock::Mock::given(method("POST"))
        .and(path("/v1/traces"))
        .respond_with(wiremock::ResponseTemplate::new(200))
        .mount(&stub)
        .await;
    let (_store, mock, fake, server) = start(
        Backend::Sqlite,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &stub.uri()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    let sk = "sk_test_51HxWorkspaceOneKey";
    configure(&server, "ws-1", sk, WH_A).await;
    put_location(&server, "ws-1", "LOC-1", 45).await;

    // The pre-authorization continues the caller's trace down to the Stripe call.
    let create_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let r = server
        .http
        .post(server.url("/ocpi/create-payment-intent"))
        .header(
            "traceparent",
            format!("00-{create_trace}-00f067aa0ba902b7-01"),
        )
        .json(
            &serde_json::json!({"location_id": "LOC-1", "evse_uid": "EVSE-1", "connector_id": "1"}),
        )
        .send()
        .await
        .unwrap();
    let (status, created) = status_json(r).await;
    assert_eq!(status, 201, "{created}");
    let pi_id = created["payment_intent_id"].as_str().unwrap();

    let webhook_trace = "0af7651916cd43dd8448eb211c80319c";
    let caller_span = "b7ad6b7169203331";
    let pi = fake.set_status(pi_id, "requires_capture");
    let body = stripe_event("evt_traced_1", &pi);
    let sig = signature(WH_A, &body, chrono::Utc::now().timestamp());
    let r = server
        .http
        .post(server.url("/ocpi/stripe/webhook/ws-1"))
        .header("Stripe-Signature", sig)
        .header(
            "traceparent",
            format!("00-{webhook_trace}-{caller_span}-01"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let spans = eventually("the OTLP stub receiving both traces", || async {
        let spans = received_spans(&stub).await;
        let done =
            |trace: &str, name: &str| spans.iter().any(|s| s.trace == trace && s.name == name);
        // The request span ends last (its batch may come after the command's).
        (done(webhook_trace, "command ChargingIntent")
            && done(webhook_trace, "POST /ocpi/stripe/webhook/{workspace_id}")
            && done(create_trace, "stripe POST /v1/payment_intents"))
        .then_some(spans)
    })
    .await;
    let find = |trace: &str, name: &str| {
        spans
            .iter()
            .find(|s| s.trace == trace && s.name == name)
            .unwrap_or_else(|| {
                let seen: Vec<_> = spans.iter().map(|s| (&s.trace, &s.name)).collect();
                panic!("no span {name} in trace {trace}; received {seen:?}")
            })
    };
    // request → webhook → command, under the caller's span.
    let request = find(webhook_trace, "POST /ocpi/stripe/webhook/{workspace_id}");
    assert_eq!(request.parent, caller_span);
    assert_eq!(attr(request, "http.response.status_code"), Some("200"));
    let webhook = find(webhook_trace, "webhook");
    assert_eq!(webhook.parent, request.id);
    assert_eq!(attr(webhook, "workspace_id"), Some("ws-1"));
    assert_eq!(attr(webhook, "stripe.event_id"), Some("evt_traced_1"));
    assert_eq!(attr(webhook, "outcome"), Some("applied"));
    let command = spans
        .iter()
        .find(|s| {
            s.trace == webhook_trace && s.name == "command ChargingIntent" && s.parent == webhook.id
        })
        .expect("the command runs inside the webhook span");
    assert_eq!(attr(command, "outcome"), Some("ok"));

    // The Stripe call is a client span in the pre-authorization's trace, and Stripe was
    // sent that trace.
    let call = find(create_trace, "stripe POST /v1/payment_intents");
    assert_eq!(attr(call, "stripe.object_id"), Some(pi_id));
    assert_eq!(attr(call, "outcome"), Some("ok"));
    let sent: Vec<String> = mock
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path() == "/v1/payment_intents")
        .filter(|r| !String::from_utf8_lossy(&r.body).contains("credential_check"))
        .filter_map(|r| {
            r.headers
                .get("traceparent")
                .map(|v| v.to_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        sent[0].starts_with(&format!("00-{create_trace}-{}-", call.id)),
        "{sent:?}"
    );

    // No secret in any attribute of any span.
    let client_secret = created["client_secret"].as_str().unwrap();
    for s in &spans {
        for (k, v) in &s.attrs {
            for secret in [sk, WH_A, client_secret, "_secret_", "whsec_", "sk_test_"] {
                assert!(!v.contains(secret), "span {} attribute {k} = {v}", s.name);
            }
            assert!(
                !v.contains("v1="),
                "a signature in span {} attribute {k}",
                s.name
            );
        }
    }
}

/// What an operator reads: a request line names the workspace, the error code and the
/// client; Swagger UI's assets make no WARN noise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_lines_say_workspace_code_and_client_and_docs_stay_quiet() {
    let store = Store::fresh(Backend::Sqlite).await;
    let stripe = stripe_ok().await;
    let server = Server::start(&store, ServerOptions::new(&stripe)).await;
    let (status, _) = server
        .get(
            &config_path("ws-7"),
            &token("alice", &["ws-7"], "audit:read"),
        )
        .await;
    assert_eq!(status, 403);
    // The workspace from the token alone.
    let (status, _) = server
        .get("/api/support/audit", &token("bob", &["ws-8"], "audit:read"))
        .await;
    assert_eq!(status, 200);
    for path in [
        "/docs",
        "/docs/",
        "/docs/swagger-ui.css",
        "/docs/swagger-initializer.js",
        "/openapi.json",
    ] {
        let r = server.http.get(server.url(path)).send().await.unwrap();
        assert!(
            r.status().is_success() || r.status().is_redirection(),
            "{path}"
        );
    }
    let forbidden = request_line(
        &server,
        "/api/permissions/workspace/{workspace_id}/ocpi-config",
        403,
    )
    .await;
    assert_eq!(forbidden["workspace_id"], "ws-7", "{forbidden}");
    assert_eq!(forbidden["code"], "forbidden", "{forbidden}");
    assert_eq!(forbidden["client_address"], "127.0.0.1", "{forbidden}");
    let listed = request_line(&server, "/api/support/audit", 200).await;
    assert_eq!(listed["workspace_id"], "ws-8", "{listed}");
    assert!(listed["code"].is_null());
    let warns: Vec<&str> = server
        .logs()
        .leak()
        .lines()
        .filter(|l| l.contains("\"WARN\""))
        .collect();
    assert!(warns.is_empty(), "{warns:?}");
}

/// The JSON log line of a request to `route` answered `status`.
async fn request_line(server: &Server, route: &str, status: u16) -> serde_json::Value {
    eventually(&format!("the request line of {route}"), || async {
        server
            .logs()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap_or_default())
            .find(|v| {
                v["message"] == "request" && v["http.route"] == route && v["http.status"] == status
            })
    })
    .await
}

/// A bad `DATABASE_URL` says which host it could not reach, in one line, and leaves no
/// key files behind.
#[test]
fn a_bad_database_url_names_the_host_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_roampay"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "DATABASE_URL",
            "postgres://roampay:s3cret@db.invalid.example:6543/payments",
        )
        .env("ROAMPAY_DB_ACQUIRE_TIMEOUT_MS", "500")
        .env("ROAMPAY_DATA_DIR", &data)
        .env("ROAMPAY_BIND", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("db.invalid.example:6543"), "{stderr}");
    assert!(errors[0].contains("DATABASE_URL"), "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");
    assert!(!data.join("master.key").exists() && !data.join("jwt.secret").exists());
}

/// Every metric the alert rules and the Grafana dashboard use is one the service
/// exports (after a short flow, so that histograms and labelled counters have samples).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitoring_bundle_uses_only_exported_metrics() {
    let store = Store::fresh(Backend::Sqlite).await;
    // Billing on (not required), so that its gauge is exported too.
    let billing = [
        (
            "ROAMPAY_PLATFORM_STRIPE_SECRET_KEY",
            "sk_test_51HxPlatformAccountKey",
        ),
        (
            "ROAMPAY_PLATFORM_WEBHOOK_SECRET",
            "whsec_PlatformBillingEndpoint",
        ),
        ("ROAMPAY_PLANS", "standard=price_standard1"),
    ];
    let (_mock, fake, server) =
        crate::payments::start_with_store(&store, &store.url.clone(), &billing).await;
    // A session that cost more than its hold: something uncollected.
    let (id, _) = crate::sessions::authorized(&server, &fake, "1", true).await;
    let t = crate::sessions::sessions("ws-1");
    let start = format!("/ocpi/charging-intents/{id}/start");
    crate::sessions::post(
        &server,
        &start,
        Some(&t),
        serde_json::json!({"ocpi_session_id": "S-1"}),
    )
    .await;
    let complete = format!("/ocpi/charging-intents/{id}/complete");
    let (status, _) = crate::sessions::post(
        &server,
        &complete,
        Some(&t),
        serde_json::json!({"final_amount_cents": 999_999}),
    )
    .await;
    assert_eq!(status, 200);
    let text = server.metrics_text().await;
    let exported: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("monitoring");
    let name = regex::Regex::new(r"\b((?:roampay|process)_[a-z_]+)\b").unwrap();
    let mut used = std::collections::BTreeSet::new();
    for file in ["alerts.yml", "grafana-dashboard.json"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        for line in text.lines().filter(|l| l.contains("expr")) {
            for c in name.captures_iter(line) {
                used.insert(c[1].to_string());
            }
        }
    }
    assert!(used.len() >= 15, "{used:?}");
    let missing: Vec<&String> = used
        .iter()
        .filter(|u| !exported.contains(u.as_str()))
        .collect();
    assert!(missing.is_empty(), "used but not exported: {missing:?}");
    assert!(exported.contains("roampay_build_info"));
}

/// The served description enumerates the error codes (the runbook's tables) and says
/// which headers answers carry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_spec_enumerates_error_codes_and_headers() {
    let store = Store::fresh(Backend::Sqlite).await;
    let stripe = stripe_ok().await;
    let server = Server::start(&store, ServerOptions::new(&stripe)).await;
    let spec: serde_json::Value = server
        .http
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let codes = &spec["components"]["schemas"]["Problem"]["properties"]["code"]["enum"];
    for code in [
        "connector_busy",
        "store_unavailable",
        "signature_mismatch",
        "validation_failed",
        "too_many_connections",
        "unknown_parameter",
        "method_not_allowed",
    ] {
        assert!(
            codes.as_array().unwrap().iter().any(|c| c == code),
            "{code} missing: {codes}"
        );
    }
    assert_eq!(spec["servers"][0]["url"], server.base.as_str());
    let create = &spec["paths"]["/ocpi/create-payment-intent"]["post"];
    assert!(
        create["responses"]["201"]["headers"]["X-Request-Id"].is_object(),
        "{create}"
    );
    assert!(
        create["responses"]["429"]["headers"]["Retry-After"].is_object(),
        "{create}"
    );
    assert!(create["requestBody"]["content"]["application/json"]["schema"].is_object());
    let example = &spec["components"]["schemas"]["CreatePaymentIntent"]["example"];
    assert_eq!(example["location_id"], "LOC-1", "{example}");
}

/// Found by `make soak` (docs/reliability.md): glibc's malloc gave each thread that
/// allocates an arena of its own, and under steady load the resident memory crept up by a
/// quarter of a megabyte a minute. roampay allocates with jemalloc, SQLite's C code
/// included: even allowed eight arenas (`MALLOC_ARENA_MAX`), glibc's malloc makes none,
/// because it serves nothing; jemalloc's own figures on `/metrics` account for the heap.
/// The control is a Python process, glibc's malloc in threads: the count sees its arenas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_allocation_of_the_service_is_jemallocs() {
    let mock = wiremock::MockServer::start().await;
    let store = Store::fresh(Backend::Sqlite).await;
    let server = Server::start(
        &store,
        ServerOptions::new(&mock).env("MALLOC_ARENA_MAX", "8"),
    )
    .await;
    // Work on every thread that serves, the store's included: many requests at once.
    for _ in 0..5 {
        let asks = (0..40).map(|i| {
            let path = if i % 2 == 0 { "/metrics" } else { "/readyz" };
            server.http.get(server.url(path)).send()
        });
        for r in futures::future::join_all(asks).await {
            assert!(r.unwrap().status().is_success());
        }
    }
    let text = scrape(&server).await;
    let allocated = sample(&text, "roampay_allocator_allocated_bytes", &[]).unwrap();
    let resident = sample(&text, "roampay_allocator_resident_bytes", &[]).unwrap();
    let rss = sample(&text, "process_resident_memory_bytes", &[]).unwrap();
    assert!(allocated > f64::from(1 << 20), "{allocated}");
    assert!(
        allocated <= resident && resident <= rss,
        "{allocated} {resident} {rss}"
    );
    assert_eq!(
        malloc_heaps(server.child.id()),
        0,
        "glibc's malloc serves a thread"
    );

    let mut control = std::process::Command::new("python3")
        .args(["-c", GLIBC_THREADS])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(control.stdout.as_mut().unwrap()),
        &mut ready,
    )
    .unwrap();
    let control_arenas = malloc_heaps(control.id());
    control.kill().unwrap();
    control.wait().unwrap();
    assert!(
        control_arenas >= 2,
        "the control shows its arenas: {control_arenas}"
    );
}

/// Four threads allocating kilobyte buffers (over Python's own small-object allocator,
/// under glibc's mmap threshold), all alive at once (glibc hands a finished thread's
/// arena to the next thread), then waiting with their arenas in place.
const GLIBC_THREADS: &str = r#"
import sys, threading
allocated, done = threading.Barrier(5), threading.Event()
def work():
    kept = [bytearray(1000) for _ in range(2000)]
    allocated.wait()
    done.wait()
for _ in range(4):
    threading.Thread(target=work, daemon=True).start()
allocated.wait()
print("ready", flush=True)
sys.stdin.read()
"#;

/// glibc's arenas other than the main one, in `/proc/<pid>/maps`: anonymous heaps of
/// 64 MiB reserved at a 64 MiB boundary (the part in use read-write, the rest `---p`).
fn malloc_heaps(pid: u32) -> usize {
    const HEAP: u64 = 64 << 20;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let anonymous: Vec<(u64, u64, &str)> = maps
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 5 && f[4] == "0").then_some(())?;
            let (a, b) = f[0].split_once('-')?;
            let (a, b) = (
                u64::from_str_radix(a, 16).ok()?,
                u64::from_str_radix(b, 16).ok()?,
            );
            Some((a, b, f[1]))
        })
        .collect();
    anonymous
        .iter()
        .filter(|(start, end, perms)| {
            perms.starts_with("rw")
                && start % HEAP == 0
                && (end - start == HEAP
                    || anonymous
                        .iter()
                        .any(|(s, e, _)| s == end && *e == start + HEAP))
        })
        .count()
}
