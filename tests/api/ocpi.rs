//! OCPI 2.2.1 partner connections (contract v3.1): the credentials module both ways,
//! token A → B/C, tokens that stop working at once, the OCPI envelope everywhere.

use base64::Engine as _;
use serde_json::{json, Value};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::on_both_backends;
use crate::payments::start;
use crate::support::*;

on_both_backends!(
    a_cpo_registers_with_token_a_and_then_only_its_current_token_works,
    roampay_registers_with_a_cpo_given_its_versions_url_and_token_a,
    the_cpos_sessions_start_and_release_the_holds_they_name,
    the_cpos_tariffs_are_kept_newest_first_and_deleted_on_request,
);

const TOKEN_B: &str = "cpo-token-B-QZXregisterKWJ";
const TOKEN_B2: &str = "cpo-token-B2-QZXupdatedKWJ";

fn connections(ws: &str) -> String {
    format!("/api/workspaces/{ws}/ocpi/connections")
}

fn ocpi_auth(token: &str) -> String {
    format!(
        "Token {}",
        base64::engine::general_purpose::STANDARD.encode(token)
    )
}

fn envelope(data: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "data": data, "status_code": 1000, "status_message": "Success",
        "timestamp": "2026-12-07T10:00:00Z"
    }))
}

/// A CPO's versions and 2.2.1 details, answered only to `token`.
async fn fake_cpo(token: &str) -> MockServer {
    let cpo = MockServer::start().await;
    let base = cpo.uri();
    Mock::given(method("GET"))
        .and(path("/cpo/versions"))
        .and(header("authorization", ocpi_auth(token).as_str()))
        .respond_with(envelope(
            json!([{"version": "2.2.1", "url": format!("{base}/cpo/2.2.1")}]),
        ))
        .mount(&cpo)
        .await;
    Mock::given(method("GET"))
        .and(path("/cpo/2.2.1"))
        .and(header("authorization", ocpi_auth(token).as_str()))
        .respond_with(envelope(json!({"version": "2.2.1", "endpoints": [
            {"identifier": "credentials", "role": "RECEIVER", "url": format!("{base}/cpo/2.2.1/credentials")},
            {"identifier": "locations", "role": "SENDER", "url": format!("{base}/cpo/2.2.1/locations")}
        ]})))
        .mount(&cpo)
        .await;
    cpo
}

fn credentials(token: &str, versions_url: &str) -> Value {
    json!({"token": token, "url": versions_url, "roles": [{
        "role": "CPO", "party_id": "DPT", "country_code": "AU",
        "business_details": {"name": "Depot Charging"}
    }]})
}

/// An OCPI call with `token` (base64 in `Authorization: Token …`).
async fn call(
    server: &Server,
    m: &str,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value, Option<String>) {
    let mut r = server
        .http
        .request(m.parse().unwrap(), url)
        .header("X-Correlation-ID", "corr-42");
    if let Some(t) = token {
        r = r.header("Authorization", ocpi_auth(t));
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let res = r.send().await.unwrap();
    let status = res.status().as_u16();
    let correlation = res
        .headers()
        .get("x-correlation-id")
        .map(|v| v.to_str().unwrap().to_string());
    let kind = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let body: Value = res.json().await.unwrap_or(Value::Null);
    assert_eq!(
        kind.as_deref(),
        Some("application/json"),
        "the OCPI envelope, not problem+json: {body}"
    );
    assert!(body["timestamp"].is_string(), "{body}");
    (status, body, correlation)
}

async fn a_cpo_registers_with_token_a_and_then_only_its_current_token_works(b: Backend) {
    let (store, _stripe, _fake, server) = start(b, &[]).await;
    let admin = admin("ws-1");
    let (s, created) = server
        .post_json(&connections("ws-1"), &admin, json!({"name": "Depot CPMS"}))
        .await;
    assert_eq!(s, 201, "{created}");
    assert_eq!(created["status"], "pending");
    let token_a = created["token_a"].as_str().unwrap().to_string();
    let versions = created["versions_url"].as_str().unwrap().to_string();
    assert_eq!(versions, server.url("/ocpi/versions"));

    // Unknown or missing tokens: 401 in the envelope.
    let (s, body, corr) = call(&server, "GET", &versions, None, None).await;
    assert_eq!(
        (s, body["status_code"].as_u64()),
        (401, Some(2000)),
        "{body}"
    );
    assert_eq!(corr.as_deref(), Some("corr-42"));
    let forged = format!("{}.notthesecret", token_a.split('.').next().unwrap());
    let (s, _, _) = call(&server, "GET", &versions, Some(&forged), None).await;
    assert_eq!(s, 401);

    // With token A: versions, details, and the registration.
    let (s, body, _) = call(&server, "GET", &versions, Some(&token_a), None).await;
    assert_eq!(
        (s, body["status_code"].as_u64()),
        (200, Some(1000)),
        "{body}"
    );
    assert_eq!(body["data"][0]["version"], "2.2.1");
    let details_url = body["data"][0]["url"].as_str().unwrap().to_string();
    let (s, details, _) = call(&server, "GET", &details_url, Some(&token_a), None).await;
    assert_eq!(s, 200, "{details}");
    let endpoints = details["data"]["endpoints"].as_array().unwrap();
    let credentials_url = endpoints
        .iter()
        .find(|e| e["identifier"] == "credentials")
        .map(|e| e["url"].as_str().unwrap().to_string())
        .expect("a credentials endpoint");
    let (s, body, _) = call(&server, "GET", &credentials_url, Some(&token_a), None).await;
    assert_eq!(
        (s, body["status_code"].as_u64()),
        (403, Some(2000)),
        "token A only registers: {body}"
    );

    let cpo = fake_cpo(TOKEN_B).await;
    let cpo_versions = format!("{}/cpo/versions", cpo.uri());
    let (s, bad, _) = call(
        &server,
        "POST",
        &credentials_url,
        Some(&token_a),
        Some(json!({"token": ""})),
    )
    .await;
    assert_eq!((s, bad["status_code"].as_u64()), (400, Some(2001)), "{bad}");
    let mine = credentials(TOKEN_B, &cpo_versions);
    let (s, reg, corr) = call(
        &server,
        "POST",
        &credentials_url,
        Some(&token_a),
        Some(mine.clone()),
    )
    .await;
    assert_eq!((s, reg["status_code"].as_u64()), (200, Some(1000)), "{reg}");
    assert_eq!(corr.as_deref(), Some("corr-42"));
    let token_c = reg["data"]["token"].as_str().unwrap().to_string();
    assert_eq!(token_c.len(), 64);
    assert_eq!(reg["data"]["url"], versions);
    assert_eq!(reg["data"]["roles"][0]["role"], "EMSP");

    // Token A is spent; token C works; a second POST is refused (use PUT).
    let (s, _, _) = call(&server, "GET", &versions, Some(&token_a), None).await;
    assert_eq!(s, 401, "token A no longer works");
    let (s, got, _) = call(&server, "GET", &credentials_url, Some(&token_c), None).await;
    assert_eq!(
        (s, got["data"]["token"].as_str()),
        (200, Some(token_c.as_str())),
        "{got}"
    );
    let (s, again, _) = call(
        &server,
        "POST",
        &credentials_url,
        Some(&token_c),
        Some(mine),
    )
    .await;
    assert_eq!(
        (s, again["status_code"].as_u64()),
        (405, Some(2000)),
        "{again}"
    );

    let (s, list) = server
        .get(
            &connections("ws-1"),
            &token("reader", &["ws-1"], "roaming:read"),
        )
        .await;
    assert_eq!(s, 200, "{list}");
    let c = &list["data"][0];
    assert_eq!(
        (c["status"].as_str(), c["version"].as_str()),
        (Some("registered"), Some("2.2.1"))
    );
    assert_eq!(
        (
            c["party"]["country_code"].as_str(),
            c["party"]["party_id"].as_str()
        ),
        (Some("AU"), Some("DPT"))
    );
    assert!(
        !list.to_string().contains(&token_c) && !list.to_string().contains("token"),
        "{list}"
    );
    let other = token("admin-2", &["ws-2"], "roaming:read");
    let (s, _) = server.get(&connections("ws-1"), &other).await;
    assert_eq!(s, 403, "another workspace's admin sees nothing");

    // PUT: new tokens both ways; the old token stops at once.
    let cpo2 = fake_cpo(TOKEN_B2).await;
    let moved = credentials(TOKEN_B2, &format!("{}/cpo/versions", cpo2.uri()));
    let (s, put, _) = call(
        &server,
        "PUT",
        &credentials_url,
        Some(&token_c),
        Some(moved),
    )
    .await;
    assert_eq!((s, put["status_code"].as_u64()), (200, Some(1000)), "{put}");
    let token_c2 = put["data"]["token"].as_str().unwrap().to_string();
    assert_ne!(token_c2, token_c);
    let (s, _, _) = call(&server, "GET", &credentials_url, Some(&token_c), None).await;
    assert_eq!(s, 401, "the replaced token no longer works");

    // The CPO unregisters: its token stops, the connection shows unregistered.
    let (s, gone, _) = call(&server, "DELETE", &credentials_url, Some(&token_c2), None).await;
    assert_eq!(
        (s, gone["status_code"].as_u64()),
        (200, Some(1000)),
        "{gone}"
    );
    let (s, _, _) = call(&server, "GET", &versions, Some(&token_c2), None).await;
    assert_eq!(s, 401);
    let (_, list) = server.get(&connections("ws-1"), &admin).await;
    assert_eq!(list["data"][0]["status"], "unregistered");

    // No token in clear anywhere in the store.
    drop(server);
    let dumped = crate::canary::dump(&store.db().await, &store, "OcpiConnectionRegistered").await;
    for t in [
        &token_a,
        &token_c,
        &token_c2,
        &TOKEN_B.to_string(),
        &TOKEN_B2.to_string(),
    ] {
        let secret = t.rsplit('.').next().unwrap();
        assert!(
            !dumped.contains(&secret[secret.len() - 16..]),
            "a token in clear in the store"
        );
    }
}

async fn roampay_registers_with_a_cpo_given_its_versions_url_and_token_a(b: Backend) {
    let (_store, _stripe, _fake, server) = start(b, &[]).await;
    let admin = admin("ws-1");
    let cpo_token_a = "cpo-issued-token-A-QZX";
    let cpo = fake_cpo(cpo_token_a).await;
    let base = cpo.uri();
    Mock::given(method("POST"))
        .and(path("/cpo/2.2.1/credentials"))
        .and(header("authorization", ocpi_auth(cpo_token_a).as_str()))
        .respond_with(move |req: &wiremock::Request| {
            let ours: Value = serde_json::from_slice(&req.body).unwrap();
            assert_eq!(ours["roles"][0]["role"], "EMSP");
            assert!(ours["url"].as_str().unwrap().ends_with("/ocpi/versions"));
            envelope(credentials(
                "cpo-token-C-QZXforroampay",
                &format!("{base}/cpo/versions"),
            ))
        })
        .expect(1)
        .mount(&cpo)
        .await;
    let body = json!({"name": "Depot CPMS", "versions_url": format!("{}/cpo/versions", cpo.uri()), "token_a": cpo_token_a});
    let (s, created) = server.post_json(&connections("ws-1"), &admin, body).await;
    assert_eq!(s, 201, "{created}");
    assert_eq!(created["status"], "registered");
    assert!(
        created["token_a"].is_null(),
        "no token A of roampay's: {created}"
    );
    let (_, list) = server.get(&connections("ws-1"), &admin).await;
    assert_eq!(list["data"][0]["party"]["party_id"], "DPT");

    // A CPO that refuses: 502 with what it said; nothing stays open.
    let body = json!({"name": "Wrong", "versions_url": format!("{}/cpo/versions", cpo.uri()), "token_a": "not-the-cpo-token"});
    let (s, failed) = server.post_json(&connections("ws-1"), &admin, body).await;
    assert_eq!(
        (s, failed["code"].as_str()),
        (502, Some("ocpi_registration_failed")),
        "{failed}"
    );
    let (_, list) = server.get(&connections("ws-1"), &admin).await;
    assert_eq!(list["data"][1]["status"], "unregistered", "{list}");

    // The admin ends the registered one (the CPO is told, with its token): 204, then
    // 404 for an unknown id.
    Mock::given(method("DELETE"))
        .and(path("/cpo/2.2.1/credentials"))
        .and(header(
            "authorization",
            ocpi_auth("cpo-token-C-QZXforroampay").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "status_code": 1000, "status_message": "Success", "timestamp": "2026-12-07T10:00:00Z"
        })))
        .expect(1)
        .mount(&cpo)
        .await;
    let id = list["data"][0]["id"].as_str().unwrap().to_string();
    let r = server
        .http
        .delete(server.url(&format!("{}/{id}", connections("ws-1"))))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = server
        .http
        .delete(server.url(&format!("{}/nope", connections("ws-1"))))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    let (s, p) = status_json(r).await;
    assert_eq!(
        (s, p["code"].as_str()),
        (404, Some("ocpi_connection_not_found")),
        "{p}"
    );
    let (s, bad) = server
        .post_json(
            &connections("ws-1"),
            &admin,
            json!({"name": "x", "token_a": "only-half"}),
        )
        .await;
    assert_eq!(
        (s, bad["code"].as_str()),
        (422, Some("validation_failed")),
        "{bad}"
    );
}

/// A CPO registered on ws-1 (party AU/DPT): its token and roampay's module base URL.
async fn registered_cpo(server: &Server) -> (String, String, MockServer) {
    let (_, created) = server
        .post_json(
            &connections("ws-1"),
            &admin("ws-1"),
            json!({"name": "Depot CPMS"}),
        )
        .await;
    let token_a = created["token_a"].as_str().unwrap().to_string();
    let cpo = fake_cpo(TOKEN_B).await;
    let mine = credentials(TOKEN_B, &format!("{}/cpo/versions", cpo.uri()));
    let url = server.url("/ocpi/2.2.1/credentials");
    let (s, reg, _) = call(server, "POST", &url, Some(&token_a), Some(mine)).await;
    assert_eq!(s, 200, "{reg}");
    let token = reg["data"]["token"].as_str().unwrap().to_string();
    (token, server.url("/ocpi/2.2.1"), cpo)
}

fn ocpi_session(id: &str, status: &str, reference: &str, kwh: f64, at: &str) -> Value {
    json!({"country_code": "AU", "party_id": "DPT", "id": id, "start_date_time": "2026-12-08T10:00:00Z",
        "kwh": kwh, "auth_method": "COMMAND", "authorization_reference": reference,
        "location_id": "LOC-1", "evse_uid": "EVSE-1", "connector_id": "1", "currency": "AUD",
        "status": status, "last_updated": at})
}

async fn the_cpos_sessions_start_and_release_the_holds_they_name(b: Backend) {
    let (_store, _stripe, fake, server) = start(b, &[]).await;
    let (token, base, _cpo) = registered_cpo(&server).await;
    let (charged, _) = crate::sessions::authorized(&server, &fake, "1", true).await;
    let (released, _) = crate::sessions::authorized(&server, &fake, "2", false).await;
    let reference = |id: String| {
        let server = &server;
        async move {
            let (_, intent) = server
                .get_public(&format!("/ocpi/charging-intents/{id}"))
                .await;
            intent["authorization_reference"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let (ref1, ref2) = (
        reference(charged.clone()).await,
        reference(released.clone()).await,
    );
    let support = token_for_support();
    for r in [&ref1, &ref2] {
        eventually("the intents in the read model", || async {
            let (_, found) = server
                .get(
                    &format!("/api/support/charging-intents?authorization_reference={r}"),
                    &support,
                )
                .await;
            (found["data"].as_array().map(Vec::len) == Some(1)).then_some(())
        })
        .await;
    }

    // ACTIVE starts the session of the intent it names.
    let url = format!("{base}/sessions/AU/DPT/SESS-1");
    let active = ocpi_session("SESS-1", "ACTIVE", &ref1, 0.5, "2026-12-08T10:05:00Z");
    let (s, body, _) = call(&server, "PUT", &url, Some(&token), Some(active)).await;
    assert_eq!(
        (s, body["status_code"].as_u64()),
        (200, Some(1000)),
        "{body}"
    );
    let (_, intent) = server
        .get_public(&format!("/ocpi/charging-intents/{charged}"))
        .await;
    assert_eq!(
        (
            intent["status"].as_str(),
            intent["ocpi_session_id"].as_str()
        ),
        (Some("charging"), Some("SESS-1")),
        "{intent}"
    );

    // A stale update changes nothing; a PATCH merges; GET shows what is stored.
    let stale = ocpi_session("SESS-1", "INVALID", &ref1, 0.0, "2026-12-08T10:01:00Z");
    let (s, _, _) = call(&server, "PUT", &url, Some(&token), Some(stale)).await;
    assert_eq!(s, 200);
    let patch = json!({"kwh": 7.25, "last_updated": "2026-12-08T10:30:00Z"});
    let (s, _, _) = call(&server, "PATCH", &url, Some(&token), Some(patch)).await;
    assert_eq!(s, 200);
    let (s, got, _) = call(&server, "GET", &url, Some(&token), None).await;
    assert_eq!(
        (
            s,
            got["data"]["status"].as_str(),
            got["data"]["kwh"].as_f64()
        ),
        (200, Some("ACTIVE"), Some(7.25)),
        "{got}"
    );
    let (_, intent) = server
        .get_public(&format!("/ocpi/charging-intents/{charged}"))
        .await;
    assert_eq!(
        intent["status"], "charging",
        "the stale INVALID released nothing"
    );

    // INVALID before charging releases the hold.
    let url2 = format!("{base}/sessions/AU/DPT/SESS-2");
    let invalid = ocpi_session("SESS-2", "INVALID", &ref2, 0.0, "2026-12-08T10:05:00Z");
    let (s, _, _) = call(&server, "PUT", &url2, Some(&token), Some(invalid)).await;
    assert_eq!(s, 200);
    let (_, intent) = server
        .get_public(&format!("/ocpi/charging-intents/{released}"))
        .await;
    assert_eq!(intent["status"], "cancelled", "{intent}");

    // An unknown reference is accepted and moves nothing; another party's path is 403;
    // a session of the wrong shape is 400/2001.
    let url3 = format!("{base}/sessions/AU/DPT/SESS-3");
    let unknown = ocpi_session(
        "SESS-3",
        "ACTIVE",
        "RPNOSUCHINTENT1",
        1.0,
        "2026-12-08T10:05:00Z",
    );
    let (s, body, _) = call(&server, "PUT", &url3, Some(&token), Some(unknown)).await;
    assert_eq!(
        (s, body["status_code"].as_u64()),
        (200, Some(1000)),
        "{body}"
    );
    let other = format!("{base}/sessions/NL/XYZ/SESS-1");
    let (s, body, _) = call(&server, "PUT", &other, Some(&token), Some(json!({}))).await;
    assert_eq!(
        (s, body["status_code"].as_u64()),
        (403, Some(2000)),
        "{body}"
    );
    let mut bad = ocpi_session("SESS-4", "CHARGING", &ref1, 1.0, "2026-12-08T10:05:00Z");
    bad["id"] = json!("SESS-4");
    let url4 = format!("{base}/sessions/AU/DPT/SESS-4");
    let (s, body, _) = call(&server, "PUT", &url4, Some(&token), Some(bad)).await;
    assert_eq!(
        (s, body["status_code"].as_u64()),
        (400, Some(2001)),
        "{body}"
    );
    assert!(
        body["status_message"].as_str().unwrap().contains("status"),
        "{body}"
    );
    let (s, _, _) = call(
        &server,
        "GET",
        &format!("{base}/sessions/AU/DPT/NOPE"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(s, 404);
}

fn token_for_support() -> String {
    token("support", &["ws-1"], "audit:read")
}

fn ocpi_tariff(price: f64, at: &str) -> Value {
    json!({"country_code": "AU", "party_id": "DPT", "id": "TARIFF-DC", "currency": "AUD",
        "type": "REGULAR", "elements": [{"price_components": [
            {"type": "ENERGY", "price": price, "vat": 10.0, "step_size": 1},
            {"type": "FLAT", "price": 1.0, "vat": 10.0, "step_size": 1}]}],
        "last_updated": at})
}

async fn the_cpos_tariffs_are_kept_newest_first_and_deleted_on_request(b: Backend) {
    let (_store, _stripe, _fake, server) = start(b, &[]).await;
    let (token, base, _cpo) = registered_cpo(&server).await;
    let (s, details, _) = call(&server, "GET", &base, Some(&token), None).await;
    assert_eq!(s, 200);
    let listed: Vec<&str> = details["data"]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["identifier"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["credentials", "sessions", "tariffs"]);
    let url = format!("{base}/tariffs/AU/DPT/TARIFF-DC");
    let (s, body, _) = call(
        &server,
        "PUT",
        &url,
        Some(&token),
        Some(ocpi_tariff(0.45, "2026-12-08T09:00:00Z")),
    )
    .await;
    assert_eq!(
        (s, body["status_code"].as_u64()),
        (200, Some(1000)),
        "{body}"
    );
    // The same again, and an older one: 1000, nothing recorded.
    let (s, _, _) = call(
        &server,
        "PUT",
        &url,
        Some(&token),
        Some(ocpi_tariff(0.45, "2026-12-08T09:00:00Z")),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _, _) = call(
        &server,
        "PUT",
        &url,
        Some(&token),
        Some(ocpi_tariff(0.30, "2026-12-08T08:00:00Z")),
    )
    .await;
    assert_eq!(s, 200);
    let mut bad = ocpi_tariff(0.45, "2026-12-08T10:00:00Z");
    bad["elements"][0]["price_components"][0]["type"] = json!("KWH");
    let (s, body, _) = call(&server, "PUT", &url, Some(&token), Some(bad)).await;
    assert_eq!(
        (s, body["status_code"].as_u64()),
        (400, Some(2001)),
        "{body}"
    );
    let (s, body, _) = call(
        &server,
        "PUT",
        &format!("{base}/tariffs/NL/XYZ/T"),
        Some(&token),
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (s, body["status_code"].as_u64()),
        (403, Some(2000)),
        "{body}"
    );
    let (s, body, _) = call(&server, "DELETE", &url, Some(&token), None).await;
    assert_eq!(
        (s, body["status_code"].as_u64()),
        (200, Some(1000)),
        "{body}"
    );
    let (s, _, _) = call(
        &server,
        "DELETE",
        &format!("{base}/tariffs/AU/DPT/NOPE"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(s, 404);
    // What was recorded: one tariff pushed, then deleted (the audit shows both).
    let support = token_for_support();
    let kinds: Vec<String> = eventually("the tariff's events in the audit", || async {
        let (_, audit) = server
            .get("/api/support/audit?workspace_id=ws-1&limit=200", &support)
            .await;
        let kinds: Vec<String> = audit["data"]
            .as_array()?
            .iter()
            .filter_map(|e| e["event_type"].as_str())
            .filter(|t| t.starts_with("OcpiTariff"))
            .map(str::to_string)
            .collect();
        kinds
            .iter()
            .any(|k| k == "OcpiTariffRemoved")
            .then_some(kinds)
    })
    .await;
    let count = |kind: &str| kinds.iter().filter(|k| *k == kind).count();
    assert_eq!(count("OcpiTariffUpdated"), 1, "{kinds:?}");
    assert_eq!(count("OcpiTariffRemoved"), 1, "{kinds:?}");
}
