//! Specifications of a session's updates: whole, merged, stale, refused.

use cqrs_es::test::TestFramework;
use serde_json::json;

use super::*;

type Spec = TestFramework<OcpiSession>;

fn key() -> ObjectKey {
    ObjectKey {
        workspace_id: "ws-1".into(),
        connection_id: "c1".into(),
        country_code: "AU".into(),
        party_id: "DPT".into(),
        object_id: "SESS-1".into(),
    }
}

fn session(status: &str, kwh: f64, at: &str) -> Value {
    json!({"country_code": "AU", "party_id": "DPT", "id": "SESS-1", "status": status,
        "kwh": kwh, "authorization_reference": "RP0123456789ABCD", "currency": "AUD",
        "last_updated": at})
}

fn updated(object: Value) -> Event {
    let at = last_updated(&object).unwrap();
    Event::OcpiSessionUpdated(OcpiSessionUpdated {
        workspace_id: "ws-1".into(),
        connection_id: "c1".into(),
        country_code: "AU".into(),
        party_id: "DPT".into(),
        session_id: "SESS-1".into(),
        status: object["status"].as_str().unwrap().into(),
        authorization_reference: Some("RP0123456789ABCD".into()),
        last_updated: at,
        session: object,
    })
}

#[test]
fn a_put_records_the_session_and_a_stale_or_repeated_one_changes_nothing() {
    let first = session("ACTIVE", 1.0, "2026-12-08T10:00:00Z");
    Spec::with(())
        .given_no_previous_events()
        .when(OcpiSessionCommand::Put {
            key: key(),
            object: first.clone(),
        })
        .then_expect_events(vec![updated(first.clone())]);
    let newer = session("ACTIVE", 4.0, "2026-12-08T10:15:00Z");
    Spec::with(())
        .given(vec![updated(newer.clone())])
        .when(OcpiSessionCommand::Put {
            key: key(),
            object: first,
        })
        .then_expect_events(vec![]);
    Spec::with(())
        .given(vec![updated(newer.clone())])
        .when(OcpiSessionCommand::Put {
            key: key(),
            object: newer,
        })
        .then_expect_events(vec![]);
}

#[test]
fn a_patch_merges_into_the_stored_session() {
    let first = session("ACTIVE", 1.0, "2026-12-08T10:00:00Z");
    let fields = json!({"kwh": 9.5, "status": "COMPLETED", "last_updated": "2026-12-08T11:00:00Z"});
    let merged = session("COMPLETED", 9.5, "2026-12-08T11:00:00Z");
    Spec::with(())
        .given(vec![updated(first)])
        .when(OcpiSessionCommand::Patch {
            key: key(),
            fields: fields.clone(),
        })
        .then_expect_events(vec![updated(merged)]);
    Spec::with(())
        .given_no_previous_events()
        .when(OcpiSessionCommand::Patch { key: key(), fields })
        .then_expect_error(OcpiSessionError::NotFound);
}

#[test]
fn a_session_that_is_not_ocpis_shape_is_refused_naming_the_field() {
    let mut other_party = session("ACTIVE", 1.0, "2026-12-08T10:00:00Z");
    other_party["party_id"] = json!("XYZ");
    let mut bad_status = session("ACTIVE", 1.0, "2026-12-08T10:00:00Z");
    bad_status["status"] = json!("CHARGING");
    let mut no_time = session("ACTIVE", 1.0, "2026-12-08T10:00:00Z");
    no_time["last_updated"] = json!("yesterday");
    for (object, message) in [
        (other_party, "country_code, party_id: those of the URL"),
        (
            bad_status,
            "status: ACTIVE, COMPLETED, INVALID, PENDING or RESERVATION",
        ),
        (no_time, "last_updated: an RFC 3339 date-time"),
    ] {
        Spec::with(())
            .given_no_previous_events()
            .when(OcpiSessionCommand::Put { key: key(), object })
            .then_expect_error(OcpiSessionError::Invalid(message.into()))
    }
}
