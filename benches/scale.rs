//! `make bench` (scale part, issue 16): how roampay's costs grow with years of events.
//!
//! The same measurements on two PostgreSQL databases, one seeded with 10,000 events and
//! one with `ROAMPAY_BENCH_SCALE_EVENTS` (10,000,000) over one workspace per 1,000
//! events: webhook ingestion (ratio ≥ 0.9), pre-authorization latency, support queries
//! (p99 ≤ 20 ms), `roampay replay` against the COPY rate (≥ 0.2), the database's size per
//! million events; and once, the load of one aggregate with 10,000 events (< 50 ms).
//!
//! The events are the project's own: one paid journey (pre-auth, authorization by
//! webhook, session, capture, and its connector's reservation) and one workspace's
//! set-up are recorded by a real `roampay serve` against the chaos run's Stripe fake,
//! then copied with new ids (workspace, intent, PaymentIntent) into the log by COPY.

mod common;

use roampay_testkit::chaos as harness;
use roampay_testkit::stripe::FakeStripe;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::{PgPool, Row};

/// Pre-authorizations (then webhooks) measured on each database.
const INTENTS: usize = 3000;
/// Support queries of each kind.
const QUERIES: usize = 300;
/// Events of the one long aggregate.
const LONG: usize = 10_000;

/// One stored event, as text columns of `events`.
#[derive(Clone)]
struct Row7 {
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: String,
    metadata: String,
}

/// What one workspace's set-up and one paid journey left in the log.
struct Template {
    workspace: String,
    setup: Vec<Row7>,
    journey: Vec<Row7>,
    intent: String,
    payment_intent: String,
    location: Row7,
}

#[tokio::main]
async fn main() {
    harness::fleet::use_binary(env!("CARGO_BIN_EXE_roampay"));
    let events: usize = std::env::var("ROAMPAY_BENCH_SCALE_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let admin = PgPool::connect(&common::pg_url())
        .await
        .expect("PostgreSQL");
    let template = record_template(&admin).await;
    let small = measure(&admin, &template, 10_000, false).await;
    let large = measure(&admin, &template, events, true).await;
    println!("scale: the same run on {} and {events} events", 10_000);
    println!(
        "  webhook ingestion            : {:>8.0} /s vs {:>8.0} /s   ratio {:.3} (target >= 0.9)",
        large.webhooks,
        small.webhooks,
        large.webhooks / small.webhooks
    );
    println!(
        "  pre-auth latency p50 / p99   : {:>6.2} / {:>6.2} ms vs {:.2} / {:.2} ms",
        large.preauth.0, large.preauth.1, small.preauth.0, small.preauth.1
    );
    for ((name, l), (_, s)) in large.queries.iter().zip(&small.queries) {
        println!(
            "  {name:<28} : p50 {:>5.2} ms, p99 {:>5.2} ms (target <= 20) vs p99 {:.2} ms",
            l.0, l.1, s.1
        );
    }
    println!(
        "  replay                       : {:>8.0} events/s, COPY {:>8.0} events/s, ratio {:.3} (target >= 0.2)",
        large.replay, large.copy, large.replay / large.copy
    );
    println!(
        "  database size                : {:.0} MB per million events ({:.0} MB in all)",
        large.bytes / 1e6 / (large.events as f64 / 1e6),
        large.bytes / 1e6
    );
    if let Some((first, median, max)) = large.long_load {
        println!(
            "  load of an aggregate of {LONG} events: median {median:.1} ms, max {max:.1} ms (target < 50) \
             from its snapshot; {first:.1} ms the first time (no snapshot yet: it was seeded)"
        );
    }
}

/// Figures of one database.
struct Figures {
    webhooks: f64,
    preauth: (f64, f64),
    queries: Vec<(&'static str, (f64, f64))>,
    copy: f64,
    replay: f64,
    bytes: f64,
    events: usize,
    long_load: Option<(f64, f64, f64)>,
}

async fn create_db(admin: &PgPool, name: &str) -> String {
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(admin)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(admin)
        .await
        .unwrap();
    format!("{}/{name}", common::pg_url().rsplit_once('/').unwrap().0)
}

fn roampay(args: &[&str], url: &str) -> std::process::Output {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_roampay"))
        .args(args)
        .env("DATABASE_URL", url)
        .env("ROAMPAY_MASTER_KEY", harness::fleet::MASTER_KEY)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "roampay {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs one instance for a few seconds of the chaos generator's journeys and keeps the
/// events of one paid, captured journey and of its workspace's set-up.
async fn record_template(admin: &PgPool) -> Template {
    let name = format!("roampay_bench_template_{}", std::process::id());
    let url = create_db(admin, &name).await;
    let (server, fake) = FakeStripe::start().await;
    let fleet = harness::fleet::Fleet::start(1, &url, &server.uri(), &[]);
    let load = harness::load::Load::new(fleet.clone(), fake, 1, Duration::ZERO);
    load.set_up(1).await;
    let driving = tokio::spawn(load.clone().drive(0));
    tokio::time::sleep(Duration::from_secs(4)).await;
    load.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    driving.await.unwrap();
    load.drain().await;
    fleet.kill_all();
    let db = PgPool::connect(&url).await.unwrap();
    const COLUMNS: &str = "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload::text, metadata::text FROM events";
    // The journey with a capture and the most events (no refund: it is not everyone's).
    let intent: String = sqlx::query_scalar(
        "SELECT aggregate_id FROM events WHERE aggregate_type = 'ChargingIntent' GROUP BY aggregate_id \
         HAVING bool_or(event_type = 'WorkspaceSessionPaymentCaptured') AND bool_or(event_type = 'WorkspacePaymentIntentCreated') \
            AND NOT bool_or(event_type LIKE 'Refund%') \
         ORDER BY count(*) DESC LIMIT 1",
    )
    .fetch_one(&db)
    .await
    .expect("a captured journey in the template run");
    let mut journey = rows(
        &db,
        &format!("{COLUMNS} WHERE aggregate_id = $1 ORDER BY sequence"),
        &intent,
    )
    .await;
    let payment_intent = journey
        .iter()
        .find(|r| r.event_type == "WorkspacePaymentIntentCreated")
        .and_then(|r| serde_json::from_str::<Value>(&r.payload).ok())
        .and_then(|v| {
            v.pointer("/WorkspacePaymentIntentCreated/payment_intent_id")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .expect("the PaymentIntent id");
    // Its connector's reservation and release, renumbered per journey when copied.
    let connector = rows(
        &db,
        &format!("{COLUMNS} WHERE aggregate_type = 'ConnectorReservation' AND payload::text LIKE '%' || $1 || '%' ORDER BY sequence"),
        &intent,
    )
    .await;
    journey.extend(connector);
    let setup = rows(
        &db,
        &format!("{COLUMNS} WHERE aggregate_type IN ('WorkspaceStripeProfile', 'Location') AND aggregate_id LIKE '%' || $1 || '%' ORDER BY aggregate_type, aggregate_id, sequence"),
        "ws-chaos-0",
    )
    .await;
    let location = setup
        .iter()
        .find(|r| r.event_type == "LocationPublished")
        .cloned()
        .expect("a published location");
    db.close().await;
    drop(server);
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(admin)
        .await
        .unwrap();
    Template {
        workspace: "ws-chaos-0".into(),
        setup,
        journey,
        intent,
        payment_intent,
        location,
    }
}

/// The events `sql` selects (its one parameter: `id`).
async fn rows(db: &PgPool, sql: &str, id: &str) -> Vec<Row7> {
    sqlx::query(sql)
        .bind(id)
        .fetch_all(db)
        .await
        .unwrap()
        .iter()
        .map(|r| Row7 {
            aggregate_type: r.get(0),
            aggregate_id: r.get(1),
            sequence: r.get(2),
            event_type: r.get(3),
            event_version: r.get(4),
            payload: r.get(5),
            metadata: r.get(6),
        })
        .collect()
}

/// COPY text format: tabs, newlines and backslashes escaped.
fn copy_field(out: &mut String, v: &str) {
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

fn copy_row(out: &mut String, r: &Row7, rename: &[(&str, &str)], sequence: i64, id: &str) {
    let fields = [
        r.aggregate_type.clone(),
        id.to_string(),
        sequence.to_string(),
        r.event_type.clone(),
        r.event_version.clone(),
        rename
            .iter()
            .fold(r.payload.clone(), |p, (a, b)| p.replace(a, b)),
        rename
            .iter()
            .fold(r.metadata.clone(), |p, (a, b)| p.replace(a, b)),
    ];
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push('\t');
        }
        copy_field(out, f);
    }
    out.push('\n');
}

/// Seeds `events` events (workspaces of 1,000), and with `long`, one location with
/// [`LONG`] events. Returns the workspace ids and PaymentIntent ids written, the COPY
/// rate and how many events were written.
async fn seed(
    url: &str,
    t: &Template,
    events: usize,
    long: bool,
) -> (Vec<String>, Vec<String>, f64, usize) {
    let pool = PgPool::connect(url).await.unwrap();
    let per_journey = t.journey.len();
    let workspaces = (events / 1000).max(1);
    let journeys =
        (events.saturating_sub(workspaces * t.setup.len()) / per_journey).max(workspaces);
    let mut ws_ids = Vec::with_capacity(workspaces);
    let mut pis = Vec::with_capacity(journeys);
    let started = Instant::now();
    let mut written = 0usize;
    let mut chunk = String::new();
    let flush = |chunk: String| {
        let pool = pool.clone();
        async move {
            let mut conn = pool.acquire().await.unwrap();
            let mut copy = conn
                .copy_in_raw("COPY events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) FROM STDIN")
                .await
                .unwrap();
            copy.send(chunk.into_bytes()).await.unwrap();
            copy.finish().await.unwrap();
        }
    };
    let connector_of = |r: &Row7| r.aggregate_type == "ConnectorReservation";
    let per_connector = t.journey.iter().filter(|r| connector_of(r)).count();
    for w in 0..workspaces {
        let ws = format!("ws-s{w}");
        let rename_ws = [(t.workspace.as_str(), ws.as_str())];
        for r in &t.setup {
            let id = r.aggregate_id.replace(&t.workspace, &ws);
            copy_row(&mut chunk, r, &rename_ws, r.sequence, &id);
            written += 1;
        }
        let mine = journeys / workspaces + usize::from(w < journeys % workspaces);
        for j in 0..mine {
            let intent = uuid::Uuid::now_v7().to_string();
            let pi = format!("pi_s{w}x{j}");
            let rename = [
                (t.payment_intent.as_str(), pi.as_str()),
                (t.intent.as_str(), intent.as_str()),
                (t.workspace.as_str(), ws.as_str()),
            ];
            let mut k = 0;
            for r in &t.journey {
                // The connector's stream goes on from journey to journey.
                let (id, sequence) = if connector_of(r) {
                    k += 1;
                    (
                        r.aggregate_id.replace(&t.workspace, &ws),
                        (j * per_connector + k) as i64,
                    )
                } else {
                    (intent.clone(), r.sequence)
                };
                copy_row(&mut chunk, r, &rename, sequence, &id);
                written += 1;
            }
            pis.push(pi);
        }
        ws_ids.push(ws);
        if chunk.len() > 32 << 20 {
            flush(std::mem::take(&mut chunk)).await;
        }
    }
    if long {
        for s in 1..=LONG {
            copy_row(
                &mut chunk,
                &t.location,
                &[(t.workspace.as_str(), "ws-long")],
                s as i64,
                "LOC-long",
            );
            written += 1;
        }
    }
    flush(chunk).await;
    let secs = started.elapsed().as_secs_f64();
    sqlx::query("ANALYZE").execute(&pool).await.unwrap();
    pool.close().await;
    eprintln!("scale: {written} events copied in {secs:.1} s");
    (ws_ids, pis, written as f64 / secs, written)
}

async fn measure(admin: &PgPool, t: &Template, events: usize, long: bool) -> Figures {
    let name = format!("roampay_bench_scale_{}_{events}", std::process::id());
    let url = create_db(admin, &name).await;
    roampay(&["migrate"], &url);
    let (workspaces, pis, copy, written) = seed(&url, t, events, long).await;
    let started = Instant::now();
    roampay(&["replay"], &url);
    let replay = written as f64 / started.elapsed().as_secs_f64();
    eprintln!(
        "scale: replay of {written} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let pool = PgPool::connect(&url).await.unwrap();
    sqlx::query("VACUUM ANALYZE").execute(&pool).await.unwrap();
    let bytes: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
        .fetch_one(&pool)
        .await
        .unwrap();
    let long_load = if long {
        Some(load_long(&pool).await)
    } else {
        None
    };
    pool.close().await;

    let (server, _fake) = FakeStripe::start().await;
    let service = common::start(&server.uri(), Some(&url), &[], INTENTS).await;
    let http = reqwest::Client::new();
    let mut latencies = Vec::with_capacity(INTENTS);
    let mut bodies = Vec::with_capacity(INTENTS);
    for i in 0..INTENTS {
        let at = Instant::now();
        let body = common::pending_intent(&http, &service.base, &service.driver, i).await;
        latencies.push(at.elapsed().as_secs_f64() * 1e3);
        bodies.push(body);
    }
    let started = Instant::now();
    common::deliver(&service.base, bodies, None, Arc::new(AtomicUsize::new(0))).await;
    let webhooks = INTENTS as f64 / started.elapsed().as_secs_f64();
    let queries = support_queries(&http, &service.base, &workspaces, &pis).await;
    drop(service);
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(admin)
        .await
        .unwrap();
    Figures {
        webhooks,
        preauth: p50_p99(latencies),
        queries,
        copy,
        replay,
        bytes: bytes as f64,
        events: written,
        long_load,
    }
}

fn p50_p99(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    (at(0.5), at(0.99))
}

/// Support's three questions, each asked [`QUERIES`] times about random seeded data.
async fn support_queries(
    http: &reqwest::Client,
    base: &str,
    workspaces: &[String],
    pis: &[String],
) -> Vec<(&'static str, (f64, f64))> {
    let auth = roampay::http::auth::JwtAuth::new(
        &secrecy::SecretString::from(common::JWT.to_string()),
        None,
        None,
    );
    let asked: Vec<String> = (0..QUERIES)
        .map(|i| workspaces[(i * 7919) % workspaces.len()].clone())
        .collect();
    // Support staff of the platform: every workspace.
    let token = auth.issue("support", &["*".to_string()], "audit:read", 3600);
    let mut out = Vec::new();
    for name in [
        "audit by workspace",
        "intents by PaymentIntent",
        "payment-health",
    ] {
        let mut latencies = Vec::with_capacity(QUERIES);
        for i in 0..QUERIES {
            let ws = &asked[i];
            let pi = &pis[(i * 104_729) % pis.len()];
            let path = match name {
                "audit by workspace" => format!("/api/support/audit?workspace_id={ws}&limit=50"),
                "intents by PaymentIntent" => {
                    format!("/api/support/charging-intents?payment_intent_id={pi}")
                }
                _ => format!("/api/support/workspaces/{ws}/payment-health"),
            };
            let at = Instant::now();
            let r = http
                .get(format!("{base}{path}"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body: Value = r.json().await.unwrap();
            latencies.push(at.elapsed().as_secs_f64() * 1e3);
            assert!(status.is_success(), "{path}: {body}");
            if name == "intents by PaymentIntent" {
                assert_eq!(
                    body["data"].as_array().map(Vec::len),
                    Some(1),
                    "{path}: {body}"
                );
            }
        }
        out.push((name, p50_p99(latencies)));
    }
    out
}

/// Loads the long location as a fresh instance would: the first time from its events
/// (it had no snapshot: it was seeded), then five times from the snapshot that first
/// load left. (first, median, max) in ms.
async fn load_long(pool: &PgPool) -> (f64, f64, f64) {
    let db = roampay_projections::Db::Postgres(pool.clone());
    let fresh = || {
        roampay::infra::store::Aggregates::<roampay::domain::location::Location>::new(
            &db,
            (),
            roampay::infra::store::Memory {
                capacity: 2,
                idle: Duration::from_secs(1),
            },
        )
        .snapshot_every(100)
    };
    let mut times = Vec::new();
    for _ in 0..6 {
        let at = Instant::now();
        let location = fresh()
            .load("LOC-long")
            .await
            .expect("the long location loads");
        assert!(location.data.is_some());
        times.push(at.elapsed().as_secs_f64() * 1e3);
    }
    let first = times.remove(0);
    times.sort_by(f64::total_cmp);
    (first, times[2], times[4])
}
