//! `ConnectorReservation`: one stream per connector, so "one open intent per connector"
//! is enforced by the event store's sequence key, not by read-then-check.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use roampay_events::{ConnectorReleased, ConnectorReservationEvent as Event, ConnectorReserved};
use serde::{Deserialize, Serialize};

/// The aggregate id of a connector.
/// The stream of one connector: its three ids joined by `/`, each with `%` and `/`
/// escaped, so that no two connectors share a key (ids may contain `/`). Ids without
/// either character keep the key they always had.
pub fn connector_key(location_id: &str, evse_uid: &str, connector_id: &str) -> String {
    fn escaped(id: &str) -> std::borrow::Cow<'_, str> {
        if id.contains(['%', '/']) {
            id.replace('%', "%25").replace('/', "%2F").into()
        } else {
            id.into()
        }
    }
    format!(
        "{}/{}/{}",
        escaped(location_id),
        escaped(evse_uid),
        escaped(connector_id)
    )
}

#[cfg(test)]
mod key_tests {
    use super::connector_key;

    #[test]
    fn keys_are_injective_and_unchanged_for_plain_ids() {
        assert_eq!(connector_key("LOC-1", "EVSE-1", "1"), "LOC-1/EVSE-1/1");
        assert_ne!(
            connector_key("A/B", "C", "1"),
            connector_key("A", "B/C", "1")
        );
        assert_ne!(
            connector_key("A%2FB", "C", "1"),
            connector_key("A/B", "C", "1")
        );
        assert_ne!(
            connector_key("A", "B", "C/1"),
            connector_key("A", "B/C", "1")
        );
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorReservation {
    pub held_by: Option<String>,
    pub held_since: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub enum ConnectorCommand {
    Reserve {
        workspace_id: String,
        location_id: String,
        evse_uid: String,
        connector_id: String,
        charging_intent_id: String,
        at: DateTime<Utc>,
    },
    Release {
        workspace_id: String,
        charging_intent_id: String,
        reason: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectorError {
    #[error("the connector is held by another charging intent")]
    Busy { held_by: String },
}

impl Aggregate for ConnectorReservation {
    const TYPE: &'static str = "ConnectorReservation";
    type Command = ConnectorCommand;
    type Event = Event;
    type Error = ConnectorError;
    type Services = ();

    async fn handle(
        &mut self,
        cmd: ConnectorCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), ConnectorError> {
        match cmd {
            ConnectorCommand::Reserve {
                workspace_id,
                location_id,
                evse_uid,
                connector_id,
                charging_intent_id,
                at,
            } => {
                match &self.held_by {
                    Some(holder) if *holder == charging_intent_id => Ok(()), // a retry of the same request
                    Some(holder) => Err(ConnectorError::Busy {
                        held_by: holder.clone(),
                    }),
                    None => {
                        let e = ConnectorReserved {
                            workspace_id,
                            location_id,
                            evse_uid,
                            connector_id,
                            charging_intent_id,
                            reserved_at: at,
                        };
                        sink.write(Event::ConnectorReserved(e), self).await;
                        Ok(())
                    }
                }
            }
            ConnectorCommand::Release {
                workspace_id,
                charging_intent_id,
                reason,
                at,
            } => {
                if self.held_by.as_deref() == Some(charging_intent_id.as_str()) {
                    let e = ConnectorReleased {
                        workspace_id,
                        charging_intent_id,
                        reason,
                        released_at: at,
                    };
                    sink.write(Event::ConnectorReleased(e), self).await;
                }
                Ok(())
            }
        }
    }

    fn apply(&mut self, event: Event) {
        match event {
            Event::ConnectorReserved(e) => {
                self.held_by = Some(e.charging_intent_id);
                self.held_since = Some(e.reserved_at);
            }
            Event::ConnectorReleased(_) => {
                self.held_by = None;
                self.held_since = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;

    use super::*;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 5, 0, 0).unwrap()
    }
    fn reserve(id: &str) -> ConnectorCommand {
        ConnectorCommand::Reserve {
            workspace_id: "ws-1".into(),
            location_id: "LOC-1".into(),
            evse_uid: "E1".into(),
            connector_id: "1".into(),
            charging_intent_id: id.into(),
            at: at(),
        }
    }
    fn reserved(id: &str) -> Event {
        Event::ConnectorReserved(ConnectorReserved {
            workspace_id: "ws-1".into(),
            location_id: "LOC-1".into(),
            evse_uid: "E1".into(),
            connector_id: "1".into(),
            charging_intent_id: id.into(),
            reserved_at: at(),
        })
    }
    fn release(id: &str) -> ConnectorCommand {
        ConnectorCommand::Release {
            workspace_id: "ws-1".into(),
            charging_intent_id: id.into(),
            reason: "failed".into(),
            at: at(),
        }
    }
    fn released(id: &str) -> Event {
        Event::ConnectorReleased(ConnectorReleased {
            workspace_id: "ws-1".into(),
            charging_intent_id: id.into(),
            reason: "failed".into(),
            released_at: at(),
        })
    }

    #[test]
    fn a_free_connector_is_reserved() {
        TestFramework::<ConnectorReservation>::with(())
            .given_no_previous_events()
            .when(reserve("a"))
            .then_expect_events(vec![reserved("a")]);
    }

    #[test]
    fn a_held_connector_refuses_another_intent_but_not_a_retry_of_its_own() {
        TestFramework::<ConnectorReservation>::with(())
            .given(vec![reserved("a")])
            .when(reserve("b"))
            .then_expect_error(ConnectorError::Busy {
                held_by: "a".into(),
            });
        TestFramework::<ConnectorReservation>::with(())
            .given(vec![reserved("a")])
            .when(reserve("a"))
            .then_expect_events(vec![]);
    }

    #[test]
    fn only_the_holder_releases_and_then_the_connector_is_free_again() {
        TestFramework::<ConnectorReservation>::with(())
            .given(vec![reserved("a")])
            .when(release("b"))
            .then_expect_events(vec![]);
        TestFramework::<ConnectorReservation>::with(())
            .given(vec![reserved("a")])
            .when(release("a"))
            .then_expect_events(vec![released("a")]);
        TestFramework::<ConnectorReservation>::with(())
            .given(vec![reserved("a"), released("a")])
            .when(reserve("b"))
            .then_expect_events(vec![reserved("b")]);
    }
}
