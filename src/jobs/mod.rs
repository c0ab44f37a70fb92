//! Background work, each job a loop over one use case of the application layer, each
//! supervised: a job that panics is logged with its name, counted in
//! `roampay_background_task_panics_total{task}` and started again after a pause, so one
//! bad round never silently stops expiry, settlement retries or the sweep.

pub mod session_worker;
pub mod sweep;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::task::JoinHandle;

use crate::application::Services;

/// How long a panicked task waits before it starts again.
pub const RESTART_PAUSE: Duration = Duration::from_secs(1);

/// Runs the task `make` builds, again after each panic; ends when the task returns.
pub fn supervise<F, Fut>(name: &'static str, pause: Duration, make: F) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            match std::panic::AssertUnwindSafe(make()).catch_unwind().await {
                Ok(()) => return,
                Err(panic) => {
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    crate::metrics::task_panic(name);
                    tracing::error!(task = name, panic = %message, "background task panicked; restarting it");
                    tokio::time::sleep(pause).await;
                }
            }
        }
    })
}

/// How often each job runs.
#[derive(Debug, Clone)]
pub struct JobSettings {
    pub sweep: sweep::SweepSettings,
    pub worker: session_worker::WorkerSettings,
    pub revalidate_interval: Duration,
    /// How old a valid set's last proof may be before it is proven again.
    pub revalidate_valid: chrono::Duration,
    /// `None`: projectors run elsewhere.
    pub projection_poll: Option<Duration>,
    /// How long the webhook delivery log keeps a delivery.
    pub delivery_log_retention: chrono::Duration,
}

/// Starts every background job under supervision.
pub fn start(services: Arc<Services>, settings: JobSettings) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    if let Some(poll) = settings.projection_poll {
        let projector = services.projector.clone();
        tasks.push(supervise("projector", RESTART_PAUSE, move || {
            projector.clone().run_forever(poll)
        }));
    }
    let (s, cfg) = (services.clone(), settings.sweep.clone());
    tasks.push(supervise("sweep", RESTART_PAUSE, move || {
        run_sweep(s.clone(), cfg.clone())
    }));
    let (s, cfg) = (services.clone(), settings.worker.clone());
    tasks.push(supervise("session_worker", RESTART_PAUSE, move || {
        run_worker(s.clone(), cfg.clone())
    }));
    let (s, keep) = (services.clone(), settings.delivery_log_retention);
    if keep > chrono::Duration::zero() {
        // A retention of 0 keeps no log: nothing to prune.
        tasks.push(supervise(
            "delivery_log_retention",
            RESTART_PAUSE,
            move || run_retention(s.clone(), keep),
        ));
    }
    let (s, every, valid) = (
        services,
        settings.revalidate_interval,
        settings.revalidate_valid,
    );
    tasks.push(supervise("revalidation", RESTART_PAUSE, move || {
        run_revalidation(s.clone(), every, valid)
    }));
    tasks
}

async fn run_sweep(services: Arc<Services>, settings: sweep::SweepSettings) {
    let mut schedule = sweep::Schedule::default();
    loop {
        tokio::time::sleep(settings.interval).await;
        match sweep::round(&services, &settings, &mut schedule).await {
            Ok(()) => crate::metrics::job_round("sweep"),
            Err(e) => tracing::warn!(error = %e, "sweep could not list pending intents"),
        }
    }
}

async fn run_worker(services: Arc<Services>, settings: session_worker::WorkerSettings) {
    let mut leadership = session_worker::Leadership::default();
    loop {
        tokio::time::sleep(settings.interval).await;
        if !leadership.lead(&services.db).await {
            continue;
        }
        match session_worker::round(&services, &settings).await {
            Ok(()) => crate::metrics::job_round("session_worker"),
            Err(e) => tracing::warn!(error = %e, "session worker round failed; next round retries"),
        }
    }
}

/// Pending sets and candidates are tried again; valid sets are proven again once their
/// last proof is older than `valid_for`.
async fn run_revalidation(services: Arc<Services>, every: Duration, valid_for: chrono::Duration) {
    loop {
        tokio::time::sleep(every).await;
        let pending = services.credentials.revalidate_pending().await;
        let valid = services.credentials.revalidate_valid(valid_for).await;
        match pending.and(valid) {
            Ok(_) => crate::metrics::job_round("revalidation"),
            Err(e) => tracing::warn!(error = %e, "could not list credential sets to validate"),
        }
    }
}

/// Deliveries older than `keep` leave the log, a few times per retention period (at
/// most hourly).
async fn run_retention(services: Arc<Services>, keep: chrono::Duration) {
    let every = (keep / 4)
        .to_std()
        .unwrap_or_default()
        .clamp(Duration::from_secs(1), Duration::from_secs(3600));
    loop {
        tokio::time::sleep(every).await;
        match services.deliveries.prune(services.clock.now() - keep).await {
            Ok(_) => crate::metrics::job_round("delivery_log_retention"),
            Err(e) => tracing::warn!(error = %e, "could not prune the webhook delivery log"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::supervise;

    #[tokio::test]
    async fn a_panicking_task_is_counted_and_started_again() {
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        let before = crate::metrics::task_panics("test_task");
        let handle = supervise("test_task", Duration::from_millis(1), move || {
            let runs = counted.clone();
            async move {
                // Panics on its first two runs, then finishes.
                if runs.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("boom");
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(5), handle)
            .await
            .expect("the supervisor ends once the task returns")
            .expect("the supervisor itself never panics");
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert_eq!(crate::metrics::task_panics("test_task") - before, 2);
    }
}
