//! `POST /ocpi/stripe/connect/webhook`: the platform's endpoint for events on connected
//! accounts. Verified with the platform's Connect signing secret; the event's `account`
//! names the connected account, and so the workspace (an account no workspace has is
//! ignored). Payment, refund and dispute events then go the way they go on a
//! workspace's own endpoint, bound to that account; `account.updated` and
//! `account.application.deauthorized` change the workspace's Connect health.

use roampay_events::StripeMode;
use serde_json::Value;

use super::delivery_log::Seen;
use super::webhook_answers::{event_head, Refused, Via, WebhookOutcome, WebhookRefusal};
use super::webhooks::Delivery;
use super::webhooks::Webhooks;
use crate::domain::ids::WorkspaceId;
use crate::infra::store::Metadata;
use crate::infra::stripe::boundary::{checked, is_object_id};
use crate::infra::stripe::connect::AccountView;

impl Webhooks {
    pub(super) async fn process_connect_webhook(
        &self,
        delivery: &Delivery<'_>,
        meta: &Metadata,
        seen: &mut Seen,
    ) -> Result<WebhookOutcome, Refused> {
        let not_configured = || Refused::from(WebhookRefusal::WebhookSecretNotConfigured);
        let connect = self.connect.settings.as_ref().ok_or_else(not_configured)?;
        self.endpoints.verify(
            delivery.body,
            delivery.signature,
            &connect.webhook_secrets,
            "connect",
        )?;
        seen.verified = true;
        let event: Value = serde_json::from_slice(delivery.body)
            .map_err(|_| Refused::from(WebhookRefusal::InvalidPayload))?;
        let (event_id, kind) = event_head(&event)?;
        seen.read_head(&event);
        let account = checked(&event, "/account", "account", is_object_id)
            .map_err(|_| Refused::from(WebhookRefusal::InvalidPayload))?;
        let Some(account) = account else {
            return Ok(WebhookOutcome::Ignored); // about the platform's own account
        };
        let Some(ws) = self.workspace_of_account(&account, &event).await? else {
            tracing::info!(account = %account, stripe.event = %event_id, "Connect event about an account no workspace has: ignored");
            return Ok(WebhookOutcome::Ignored);
        };
        seen.workspace_id = Some(ws.to_string());
        tracing::Span::current().record("workspace_id", ws.as_str());
        let in_ws = |why: WebhookRefusal| Refused::from(why).in_workspace(&ws);
        let live = connect.mode == StripeMode::Live;
        if event
            .get("livemode")
            .and_then(Value::as_bool)
            .is_some_and(|l| l != live)
        {
            return Err(in_ws(WebhookRefusal::LivemodeMismatch));
        }
        let store = |_| in_ws(WebhookRefusal::StoreUnavailable);
        let profile = self
            .profiles
            .load_recent(ws.as_str())
            .await
            .map_err(store)?;
        if profile.connect_event_seen(&event_id) {
            return Ok(WebhookOutcome::Duplicate);
        }
        let changed = match kind.as_deref() {
            Some("account.updated") => {
                let object = event.pointer("/data/object").unwrap_or(&Value::Null);
                let view = AccountView::from_json(object)
                    .ok()
                    .flatten()
                    .filter(|a| a.id == account)
                    .ok_or_else(|| in_ws(WebhookRefusal::InvalidPayload))?;
                self.connect
                    .refresh_connect_account(ws.as_str(), view, Some(event_id), meta)
                    .await
            }
            Some("account.application.deauthorized") => {
                self.connect
                    .deauthorize_connect_account(
                        ws.as_str(),
                        &account,
                        "webhook",
                        Some(event_id),
                        meta,
                    )
                    .await
            }
            _ => {
                let via = Via {
                    live,
                    connect_account: Some(account),
                };
                return self
                    .apply_payment_event(&ws, &profile, &event, &via, meta)
                    .await;
            }
        };
        match changed {
            Ok(true) => Ok(WebhookOutcome::Applied),
            Ok(false) => Ok(WebhookOutcome::Ignored),
            Err(_) => Err(in_ws(WebhookRefusal::StoreUnavailable)),
        }
    }

    /// The workspace whose connected account `account` is: from the read model, or —
    /// for an account created a moment ago — from the account's own metadata, trusted
    /// only when that workspace's profile names the same account.
    async fn workspace_of_account(
        &self,
        account: &str,
        event: &Value,
    ) -> Result<Option<WorkspaceId>, Refused> {
        let store = |_: sqlx::Error| Refused::from(WebhookRefusal::StoreUnavailable);
        let found = roampay_projections::credential_health::workspace_of_account(&self.db, account)
            .await
            .map_err(store)?;
        if let Some(ws) = found.as_deref().and_then(WorkspaceId::parse) {
            return Ok(Some(ws));
        }
        let named = event
            .pointer("/data/object/metadata/workspace_id")
            .and_then(Value::as_str)
            .and_then(WorkspaceId::parse);
        let Some(ws) = named else {
            return Ok(None);
        };
        let profile = self
            .profiles
            .load(ws.as_str())
            .await
            .map_err(|_| Refused::from(WebhookRefusal::StoreUnavailable))?;
        let owns = profile
            .connect
            .as_ref()
            .is_some_and(|a| a.account_id == account);
        Ok(owns.then_some(ws))
    }
}
