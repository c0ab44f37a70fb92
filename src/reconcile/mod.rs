//! `roampay reconcile`: the command line of the reconciliation use case
//! (`application::reconcile`): its arguments, a spinner, and the report for a person
//! or as JSON.

use std::time::Duration;

use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::application::reconcile::Report;
use crate::config::{HoldArgs, KeyArgs, StoreArgs, StripeArgs};
use crate::startup::{self, AnyError, Core};

#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub stripe: StripeArgs,
    #[command(flatten)]
    pub holds: HoldArgs,
    #[command(flatten)]
    pub platform: crate::config::PlatformArgs,
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
    /// The account to compare: `keys` (the workspace's own) or `connect` (its
    /// connected account); default the connection its new payments use.
    #[arg(long, value_parser = parse_connection)]
    pub connection: Option<roampay_events::StripeConnection>,
}

fn parse_connection(s: &str) -> Result<roampay_events::StripeConnection, String> {
    match s {
        "keys" => Ok(roampay_events::StripeConnection::Keys),
        "connect" => Ok(roampay_events::StripeConnection::Connect),
        _ => Err(format!("{s:?} is neither keys nor connect")),
    }
}

fn parse_since(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
        .map_err(|_| format!("{s:?} is neither YYYY-MM-DD nor RFC 3339"))
}

/// Builds the services from the settings (as `serve` does) and reconciles.
pub async fn run(args: ReconcileArgs) -> Result<Report, AnyError> {
    let ws = crate::domain::ids::WorkspaceId::parse(&args.workspace)
        .ok_or("--workspace must match ^[A-Za-z0-9_-]{1,64}$")?
        .to_string();
    let core = Core {
        store: &args.store,
        keys: &args.keys,
        stripe: &args.stripe,
        holds: &args.holds,
    };
    // A connect-mode workspace's PaymentIntents are read with the platform's key.
    let connect = startup::connect_settings(&args.platform, &args.stripe)?;
    let services =
        startup::services(core, |holds| startup::offline_settings(holds, connect)).await?;
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {pos} PaymentIntents ({per_sec})")
            .expect("valid template"),
    );
    bar.set_message("listing");
    bar.enable_steady_tick(Duration::from_millis(120));
    let report = services
        .reconciler
        .reconcile(&ws, args.since, args.apply, args.connection, &|n| {
            bar.inc(n)
        })
        .await;
    bar.finish_and_clear();
    Ok(report?)
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
