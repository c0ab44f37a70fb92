//! Prometheus metrics served on `GET /metrics`.
//!
//! Counters and histograms live in one process-wide registry, so the Stripe transport,
//! the webhook handler and the HTTP middleware can record without threading a handle
//! through every call. Gauges read from the database (projector lag, credential health)
//! are refreshed when scraped, so they are never older than the scrape itself.

use std::sync::LazyLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric name starts with this.
pub const NAMESPACE: &str = "roampay";

pub struct Metrics {
    pub registry: Registry,
    webhooks: IntCounterVec,
    preauths: IntCounterVec,
    stripe_requests: IntCounterVec,
    stripe_duration: HistogramVec,
    projection_lag_events: IntGaugeVec,
    projection_lag_seconds: prometheus::GaugeVec,
    projection_visible: HistogramVec,
    credential_health: IntGaugeVec,
    task_panics: IntCounterVec,
    job_rounds: IntCounterVec,
    uncollected: IntCounterVec,
    revocations: IntCounterVec,
    dead_letters: IntCounterVec,
    build_info: IntGaugeVec,
    billing: IntGaugeVec,
    heartbeat: IntGaugeVec,
    intents_ended: IntCounterVec,
    holds_lapsing: prometheus::IntCounter,
    platform_key_refusals: prometheus::IntCounter,
    deliveries_unlogged: IntCounterVec,
    ocpi_unmatched: IntCounterVec,
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help).namespace(NAMESPACE), labels).expect("valid metric")
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help).namespace(NAMESPACE), labels).expect("valid metric")
}

impl Metrics {
    fn new() -> Self {
        let m = Self {
            registry: Registry::new(),
            webhooks: counter(
                "webhooks_total",
                "Stripe webhook deliveries by outcome (applied, duplicate, ignored, rejected) and refusal code.",
                &["outcome", "code"],
            ),
            preauths: counter(
                "preauths_total",
                "Pre-authorization requests by outcome (created, free, replayed, refused) and error code.",
                &["outcome", "code"],
            ),
            stripe_requests: counter(
                "stripe_requests_total",
                "Calls to Stripe (each attempt) by operation and HTTP status (`unreachable` when there was no answer).",
                &["operation", "status"],
            ),
            stripe_duration: HistogramVec::new(
                HistogramOpts::new(
                    "stripe_request_duration_seconds",
                    "Time of each call to Stripe (each attempt) by operation.",
                )
                .namespace(NAMESPACE)
                .buckets(vec![
                    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ]),
                &["operation"],
            )
            .expect("valid metric"),
            projection_visible: HistogramVec::new(
                HistogramOpts::new(
                    "projection_visible_seconds",
                    "Time from an event's commit until a read model shows it, by projection.",
                )
                .namespace(NAMESPACE)
                .buckets(vec![
                    0.001, 0.002, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15,
                    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                ]),
                &["projection"],
            )
            .expect("valid metric"),
            projection_lag_events: gauge(
                "projection_lag_events",
                "Committed events a projection has not applied yet.",
                &["projection"],
            ),
            projection_lag_seconds: prometheus::GaugeVec::new(
                Opts::new(
                    "projection_lag_seconds",
                    "Age of the oldest committed event a projection has not applied yet (0 when caught up).",
                )
                .namespace(NAMESPACE),
                &["projection"],
            )
            .expect("valid metric"),
            credential_health: gauge(
                "credential_health_workspaces",
                "Workspaces by Stripe credential health status.",
                &["status"],
            ),
            task_panics: counter(
                "background_task_panics_total",
                "Background tasks (sweep, session worker, revalidation, projector) that panicked and were restarted.",
                &["task"],
            ),
            uncollected: counter(
                "uncollected_cents_total",
                "What completed sessions cost beyond what the hold let roampay capture, in minor units, by currency.",
                &["currency"],
            ),
            billing: gauge(
                "workspaces_by_billing_status",
                "Workspaces by the status of their subscription to the platform (billing on).",
                &["status"],
            ),
            build_info: gauge(
                "build_info",
                "Always 1; the running build's version as a label.",
                &["version"],
            ),
            heartbeat: gauge(
                "worker_last_run_timestamp_seconds",
                "When each background worker last finished a round (Unix seconds; set at start). Take the max over instances: on PostgreSQL one instance leads the session worker.",
                &["worker"],
            ),
            intents_ended: counter(
                "charging_intents_ended_total",
                "Charging intents that reached an end state, by status (completed, cancelled, failed, expired, capture_failed).",
                &["status"],
            ),
            holds_lapsing: prometheus::IntCounter::with_opts(
                Opts::new(
                    "holds_lapsing_total",
                    "Holds flagged because Stripe will release them soon (capture or release before capture_before).",
                )
                .namespace(NAMESPACE),
            )
            .expect("valid metric"),
            platform_key_refusals: prometheus::IntCounter::with_opts(
                Opts::new(
                    "platform_key_refusals_total",
                    "Calls Stripe refused with 401 on the platform's key (connect-mode payments): the key was rolled or revoked.",
                )
                .namespace(NAMESPACE),
            )
            .expect("valid metric"),
            dead_letters: counter(
                "projection_dead_letters_total",
                "Events a projection could not apply and set aside (see `roampay dead-letters`), by projection.",
                &["projection"],
            ),
            revocations: counter(
                "credential_revocations_total",
                "Active Stripe credential sets (or connected accounts) made invalid because Stripe refused them (code key_revoked, permission_denied, or account_deauthorized for a 403 account_invalid on a connected account).",
                &["code"],
            ),
            deliveries_unlogged: counter(
                "webhook_deliveries_unlogged_total",
                "Webhook deliveries left out of the delivery log: unverified ones past the hourly allowance (`unverified_cap`), batches the store refused (`store_failed`), rows the writer could not keep up with (`queue_full`).",
                &["reason"],
            ),
            ocpi_unmatched: counter(
                "ocpi_unmatched_total",
                "OCPI sessions and CDRs accepted but not linked to a payment (they move no money), by kind and reason.",
                &["kind", "reason"],
            ),
            job_rounds: counter(
                "background_job_rounds_total",
                "Rounds completed by each background job (a round that did its work, or found none).",
                &["job"],
            ),
        };
        for c in [
            &m.task_panics,
            &m.job_rounds,
            &m.uncollected,
            &m.revocations,
            &m.dead_letters,
            &m.intents_ended,
            &m.deliveries_unlogged,
            &m.ocpi_unmatched,
        ] {
            m.registry.register(Box::new(c.clone())).expect("unique");
        }
        for g in [&m.build_info, &m.heartbeat, &m.billing] {
            m.registry.register(Box::new(g.clone())).expect("unique");
        }
        for c in [&m.holds_lapsing, &m.platform_key_refusals] {
            m.registry.register(Box::new(c.clone())).expect("unique");
        }
        m.registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("unique");
        #[cfg(not(target_env = "msvc"))]
        m.registry
            .register(Box::new(AllocatorStats::new()))
            .expect("unique");
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        // Series that alerts watch exist from the start, at 0 (and the heartbeats at
        // the start time), instead of appearing with their first event.
        let now = chrono::Utc::now().timestamp();
        for worker in ["sweep", "session_worker", "revalidation"] {
            m.heartbeat.with_label_values(&[worker]).set(now);
            m.job_rounds.with_label_values(&[worker]);
        }
        for outcome in ["applied", "duplicate", "ignored"] {
            m.webhooks.with_label_values(&[outcome, ""]);
        }
        for task in [
            "projector",
            "sweep",
            "session_worker",
            "revalidation",
            "rate_limit_prune",
        ] {
            m.task_panics.with_label_values(&[task]);
        }
        for code in ["key_revoked", "permission_denied"] {
            m.revocations.with_label_values(&[code]);
        }
        m.ocpi_unmatched
            .with_label_values(&["session", "unknown_authorization_reference"]);
        // Dashboard panels read these: a fresh instance shows 0, not "no data".
        m.uncollected.with_label_values(&[""]);
        for status in roampay_events::BillingStatus::ALL {
            m.billing.with_label_values(&[status.as_str()]).set(0);
        }
        for projection in [
            "credential_health",
            "audit_log",
            "charging_intents",
            "workspace_billing",
        ] {
            m.dead_letters.with_label_values(&[projection]);
            m.projection_visible.with_label_values(&[projection]);
        }
        for status in [
            "completed",
            "cancelled",
            "failed",
            "expired",
            "capture_failed",
        ] {
            m.intents_ended.with_label_values(&[status]);
        }
        m.registry
            .register(Box::new(m.webhooks.clone()))
            .expect("unique");
        m.registry
            .register(Box::new(m.preauths.clone()))
            .expect("unique");
        m.registry
            .register(Box::new(m.stripe_requests.clone()))
            .expect("unique");
        m.registry
            .register(Box::new(m.stripe_duration.clone()))
            .expect("unique");
        m.registry
            .register(Box::new(m.projection_lag_events.clone()))
            .expect("unique");
        m.registry
            .register(Box::new(m.projection_lag_seconds.clone()))
            .expect("unique");
        m.registry
            .register(Box::new(m.projection_visible.clone()))
            .expect("unique");
        m.registry
            .register(Box::new(m.credential_health.clone()))
            .expect("unique");
        m
    }
}

/// jemalloc's own figures, read when scraped: the bytes the service's objects take
/// (`allocated`) and the pages jemalloc keeps in memory for them (`resident`). The
/// process's RSS says how much memory there is; the gap between these two says whether
/// it is data or pages the allocator has not handed back yet.
#[cfg(not(target_env = "msvc"))]
struct AllocatorStats {
    allocated: prometheus::IntGauge,
    resident: prometheus::IntGauge,
}

#[cfg(not(target_env = "msvc"))]
impl AllocatorStats {
    fn new() -> Self {
        let gauge = |name: &str, help: &str| {
            prometheus::IntGauge::with_opts(Opts::new(name, help).namespace(NAMESPACE))
                .expect("valid metric")
        };
        Self {
            allocated: gauge(
                "allocator_allocated_bytes",
                "Bytes in use by the service's allocations (jemalloc stats.allocated).",
            ),
            resident: gauge(
                "allocator_resident_bytes",
                "Bytes of memory pages jemalloc holds resident (stats.resident): data, free space not yet returned, metadata.",
            ),
        }
    }
}

#[cfg(not(target_env = "msvc"))]
impl prometheus::core::Collector for AllocatorStats {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        let mut d = self.allocated.desc();
        d.extend(self.resident.desc());
        d
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        use tikv_jemalloc_ctl::{epoch, stats};
        // The figures are cached by jemalloc until the epoch moves on.
        if epoch::advance().is_ok() {
            if let (Ok(allocated), Ok(resident)) =
                (stats::allocated::read(), stats::resident::read())
            {
                self.allocated.set(allocated as i64);
                self.resident.set(resident as i64);
            }
        }
        let mut m = self.allocated.collect();
        m.extend(self.resident.collect());
        m
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

pub fn global() -> &'static Metrics {
    &METRICS
}

/// A webhook delivery answered: `outcome` is what the response said, `code` the refusal.
pub fn webhook(outcome: &str, code: &str) {
    METRICS.webhooks.with_label_values(&[outcome, code]).inc();
}

/// A background task panicked (and is started again).
pub fn task_panic(task: &str) {
    METRICS.task_panics.with_label_values(&[task]).inc();
}

/// A session completed for less than it cost (the capture was capped by the hold).
pub fn uncollected(currency: &str, cents: i64) {
    if cents > 0 {
        METRICS
            .uncollected
            .with_label_values(&[currency])
            .inc_by(cents as u64);
    }
}

/// A projection made an event visible `secs` after it was committed.
pub fn projection_visible(projection: &str, secs: f64) {
    METRICS
        .projection_visible
        .with_label_values(&[projection])
        .observe(secs);
}

/// A projection set an event aside.
pub fn dead_letter(projection: &str) {
    METRICS.dead_letters.with_label_values(&[projection]).inc();
}

/// Stripe refused the platform's key (401) on a connect-mode payment call.
pub fn platform_key_refused() {
    METRICS.platform_key_refusals.inc();
}

/// A workspace's active credential set was made invalid by Stripe's refusal.
pub fn credential_revoked(code: &str) {
    METRICS.revocations.with_label_values(&[code]).inc();
}

/// A background job finished one round (its heartbeat).
pub fn job_round(job: &str) {
    METRICS.job_rounds.with_label_values(&[job]).inc();
    METRICS
        .heartbeat
        .with_label_values(&[job])
        .set(chrono::Utc::now().timestamp());
}

/// A charging intent reached an end state.
pub fn intent_ended(status: &str) {
    METRICS.intents_ended.with_label_values(&[status]).inc();
}

/// An unverified delivery past its workspace's hourly allowance was not logged.
pub fn delivery_unlogged() {
    METRICS
        .deliveries_unlogged
        .with_label_values(&["unverified_cap"])
        .inc();
}

/// Deliveries not logged: `store_failed` (a batch the store refused three times) or
/// `queue_full` (the writer far behind).
pub fn delivery_log_dropped(reason: &str, rows: usize) {
    METRICS
        .deliveries_unlogged
        .with_label_values(&[reason])
        .inc_by(rows as u64);
}

/// An OCPI object was accepted but linked to no payment.
pub fn ocpi_unmatched(kind: &str, reason: &str) {
    METRICS
        .ocpi_unmatched
        .with_label_values(&[kind, reason])
        .inc();
}

/// A hold about to lapse was flagged for support.
pub fn hold_lapsing() {
    METRICS.holds_lapsing.inc();
}

/// How many times `task` panicked in this process.
pub fn task_panics(task: &str) -> u64 {
    METRICS.task_panics.with_label_values(&[task]).get()
}

/// A pre-authorization request answered.
pub fn preauth(outcome: &str, code: &str) {
    METRICS.preauths.with_label_values(&[outcome, code]).inc();
}

/// One attempt of a call to Stripe. `status` is `None` when Stripe gave no answer.
pub fn stripe_call(operation: &str, status: Option<u16>, seconds: f64) {
    let status = status.map_or_else(|| "unreachable".to_string(), |s| s.to_string());
    METRICS
        .stripe_requests
        .with_label_values(&[operation, status.as_str()])
        .inc();
    METRICS
        .stripe_duration
        .with_label_values(&[operation])
        .observe(seconds);
}

/// `POST /v1/payment_intents/pi_123/capture` → `POST /v1/payment_intents/{id}/capture`:
/// object ids would make a label per PaymentIntent.
pub fn stripe_operation(method: &str, path: &str) -> String {
    let mut op = String::with_capacity(method.len() + path.len() + 4);
    op.push_str(method);
    op.push_str(" /v1");
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        op.push('/');
        let is_id = segment
            .split_once('_')
            .is_some_and(|(prefix, rest)| !prefix.is_empty() && !rest.is_empty())
            && segment.chars().any(|c| c.is_ascii_digit());
        op.push_str(if is_id { "{id}" } else { segment });
    }
    op
}

pub fn set_projection_lag(projection: &str, events: i64, seconds: f64) {
    METRICS
        .projection_lag_events
        .with_label_values(&[projection])
        .set(events);
    METRICS
        .projection_lag_seconds
        .with_label_values(&[projection])
        .set(seconds);
}

/// Replaces the per-status counts (a status with no workspace left reads 0).
pub fn set_credential_health(counts: &[(String, i64)]) {
    for status in roampay_events::HealthStatus::ALL {
        let n = counts
            .iter()
            .find(|(s, _)| s == status.as_str())
            .map_or(0, |(_, n)| *n);
        METRICS
            .credential_health
            .with_label_values(&[status.as_str()])
            .set(n);
    }
}

pub fn set_billing(counts: &[(String, i64)]) {
    for status in roampay_events::BillingStatus::ALL {
        let n = counts
            .iter()
            .find(|(s, _)| s == status.as_str())
            .map_or(0, |(_, n)| *n);
        METRICS.billing.with_label_values(&[status.as_str()]).set(n);
    }
}

/// The registry in Prometheus' text format.
pub fn render() -> String {
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&METRICS.registry.gather(), &mut out)
        .expect("text encoding never fails");
    String::from_utf8(out).expect("the text format is UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripe_operations_hide_object_ids() {
        assert_eq!(
            stripe_operation("POST", "/payment_intents/pi_3Abc123/capture"),
            "POST /v1/payment_intents/{id}/capture"
        );
        assert_eq!(
            stripe_operation("POST", "/payment_intents"),
            "POST /v1/payment_intents"
        );
        assert_eq!(stripe_operation("GET", "/balance"), "GET /v1/balance");
        assert_eq!(
            stripe_operation("GET", "/payment_intents/pi_1/"),
            "GET /v1/payment_intents/{id}"
        );
    }

    #[test]
    fn counters_appear_in_the_text_format() {
        webhook("rejected", "signature_mismatch_unit");
        let text = render();
        assert!(
            text.contains(
                "roampay_webhooks_total{code=\"signature_mismatch_unit\",outcome=\"rejected\"} 1"
            ),
            "{text}"
        );
    }
}
