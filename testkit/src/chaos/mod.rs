//! A chaos run (issue 16, docs/reliability.md): two roampay instances on one
//! PostgreSQL database, a Stripe fake with its own ledger, and a load generator with
//! its own, while instances are SIGKILLed at random moments, PostgreSQL restarts once
//! and Stripe fails for a while. Once everything has settled, the ledgers, the event
//! log and the read models are checked against each other.
//!
//! `make chaos` runs the full plan; `make test` runs a tiny one (`tests/api/chaos.rs`)
//! so the harness cannot rot. Both name the binary first ([`fleet::use_binary`]).

pub mod checks;
pub mod fleet;
pub mod load;
pub mod sample;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::stripe::{FakeStripe, Weather, SLOW};
use fleet::Fleet;
use load::Load;

/// What a run does.
#[derive(Debug, Clone)]
pub struct Plan {
    /// How long the load runs (then everything settles and is checked).
    pub load: Duration,
    /// Concurrent drivers' journeys.
    pub workers: usize,
    pub workspaces: usize,
    pub instances: usize,
    /// SIGKILLs, spread over the load at random moments.
    pub kills: usize,
    /// `pg_ctlcluster <version> main restart` once, half-way.
    pub restart_postgres: bool,
    /// Stripe answers 500 for this long, then answers too late for as long again.
    pub stripe_outage: Duration,
    /// Credential rotations (secret key or webhook secret, alternately).
    pub rotations: usize,
    /// A pause between a worker's journeys (a moderate rate for the soak).
    pub pace: Duration,
    /// Memory and connections of the first instance are sampled this often (soak).
    pub sample_every: Option<Duration>,
}

impl Plan {
    /// `make chaos`: ≤ 10 minutes in all.
    pub fn full() -> Plan {
        Plan {
            load: Duration::from_secs(240),
            workers: 8,
            workspaces: 3,
            instances: 2,
            kills: 24,
            restart_postgres: true,
            stripe_outage: Duration::from_secs(10),
            rotations: 12,
            pace: Duration::ZERO,
            sample_every: None,
        }
    }

    /// `make soak`: 30 minutes of the mix at a moderate rate on one instance, no
    /// faults, sampled each minute.
    pub fn soak() -> Plan {
        Plan {
            load: Duration::from_secs(30 * 60),
            workers: 4,
            workspaces: 3,
            instances: 1,
            kills: 0,
            restart_postgres: false,
            stripe_outage: Duration::ZERO,
            rotations: 30,
            pace: Duration::from_millis(250),
            sample_every: Some(Duration::from_secs(60)),
        }
    }

    /// The round `make test` runs: one kill, a few hundred operations.
    #[allow(dead_code)] // by tests/api/chaos.rs
    pub fn tiny() -> Plan {
        Plan {
            load: Duration::from_secs(12),
            workers: 3,
            workspaces: 2,
            instances: 2,
            kills: 1,
            restart_postgres: false,
            stripe_outage: Duration::from_secs(1),
            rotations: 2,
            pace: Duration::ZERO,
            sample_every: None,
        }
    }
}

/// What a run did and found.
pub struct Report {
    pub counts: Vec<(String, u64)>,
    pub faults: Vec<(String, u64)>,
    pub checks: Vec<checks::Check>,
    pub unexpected_stripe_calls: Vec<String>,
    pub logs: std::path::PathBuf,
    /// The soak's samples.
    pub samples: Vec<sample::Sample>,
}

impl Report {
    pub fn violations(&self) -> usize {
        self.checks.iter().map(|c| c.violations.len()).sum()
    }

    /// How many requests the generator had answered 2xx.
    pub fn acknowledged(&self) -> u64 {
        self.counts
            .iter()
            .filter(|(k, _)| k.starts_with("2xx "))
            .map(|(_, v)| v)
            .sum()
    }

    pub fn print(&self) {
        println!("operations (the generator's ledger):");
        for (k, v) in &self.counts {
            println!("  {v:>7}  {k}");
        }
        println!("faults injected:");
        for (k, v) in &self.faults {
            println!("  {v:>7}  {k}");
        }
        println!("checks:");
        for c in &self.checks {
            println!(
                "  {:>7} checked, {} violations  {}",
                c.checked,
                c.violations.len(),
                c.name
            );
            for v in c.violations.iter().take(5) {
                println!("           ! {v}");
            }
        }
        if !self.unexpected_stripe_calls.is_empty() {
            println!(
                "Stripe calls the fake does not know: {:?}",
                self.unexpected_stripe_calls
            );
        }
        println!(
            "{} violations ({} acknowledged operations; instance logs in {}, kept when a check fails)",
            self.violations(),
            self.acknowledged(),
            self.logs.display()
        );
    }
}

/// Runs `plan` on a fresh database under `pg_url` (an administrative connection
/// string), and drops the database unless something was violated.
pub async fn run(pg_url: &str, plan: Plan) -> Report {
    let admin = sqlx::PgPool::connect(pg_url).await.expect("PostgreSQL");
    let name = format!(
        "roampay_chaos_{}_{}",
        std::process::id(),
        rand::thread_rng().gen::<u32>()
    );
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let url = format!("{}/{name}", pg_url.rsplit_once('/').unwrap().0);
    let (server, fake) = FakeStripe::start().await;
    // A held PaymentIntent tells when it lapses, as a card's charge does.
    fake.set_capture_before(chrono::Duration::days(7));
    let stripe_wait = (SLOW / 2).as_millis().to_string();
    let fleet = Fleet::start(
        plan.instances,
        &url,
        &server.uri(),
        &[
            ("ROAMPAY_STRIPE_TIMEOUT_MS", &stripe_wait),
            ("ROAMPAY_VALIDATION_WAIT_MS", "10000"),
            ("ROAMPAY_PENDING_PAYMENT_TIMEOUT_SECS", "6"),
            ("ROAMPAY_HOLD_TIMEOUT_SECS", "60"),
            ("ROAMPAY_SETTLE_RETRY_SECS", "2"),
            ("ROAMPAY_WORKER_INTERVAL_SECS", "1"),
            ("ROAMPAY_SWEEP_INTERVAL_SECS", "2"),
            ("ROAMPAY_PROJECTION_POLL_MS", "100"),
        ],
    );
    let load = Load::new(fleet.clone(), fake.clone(), plan.workspaces, plan.pace);
    load.set_up(plan.workers).await;

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..plan.workers {
        tasks.spawn(load.clone().drive(w));
    }
    let faults = Arc::new(std::sync::Mutex::new(Vec::<(String, u64)>::new()));
    let chaos = tokio::spawn(inject(
        plan.clone(),
        fleet.clone(),
        fake.clone(),
        load.clone(),
        faults.clone(),
    ));
    let sampler = plan.sample_every.map(|every| {
        tokio::spawn(sample::every(
            every,
            plan.load,
            fleet.clone(),
            url.clone(),
            load.clone(),
        ))
    });
    tokio::time::sleep(plan.load).await;
    chaos.await.unwrap();
    let samples = match sampler {
        Some(s) => s.await.unwrap(),
        None => Vec::new(),
    };
    load.stop.store(true, Ordering::SeqCst);
    while tasks.join_next().await.is_some() {}
    load.drain().await;
    eprintln!("chaos: load done after {:?}; settling", started.elapsed());

    // Everything up again, and the service left to finish its own work.
    let db = sqlx::PgPool::connect(&url).await.unwrap();
    let settling = Instant::now();
    settle(&db, &fleet).await;
    eprintln!("chaos: settled in {:?}", settling.elapsed());
    fleet.kill_all();

    let acks = load.acks.lock().unwrap().clone();
    let mut found = vec![checks::acknowledged(&db, &acks).await];
    found.extend(checks::money(&db, &fake.ledger()).await);
    found.push(checks::connectors(&db).await);
    found.push(checks::dead_letters(&db).await);
    checks::keep_read_models(&db).await;
    let replay = std::process::Command::new(fleet::binary())
        .arg("replay")
        .env("DATABASE_URL", &url)
        .env("ROAMPAY_MASTER_KEY", fleet::MASTER_KEY)
        .output()
        .unwrap();
    assert!(
        replay.status.success(),
        "replay: {}",
        String::from_utf8_lossy(&replay.stderr)
    );
    found.push(checks::replayed(&db).await);
    db.close().await;

    let report = Report {
        counts: load.counts.lock().unwrap().clone().into_iter().collect(),
        faults: faults.lock().unwrap().clone(),
        checks: found,
        unexpected_stripe_calls: fake.unexpected(),
        logs: fleet.log_dir(),
        samples,
    };
    if report.violations() == 0 {
        let admin = sqlx::PgPool::connect(pg_url).await.unwrap();
        let _ = sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .execute(&admin)
            .await;
    } else {
        eprintln!("chaos: database {name} kept for inspection");
        fleet.keep_logs();
    }
    report
}

/// The faults, at random moments of the load: kills (each instance started again after
/// a moment), one PostgreSQL restart half-way, a Stripe outage a third of the way in.
async fn inject(
    plan: Plan,
    fleet: Fleet,
    fake: FakeStripe,
    load: Arc<Load>,
    faults: Arc<std::sync::Mutex<Vec<(String, u64)>>>,
) {
    let total = plan.load.as_millis() as u64;
    let mut at: Vec<(u64, Fault)> = Vec::new();
    for _ in 0..plan.kills {
        let t = rand::thread_rng().gen_range(total / 20..total * 19 / 20);
        at.push((t, Fault::Kill));
    }
    for r in 0..plan.rotations {
        at.push((
            (r as u64 + 1) * total / (plan.rotations as u64 + 1),
            Fault::Rotate(r),
        ));
    }
    if plan.restart_postgres {
        at.push((total / 2, Fault::RestartPostgres));
    }
    let outage = plan.stripe_outage.as_millis() as u64;
    if outage > 0 {
        at.push((total / 3, Fault::Stripe(Weather::Failing)));
        at.push((total / 3 + outage, Fault::Stripe(Weather::Slow)));
        at.push((total / 3 + 2 * outage, Fault::Stripe(Weather::Fine)));
    }
    at.sort_by_key(|(t, _)| *t);
    let started = Instant::now();
    let note = |what: &str| {
        let mut f = faults.lock().unwrap();
        match f.iter_mut().find(|(k, _)| k == what) {
            Some((_, n)) => *n += 1,
            None => f.push((what.to_string(), 1)),
        }
    };
    for (t, fault) in at {
        let wait = Duration::from_millis(t).saturating_sub(started.elapsed());
        tokio::time::sleep(wait).await;
        match fault {
            Fault::Kill => {
                let slot = rand::thread_rng().gen_range(0..fleet.len());
                fleet.kill(slot);
                note("roampay instance killed (SIGKILL)");
                let pause = rand::thread_rng().gen_range(100..1500);
                tokio::time::sleep(Duration::from_millis(pause)).await;
                let f = fleet.clone();
                tokio::task::spawn_blocking(move || f.launch(slot))
                    .await
                    .unwrap();
            }
            Fault::Rotate(n) => {
                load.rotate(n).await;
                note("credential rotation sent");
            }
            Fault::RestartPostgres => {
                let f = std::process::Command::new("sh")
                    .args([
                        "-c",
                        "pg_ctlcluster $(ls /etc/postgresql | head -n1) main restart",
                    ])
                    .status();
                assert!(f.is_ok_and(|s| s.success()), "pg_ctlcluster restart");
                note("PostgreSQL restarted (pg_ctlcluster … restart)");
            }
            Fault::Stripe(w) => {
                fake.set_weather(w);
                match w {
                    Weather::Failing => note(&format!("Stripe answering 500 for {outage} ms")),
                    Weather::Slow => note(&format!(
                        "Stripe applying but answering after roampay's timeout for {outage} ms"
                    )),
                    Weather::Fine => {}
                }
            }
        }
    }
}

enum Fault {
    Kill,
    Rotate(usize),
    RestartPostgres,
    Stripe(Weather),
}

/// Waits until no intent is open or has a settlement waiting, and every read model has
/// caught up with the log (at most three minutes).
async fn settle(db: &sqlx::PgPool, fleet: &Fleet) {
    let http = reqwest::Client::new();
    for slot in 0..fleet.len() {
        if fleet.base(slot).is_none() {
            let f = fleet.clone();
            tokio::task::spawn_blocking(move || f.launch(slot))
                .await
                .unwrap();
        }
    }
    for i in 0..fleet.len() {
        fleet::ready(&http, &fleet.base(i).unwrap()).await;
    }
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(180) {
        let open: Result<i64, _> = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM charging_intents \
                     WHERE status IN ('pending_payment', 'authorized', 'charging') OR settlement IS NOT NULL) \
                  + (SELECT count(*) FROM projection_checkpoints c \
                     WHERE c.name IN ('audit_log', 'charging_intents', 'credential_health') \
                       AND EXISTS (SELECT 1 FROM events e \
                                   WHERE (e.tx_id, e.global_seq) > (c.last_tx::text::xid8, c.last_seq)))",
        )
        .fetch_one(db)
        .await;
        if open.is_ok_and(|n| n == 0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("chaos: not settled after 3 minutes; checking anyway");
}
