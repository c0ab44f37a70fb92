//! The roampay event contract.
//!
//! Every type here is stored in the event log as JSON and lives forever: change a
//! field only by adding an optional one, and add a golden sample under `samples/`
//! for every new event (the `golden_samples` test reads them all back).

pub mod workspace_stripe_profile;

pub use workspace_stripe_profile::*;

/// The version written next to every stored event; bump it together with an upcaster.
pub const EVENT_VERSION: &str = "1.0";

impl cqrs_es::DomainEvent for WorkspaceStripeProfileEvent {
    fn event_type(&self) -> String {
        WorkspaceStripeProfileEvent::event_type(self).to_string()
    }

    fn event_version(&self) -> String {
        EVENT_VERSION.to_string()
    }
}

#[cfg(test)]
mod golden {
    //! Every sample under `samples/` is an event exactly as stored. Reading each back
    //! and writing it out again unchanged proves history still deserializes.
    use super::*;
    use std::path::Path;

    fn samples() -> Vec<(String, serde_json::Value)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("samples folder") {
            let path = entry.expect("dir entry").path();
            let name = path.file_stem().unwrap().to_string_lossy().to_string();
            let text = std::fs::read_to_string(&path).expect("sample readable");
            out.push((name, serde_json::from_str(&text).expect("sample is JSON")));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    #[test]
    fn every_stored_sample_deserializes_and_round_trips() {
        let samples = samples();
        assert!(!samples.is_empty());
        for (name, json) in samples {
            let event: WorkspaceStripeProfileEvent = serde_json::from_value(json.clone())
                .unwrap_or_else(|e| panic!("{name} no longer deserializes: {e}"));
            assert_eq!(
                event.event_type(),
                name,
                "sample file name is the event type"
            );
            assert_eq!(
                serde_json::to_value(&event).unwrap(),
                json,
                "{name} round trip"
            );
        }
    }

    #[test]
    fn every_event_type_has_a_sample() {
        let names: Vec<String> = samples().into_iter().map(|(n, _)| n).collect();
        for expected in [
            "WorkspaceOcpiConfigUpdated",
            "WorkspaceStripeCredentialsUpdated",
            "WorkspaceStripeCredentialsValidated",
            "WorkspaceStripeCredentialsValidationFailed",
            "WorkspaceStripeCredentialsRemoved",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "missing sample for {expected}"
            );
        }
    }
}

/// Any stored event, decoded by its aggregate type. The read side decodes each event
/// once and hands the typed value to every projection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyEvent {
    WorkspaceStripeProfile(WorkspaceStripeProfileEvent),
    /// An aggregate type this build does not know (written by a newer version).
    Unknown,
}

impl AnyEvent {
    pub fn decode(aggregate_type: &str, payload: &str) -> Result<Self, serde_json::Error> {
        Ok(match aggregate_type {
            "WorkspaceStripeProfile" => {
                AnyEvent::WorkspaceStripeProfile(serde_json::from_str(payload)?)
            }
            _ => AnyEvent::Unknown,
        })
    }

    /// The workspace the event belongs to, where it has one.
    pub fn workspace_id(&self) -> Option<&str> {
        match self {
            AnyEvent::WorkspaceStripeProfile(e) => Some(e.workspace_id()),
            AnyEvent::Unknown => None,
        }
    }
}
