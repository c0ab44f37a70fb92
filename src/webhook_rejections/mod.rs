//! `WebhookRejections`: refused deliveries kept for support, one stream per
//! (workspace, hour), capped so forged floods cannot grow the store without bound.

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use roampay_events::{WebhookRejected, WebhookRejectionEvent};
use serde::{Deserialize, Serialize};

use crate::store::Never;

/// Rejections recorded per workspace and hour; past this only the log line remains.
pub const CAP_PER_HOUR: u32 = 100;

/// The stream of a rejection: `<workspace or ->@<YYYY-MM-DDTHH>`.
pub fn stream_id_of(workspace_id: Option<&str>, at: chrono::DateTime<chrono::Utc>) -> String {
    format!(
        "{}@{}",
        workspace_id.unwrap_or("-"),
        at.format("%Y-%m-%dT%H")
    )
}

/// The stream of a rejection: `<workspace or ->@<YYYY-MM-DDTHH>`.
pub fn stream_id(rejection: &WebhookRejected) -> String {
    format!(
        "{}@{}",
        rejection.workspace_id.as_deref().unwrap_or("-"),
        rejection.rejected_at.format("%Y-%m-%dT%H")
    )
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookRejections {
    pub recorded: u32,
}

impl Aggregate for WebhookRejections {
    const TYPE: &'static str = "WebhookRejections";
    type Command = WebhookRejectionEvent;
    type Event = WebhookRejectionEvent;
    type Error = Never;
    type Services = ();

    async fn handle(
        &mut self,
        cmd: WebhookRejectionEvent,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), Never> {
        if self.recorded < CAP_PER_HOUR {
            sink.write(cmd, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, _: WebhookRejectionEvent) {
        self.recorded += 1;
    }
}
