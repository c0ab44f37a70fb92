//! `Reconciliation`: PaymentIntents found in a workspace's Stripe account with its
//! roampay metadata that no charging intent owns, as recorded by `reconcile --apply`.

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use roampay_events::{ForeignPaymentIntentRecorded, ReconciliationEvent};
use serde::{Deserialize, Serialize};

use crate::infra::store::Never;

/// PaymentIntents recorded by reconciliation, one stream per (workspace, PaymentIntent):
/// recording the same one twice is a no-op.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignPaymentIntent {
    pub recorded: bool,
}

impl Aggregate for ForeignPaymentIntent {
    const TYPE: &'static str = "Reconciliation";
    type Command = ForeignPaymentIntentRecorded;
    type Event = ReconciliationEvent;
    type Error = Never;
    type Services = ();

    async fn handle(
        &mut self,
        cmd: ForeignPaymentIntentRecorded,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), Never> {
        if !self.recorded {
            sink.write(ReconciliationEvent::ForeignPaymentIntentRecorded(cmd), self)
                .await;
        }
        Ok(())
    }

    fn apply(&mut self, _: ReconciliationEvent) {
        self.recorded = true;
    }
}

pub fn foreign_stream(workspace_id: &str, payment_intent_id: &str) -> String {
    format!("{workspace_id}/{payment_intent_id}")
}
