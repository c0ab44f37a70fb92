//! The roampay event contract.
//!
//! Every type here is stored in the event log as JSON and lives forever: change a
//! field only by adding an optional one, and add a golden sample under `samples/`
//! for every new event (the `golden_samples` test reads them all back).

pub mod charging_intent;
pub mod connector;
pub mod intent_facts;
pub mod intent_status;
pub mod location;
pub mod ocpi_connection;
pub mod ocpi_session;
pub mod ocpi_tariff;
pub mod reconciliation;
pub mod webhook;
pub mod workspace_stripe_profile;
pub mod workspace_subscription;

pub use charging_intent::*;
pub use connector::*;
pub use intent_facts::{settlement_step, Dispute, IntentFacts, Settlement};
pub use intent_status::IntentStatus;
pub use location::*;
pub use ocpi_connection::*;
pub use ocpi_session::*;
pub use ocpi_tariff::*;
pub use reconciliation::*;
pub use webhook::*;
pub use workspace_stripe_profile::*;
pub use workspace_subscription::*;

/// The version written next to every stored event; bump it together with an upcaster.
pub const EVENT_VERSION: &str = "1.0";

macro_rules! domain_event {
    ($($t:ty),*) => {$(
        impl cqrs_es::DomainEvent for $t {
            fn event_type(&self) -> String {
                <$t>::event_type(self).to_string()
            }
            fn event_version(&self) -> String {
                EVENT_VERSION.to_string()
            }
        }
    )*};
}

domain_event!(
    WorkspaceStripeProfileEvent,
    LocationEvent,
    ConnectorReservationEvent,
    ChargingIntentEvent,
    WebhookRejectionEvent,
    ReconciliationEvent,
    WorkspaceSubscriptionEvent,
    OcpiConnectionEvent,
    OcpiSessionEvent,
    OcpiTariffEvent
);

/// Any stored event, decoded by its aggregate type. The read side decodes each event
/// once and hands the typed value to every projection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyEvent {
    WorkspaceStripeProfile(WorkspaceStripeProfileEvent),
    Location(LocationEvent),
    ConnectorReservation(ConnectorReservationEvent),
    ChargingIntent(ChargingIntentEvent),
    WebhookRejections(WebhookRejectionEvent),
    Reconciliation(ReconciliationEvent),
    WorkspaceSubscription(WorkspaceSubscriptionEvent),
    OcpiConnections(OcpiConnectionEvent),
    OcpiSession(OcpiSessionEvent),
    OcpiTariff(OcpiTariffEvent),
    /// An aggregate type this build does not know (written by a newer version).
    Unknown,
}

impl AnyEvent {
    pub fn decode(aggregate_type: &str, payload: &str) -> Result<Self, serde_json::Error> {
        Ok(match aggregate_type {
            "WorkspaceStripeProfile" => {
                AnyEvent::WorkspaceStripeProfile(serde_json::from_str(payload)?)
            }
            "Location" => AnyEvent::Location(serde_json::from_str(payload)?),
            "ConnectorReservation" => {
                AnyEvent::ConnectorReservation(serde_json::from_str(payload)?)
            }
            "ChargingIntent" => AnyEvent::ChargingIntent(serde_json::from_str(payload)?),
            "WebhookRejections" => AnyEvent::WebhookRejections(serde_json::from_str(payload)?),
            "Reconciliation" => AnyEvent::Reconciliation(serde_json::from_str(payload)?),
            "WorkspaceSubscription" => {
                AnyEvent::WorkspaceSubscription(serde_json::from_str(payload)?)
            }
            "OcpiConnections" => AnyEvent::OcpiConnections(serde_json::from_str(payload)?),
            "OcpiSession" => AnyEvent::OcpiSession(serde_json::from_str(payload)?),
            "OcpiTariff" => AnyEvent::OcpiTariff(serde_json::from_str(payload)?),
            _ => AnyEvent::Unknown,
        })
    }

    /// The event as stored.
    pub fn to_value(&self) -> serde_json::Value {
        match self {
            AnyEvent::WorkspaceStripeProfile(e) => serde_json::to_value(e),
            AnyEvent::Location(e) => serde_json::to_value(e),
            AnyEvent::ConnectorReservation(e) => serde_json::to_value(e),
            AnyEvent::ChargingIntent(e) => serde_json::to_value(e),
            AnyEvent::WebhookRejections(e) => serde_json::to_value(e),
            AnyEvent::Reconciliation(e) => serde_json::to_value(e),
            AnyEvent::WorkspaceSubscription(e) => serde_json::to_value(e),
            AnyEvent::OcpiConnections(e) => serde_json::to_value(e),
            AnyEvent::OcpiSession(e) => serde_json::to_value(e),
            AnyEvent::OcpiTariff(e) => serde_json::to_value(e),
            AnyEvent::Unknown => Ok(serde_json::Value::Null),
        }
        .expect("events serialize")
    }

    pub fn event_type(&self) -> &'static str {
        match self {
            AnyEvent::WorkspaceStripeProfile(e) => e.event_type(),
            AnyEvent::Location(e) => e.event_type(),
            AnyEvent::ConnectorReservation(e) => e.event_type(),
            AnyEvent::ChargingIntent(e) => e.event_type(),
            AnyEvent::WebhookRejections(e) => e.event_type(),
            AnyEvent::Reconciliation(e) => e.event_type(),
            AnyEvent::WorkspaceSubscription(e) => e.event_type(),
            AnyEvent::OcpiConnections(e) => e.event_type(),
            AnyEvent::OcpiSession(e) => e.event_type(),
            AnyEvent::OcpiTariff(e) => e.event_type(),
            AnyEvent::Unknown => "Unknown",
        }
    }

    /// The workspace the event belongs to, where it has one.
    pub fn workspace_id(&self) -> Option<&str> {
        match self {
            AnyEvent::WorkspaceStripeProfile(e) => Some(e.workspace_id()),
            AnyEvent::Location(e) => Some(e.workspace_id()),
            AnyEvent::ConnectorReservation(e) => Some(e.workspace_id()),
            AnyEvent::ChargingIntent(e) => Some(e.workspace_id()),
            AnyEvent::WebhookRejections(e) => e.workspace_id(),
            AnyEvent::Reconciliation(e) => Some(e.workspace_id()),
            AnyEvent::WorkspaceSubscription(e) => Some(e.workspace_id()),
            AnyEvent::OcpiConnections(e) => Some(e.workspace_id()),
            AnyEvent::OcpiSession(e) => Some(e.workspace_id()),
            AnyEvent::OcpiTariff(e) => Some(e.workspace_id()),
            AnyEvent::Unknown => None,
        }
    }
}

#[cfg(test)]
mod golden {
    //! Every sample under `samples/<AggregateType>/<EventType>.json` is an event exactly
    //! as stored. Reading each back and writing it out unchanged proves history still
    //! deserializes.
    use super::*;
    use std::path::Path;

    fn samples() -> Vec<(String, String, serde_json::Value)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
        let mut out = Vec::new();
        for aggregate in std::fs::read_dir(&root).expect("samples folder") {
            let aggregate = aggregate.expect("dir entry").path();
            let agg_name = aggregate.file_name().unwrap().to_string_lossy().to_string();
            for entry in std::fs::read_dir(&aggregate).expect("aggregate folder") {
                let path = entry.expect("dir entry").path();
                let name = path.file_stem().unwrap().to_string_lossy().to_string();
                let text = std::fs::read_to_string(&path).expect("sample readable");
                out.push((
                    agg_name.clone(),
                    name,
                    serde_json::from_str(&text).expect("sample is JSON"),
                ));
            }
        }
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        out
    }

    #[test]
    fn every_stored_sample_deserializes_and_round_trips() {
        let samples = samples();
        assert!(samples.len() >= 13, "{} samples", samples.len());
        for (aggregate, name, json) in samples {
            let event = AnyEvent::decode(&aggregate, &json.to_string())
                .unwrap_or_else(|e| panic!("{aggregate}/{name} no longer deserializes: {e}"));
            assert_ne!(event, AnyEvent::Unknown, "{aggregate} is a known aggregate");
            assert_eq!(
                event.event_type(),
                name,
                "sample file name is the event type"
            );
            assert_eq!(event.to_value(), json, "{aggregate}/{name} round trip");
        }
    }

    #[test]
    fn every_event_type_has_a_sample() {
        let names: Vec<String> = samples().into_iter().map(|(_, n, _)| n).collect();
        for expected in [
            "WorkspaceOcpiConfigUpdated",
            "WorkspaceStripeCredentialsUpdated",
            "WorkspaceStripeCredentialsValidated",
            "WorkspaceStripeCredentialsValidationFailed",
            "WorkspaceStripeCredentialsRemoved",
            "WorkspaceStripeCandidateSaved",
            "WorkspaceStripeCandidatePromoted",
            "WorkspaceStripeCandidateRejected",
            "WorkspaceStripeCredentialsRevoked",
            "WorkspaceWebhookVerified",
            "WorkspaceWebhookFailing",
            "LocationPublished",
            "LocationRemoved",
            "WorkspaceOcpiConfigPurged",
            "ConnectorReserved",
            "ConnectorReleased",
            "FreeSessionAuthorized",
            "WorkspacePaymentIntentCreated",
            "WorkspacePaymentIntentCreationFailed",
            "WorkspacePaymentIntentAuthorizationReceived",
            "WorkspacePaymentIntentFailed",
            "WebhookRejected",
            "ForeignPaymentIntentRecorded",
            "StrayHoldReleased",
            "WorkspaceBillingCustomerCreated",
            "WorkspaceCheckoutCompleted",
            "WorkspaceSubscriptionActivated",
            "WorkspaceSubscriptionUpdated",
            "WorkspacePlanChanged",
            "WorkspaceInvoicePaymentFailed",
            "WorkspacePaymentActionRequired",
            "WorkspacePaymentActionCompleted",
            "WorkspaceSuspended",
            "WorkspaceReinstated",
            "WorkspaceSubscriptionCancelled",
            "WorkspaceDataPurged",
            "WorkspaceStripeConnectAccountCreated",
            "WorkspaceStripeOnboardingLinkIssued",
            "WorkspaceStripeConnectAccountUpdated",
            "WorkspaceStripeConnectDeauthorized",
            "WorkspaceStripeConnectionSwitched",
            "OcpiConnectionCreated",
            "OcpiConnectionRegistered",
            "OcpiConnectionCredentialsUpdated",
            "OcpiConnectionUnregistered",
            "OcpiSessionUpdated",
            "OcpiTariffUpdated",
            "OcpiTariffRemoved",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "missing sample for {expected}"
            );
        }
    }
}
