//! The event store read from a fresh instance (nothing remembered): on PostgreSQL the
//! loads of concurrent commands are grouped into one statement; each must still get its
//! own aggregate's events, in order.

use roampay::domain::location::{Location, LocationCommand, PublishLocation};
use roampay::infra::store::{Aggregates, Metadata};
use roampay_events::{Coordinates, LocationData};

use crate::on_both_backends;
use crate::support::*;

on_both_backends!(
    concurrent_loads_from_a_fresh_instance_get_their_own_aggregates,
    a_long_stream_loads_from_its_snapshot,
);

fn memory() -> roampay::infra::store::Memory {
    roampay::infra::store::Memory {
        capacity: 100,
        idle: std::time::Duration::from_secs(600),
    }
}

/// Runs one statement on either store.
async fn sql(db: &roampay_projections::Db, statement: &str) {
    match db {
        roampay_projections::Db::Postgres(p) => sqlx::query(statement).execute(p).await.map(drop),
        roampay_projections::Db::Sqlite(p) => sqlx::query(statement).execute(p).await.map(drop),
    }
    .unwrap();
}

/// The sequences of the snapshots of `LOC-long`.
async fn snapshot_sequences(db: &roampay_projections::Db) -> Vec<i64> {
    const Q: &str =
        "SELECT last_sequence FROM snapshots WHERE aggregate_id = 'LOC-long' ORDER BY 1";
    match db {
        roampay_projections::Db::Postgres(p) => sqlx::query_scalar(Q).fetch_all(p).await,
        roampay_projections::Db::Sqlite(p) => sqlx::query_scalar(Q).fetch_all(p).await,
    }
    .unwrap()
}

/// A stream that grows for years (issue 16's scale run: 10,000 events took 0.5 s to
/// load) is loaded from a snapshot and the events after it; a snapshot that does not
/// decode, or none at all, means reading the whole stream, and leaves a new snapshot.
async fn a_long_stream_loads_from_its_snapshot(b: Backend) {
    let store = Store::fresh(b).await;
    let db = store.db().await;
    let meta = Metadata {
        actor: "test".into(),
        request_id: String::new(),
    };
    let writer = Aggregates::<Location>::new(&db, (), memory()).snapshot_every(10);
    for v in 1..=25 {
        let cmd = LocationCommand::Publish(PublishLocation {
            location_id: "LOC-long".into(),
            workspace_id: "ws-1".into(),
            location: data(&format!("v{v}")),
            actor: "test".into(),
            at: chrono::Utc::now(),
        });
        writer.execute("LOC-long", cmd, &meta).await.unwrap();
    }
    assert_eq!(
        snapshot_sequences(&db).await,
        [20],
        "one snapshot, the latest"
    );
    let full = Aggregates::<Location>::new(&db, (), memory())
        .load("LOC-long")
        .await
        .unwrap();
    assert_eq!(full.data.as_ref().unwrap().name, "v25");
    let fresh = || Aggregates::<Location>::new(&db, (), memory()).snapshot_every(10);
    assert_eq!(fresh().load("LOC-long").await.unwrap(), full);
    // A snapshot that no longer decodes: the whole stream, and a new snapshot.
    sql(&db, "UPDATE snapshots SET payload = '[]'").await;
    assert_eq!(fresh().load("LOC-long").await.unwrap(), full);
    assert_eq!(snapshot_sequences(&db).await, [25]);
    // A stream older than snapshots gets one at its first load.
    sql(&db, "DELETE FROM snapshots").await;
    assert_eq!(fresh().load("LOC-long").await.unwrap(), full);
    assert_eq!(snapshot_sequences(&db).await, [25]);
}

fn data(name: &str) -> LocationData {
    LocationData {
        name: name.to_string(),
        address: "1 Main St".into(),
        city: "Sydney".into(),
        postal_code: None,
        country: "AUS".into(),
        coordinates: Coordinates {
            latitude: "0".into(),
            longitude: "0".into(),
        },
        evses: vec![],
    }
}

async fn concurrent_loads_from_a_fresh_instance_get_their_own_aggregates(b: Backend) {
    let store = Store::fresh(b).await;
    let db = store.db().await;
    let meta = Metadata {
        actor: "test".into(),
        request_id: String::new(),
    };
    let writer = Aggregates::<Location>::new(&db, (), memory());
    // 60 locations with two versions each (two events, in order).
    for i in 0..60 {
        for version in ["first", "second"] {
            let cmd = LocationCommand::Publish(PublishLocation {
                location_id: format!("LOC-{i}"),
                workspace_id: "ws-1".into(),
                location: data(&format!("{version} {i}")),
                actor: "test".into(),
                at: chrono::Utc::now(),
            });
            writer
                .execute(&format!("LOC-{i}"), cmd, &meta)
                .await
                .unwrap();
        }
    }
    // A new instance remembers nothing: every load reads the log, all at once.
    let reader = std::sync::Arc::new(Aggregates::<Location>::new(&db, (), memory()));
    let loads = (0..80).map(|i| {
        let reader = reader.clone();
        tokio::spawn(async move { (i, reader.load(&format!("LOC-{i}")).await.unwrap()) })
    });
    for load in futures::future::join_all(loads).await {
        let (i, location) = load.unwrap();
        match i {
            0..60 => {
                assert_eq!(location.location_id, format!("LOC-{i}"));
                assert_eq!(location.data.unwrap().name, format!("second {i}"));
            }
            _ => assert_eq!(location, Location::default(), "LOC-{i} was never published"),
        }
    }
}
