//! `roampay reconcile`: compares a workspace's PaymentIntents in its Stripe account with
//! the event log, reports every disagreement, and with `--apply` records the corrective
//! events that Stripe's state justifies.
//!
//! Only PaymentIntents carrying this workspace's roampay metadata are ours to judge;
//! the account's other PaymentIntents (its own shop, another integration) are counted
//! and left alone. Stripe is the record of what happened to the money; the event log is
//! corrected towards it, never the other way round: a hold that only a person can
//! decide about (a stray hold on an ended intent, an amount that differs) is reported
//! and left for support (docs/runbook.md).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cqrs_es::AggregateError;
use indicatif::{ProgressBar, ProgressStyle};
use roampay_events::ForeignPaymentIntentRecorded;
use roampay_projections::on_db;
use serde::Serialize;
use serde_json::{json, Value};

use crate::app::{self, AnyError};
use crate::charging_intent::{
    ChargingIntent, ChargingIntentCommand, IntentServices, IntentStatus,
    ProcessStripeAuthorizationWebhook,
};
use crate::config::{KeyArgs, StoreArgs};
use crate::store::{Aggregates, Metadata};
use crate::stripe::{PaymentIntentView, StripeGateway, StripeTransport};
use crate::vault::{DbVault, SecretField, SecretVault};
use crate::workspace_stripe_profile::{ProfileServices, WorkspaceStripeProfile};

mod foreign_payment_intent;
pub use foreign_payment_intent::{foreign_stream, ForeignPaymentIntent};

#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// The workspace whose Stripe account is compared.
    #[arg(long)]
    pub workspace: String,
    /// Only PaymentIntents created on or after this day (YYYY-MM-DD) or instant (RFC 3339).
    #[arg(long, value_parser = parse_since)]
    pub since: Option<DateTime<Utc>>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Record the corrective events Stripe's state justifies.
    #[arg(long)]
    pub apply: bool,
    #[arg(
        long,
        env = "STRIPE_API_BASE",
        default_value = "https://api.stripe.com"
    )]
    pub stripe_api_base: String,
    #[arg(long, env = "ROAMPAY_STRIPE_TIMEOUT_MS", default_value_t = 10_000)]
    pub stripe_timeout_ms: u64,
    /// How long Stripe keeps an uncaptured hold (as for `serve`).
    #[arg(long, env = "ROAMPAY_HOLD_LIFETIME_SECS", default_value_t = 604_800)]
    pub hold_lifetime_secs: i64,
    /// Report holds this close to lapsing.
    #[arg(long, env = "ROAMPAY_HOLD_WARNING_SECS", default_value_t = 86_400)]
    pub hold_warning_secs: i64,
}

fn parse_since(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
        .map_err(|_| format!("{s:?} is neither YYYY-MM-DD nor RFC 3339"))
}

/// A disagreement between Stripe and the log (or, for `hold_near_expiry`, a warning).
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// `unknown_payment_intent`, `capture_missing`, `status_mismatch`,
    /// `amount_mismatch`, `missing_in_stripe`, `hold_near_expiry`.
    pub kind: &'static str,
    pub payment_intent_id: Option<String>,
    pub charging_intent_id: Option<String>,
    pub stripe_status: Option<String>,
    pub log_status: Option<String>,
    pub detail: String,
    /// What `--apply` does about it, or why it cannot.
    pub action: String,
    /// `--apply` recorded the correction.
    pub applied: bool,
    #[serde(skip)]
    fix: Option<Fix>,
}

#[derive(Debug, Clone)]
enum Fix {
    ApplyStripeStatus {
        intent_id: String,
        pi: PaymentIntentView,
    },
    RecordForeign(ForeignPaymentIntentRecorded),
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

/// The statuses of ours that agree with a PaymentIntent status.
fn agrees(pi: &PaymentIntentView, intent: &ChargingIntent) -> bool {
    use IntentStatus::*;
    let s = intent.status;
    match pi.status.as_str() {
        "requires_payment_method" if pi.last_error_code.is_some() => {
            matches!(s, PendingPayment | Failed)
        }
        "requires_payment_method" | "requires_confirmation" | "requires_action" | "processing" => {
            matches!(s, PendingPayment)
        }
        // A capture or release of ours may be under way (the worker finishes it).
        "requires_capture" => matches!(s, Authorized | Charging) || intent.settlement.is_some(),
        "succeeded" => matches!(s, Completed) || intent.settlement.is_some(),
        "canceled" => {
            matches!(s, Cancelled | Expired | Failed)
                || (s == Completed && intent.captured_amount_cents == Some(0))
                || intent.settlement.is_some()
        }
        _ => true, // a status Stripe added later: not ours to judge
    }
}

struct Context {
    workspace_id: String,
    profiles: Aggregates<WorkspaceStripeProfile>,
    intents: Aggregates<ChargingIntent>,
    foreign: Aggregates<ForeignPaymentIntent>,
    vault: Arc<dyn SecretVault>,
    stripe: Arc<StripeTransport>,
    db: roampay_projections::Db,
}

pub async fn run(args: ReconcileArgs) -> Result<Report, AnyError> {
    let ws = crate::ids::WorkspaceId::parse(&args.workspace)
        .ok_or("--workspace must match ^[A-Za-z0-9_-]{1,64}$")?
        .to_string();
    let db = app::open_store(&args.store).await?;
    let (master, previous) = app::master_keys(&args.keys, &args.store.data_dir)?;
    let vault: Arc<dyn SecretVault> = Arc::new(DbVault::new(db.clone(), master, previous));
    let stripe = Arc::new(StripeTransport::new(
        &args.stripe_api_base,
        Duration::from_millis(args.stripe_timeout_ms),
        3,
    ));
    let gateway: Arc<dyn StripeGateway> = stripe.clone();
    let cx = Context {
        workspace_id: ws.clone(),
        profiles: Aggregates::new(
            &db,
            ProfileServices {
                vault: vault.clone(),
                stripe: gateway.clone(),
            },
        ),
        intents: Aggregates::new(&db, IntentServices::new(gateway)),
        foreign: Aggregates::new(&db, ()),
        vault,
        stripe,
        db,
    };
    let mut report = compare(&cx, &args).await?;
    if args.apply {
        apply(&cx, &mut report).await;
    }
    Ok(report)
}

async fn compare(cx: &Context, args: &ReconcileArgs) -> Result<Report, AnyError> {
    let ws = cx.workspace_id.as_str();
    let profile = cx.profiles.load(ws).await?;
    let key_ref = profile
        .secret_key_for(profile.credential_version)
        .ok_or_else(|| format!("workspace {ws} has no Stripe secret key configured"))?;
    let key = cx
        .vault
        .get(
            ws,
            SecretField::SecretKey,
            key_ref.version,
            &key_ref.secret.fingerprint,
        )
        .await?;

    // Stripe's side, page by page.
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {pos} PaymentIntents ({per_sec})")
            .expect("valid template"),
    );
    bar.set_message("listing");
    bar.enable_steady_tick(Duration::from_millis(120));
    let mut listed = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = cx
            .stripe
            .list_payment_intents(&key, args.since.map(|t| t.timestamp()), after.as_deref())
            .await
            .map_err(|e| format!("listing PaymentIntents failed: {e:?}"))?;
        bar.inc(page.data.len() as u64);
        after = page
            .data
            .last()
            .and_then(|p| p.get("id"))
            .and_then(Value::as_str)
            .map(str::to_string);
        listed.extend(page.data);
        if !page.has_more || after.is_none() {
            break;
        }
    }
    bar.finish_and_clear();

    let mut report = Report {
        workspace_id: ws.to_string(),
        since: args.since,
        stripe_payment_intents: listed.len(),
        roampay_payment_intents: 0,
        findings: Vec::new(),
        warnings: Vec::new(),
    };
    let finding =
        |kind, pi: Option<&PaymentIntentView>, intent: Option<(&str, &ChargingIntent)>| Finding {
            kind,
            payment_intent_id: pi.map(|p| p.id.clone()),
            charging_intent_id: intent.map(|(id, _)| id.to_string()),
            stripe_status: pi.map(|p| p.status.clone()),
            log_status: intent.map(|(_, i)| i.status.as_str().to_string()),
            detail: String::new(),
            action: String::new(),
            applied: false,
            fix: None,
        };
    let now = Utc::now();
    let mut seen = std::collections::HashSet::new();
    for raw in &listed {
        let Some(pi) = PaymentIntentView::from_json(raw) else {
            continue;
        };
        seen.insert(pi.id.clone());
        if pi.metadata_workspace_id.as_deref() != Some(ws) {
            continue; // the account's other business
        }
        report.roampay_payment_intents += 1;
        let claimed = pi.metadata_charging_intent_id.clone();
        let intent = match &claimed {
            Some(id) => Some(cx.intents.load(id).await?),
            None => None,
        };
        let ours = intent.as_ref().filter(|i| {
            i.payment
                .as_ref()
                .is_some_and(|p| p.payment_intent_id == pi.id)
                && i.request.as_ref().map(|r| r.workspace_id.as_str()) == Some(ws)
        });
        let Some(intent) = ours else {
            if cx.foreign.load(&foreign_stream(ws, &pi.id)).await?.recorded {
                continue; // found and recorded by an earlier run
            }
            let mut f = finding("unknown_payment_intent", Some(&pi), None);
            f.charging_intent_id = claimed.clone();
            f.detail = format!(
                "Stripe holds {} {} with this workspace's metadata, but no charging intent of ours owns it",
                pi.amount, pi.currency
            );
            f.action = if pi.status == "requires_capture" {
                "record it in the audit trail; its hold stays on the card until released in Stripe"
                    .into()
            } else {
                "record it in the audit trail".into()
            };
            f.fix = Some(Fix::RecordForeign(ForeignPaymentIntentRecorded {
                workspace_id: ws.to_string(),
                payment_intent_id: pi.id.clone(),
                status: pi.status.clone(),
                amount_cents: pi.amount,
                currency: pi.currency.clone(),
                livemode: pi.livemode,
                claimed_charging_intent_id: claimed.clone(),
                recorded_by: "system:reconcile".into(),
                recorded_at: now,
            }));
            report.findings.push(f);
            continue;
        };
        let id = claimed.as_deref().expect("ours has an id");
        let payment = intent.payment.as_ref().expect("ours has a payment");
        if pi.amount != payment.amount_cents {
            let mut f = finding("amount_mismatch", Some(&pi), Some((id, intent)));
            f.detail = format!(
                "Stripe's amount is {}, the log's {}",
                pi.amount, payment.amount_cents
            );
            f.action =
                "none: check the PaymentIntent in Stripe (was it updated outside roampay?)".into();
            report.findings.push(f);
        }
        if pi.status == "succeeded"
            && intent.status == IntentStatus::Completed
            && intent
                .captured_amount_cents
                .is_some_and(|c| c != pi.amount_received)
        {
            let mut f = finding("amount_mismatch", Some(&pi), Some((id, intent)));
            f.detail = format!(
                "Stripe received {}, the log records {} captured",
                pi.amount_received,
                intent.captured_amount_cents.unwrap_or_default()
            );
            f.action = "none: check the charge and its refunds in Stripe".into();
            report.findings.push(f);
        }
        if !agrees(&pi, intent) {
            let fixable = !intent.status.is_final()
                && matches!(
                    pi.status.as_str(),
                    "requires_capture" | "succeeded" | "canceled"
                )
                || (pi.status == "requires_payment_method"
                    && pi.last_error_code.is_some()
                    && intent.status == IntentStatus::PendingPayment);
            let kind = if pi.status == "succeeded" {
                "capture_missing"
            } else {
                "status_mismatch"
            };
            let mut f = finding(kind, Some(&pi), Some((id, intent)));
            f.detail = format!(
                "Stripe says {}, the log says {}",
                pi.status,
                intent.status.as_str()
            );
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
            report.findings.push(f);
        }
        if let Some(authorized_at) = intent.authorized_at.filter(|_| {
            matches!(
                intent.status,
                IntentStatus::Authorized | IntentStatus::Charging
            ) && pi.status == "requires_capture"
        }) {
            let lapses = authorized_at + chrono::Duration::seconds(args.hold_lifetime_secs);
            if lapses - chrono::Duration::seconds(args.hold_warning_secs) <= now {
                let mut f = finding("hold_near_expiry", Some(&pi), Some((id, intent)));
                f.detail = format!("the hold lapses at {}", lapses.to_rfc3339());
                f.action = "none: complete or cancel the session before then".into();
                report.warnings.push(f);
            }
        }
    }

    // The log's side: paid intents whose PaymentIntent Stripe did not list.
    let since = args.since.unwrap_or(DateTime::<Utc>::MIN_UTC);
    let ours: Vec<(String, String, String)> = on_db!(&cx.db, pool => sqlx::query_as(
        "SELECT charging_intent_id, payment_intent_id, status FROM charging_intents
          WHERE workspace_id = $1 AND payment_intent_id IS NOT NULL")
        .bind(ws)
        .fetch_all(pool).await)?;
    for (intent_id, pi_id, status) in ours {
        if seen.contains(&pi_id) {
            continue;
        }
        let intent = cx.intents.load(&intent_id).await?;
        if intent.created_at.is_some_and(|t| t < since) {
            continue;
        }
        let mut f = finding("missing_in_stripe", None, Some((&intent_id, &intent)));
        f.payment_intent_id = Some(pi_id);
        f.log_status = Some(status);
        f.detail = "the log names a PaymentIntent this account does not list (another account, or deleted test data)".into();
        f.action = "none: check which Stripe account the intent's credential version used".into();
        report.findings.push(f);
    }
    Ok(report)
}

async fn apply(cx: &Context, report: &mut Report) {
    let meta = Metadata {
        actor: "system:reconcile".into(),
        request_id: uuid::Uuid::now_v7().to_string(),
    };
    for f in &mut report.findings {
        let Some(fix) = f.fix.clone() else { continue };
        let outcome = match fix {
            Fix::ApplyStripeStatus { intent_id, pi } => {
                let cmd = ChargingIntentCommand::ProcessStripeAuthorizationWebhook(
                    ProcessStripeAuthorizationWebhook {
                        charging_intent_id: intent_id.clone(),
                        workspace_id: cx.workspace_id.clone(),
                        payment_intent: pi,
                        stripe_event_id: None,
                        source: "reconcile",
                        at: Utc::now(),
                    },
                );
                cx.intents
                    .execute(&intent_id, cmd, &meta)
                    .await
                    .map(|_| ())
                    .map_err(|e| match e {
                        AggregateError::UserError(e) => e.to_string(),
                        other => other.to_string(),
                    })
            }
            Fix::RecordForeign(event) => {
                let stream = foreign_stream(&event.workspace_id, &event.payment_intent_id);
                cx.foreign
                    .execute(&stream, event, &meta)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        };
        match outcome {
            Ok(()) => f.applied = true,
            Err(e) => f.action = format!("{} (failed: {e})", f.action),
        }
    }
}

/// The report for a person.
pub fn render_text(r: &Report, applying: bool) -> String {
    let mut out = format!(
        "reconcile workspace {}{}: {} PaymentIntents in Stripe, {} of them roampay's\n",
        r.workspace_id,
        r.since
            .map(|s| format!(" since {}", s.to_rfc3339()))
            .unwrap_or_default(),
        r.stripe_payment_intents,
        r.roampay_payment_intents
    );
    for (title, list) in [("disagreements", &r.findings), ("warnings", &r.warnings)] {
        if list.is_empty() {
            continue;
        }
        out.push_str(&format!("{title}:\n"));
        for f in list {
            out.push_str(&format!(
                "  {:<22} {:<30} intent {:<38} {}\n      -> {}{}\n",
                f.kind,
                f.payment_intent_id.as_deref().unwrap_or("-"),
                f.charging_intent_id.as_deref().unwrap_or("-"),
                f.detail,
                f.action,
                if f.applied { " [applied]" } else { "" }
            ));
        }
    }
    let open = r.open();
    out.push_str(&if r.findings.is_empty() {
        "Stripe and the event log agree.\n".to_string()
    } else if applying {
        format!(
            "{} corrected, {open} left for a person.\n",
            r.findings.len() - open
        )
    } else {
        format!("{open} disagreement(s); `--apply` records what Stripe's state justifies.\n")
    });
    out
}

pub fn render_json(r: &Report) -> String {
    let mut v = serde_json::to_value(r).expect("report serializes");
    v["open"] = json!(r.open());
    serde_json::to_string_pretty(&v).expect("JSON")
}
