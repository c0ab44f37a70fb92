//! The tiny chaos round of `make test` (the full one is `make chaos`): the harness of
//! benches/chaos runs a dozen seconds of mixed load on two instances with one SIGKILL
//! and a short Stripe outage, and every check must pass.

#[path = "../../benches/chaos/harness/mod.rs"]
#[allow(dead_code)]
mod harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tiny_chaos_round_loses_nothing_and_charges_nothing_twice() {
    let report = harness::run(&crate::support::pg_admin_url(), harness::Plan::tiny()).await;
    report.print();
    assert_eq!(report.violations(), 0);
    assert!(report.acknowledged() >= 100, "a few hundred operations");
    let killed = report
        .faults
        .iter()
        .find(|(k, _)| k.contains("SIGKILL"))
        .map(|(_, n)| *n);
    assert_eq!(killed, Some(1));
}
