//! Specifications of a tariff's pushes and deletion.

use chrono::TimeZone;
use cqrs_es::test::TestFramework;
use serde_json::json;

use super::*;

type Spec = TestFramework<OcpiTariff>;

fn key() -> ObjectKey {
    ObjectKey {
        workspace_id: "ws-1".into(),
        connection_id: "c1".into(),
        country_code: "AU".into(),
        party_id: "DPT".into(),
        object_id: "TARIFF-DC".into(),
    }
}

fn tariff(price: f64, at: &str) -> Value {
    json!({"country_code": "AU", "party_id": "DPT", "id": "TARIFF-DC", "currency": "AUD",
        "elements": [{"price_components": [{"type": "ENERGY", "price": price, "vat": 10.0, "step_size": 1}]}],
        "last_updated": at})
}

fn updated(object: Value) -> Event {
    Event::OcpiTariffUpdated(OcpiTariffUpdated {
        workspace_id: "ws-1".into(),
        connection_id: "c1".into(),
        country_code: "AU".into(),
        party_id: "DPT".into(),
        tariff_id: "TARIFF-DC".into(),
        currency: "AUD".into(),
        last_updated: last_updated(&object).unwrap(),
        tariff: object,
    })
}

fn removed() -> Event {
    Event::OcpiTariffRemoved(OcpiTariffRemoved {
        workspace_id: "ws-1".into(),
        connection_id: "c1".into(),
        country_code: "AU".into(),
        party_id: "DPT".into(),
        tariff_id: "TARIFF-DC".into(),
        removed_at: Utc.with_ymd_and_hms(2026, 12, 9, 0, 0, 0).unwrap(),
    })
}

#[test]
fn a_tariff_is_replaced_by_newer_pushes_only_and_deleted_once() {
    let first = tariff(0.45, "2026-12-08T09:00:00Z");
    let newer = tariff(0.55, "2026-12-08T12:00:00Z");
    Spec::with(())
        .given_no_previous_events()
        .when(OcpiTariffCommand::Put {
            key: key(),
            object: first.clone(),
        })
        .then_expect_events(vec![updated(first.clone())]);
    Spec::with(())
        .given(vec![updated(newer.clone())])
        .when(OcpiTariffCommand::Put {
            key: key(),
            object: first.clone(),
        })
        .then_expect_events(vec![]);
    let delete = OcpiTariffCommand::Delete {
        key: key(),
        at: Utc.with_ymd_and_hms(2026, 12, 9, 0, 0, 0).unwrap(),
    };
    Spec::with(())
        .given(vec![updated(newer.clone())])
        .when(delete.clone())
        .then_expect_events(vec![removed()]);
    Spec::with(())
        .given(vec![updated(newer), removed()])
        .when(delete.clone())
        .then_expect_events(vec![]);
    Spec::with(())
        .given_no_previous_events()
        .when(delete)
        .then_expect_error(OcpiTariffError::NotFound);
    // Pushed again after a deletion: back, whatever its date.
    Spec::with(())
        .given(vec![
            updated(tariff(0.55, "2026-12-08T12:00:00Z")),
            removed(),
        ])
        .when(OcpiTariffCommand::Put {
            key: key(),
            object: first.clone(),
        })
        .then_expect_events(vec![updated(first)]);
}

#[test]
fn a_tariff_not_of_ocpis_shape_is_refused_naming_the_field() {
    let mut no_elements = tariff(0.45, "2026-12-08T09:00:00Z");
    no_elements["elements"] = json!([]);
    let mut bad_type = tariff(0.45, "2026-12-08T09:00:00Z");
    bad_type["elements"][0]["price_components"][0]["type"] = json!("KWH");
    let mut negative = tariff(-1.0, "2026-12-08T09:00:00Z");
    negative["currency"] = json!("AUD");
    for (object, message) in [
        (no_elements, "elements: at least one tariff element"),
        (
            bad_type,
            "elements[].price_components[].type: ENERGY, FLAT, PARKING_TIME or TIME",
        ),
        (
            negative,
            "elements[].price_components[].price: a number of 0 or more",
        ),
    ] {
        Spec::with(())
            .given_no_previous_events()
            .when(OcpiTariffCommand::Put { key: key(), object })
            .then_expect_error(OcpiTariffError::Invalid(message.into()));
    }
}
