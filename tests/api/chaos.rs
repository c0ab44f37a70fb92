//! The tiny chaos round of `make test` (the full one is `make chaos`): the harness of
//! the test kit runs a dozen seconds of mixed load on two instances with one SIGKILL
//! and a short Stripe outage, and every check must pass.

use roampay_testkit::chaos as harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tiny_chaos_round_loses_nothing_and_charges_nothing_twice() {
    harness::fleet::use_binary(env!("CARGO_BIN_EXE_roampay"));
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
