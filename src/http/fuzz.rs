//! Arbitrary input at the request boundary: the signature header parser and every
//! request body extractor take random bytes and random JSON without panicking, and
//! refuse only with codes the runbook lists. `make test` runs a modest number of cases
//! (proptest's default, 256); `make fuzz` runs 1,000,000 per target
//! (`PROPTEST_CASES`), reported in docs/reliability.md.

use actix_web::test::TestRequest;
use proptest::prelude::*;
use secrecy::SecretString;
use serde_json::{Map, Value};

use super::error::ApiError;
use crate::infra::stripe::webhook::{verify, SignatureError, Tolerance};

/// Field names of our bodies, so random JSON reaches past the first check.
const KEYS: &[&str] = &[
    "location_id",
    "evse_uid",
    "connector_id",
    "email",
    "stripe",
    "publishable_key",
    "secret_key",
    "webhook_signing_secret",
    "pre_auth_cents",
    "currency",
    "allow_guest_access",
    "allow_user_registration",
    "amount_cents",
    "reason",
    "name",
    "address",
    "city",
    "postal_code",
    "country",
    "coordinates",
    "latitude",
    "longitude",
    "evses",
    "uid",
    "evse_id",
    "connectors",
    "id",
    "standard",
    "format",
    "power_type",
    "max_electric_power",
    "tariff",
    "price_per_kwh_cents",
    "flat_fee_cents",
    "ocpi_session_id",
    "final_amount_cents",
    "client_secret",
];

pub fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<String>().prop_map(Value::String),
        prop::sample::select(vec![
            "pk_test_51Hx",
            "sk_test_51HxAAAA",
            "rk_live_x",
            "whsec_abcdabcd",
            "aud",
            "requested_by_customer",
            "LOC-1",
            "a@b"
        ])
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        let key = prop_oneof![
            prop::sample::select(KEYS).prop_map(str::to_string),
            any::<String>()
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key, inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// The codes of the runbook's tables.
fn documented(code: &str) -> bool {
    include_str!("../../docs/runbook.md").contains(&format!("| `{code}` |"))
}

fn refused_as_documented(e: &ApiError) {
    assert!(documented(e.code), "undocumented code {}", e.code);
    assert!(e.status.is_client_error(), "{} {}", e.status, e.code);
    for f in &e.errors {
        assert!(documented(f.code), "undocumented field code {}", f.code);
    }
}

fn request_with_key(key: Option<&str>) -> actix_web::HttpRequest {
    let mut r = TestRequest::default();
    if let Some(k) = key.and_then(|k| actix_web::http::header::HeaderValue::from_str(k).ok()) {
        r = r.insert_header(("idempotency-key", k));
    }
    r.to_http_request()
}

proptest! {
    #[test]
    fn the_signature_header_parser_takes_anything(header in any::<String>(), payload in any::<Vec<u8>>(), t in any::<i64>()) {
        let secret = SecretString::from("whsec_fuzzsecret".to_string());
        let tolerance = Tolerance::new(300).unwrap();
        for h in [header.clone(), format!("t={t},v1={header}"), format!("t={header},v1=00")] {
            match verify(&payload, Some(&h), &[&secret], tolerance, 1_763_800_000) {
                Ok(_) => {}
                Err(SignatureError::MissingSignature
                    | SignatureError::InvalidSignatureHeader
                    | SignatureError::SignatureMismatch
                    | SignatureError::TimestampOutOfTolerance) => {}
            }
        }
    }

    #[test]
    fn every_request_body_extractor_takes_any_json(v in arb_json(), key in proptest::option::of(any::<String>())) {
        let req = request_with_key(key.as_deref());
        if let Ok(body) = serde_json::from_value::<super::payments::CreatePaymentIntent>(v.clone()) {
            if let Err(e) = super::payments::parse(body, &req) { refused_as_documented(&e) }
        }
        if let Ok(body) = serde_json::from_value::<super::refunds::RefundBody>(v.clone()) {
            if let Err(e) = super::refunds::ask(body, &req) { refused_as_documented(&e) }
        }
        if let Ok(body) = serde_json::from_value::<super::locations::LocationInput>(v.clone()) {
            if let Err(e) = super::locations::parse(body) { refused_as_documented(&e) }
        }
        if let Err(errors) = super::ocpi_config::parse_patch(v.clone()) {
            refused_as_documented(&ApiError::validation(errors));
        }
        let _ = serde_json::from_value::<super::sessions::StartSession>(v.clone());
        let _ = serde_json::from_value::<super::sessions::CompleteSession>(v.clone());
        let _ = serde_json::from_value::<super::sessions::CancelByGuest>(v);
    }

    #[test]
    fn request_bodies_as_raw_bytes_never_panic(bytes in any::<Vec<u8>>()) {
        if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
            let _ = super::ocpi_config::parse_patch(v);
        }
        let _ = serde_json::from_slice::<super::payments::CreatePaymentIntent>(&bytes);
        let _ = serde_json::from_slice::<super::locations::LocationInput>(&bytes);
    }
}
