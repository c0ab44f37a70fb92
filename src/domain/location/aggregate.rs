use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use roampay_events::{Connector, LocationData, LocationEvent, LocationPublished, LocationRemoved};
use serde::{Deserialize, Serialize};

use super::{LocationCommand, LocationError, PublishLocation, RemoveLocation};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub location_id: String,
    pub workspace_id: Option<String>,
    pub data: Option<LocationData>,
    pub last_updated: Option<DateTime<Utc>>,
}

impl Location {
    /// The uid of the EVSE `evse_uid` names (compared case-insensitively) as published.
    pub fn evse_uid(&self, evse_uid: &str) -> Option<&str> {
        let data = self.data.as_ref()?;
        data.evses
            .iter()
            .find(|e| e.uid.eq_ignore_ascii_case(evse_uid))
            .map(|e| e.uid.as_str())
    }

    pub fn connector(
        &self,
        evse_uid: &str,
        connector_id: &str,
    ) -> Result<&Connector, &'static str> {
        let data = self.data.as_ref().ok_or("location_not_found")?;
        let evse = data
            .evses
            .iter()
            .find(|e| e.uid.eq_ignore_ascii_case(evse_uid))
            .ok_or("evse_not_found")?;
        evse.connectors
            .iter()
            .find(|c| c.id.eq_ignore_ascii_case(connector_id))
            .ok_or("connector_not_found")
    }
}

impl Aggregate for Location {
    const TYPE: &'static str = "Location";
    type Command = LocationCommand;
    type Event = LocationEvent;
    type Error = LocationError;
    type Services = ();

    async fn handle(
        &mut self,
        cmd: LocationCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), LocationError> {
        let event = match cmd {
            LocationCommand::Publish(cmd) => self.publish(cmd)?,
            LocationCommand::Remove(cmd) => self.remove(cmd),
        };
        if let Some(event) = event {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: LocationEvent) {
        match event {
            LocationEvent::LocationPublished(e) => {
                self.location_id = e.location_id;
                self.workspace_id = Some(e.workspace_id);
                self.data = Some(e.location);
                self.last_updated = Some(e.published_at);
            }
            LocationEvent::LocationRemoved(e) => {
                self.workspace_id = None;
                self.data = None;
                self.last_updated = Some(e.removed_at);
            }
        }
    }
}

impl Location {
    fn publish(&self, cmd: PublishLocation) -> Result<Option<LocationEvent>, LocationError> {
        if let Some(owner) = &self.workspace_id {
            if *owner != cmd.workspace_id {
                return Err(LocationError::OwnedByOtherWorkspace(cmd.location_id));
            }
        }
        if self.data.as_ref() == Some(&cmd.location) {
            return Ok(None); // the same document again
        }
        Ok(Some(LocationEvent::LocationPublished(LocationPublished {
            location_id: cmd.location_id,
            workspace_id: cmd.workspace_id,
            location: cmd.location,
            published_by: cmd.actor,
            published_at: cmd.at,
        })))
    }

    /// Only the owner's location is removed; anything else (gone already, someone
    /// else's) changes nothing.
    fn remove(&self, cmd: RemoveLocation) -> Option<LocationEvent> {
        let owned = self.workspace_id.as_deref() == Some(cmd.workspace_id.as_str());
        owned.then_some(LocationEvent::LocationRemoved(LocationRemoved {
            location_id: cmd.location_id,
            workspace_id: cmd.workspace_id,
            removed_by: cmd.actor,
            removed_at: cmd.at,
        }))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;
    use roampay_events::{Coordinates, Evse, Tariff};

    use super::*;

    fn data(price: i64) -> LocationData {
        LocationData {
            name: "Depot A".into(),
            address: "1 Main St".into(),
            city: "Sydney".into(),
            postal_code: Some("2000".into()),
            country: "AUS".into(),
            coordinates: Coordinates {
                latitude: "-33.8688".into(),
                longitude: "151.2093".into(),
            },
            evses: vec![Evse {
                uid: "EVSE-1".into(),
                evse_id: None,
                connectors: vec![Connector {
                    id: "1".into(),
                    standard: "IEC_62196_T2".into(),
                    format: "SOCKET".into(),
                    power_type: "AC_3_PHASE".into(),
                    max_electric_power: None,
                    tariff: Tariff {
                        currency: "aud".into(),
                        price_per_kwh_cents: price,
                        flat_fee_cents: 0,
                    },
                }],
            }],
        }
    }

    fn publish(ws: &str, price: i64) -> LocationCommand {
        LocationCommand::Publish(PublishLocation {
            location_id: "LOC-1".into(),
            workspace_id: ws.into(),
            location: data(price),
            actor: "cpo".into(),
            at: Utc.with_ymd_and_hms(2026, 11, 22, 5, 0, 0).unwrap(),
        })
    }

    fn published(ws: &str, price: i64) -> LocationEvent {
        let LocationCommand::Publish(c) = publish(ws, price) else {
            unreachable!()
        };
        LocationEvent::LocationPublished(LocationPublished {
            location_id: c.location_id,
            workspace_id: c.workspace_id,
            location: c.location,
            published_by: c.actor,
            published_at: c.at,
        })
    }

    #[test]
    fn a_new_location_is_published_by_its_workspace() {
        TestFramework::<Location>::with(())
            .given_no_previous_events()
            .when(publish("ws-1", 45))
            .then_expect_events(vec![published("ws-1", 45)]);
    }

    #[test]
    fn a_location_owned_by_another_workspace_is_refused() {
        TestFramework::<Location>::with(())
            .given(vec![published("ws-1", 45)])
            .when(publish("ws-2", 45))
            .then_expect_error(LocationError::OwnedByOtherWorkspace("LOC-1".into()));
    }

    #[test]
    fn republishing_replaces_the_document_and_the_same_document_changes_nothing() {
        TestFramework::<Location>::with(())
            .given(vec![published("ws-1", 45)])
            .when(publish("ws-1", 0))
            .then_expect_events(vec![published("ws-1", 0)]);
        TestFramework::<Location>::with(())
            .given(vec![published("ws-1", 45)])
            .when(publish("ws-1", 45))
            .then_expect_events(vec![]);
    }

    fn remove(ws: &str) -> LocationCommand {
        LocationCommand::Remove(RemoveLocation {
            location_id: "LOC-1".into(),
            workspace_id: ws.into(),
            actor: "system:billing".into(),
            at: Utc.with_ymd_and_hms(2027, 3, 1, 0, 0, 0).unwrap(),
        })
    }

    #[test]
    fn only_the_owner_removes_a_location_and_its_id_is_free_again() {
        let removed = LocationEvent::LocationRemoved(LocationRemoved {
            location_id: "LOC-1".into(),
            workspace_id: "ws-1".into(),
            removed_by: "system:billing".into(),
            removed_at: Utc.with_ymd_and_hms(2027, 3, 1, 0, 0, 0).unwrap(),
        });
        TestFramework::<Location>::with(())
            .given(vec![published("ws-1", 45)])
            .when(remove("ws-2"))
            .then_expect_events(vec![]);
        TestFramework::<Location>::with(())
            .given(vec![published("ws-1", 45)])
            .when(remove("ws-1"))
            .then_expect_events(vec![removed.clone()]);
        TestFramework::<Location>::with(())
            .given(vec![published("ws-1", 45), removed.clone()])
            .when(remove("ws-1"))
            .then_expect_events(vec![]);
        TestFramework::<Location>::with(())
            .given(vec![published("ws-1", 45), removed])
            .when(publish("ws-2", 45))
            .then_expect_events(vec![published("ws-2", 45)]);
    }
}
