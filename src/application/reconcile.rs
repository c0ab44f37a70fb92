//! Reconciliation: compares a workspace's PaymentIntents in its Stripe account with the
//! event log, reports every disagreement, and on request records the corrective events
//! that Stripe's state justifies (through the same Stripe-state path as webhooks).
//!
//! Only PaymentIntents carrying this workspace's roampay metadata are ours to judge;
//! the account's other PaymentIntents (its own shop, another integration) are counted
//! and left alone. Stripe is the record of what happened to the money; the event log is
//! corrected towards it, never the other way round: a hold that only a person can
//! decide about (a stray hold on an ended intent, an amount that differs) is reported
//! and left for support (docs/runbook.md).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use roampay_events::ForeignPaymentIntentRecorded;
use serde::Serialize;
use serde_json::Value;

use std::sync::Arc;

use roampay_projections::Db;

use super::accounts::Accounts;
use super::payments::{Payments, StripeReport};
use super::{system, StoreFault};
use crate::domain::charging_intent::{ChargingIntent, IntentStatus};
use crate::domain::foreign_payment_intent::foreign_stream;
use crate::domain::foreign_payment_intent::ForeignPaymentIntent;
use crate::domain::workspace_stripe_profile::WorkspaceStripeProfile;
use crate::infra::clock::Clock;
use crate::infra::store::Aggregates;
use crate::infra::store::Metadata;
use crate::infra::stripe::StripeAccount;
use crate::infra::stripe::StripeGateway;
use crate::infra::stripe::{DisputeView, PaymentIntentStatus, PaymentIntentView, RefundView};
use roampay_events::StripeConnection;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("workspace {0} has no Stripe secret key configured")]
    NoCredentials(String),
    #[error("reading the workspace's Stripe account failed: {0}")]
    Stripe(String),
    #[error(transparent)]
    Store(#[from] StoreFault),
}

fn store<E: std::error::Error>(e: cqrs_es::AggregateError<E>) -> ReconcileError {
    ReconcileError::Store(StoreFault::of(e))
}

/// A disagreement between Stripe and the log (or, for `hold_near_expiry`, a warning).
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// `unknown_payment_intent`, `capture_missing`, `status_mismatch`,
    /// `amount_mismatch`, `missing_in_stripe`, `refund_missing`, `dispute_missing`,
    /// `hold_near_expiry`.
    pub kind: &'static str,
    pub payment_intent_id: Option<String>,
    pub charging_intent_id: Option<String>,
    pub stripe_status: Option<PaymentIntentStatus>,
    pub log_status: Option<IntentStatus>,
    pub detail: String,
    /// What `--apply` does about it, or why it cannot.
    pub action: String,
    /// `--apply` recorded the correction.
    pub applied: bool,
    #[serde(skip)]
    fix: Option<Fix>,
}

impl Finding {
    fn new(
        kind: &'static str,
        pi: Option<&PaymentIntentView>,
        intent: Option<(&str, &ChargingIntent)>,
    ) -> Self {
        Self {
            kind,
            payment_intent_id: pi.map(|p| p.id.clone()),
            charging_intent_id: intent.map(|(id, _)| id.to_string()),
            stripe_status: pi.map(|p| p.status),
            log_status: intent.map(|(_, i)| i.status),
            detail: String::new(),
            action: String::new(),
            applied: false,
            fix: None,
        }
    }
}

#[derive(Debug, Clone)]
enum Fix {
    ApplyStripeStatus {
        intent_id: String,
        pi: PaymentIntentView,
    },
    RecordForeign(ForeignPaymentIntentRecorded),
    RecordRefund {
        intent_id: String,
        refund: RefundView,
    },
    RecordDispute {
        intent_id: String,
        dispute: DisputeView,
    },
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub workspace_id: String,
    pub since: Option<DateTime<Utc>>,
    /// PaymentIntents Stripe listed (all of the account's, in the period).
    pub stripe_payment_intents: usize,
    /// Of those, the ones carrying this workspace's roampay metadata.
    pub roampay_payment_intents: usize,
    pub findings: Vec<Finding>,
    pub warnings: Vec<Finding>,
}

impl Report {
    /// Disagreements still standing (after `--apply`, those it could not fix).
    pub fn open(&self) -> usize {
        self.findings.iter().filter(|f| !f.applied).count()
    }
}

/// Does the log's status agree with Stripe's? (The one status mapping decides what
/// Stripe's state stands for; a capture or release of ours may still be under way.)
fn agrees(pi: &PaymentIntentView, intent: &ChargingIntent) -> bool {
    use IntentStatus::*;
    let s = intent.status;
    let settling = intent.settlement.is_some();
    match pi.intent_status() {
        Some(PendingPayment) => s == PendingPayment,
        Some(Failed) => matches!(s, PendingPayment | Failed),
        Some(Authorized) => matches!(s, Authorized | Charging) || settling,
        Some(Completed) => s == Completed || settling,
        Some(Cancelled) => {
            matches!(s, Cancelled | Expired | Failed)
                || (s == Completed && intent.captured_amount_cents == Some(0))
                || settling
        }
        Some(_) | None => true, // a status Stripe added later: not ours to judge
    }
}

/// Reconciliation: a workspace's PaymentIntents in Stripe against its intents here.
pub struct Reconciler {
    pub(super) profiles: Arc<Aggregates<WorkspaceStripeProfile>>,
    pub(super) intents: Arc<Aggregates<ChargingIntent>>,
    pub(super) foreign: Aggregates<ForeignPaymentIntent>,
    /// Fixes go the one way Stripe's word reaches an intent.
    pub(super) payments: Arc<Payments>,
    pub(super) accounts: Arc<Accounts>,
    pub(super) stripe: Arc<dyn StripeGateway>,
    pub(super) db: Db,
    pub(super) clock: Arc<dyn Clock>,
    /// How long Stripe keeps an uncaptured hold, and how early a lapse is flagged.
    pub(super) hold_lifetime: chrono::Duration,
    pub(super) hold_warning: chrono::Duration,
}

impl Reconciler {
    /// Compares, and with `apply` records what Stripe's state justifies.
    pub async fn reconcile(
        &self,
        ws: &str,
        since: Option<DateTime<Utc>>,
        apply: bool,
        connection: Option<StripeConnection>,
        progress: &dyn Fn(u64),
    ) -> Result<Report, ReconcileError> {
        let profile = self.profiles.load(ws).await.map_err(store)?;
        // The account of the workspace's connection (or the one asked for): its own
        // keys, or in connect mode the platform's key on its connected account.
        let key = self
            .accounts
            .connection_account(&profile, ws, connection)
            .await
            .map_err(|_| ReconcileError::NoCredentials(ws.to_string()))?;
        let listed = self.list_stripe(&key, since, progress).await?;
        let mut report = Report {
            workspace_id: ws.to_string(),
            since,
            stripe_payment_intents: listed.len(),
            roampay_payment_intents: 0,
            findings: Vec::new(),
            warnings: Vec::new(),
        };
        let mut seen = HashSet::new();
        let checked = listed.iter().filter_map(|v| match PaymentIntentView::from_json(v) {
            Ok(pi) => pi,
            Err(e) => {
                tracing::warn!(error = %e, "reconcile skipped a PaymentIntent that fails the boundary checks");
                None
            }
        });
        // A credential check's PaymentIntent is no payment.
        for pi in checked.filter(|pi| !pi.credential_check) {
            seen.insert(pi.id.clone());
            if pi.metadata_workspace_id.as_deref() == Some(ws) {
                report.roampay_payment_intents += 1;
                self.judge(ws, &key, &pi, &mut report).await?;
            }
        }
        self.missing_in_stripe(ws, since, &seen, key.connected.as_deref(), &mut report)
            .await?;
        if apply {
            self.apply_fixes(ws, &mut report).await;
        }
        Ok(report)
    }

    /// Every PaymentIntent of the account in the period, page by page.
    async fn list_stripe(
        &self,
        key: &StripeAccount,
        since: Option<DateTime<Utc>>,
        progress: &dyn Fn(u64),
    ) -> Result<Vec<Value>, ReconcileError> {
        let mut listed = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .stripe
                .list_payment_intents(key, since.map(|t| t.timestamp()), after.as_deref())
                .await
                .map_err(|e| ReconcileError::Stripe(format!("{e:?}")))?;
            progress(page.data.len() as u64);
            after = page
                .data
                .last()
                .and_then(|p| p.get("id"))
                .and_then(Value::as_str)
                .map(str::to_string);
            listed.extend(page.data);
            if !page.has_more || after.is_none() {
                return Ok(listed);
            }
        }
    }

    /// One of the workspace's PaymentIntents against the log.
    async fn judge(
        &self,
        ws: &str,
        key: &StripeAccount,
        pi: &PaymentIntentView,
        report: &mut Report,
    ) -> Result<(), ReconcileError> {
        let claimed = pi.metadata_charging_intent_id.clone();
        let intent = match &claimed {
            Some(id) => Some(self.intents.load(id).await.map_err(store)?),
            None => None,
        };
        let ours = intent.as_ref().filter(|i| {
            i.payment
                .as_ref()
                .is_some_and(|p| p.payment_intent_id == pi.id)
                && i.request.as_ref().map(|r| r.workspace_id.as_str()) == Some(ws)
        });
        match (ours, claimed) {
            (Some(intent), Some(id)) => {
                report.findings.extend(amount_findings(pi, &id, intent));
                report.findings.extend(status_finding(pi, &id, intent));
                report.warnings.extend(self.lapse_warning(pi, &id, intent));
                report
                    .findings
                    .extend(self.money_findings(key, pi, &id, intent).await?);
            }
            (_, claimed) => {
                let known = self
                    .foreign
                    .load(&foreign_stream(ws, &pi.id))
                    .await
                    .map_err(store)?
                    .recorded;
                if !known {
                    report.findings.push(self.foreign_finding(ws, pi, claimed));
                }
            }
        }
        Ok(())
    }

    /// Refunds and disputes Stripe has on a captured PaymentIntent that the log lacks
    /// (made in the Dashboard while webhooks were not delivered).
    async fn money_findings(
        &self,
        key: &StripeAccount,
        pi: &PaymentIntentView,
        id: &str,
        intent: &ChargingIntent,
    ) -> Result<Vec<Finding>, ReconcileError> {
        let captured = intent.captured_amount_cents.unwrap_or(0) > 0;
        if !captured || pi.status != PaymentIntentStatus::Succeeded {
            return Ok(vec![]);
        }
        let stripe_err = |e| ReconcileError::Stripe(format!("{e:?}"));
        let mut out = Vec::new();
        for r in self
            .stripe
            .list_refunds(key, &pi.id)
            .await
            .map_err(stripe_err)?
        {
            let known = intent
                .refunds
                .values()
                .find(|x| x.refund_id.as_deref() == Some(r.id.as_str()));
            let missing = match known {
                None => r.status == "succeeded" || r.status == "pending",
                Some(k) => {
                    k.status.as_str() != r.status
                        && matches!(r.status.as_str(), "succeeded" | "failed" | "canceled")
                }
            };
            if missing {
                let mut f = Finding::new("refund_missing", Some(pi), Some((id, intent)));
                f.detail = format!(
                    "Stripe has refund {} of {} ({}) that the log lacks",
                    r.id, r.amount, r.status
                );
                f.action = "record the refund on the charging intent".into();
                f.fix = Some(Fix::RecordRefund {
                    intent_id: id.to_string(),
                    refund: r,
                });
                out.push(f);
            }
        }
        for d in self
            .stripe
            .list_disputes(key, &pi.id)
            .await
            .map_err(stripe_err)?
        {
            if intent
                .dispute
                .as_ref()
                .is_some_and(|x| x.status == d.status)
            {
                continue;
            }
            let mut f = Finding::new("dispute_missing", Some(pi), Some((id, intent)));
            f.detail = format!(
                "Stripe has dispute {} of {} ({}, {}) that the log lacks",
                d.id, d.amount, d.reason, d.status
            );
            f.action =
                "record the dispute on the charging intent (answer it in the Stripe Dashboard)"
                    .into();
            f.fix = Some(Fix::RecordDispute {
                intent_id: id.to_string(),
                dispute: d,
            });
            out.push(f);
        }
        Ok(out)
    }

    fn foreign_finding(
        &self,
        ws: &str,
        pi: &PaymentIntentView,
        claimed: Option<String>,
    ) -> Finding {
        let mut f = Finding::new("unknown_payment_intent", Some(pi), None);
        f.charging_intent_id = claimed.clone();
        f.detail = format!(
            "Stripe holds {} {} with this workspace's metadata, but no charging intent of ours owns it",
            pi.amount, pi.currency
        );
        f.action = if pi.status == PaymentIntentStatus::RequiresCapture {
            "record it in the audit trail; its hold stays on the card until released in Stripe"
        } else {
            "record it in the audit trail"
        }
        .into();
        f.fix = Some(Fix::RecordForeign(ForeignPaymentIntentRecorded {
            workspace_id: ws.to_string(),
            payment_intent_id: pi.id.clone(),
            status: pi.status.as_str().to_string(),
            amount_cents: pi.amount,
            currency: pi.currency.clone(),
            livemode: pi.livemode,
            claimed_charging_intent_id: claimed,
            recorded_by: "system:reconcile".into(),
            recorded_at: self.clock.now(),
        }));
        f
    }

    fn lapse_warning(
        &self,
        pi: &PaymentIntentView,
        id: &str,
        intent: &ChargingIntent,
    ) -> Option<Finding> {
        let held = matches!(
            intent.status,
            IntentStatus::Authorized | IntentStatus::Charging
        ) && pi.status == PaymentIntentStatus::RequiresCapture;
        let estimate = intent.authorized_at.filter(|_| held)? + self.hold_lifetime;
        let lapses = intent.capture_before.unwrap_or(estimate);
        if lapses - self.hold_warning > self.clock.now() {
            return None;
        }
        let mut f = Finding::new("hold_near_expiry", Some(pi), Some((id, intent)));
        f.detail = format!("the hold lapses at {}", lapses.to_rfc3339());
        f.action = "none: complete or cancel the session before then".into();
        Some(f)
    }

    /// The log's side: paid intents whose PaymentIntent Stripe did not list.
    async fn missing_in_stripe(
        &self,
        ws: &str,
        since: Option<DateTime<Utc>>,
        seen: &HashSet<String>,
        account: Option<&str>,
        report: &mut Report,
    ) -> Result<(), ReconcileError> {
        let since = since.unwrap_or(DateTime::<Utc>::MIN_UTC);
        let paid = roampay_projections::charging_intents::paid_of_workspace(&self.db, ws)
            .await
            .map_err(|e| StoreFault::Internal(e.to_string()))?;
        for (intent_id, pi_id) in paid {
            if seen.contains(&pi_id) {
                continue;
            }
            let intent = self.intents.load(&intent_id).await.map_err(store)?;
            if intent.created_at.is_some_and(|t| t < since) {
                continue;
            }
            // An intent of the other connection lives in the other account.
            let its_account = intent
                .payment
                .as_ref()
                .and_then(|p| p.stripe_account_id.as_deref());
            if its_account != account {
                continue;
            }
            let mut f = Finding::new("missing_in_stripe", None, Some((&intent_id, &intent)));
            f.payment_intent_id = Some(pi_id);
            f.detail = "the log names a PaymentIntent this account does not list (another account, or deleted test data)".into();
            f.action =
                "none: check which Stripe account the intent's credential version used".into();
            report.findings.push(f);
        }
        Ok(())
    }

    async fn apply_fixes(&self, ws: &str, report: &mut Report) {
        let meta = Metadata {
            request_id: uuid::Uuid::now_v7().to_string(),
            ..system("system:reconcile")
        };
        for f in &mut report.findings {
            let Some(fix) = f.fix.clone() else { continue };
            match self.apply_fix(ws, fix, &meta).await {
                Ok(()) => f.applied = true,
                Err(e) => f.action = format!("{} (failed: {e})", f.action),
            }
        }
    }

    async fn apply_fix(&self, ws: &str, fix: Fix, meta: &Metadata) -> Result<(), String> {
        match fix {
            Fix::ApplyStripeStatus { intent_id, pi } => {
                let report = StripeReport {
                    charging_intent_id: intent_id,
                    workspace_id: ws.to_string(),
                    payment_intent: pi,
                    stripe_event_id: None,
                    source: "reconcile",
                    connect_account: None,
                };
                self.payments
                    .apply_stripe_state(report, meta)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Fix::RecordRefund { intent_id, refund } => self
                .payments
                .record_refund(
                    &intent_id,
                    refund,
                    super::refunds::Told {
                        source: "reconcile",
                        stripe_event_id: None,
                    },
                    meta,
                )
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Fix::RecordDispute { intent_id, dispute } => self
                .payments
                .record_dispute(&intent_id, dispute, None, meta)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Fix::RecordForeign(event) => {
                let stream = foreign_stream(&event.workspace_id, &event.payment_intent_id);
                self.foreign
                    .execute(&stream, event, meta)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        }
    }
}

/// Amounts that differ between Stripe and the log.
fn amount_findings(pi: &PaymentIntentView, id: &str, intent: &ChargingIntent) -> Vec<Finding> {
    let mut out = Vec::new();
    let payment = intent.payment.as_ref().expect("ours has a payment");
    if pi.amount != payment.amount_cents {
        let mut f = Finding::new("amount_mismatch", Some(pi), Some((id, intent)));
        f.detail = format!(
            "Stripe's amount is {}, the log's {}",
            pi.amount, payment.amount_cents
        );
        f.action =
            "none: check the PaymentIntent in Stripe (was it updated outside roampay?)".into();
        out.push(f);
    }
    let captured = intent.captured_amount_cents.filter(|_| {
        pi.status == PaymentIntentStatus::Succeeded && intent.status == IntentStatus::Completed
    });
    if let Some(c) = captured.filter(|c| *c != pi.amount_received) {
        let mut f = Finding::new("amount_mismatch", Some(pi), Some((id, intent)));
        f.detail = format!(
            "Stripe received {}, the log records {c} captured",
            pi.amount_received
        );
        f.action = "none: check the charge and its refunds in Stripe".into();
        out.push(f);
    }
    out
}

/// A status Stripe and the log disagree about, and whether Stripe's state can be
/// recorded (only on intents still open, or a decline on one still waiting).
fn status_finding(pi: &PaymentIntentView, id: &str, intent: &ChargingIntent) -> Option<Finding> {
    if agrees(pi, intent) {
        return None;
    }
    let in_stripe = pi.intent_status();
    let fixable = !intent.status.is_final()
        && matches!(
            in_stripe,
            Some(IntentStatus::Authorized | IntentStatus::Completed | IntentStatus::Cancelled)
        )
        || (in_stripe == Some(IntentStatus::Failed)
            && intent.status == IntentStatus::PendingPayment);
    let kind = if pi.status == PaymentIntentStatus::Succeeded {
        "capture_missing"
    } else {
        "status_mismatch"
    };
    let mut f = Finding::new(kind, Some(pi), Some((id, intent)));
    f.detail = format!("Stripe says {}, the log says {}", pi.status, intent.status);
    if fixable {
        f.action = format!(
            "record Stripe's state ({}) on the charging intent",
            pi.status
        );
        f.fix = Some(Fix::ApplyStripeStatus {
            intent_id: id.to_string(),
            pi: pi.clone(),
        });
    } else {
        f.action = "none: the intent has ended; release or refund in Stripe if the driver should not pay (docs/runbook.md)".into();
    }
    Some(f)
}
