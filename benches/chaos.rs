//! `make chaos` (issue 16, docs/reliability.md): the full chaos plan on PostgreSQL —
//! two instances, ≥ 20 SIGKILLs, one PostgreSQL restart, a Stripe outage — then the
//! checks. Exits non-zero on any violation. `ROAMPAY_CHAOS_SECS` changes how long the
//! load runs (240 s; the whole run stays under 10 minutes).
//!
//! `make soak` (`ROAMPAY_SOAK=1`): 30 minutes of the same mix at a moderate rate on one
//! instance without faults, memory and connections sampled each minute, the slope
//! reported after a 5-minute warm-up (target: flat within 10 %), then the same checks.

use roampay_testkit::chaos as harness;

use std::time::Duration;

/// The soak's first minutes fill the caches that are bounded by time.
const WARM_UP_MINUTES: f64 = 5.0;

#[tokio::main]
async fn main() {
    harness::fleet::use_binary(env!("CARGO_BIN_EXE_roampay"));
    let url = std::env::var("ROAMPAY_BENCH_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let soak = std::env::var("ROAMPAY_SOAK").is_ok_and(|v| v == "1");
    let mut plan = if soak {
        harness::Plan::soak()
    } else {
        harness::Plan::full()
    };
    if let Some(secs) = std::env::var("ROAMPAY_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        plan.load = Duration::from_secs(secs);
    }
    println!("plan: {plan:?}");
    let started = std::time::Instant::now();
    let report = harness::run(&url, plan).await;
    report.print();
    println!("run took {:.0} s", started.elapsed().as_secs_f64());
    let mut failed = report.violations() > 0;
    if soak {
        failed |= !print_soak(&report.samples);
    }
    if failed {
        std::process::exit(1);
    }
}

/// The samples and the slopes after the warm-up; true when memory is flat within 10 %.
fn print_soak(samples: &[harness::sample::Sample]) -> bool {
    println!("soak samples (first instance):");
    println!("  minute   RSS MB   open fds   PostgreSQL connections   2xx so far");
    for s in samples {
        println!(
            "  {:>6.1}  {:>7.1}  {:>9.0}  {:>23}  {:>11}",
            s.minute, s.rss_mb, s.open_fds, s.db_connections, s.acknowledged
        );
    }
    let after: Vec<_> = samples
        .iter()
        .filter(|s| s.minute >= WARM_UP_MINUTES)
        .collect();
    let series = |f: fn(&harness::sample::Sample) -> f64| {
        harness::sample::relative_change(
            &after.iter().map(|s| (s.minute, f(s))).collect::<Vec<_>>(),
        )
    };
    let rss = series(|s| s.rss_mb);
    let fds = series(|s| s.open_fds);
    let conns = series(|s| s.db_connections as f64);
    println!(
        "slope after minute {WARM_UP_MINUTES} (change over the rest of the run, least squares):"
    );
    println!(
        "  RSS                    {:>+6.1} %   (target: within ±10 %)",
        rss * 100.0
    );
    println!("  open file descriptors  {:>+6.1} %", fds * 100.0);
    println!("  PostgreSQL connections {:>+6.1} %", conns * 100.0);
    rss.abs() <= 0.10
}
