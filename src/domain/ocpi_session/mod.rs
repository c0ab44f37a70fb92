//! A charging session as the CPO reports it (OCPI 2.2.1 Sessions): one aggregate per
//! workspace, CPO party and session id. `PUT` replaces the object, `PATCH` merges into
//! it; an update older than the stored one (`last_updated`) changes nothing, so a late
//! or replayed push never undoes a newer one.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use roampay_events::{OcpiSessionEvent as Event, OcpiSessionUpdated};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[cfg(test)]
mod tests;

/// The statuses OCPI 2.2.1 gives a session.
pub const STATUSES: [&str; 5] = ["ACTIVE", "COMPLETED", "INVALID", "PENDING", "RESERVATION"];

/// The stream of a session: its workspace, its CPO party and its id, folded (CiString).
pub fn stream_id(ws: &str, country_code: &str, party_id: &str, session_id: &str) -> String {
    format!(
        "{ws}:{}:{}:{}",
        country_code.to_ascii_uppercase(),
        party_id.to_ascii_uppercase(),
        session_id.to_ascii_lowercase()
    )
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OcpiSession {
    pub workspace_id: Option<String>,
    pub session: Option<Value>,
    pub status: Option<String>,
    pub authorization_reference: Option<String>,
    pub last_updated: Option<DateTime<Utc>>,
}

/// Where a pushed object (session, tariff, …) comes from: the connection, the CPO's
/// party and the object's id.
#[derive(Debug, Clone)]
pub struct ObjectKey {
    pub workspace_id: String,
    pub connection_id: String,
    pub country_code: String,
    pub party_id: String,
    pub object_id: String,
}

#[derive(Debug, Clone)]
pub enum OcpiSessionCommand {
    /// `PUT`: the whole session object, already checked.
    Put { key: ObjectKey, object: Value },
    /// `PATCH`: the fields that changed, with `last_updated`.
    Patch { key: ObjectKey, fields: Value },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OcpiSessionError {
    #[error("no such session: PUT it first")]
    NotFound,
    /// A field OCPI requires is missing or has the wrong shape (named).
    #[error("{0}")]
    Invalid(String),
}

type Error = OcpiSessionError;

/// `last_updated` of an object (required on every push).
pub fn last_updated(o: &Value) -> Result<DateTime<Utc>, Error> {
    o.get("last_updated")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| Error::Invalid("last_updated: an RFC 3339 date-time".into()))
}

pub fn text<'a>(o: &'a Value, field: &str) -> Option<&'a str> {
    o.get(field).and_then(Value::as_str)
}

/// What a whole session object must hold, as far as roampay reads it.
fn check(o: &Value, key: &ObjectKey) -> Result<(), Error> {
    let invalid = |m: &str| Err(Error::Invalid(m.into()));
    if !o.is_object() {
        return invalid("a Session object");
    }
    let same =
        |field: &str, want: &str| text(o, field).is_some_and(|v| v.eq_ignore_ascii_case(want));
    if !same("id", &key.object_id) {
        return invalid("id: the session id of the URL");
    }
    if !same("country_code", &key.country_code) || !same("party_id", &key.party_id) {
        return invalid("country_code, party_id: those of the URL");
    }
    if !text(o, "status").is_some_and(|s| STATUSES.contains(&s)) {
        return invalid("status: ACTIVE, COMPLETED, INVALID, PENDING or RESERVATION");
    }
    if o.get("kwh")
        .is_some_and(|k| !k.as_f64().is_some_and(|k| k >= 0.0))
    {
        return invalid("kwh: a number of 0 or more");
    }
    last_updated(o).map(|_| ())
}

impl OcpiSession {
    fn updated(&self, key: ObjectKey, object: Value) -> Result<Vec<Event>, Error> {
        check(&object, &key)?;
        let at = last_updated(&object)?;
        if self.last_updated.is_some_and(|prev| at < prev) || self.session.as_ref() == Some(&object)
        {
            return Ok(vec![]); // stale, or the same again
        }
        Ok(vec![Event::OcpiSessionUpdated(OcpiSessionUpdated {
            workspace_id: key.workspace_id,
            connection_id: key.connection_id,
            country_code: key.country_code.to_ascii_uppercase(),
            party_id: key.party_id.to_ascii_uppercase(),
            session_id: text(&object, "id").unwrap_or(&key.object_id).to_string(),
            status: text(&object, "status").unwrap_or_default().to_string(),
            authorization_reference: text(&object, "authorization_reference").map(str::to_string),
            last_updated: at,
            session: object,
        })])
    }

    fn decide(&self, command: OcpiSessionCommand) -> Result<Vec<Event>, Error> {
        match command {
            OcpiSessionCommand::Put { key, object } => self.updated(key, object),
            OcpiSessionCommand::Patch { key, fields } => {
                let Some(Value::Object(mut merged)) = self.session.clone() else {
                    return Err(Error::NotFound);
                };
                let Value::Object(fields) = fields else {
                    return Err(Error::Invalid("a JSON object of Session fields".into()));
                };
                last_updated(&Value::Object(fields.clone()))?;
                merged.extend(fields);
                self.updated(key, Value::Object(merged))
            }
        }
    }
}

impl Aggregate for OcpiSession {
    const TYPE: &'static str = "OcpiSession";
    type Command = OcpiSessionCommand;
    type Event = Event;
    type Error = OcpiSessionError;
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
            Event::OcpiSessionUpdated(e) => {
                self.workspace_id = Some(e.workspace_id);
                self.status = Some(e.status);
                self.authorization_reference = e.authorization_reference;
                self.last_updated = Some(e.last_updated);
                self.session = Some(e.session);
            }
        }
    }
}
