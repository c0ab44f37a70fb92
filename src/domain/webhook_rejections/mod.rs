//! `WebhookRejections`: refused deliveries kept for support, one stream per
//! (workspace, hour). Unsigned noise (no or a bad signature, an unknown workspace) is
//! capped so forged floods cannot grow the store without bound; a refusal of a
//! delivery that was signed with a workspace's secret (someone holding that secret
//! reaching for another workspace's payment) is always recorded.

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use roampay_events::{WebhookRejected, WebhookRejectionEvent};
use serde::{Deserialize, Serialize};

use crate::infra::store::Never;

/// Unsigned refusals recorded per workspace and hour; past this only the log line and
/// the metric remain.
pub const CAP_PER_HOUR: u32 = 100;

/// Codes of refusals of deliveries whose signature verified.
const VERIFIED_REFUSALS: [&str; 2] = ["ownership_mismatch", "livemode_mismatch"];

fn is_noise(event: &WebhookRejectionEvent) -> bool {
    match event {
        WebhookRejectionEvent::WebhookRejected(r) => !VERIFIED_REFUSALS.contains(&r.code.as_str()),
        WebhookRejectionEvent::WebhookIgnored(_) => true,
    }
}

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
    /// Noise recorded this hour (verified refusals are not counted against the cap).
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
        if !is_noise(&cmd) || self.recorded < CAP_PER_HOUR {
            sink.write(cmd, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: WebhookRejectionEvent) {
        if is_noise(&event) {
            self.recorded += 1;
        }
    }
}
