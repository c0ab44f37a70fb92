//! A tariff as the CPO pushes it (OCPI 2.2.1 Tariffs): one aggregate per workspace, CPO
//! party and tariff id. `PUT` replaces it unless older than the stored one; `DELETE`
//! removes it.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use roampay_events::{OcpiTariffEvent as Event, OcpiTariffRemoved, OcpiTariffUpdated};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ocpi_session::{last_updated, text, ObjectKey};

#[cfg(test)]
mod tests;

/// OCPI 2.2.1's price component types.
pub const COMPONENTS: [&str; 4] = ["ENERGY", "FLAT", "PARKING_TIME", "TIME"];

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OcpiTariff {
    pub workspace_id: Option<String>,
    pub tariff: Option<Value>,
    pub last_updated: Option<DateTime<Utc>>,
    /// Pushed once and deleted since.
    pub removed: bool,
}

#[derive(Debug, Clone)]
pub enum OcpiTariffCommand {
    Put { key: ObjectKey, object: Value },
    Delete { key: ObjectKey, at: DateTime<Utc> },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OcpiTariffError {
    #[error("no such tariff")]
    NotFound,
    #[error("{0}")]
    Invalid(String),
}

type Error = OcpiTariffError;

/// What a tariff must hold, as far as roampay reads it.
fn check(o: &Value, key: &ObjectKey) -> Result<(), Error> {
    let invalid = |m: &str| Err(Error::Invalid(m.into()));
    let same =
        |field: &str, want: &str| text(o, field).is_some_and(|v| v.eq_ignore_ascii_case(want));
    if !same("id", &key.object_id) {
        return invalid("id: the tariff id of the URL");
    }
    if !same("country_code", &key.country_code) || !same("party_id", &key.party_id) {
        return invalid("country_code, party_id: those of the URL");
    }
    if !text(o, "currency")
        .is_some_and(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic()))
    {
        return invalid("currency: an ISO 4217 code");
    }
    let elements = o.get("elements").and_then(Value::as_array);
    if elements.is_none_or(|e| e.is_empty()) {
        return invalid("elements: at least one tariff element");
    }
    for e in elements.into_iter().flatten() {
        let components = e.get("price_components").and_then(Value::as_array);
        if components.is_none_or(|c| c.is_empty()) {
            return invalid("elements[].price_components: at least one price component");
        }
        for c in components.into_iter().flatten() {
            if !text(c, "type").is_some_and(|t| COMPONENTS.contains(&t)) {
                return invalid(
                    "elements[].price_components[].type: ENERGY, FLAT, PARKING_TIME or TIME",
                );
            }
            let number = |f: &str| c.get(f).and_then(Value::as_f64).filter(|n| *n >= 0.0);
            if number("price").is_none() {
                return invalid("elements[].price_components[].price: a number of 0 or more");
            }
            if c.get("vat").is_some_and(|v| !v.is_null()) && number("vat").is_none() {
                return invalid("elements[].price_components[].vat: a percentage of 0 or more");
            }
            if c.get("step_size").and_then(Value::as_u64).is_none() {
                return invalid("elements[].price_components[].step_size: a whole number");
            }
        }
    }
    last_updated(o)
        .map(|_| ())
        .map_err(|_| Error::Invalid("last_updated: an RFC 3339 date-time".into()))
}

impl OcpiTariff {
    fn decide(&self, command: OcpiTariffCommand) -> Result<Vec<Event>, Error> {
        match command {
            OcpiTariffCommand::Put { key, object } => {
                check(&object, &key)?;
                let at = last_updated(&object).map_err(|_| Error::NotFound)?;
                let stale = !self.removed && self.last_updated.is_some_and(|prev| at < prev);
                if stale || (!self.removed && self.tariff.as_ref() == Some(&object)) {
                    return Ok(vec![]);
                }
                Ok(vec![Event::OcpiTariffUpdated(OcpiTariffUpdated {
                    workspace_id: key.workspace_id,
                    connection_id: key.connection_id,
                    country_code: key.country_code.to_ascii_uppercase(),
                    party_id: key.party_id.to_ascii_uppercase(),
                    tariff_id: text(&object, "id").unwrap_or(&key.object_id).to_string(),
                    currency: text(&object, "currency")
                        .unwrap_or_default()
                        .to_ascii_uppercase(),
                    last_updated: at,
                    tariff: object,
                })])
            }
            OcpiTariffCommand::Delete { key, at } => {
                if self.tariff.is_none() {
                    return Err(Error::NotFound);
                }
                if self.removed {
                    return Ok(vec![]);
                }
                Ok(vec![Event::OcpiTariffRemoved(OcpiTariffRemoved {
                    workspace_id: key.workspace_id,
                    connection_id: key.connection_id,
                    country_code: key.country_code.to_ascii_uppercase(),
                    party_id: key.party_id.to_ascii_uppercase(),
                    tariff_id: key.object_id,
                    removed_at: at,
                })])
            }
        }
    }
}

impl Aggregate for OcpiTariff {
    const TYPE: &'static str = "OcpiTariff";
    type Command = OcpiTariffCommand;
    type Event = Event;
    type Error = OcpiTariffError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Event) {
        match event {
            Event::OcpiTariffUpdated(e) => {
                self.workspace_id = Some(e.workspace_id);
                self.last_updated = Some(e.last_updated);
                self.tariff = Some(e.tariff);
                self.removed = false;
            }
            Event::OcpiTariffRemoved(_) => self.removed = true,
        }
    }
}
