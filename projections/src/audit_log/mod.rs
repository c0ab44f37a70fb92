//! `audit_log`: every change, by workspace and actor, newest first for support.
//! Summaries are built from event fields only, and events never hold a secret.

use chrono::{DateTime, Utc};
use roampay_events::{AnyEvent, WorkspaceStripeProfileEvent as E};

use crate::db::DbTx;
use crate::log::StoredEvent;
use crate::runner::{DeferredIndex, Projection, ProjectionError};

pub struct AuditLog;

/// One audit row, as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub id: i64,
    pub recorded_at: DateTime<Utc>,
    pub workspace_id: Option<String>,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub event_type: String,
    pub actor: Option<String>,
    pub request_id: Option<String>,
    pub summary: String,
}

impl Entry {
    pub fn from_event(e: &StoredEvent) -> Self {
        Entry {
            id: e.position.seq,
            recorded_at: e.metadata.recorded_at.unwrap_or_default(),
            workspace_id: e.event.workspace_id().map(str::to_string),
            aggregate_type: e.aggregate_type.clone(),
            aggregate_id: e.aggregate_id.clone(),
            event_type: e.event_type.clone(),
            actor: e.metadata.actor.clone(),
            request_id: e.metadata.request_id.clone(),
            summary: summarize(&e.event).unwrap_or_else(|| e.event_type.clone()),
        }
    }
}

fn summarize(event: &AnyEvent) -> Option<String> {
    use roampay_events::{
        ChargingIntentEvent as C, ConnectorReservationEvent as R, LocationEvent as L,
        ReconciliationEvent as Rc, WebhookRejectionEvent as W,
    };
    Some(match event {
        AnyEvent::WorkspaceStripeProfile(p) => summarize_profile(p),
        AnyEvent::WorkspaceSubscription(s) => summarize_subscription(s),
        AnyEvent::Location(L::LocationPublished(e)) => {
            let connectors: usize = e.location.evses.iter().map(|v| v.connectors.len()).sum();
            format!("location {} published with {} EVSEs, {connectors} connectors", e.location_id, e.location.evses.len())
        }
        AnyEvent::Location(L::LocationRemoved(e)) => {
            format!("location {} removed with the workspace's data", e.location_id)
        }
        AnyEvent::ConnectorReservation(R::ConnectorReserved(e)) => format!(
            "connector {}/{}/{} reserved for charging intent {}",
            e.location_id, e.evse_uid, e.connector_id, e.charging_intent_id
        ),
        AnyEvent::ConnectorReservation(R::ConnectorReleased(e)) => {
            format!("connector released by charging intent {} ({})", e.charging_intent_id, e.reason)
        }
        AnyEvent::ChargingIntent(C::FreeSessionAuthorized(e)) => format!(
            "free session authorized at {}/{}/{} without Stripe",
            e.request.location_id, e.request.evse_uid, e.request.connector_id
        ),
        AnyEvent::ChargingIntent(C::WorkspacePaymentIntentCreated(e)) => format!(
            "PaymentIntent {} for {} {} created in workspace {}'s own Stripe account ({} mode, credential version {})",
            e.payment_intent_id,
            e.amount_cents,
            e.request.currency,
            e.request.workspace_id,
            if e.livemode { "live" } else { "test" },
            e.credential_version
        ),
        AnyEvent::ChargingIntent(C::WorkspacePaymentIntentCreationFailed(e)) => {
            format!("pre-authorization not created: {}", e.failure_code)
        }
        AnyEvent::ChargingIntent(C::WorkspacePaymentIntentAuthorizationReceived(e)) => format!(
            "PaymentIntent {} authorized for {} (via {}{}), ownership verified",
            e.payment_intent_id,
            e.authorized_amount_cents,
            e.source,
            e.stripe_event_id.as_ref().map(|id| format!(" {id}")).unwrap_or_default()
        ),
        AnyEvent::ChargingIntent(C::WorkspacePaymentIntentFailed(e)) => format!(
            "PaymentIntent {} {} ({}, via {})",
            e.payment_intent_id, e.status, e.failure_code, e.source
        ),
        AnyEvent::ChargingIntent(C::ChargingSessionStarted(e)) => {
            format!("session {} started", e.ocpi_session_id)
        }
        AnyEvent::ChargingIntent(C::SessionCompletionRequested(e)) => format!(
            "session ended at {}: {} to capture{}",
            e.final_amount_cents,
            e.capture_amount_cents,
            if e.capture_amount_cents < e.final_amount_cents { " (capped by the hold)" } else { "" }
        ),
        AnyEvent::ChargingIntent(C::WorkspaceSessionPaymentCaptured(e)) => format!(
            "session {} paid: {} captured{}{} (via {})",
            e.ocpi_session_id.as_deref().unwrap_or("-"),
            e.captured_amount_cents,
            match e.final_amount_cents - e.captured_amount_cents {
                short if short > 0 && e.payment_intent_id.is_some() => {
                    format!(" of {} it cost ({short} uncollected)", e.final_amount_cents)
                }
                _ => String::new(),
            },
            e.payment_intent_id.as_ref().map(|id| format!(" on PaymentIntent {id}")).unwrap_or_default(),
            e.source
        ),
        AnyEvent::ChargingIntent(C::SessionCaptureFailed(e)) => {
            format!("capture of PaymentIntent {} refused: {}", e.payment_intent_id, e.failure_code)
        }
        AnyEvent::ChargingIntent(C::HoldReleaseRequested(e)) => format!("hold release requested ({})", e.reason),
        AnyEvent::ChargingIntent(C::HoldReleased(e)) => format!(
            "hold released ({}){}",
            e.reason,
            e.payment_intent_id.as_ref().map(|id| format!(", PaymentIntent {id} canceled")).unwrap_or_default()
        ),
        AnyEvent::ChargingIntent(C::HoldReleaseFailed(e)) => format!(
            "release of PaymentIntent {} refused: {}", e.payment_intent_id, e.failure_code
        ),
        AnyEvent::ChargingIntent(C::StripeCallDeferred(e)) => format!(
            "Stripe {} attempt {} without a definite answer ({}); the worker will retry",
            e.step, e.attempt, e.failure_code
        ),
        AnyEvent::ChargingIntent(C::PaymentAttemptFailed(e)) => format!(
            "payment attempt on PaymentIntent {} declined ({}{}, via {}); the driver may retry",
            e.payment_intent_id,
            e.error.code.as_deref().unwrap_or("no code"),
            e.error.decline_code.as_deref().map(|d| format!(" / {d}")).unwrap_or_default(),
            e.source
        ),
        AnyEvent::ChargingIntent(C::RefundRequested(e)) => format!(
            "refund of {} requested on PaymentIntent {}{}",
            e.amount_cents,
            e.payment_intent_id,
            e.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
        ),
        AnyEvent::ChargingIntent(C::RefundPending(e)) => {
            format!("refund {} of {} pending in Stripe", e.refund_id, e.amount_cents)
        }
        AnyEvent::ChargingIntent(C::RefundSucceeded(e)) => format!(
            "refund {} of {} succeeded (via {})",
            e.refund_id, e.amount_cents, e.source
        ),
        AnyEvent::ChargingIntent(C::RefundFailed(e)) => {
            format!("refund of {} failed ({})", e.amount_cents, e.failure_code)
        }
        AnyEvent::ChargingIntent(C::DisputeOpened(e)) => format!(
            "dispute {} opened for {} ({}, {})",
            e.dispute_id, e.amount_cents, e.reason, e.status
        ),
        AnyEvent::ChargingIntent(C::DisputeUpdated(e)) => {
            format!("dispute {} now {}", e.dispute_id, e.status)
        }
        AnyEvent::ChargingIntent(C::DisputeClosed(e)) => {
            format!("dispute {} closed: {}", e.dispute_id, e.status)
        }
        AnyEvent::ChargingIntent(C::HoldDeadlineRead(e)) => match e.capture_before {
            Some(t) => format!("Stripe says the hold on {} lapses at {}", e.payment_intent_id, t.to_rfc3339()),
            None => format!("Stripe did not say when the hold on {} lapses; the configured lifetime stands", e.payment_intent_id),
        },
        AnyEvent::ChargingIntent(C::StrayHoldReleased(e)) => format!(
            "stray hold of {} released: PaymentIntent {} was authorized after the intent had ended, and canceled",
            e.amount_cents, e.payment_intent_id
        ),
        AnyEvent::ChargingIntent(C::HoldExpiryApproaching(e)) => {
            format!("hold lapses at {}: capture or release it before then", e.capture_before.to_rfc3339())
        }
        AnyEvent::WebhookRejections(W::WebhookRejected(e)) => format!(
            "security warning: webhook refused ({}) from {}{}{}",
            e.code,
            e.source_ip,
            e.stripe_event_id.as_ref().map(|id| format!(", event {id}")).unwrap_or_default(),
            e.payment_intent_id.as_ref().map(|id| format!(", PaymentIntent {id}")).unwrap_or_default()
        ),
        AnyEvent::WebhookRejections(W::WebhookIgnored(e)) => format!(
            "information: verified webhook {} about PaymentIntent {} ignored ({}): not an intent of this service (another deployment on the same Stripe account?)",
            e.stripe_event_id, e.payment_intent_id, e.reason
        ),
        AnyEvent::Reconciliation(Rc::ForeignPaymentIntentRecorded(e)) => format!(
            "reconciliation: PaymentIntent {} ({}, {} {}) is in Stripe with this workspace's metadata but no charging intent owns it{}",
            e.payment_intent_id,
            e.status,
            e.amount_cents,
            e.currency,
            e.claimed_charging_intent_id.as_ref().map(|id| format!(" (it names {id})")).unwrap_or_default()
        ),
        AnyEvent::OcpiConnections(e) => summarize_ocpi(e),
        AnyEvent::OcpiTariff(roampay_events::OcpiTariffEvent::OcpiTariffUpdated(e)) => format!(
            "OCPI tariff {} of {}/{} received ({})",
            e.tariff_id, e.country_code, e.party_id, e.currency
        ),
        AnyEvent::OcpiTariff(roampay_events::OcpiTariffEvent::OcpiTariffRemoved(e)) => format!(
            "OCPI tariff {} of {}/{} deleted by the CPO",
            e.tariff_id, e.country_code, e.party_id
        ),
        AnyEvent::OcpiSession(roampay_events::OcpiSessionEvent::OcpiSessionUpdated(e)) => format!(
            "OCPI session {} of {}/{}: {}{}",
            e.session_id,
            e.country_code,
            e.party_id,
            e.status,
            e.authorization_reference.as_ref().map(|r| format!(" (authorization {r})")).unwrap_or_default()
        ),
        AnyEvent::Unknown => return None,
    })
}

fn summarize_ocpi(event: &roampay_events::OcpiConnectionEvent) -> String {
    use roampay_events::OcpiConnectionEvent as O;
    match event {
        O::OcpiConnectionCreated(e) => format!(
            "OCPI connection {} ({}) created{}",
            e.connection_id,
            e.name,
            if e.token_a_digest.is_some() {
                " with a token A for the CPO"
            } else {
                ""
            }
        ),
        O::OcpiConnectionRegistered(e) => format!(
            "OCPI connection {} registered ({}): {} {}/{} on OCPI {}",
            e.connection_id,
            e.direction,
            e.party.role,
            e.party.country_code,
            e.party.party_id,
            e.version
        ),
        O::OcpiConnectionCredentialsUpdated(e) => format!(
            "OCPI connection {}: credentials exchanged again ({} {}/{}, OCPI {})",
            e.connection_id, e.party.role, e.party.country_code, e.party.party_id, e.version
        ),
        O::OcpiConnectionUnregistered(e) => format!(
            "OCPI connection {} unregistered by the {}: its tokens no longer work",
            e.connection_id,
            if e.by == "partner" {
                "partner"
            } else {
                "workspace's admin"
            }
        ),
    }
}

fn summarize_subscription(event: &roampay_events::WorkspaceSubscriptionEvent) -> String {
    use roampay_events::WorkspaceSubscriptionEvent as S;
    let time = |t: &chrono::DateTime<chrono::Utc>| t.to_rfc3339();
    let plan = |p: &Option<String>| p.clone().unwrap_or_else(|| "no plan".into());
    match event {
        S::WorkspaceBillingCustomerCreated(e) => {
            format!(
                "billing customer {} created in the platform's Stripe account",
                e.stripe_customer_id
            )
        }
        S::WorkspaceSubscriptionActivated(e) => format!(
            "subscription {} {} on {} (Stripe event {})",
            e.stripe_subscription_id,
            e.status.as_str(),
            plan(&e.plan),
            e.stripe_event_id
        ),
        S::WorkspaceSubscriptionUpdated(e) => format!(
            "subscription renews {}{}",
            e.current_period_end
                .as_ref()
                .map(time)
                .unwrap_or_else(|| "at no known date".into()),
            if e.cancel_at_period_end {
                ", then ends (cancel at period end)"
            } else {
                ""
            }
        ),
        S::WorkspacePlanChanged(e) => {
            format!(
                "plan changed from {} to {}",
                plan(&e.from_plan),
                plan(&e.plan)
            )
        }
        S::WorkspaceInvoicePaymentFailed(e) => format!(
            "subscription payment failed: past due, working until {} (grace)",
            time(&e.grace_until)
        ),
        S::WorkspacePaymentActionRequired(_) => {
            "subscription payment needs the customer's action (authentication)".to_string()
        }
        S::WorkspaceCheckoutCompleted(_) => {
            "checkout completed: the subscription follows".to_string()
        }
        S::WorkspacePaymentActionCompleted(_) => {
            "the subscription payment that needed the customer's action was paid".to_string()
        }
        S::WorkspaceSuspended(e) => format!(
            "suspended: grace ended {} unpaid; no new charging intents while billing is required",
            time(&e.grace_until)
        ),
        S::WorkspaceReinstated(_) => "reinstated: the subscription is paid again".to_string(),
        S::WorkspaceSubscriptionCancelled(e) => format!(
            "subscription cancelled; the workspace's data is purged after {}",
            time(&e.purge_after)
        ),
        S::WorkspaceDataPurged(_) => {
            "data purged: secrets unrecoverable, credentials, config and locations removed"
                .to_string()
        }
    }
}

fn summarize_profile(event: &E) -> String {
    match event {
        E::WorkspaceOcpiConfigUpdated(e) => {
            let mut parts = Vec::new();
            if let Some(v) = e.allow_guest_access {
                parts.push(format!("allow_guest_access={v}"));
            }
            if let Some(v) = e.allow_user_registration {
                parts.push(format!("allow_user_registration={v}"));
            }
            if let Some(v) = e.pre_auth_cents {
                parts.push(format!("pre_auth_cents={v}"));
            }
            if let Some(v) = &e.currency {
                parts.push(format!("currency={v}"));
            }
            if let Some(v) = e.application_fee_bps {
                parts.push(format!("application_fee_bps={v}"));
            }
            format!("roaming settings changed: {}", parts.join(", "))
        }
        E::WorkspaceStripeConnectAccountCreated(e) => format!(
            "Stripe Connect: {} account {} created for the workspace (charges {})",
            e.account_type,
            e.account_id,
            if e.charges_enabled { "enabled" } else { "not enabled yet" }
        ),
        E::WorkspaceStripeOnboardingLinkIssued(e) => {
            format!("Stripe Connect: onboarding link issued for account {}", e.account_id)
        }
        E::WorkspaceStripeConnectAccountUpdated(e) => format!(
            "Stripe Connect: account {} now has charges {}, payouts {}, details {}{}",
            e.account_id,
            if e.charges_enabled { "enabled" } else { "disabled" },
            if e.payouts_enabled { "enabled" } else { "disabled" },
            if e.details_submitted { "submitted" } else { "not submitted" },
            if e.requirements_due.is_empty() {
                String::new()
            } else {
                format!("; due: {}", e.requirements_due.join(", "))
            }
        ),
        E::WorkspaceStripeConnectDeauthorized(e) => format!(
            "Stripe Connect: access to account {} lost ({}); new paid sessions are refused",
            e.account_id, e.source
        ),
        E::WorkspaceStripeConnectionSwitched(e) => format!(
            "new payments use {} from now on; intents made earlier keep theirs",
            match e.connection {
                roampay_events::StripeConnection::Keys => "the workspace's own Stripe keys",
                roampay_events::StripeConnection::Connect => "the connected Stripe account",
            }
        ),
        E::WorkspaceStripeCredentialsUpdated(e) => {
            let mut parts = Vec::new();
            if let Some(pk) = &e.publishable_key {
                parts.push(format!("publishable key {pk}"));
            }
            if let Some(sk) = &e.secret_key {
                let kind = match e.secret_key_kind {
                    Some(roampay_events::SecretKeyKind::Restricted) => "restricted key",
                    _ => "secret key",
                };
                parts.push(format!("{kind} ending {}", sk.last4));
            }
            if let Some(wh) = &e.webhook_signing_secret {
                parts.push(format!("webhook signing secret ending {}", wh.last4));
            }
            format!(
                "Stripe credentials saved as version {} ({} mode): {}",
                e.credential_version,
                e.mode.as_str(),
                parts.join(", ")
            )
        }
        E::WorkspaceStripeCredentialsValidated(e) => format!(
            "Stripe credentials version {} validated ({} mode{})",
            e.credential_version,
            e.mode.as_str(),
            e.account_id
                .as_ref()
                .map(|a| format!(", account {a}"))
                .unwrap_or_default()
        ),
        E::WorkspaceStripeCredentialsValidationFailed(e) => format!(
            "Stripe credentials version {} failed validation: {} ({})",
            e.credential_version,
            e.failure_code,
            e.health_status().as_str()
        ),
        E::WorkspaceStripeCredentialsRemoved(e) => format!(
            "Stripe credentials removed (version {})",
            e.credential_version
        ),
        E::WorkspaceOcpiConfigPurged(_) => {
            "roaming settings and Stripe credentials purged with the workspace's data: the OCPI config reads as never configured".to_string()
        }
        E::WorkspaceStripeCandidateSaved(e) => format!(
            "Stripe credentials saved as candidate version {} ({} mode): publishable key {}, {} ending {}; the active set serves payments until Stripe accepts the candidate",
            e.credential_version,
            e.mode.as_str(),
            e.publishable_key,
            match e.secret_key_kind {
                roampay_events::SecretKeyKind::Restricted => "restricted key",
                roampay_events::SecretKeyKind::Secret => "secret key",
            },
            e.secret_key.last4
        ),
        E::WorkspaceStripeCandidatePromoted(e) => format!(
            "candidate version {} promoted: Stripe credentials version {} now serve payments{}",
            e.candidate_version,
            e.credential_version,
            e.account_id
                .as_ref()
                .map(|a| format!(" (account {a})"))
                .unwrap_or_default()
        ),
        E::WorkspaceStripeCandidateRejected(e) => format!(
            "candidate version {} rejected: {}; the active set keeps serving payments",
            e.candidate_version, e.failure_code
        ),
        E::WorkspaceStripeCredentialsRevoked(e) => format!(
            "Stripe credentials version {} invalid: {} (on {}); paid sessions are refused until the credentials are fixed",
            e.credential_version, e.failure_code, e.stripe_operation
        ),
        E::WorkspaceWebhookVerified(e) => format!(
            "webhook endpoint verified: {} {} signed with the workspace's secret",
            e.event_type, e.stripe_event_id
        ),
        E::WorkspaceWebhookFailing(e) => format!(
            "webhook deliveries failing: refused ({}) since the last verified one",
            e.code
        ),
    }
}

fn db_err(source: sqlx::Error) -> ProjectionError {
    ProjectionError::Database {
        projection: "audit_log",
        source,
    }
}

#[async_trait::async_trait]
impl Projection for AuditLog {
    fn name(&self) -> &'static str {
        "audit_log"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["audit_log"]
    }

    fn deferred_indexes(&self) -> &'static [DeferredIndex] {
        &[DeferredIndex {
            name: "audit_log_workspace",
            create:
                "CREATE INDEX IF NOT EXISTS audit_log_workspace ON audit_log (workspace_id, id)",
        }]
    }

    async fn apply(&self, tx: &mut DbTx, events: &[StoredEvent]) -> Result<(), ProjectionError> {
        let entries: Vec<Entry> = events.iter().map(Entry::from_event).collect();
        match tx {
            // One COPY per batch. The checkpoint moves in the same transaction, so
            // these ids cannot already be present.
            DbTx::Postgres(t) => {
                let mut text = String::with_capacity(entries.len() * 256);
                for e in &entries {
                    copy_row(&mut text, e);
                }
                let mut copy = t
                    .copy_in_raw(
                        "COPY audit_log (id, recorded_at, workspace_id, aggregate_type, aggregate_id,
                                         event_type, actor, request_id, summary) FROM STDIN",
                    )
                    .await
                    .map_err(db_err)?;
                copy.send(text.into_bytes()).await.map_err(db_err)?;
                copy.finish().await.map_err(db_err)?;
            }
            // In-process: a prepared statement per row inside the transaction is cheap.
            DbTx::Sqlite(t) => {
                for e in entries {
                    sqlx::query(
                        "INSERT INTO audit_log (id, recorded_at, workspace_id, aggregate_type,
                                                aggregate_id, event_type, actor, request_id, summary)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                         ON CONFLICT (id) DO NOTHING",
                    )
                    .bind(e.id)
                    .bind(e.recorded_at)
                    .bind(e.workspace_id)
                    .bind(e.aggregate_type)
                    .bind(e.aggregate_id)
                    .bind(e.event_type)
                    .bind(e.actor)
                    .bind(e.request_id)
                    .bind(e.summary)
                    .execute(&mut **t)
                    .await
                    .map_err(db_err)?;
                }
            }
        }
        Ok(())
    }
}

/// One row in COPY's text format.
fn copy_row(out: &mut String, e: &Entry) {
    use std::fmt::Write;
    fn field(out: &mut String, v: Option<&str>) {
        match v {
            None => out.push_str("\\N"),
            Some(v) => {
                for c in v.chars() {
                    match c {
                        '\\' => out.push_str("\\\\"),
                        '\t' => out.push_str("\\t"),
                        '\n' => out.push_str("\\n"),
                        '\r' => out.push_str("\\r"),
                        c => out.push(c),
                    }
                }
            }
        }
    }
    let _ = write!(
        out,
        "{}\t{}\t",
        e.id,
        e.recorded_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    );
    field(out, e.workspace_id.as_deref());
    for v in [
        Some(e.aggregate_type.as_str()),
        Some(e.aggregate_id.as_str()),
        Some(e.event_type.as_str()),
        e.actor.as_deref(),
        e.request_id.as_deref(),
        Some(e.summary.as_str()),
    ] {
        out.push('\t');
        field(out, v);
    }
    out.push('\n');
}

mod queries;
pub use queries::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_rows_escape_what_copy_text_format_treats_specially() {
        let mut out = String::new();
        let e = Entry {
            id: 7,
            recorded_at: DateTime::parse_from_rfc3339("2026-11-22T05:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            workspace_id: None,
            aggregate_type: "A".into(),
            aggregate_id: "a\tb".into(),
            event_type: "E".into(),
            actor: Some("x\\y".into()),
            request_id: None,
            summary: "line1\nline2".into(),
        };
        copy_row(&mut out, &e);
        assert_eq!(
            out,
            "7\t2026-11-22T05:00:00.000000Z\t\\N\tA\ta\\tb\tE\tx\\\\y\t\\N\tline1\\nline2\n"
        );
    }
}
