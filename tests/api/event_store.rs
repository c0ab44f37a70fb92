//! The event store read from a fresh instance (nothing remembered): on PostgreSQL the
//! loads of concurrent commands are grouped into one statement; each must still get its
//! own aggregate's events, in order.

use roampay::location::{Location, LocationCommand, PublishLocation};
use roampay::store::{Aggregates, Metadata};
use roampay_events::{Coordinates, LocationData};

use crate::on_both_backends;
use crate::support::*;

on_both_backends!(concurrent_loads_from_a_fresh_instance_get_their_own_aggregates);

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
    let writer = Aggregates::<Location>::new(
        &db,
        (),
        roampay::store::Memory {
            capacity: 100,
            idle: std::time::Duration::from_secs(600),
        },
    );
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
    let reader = std::sync::Arc::new(Aggregates::<Location>::new(
        &db,
        (),
        roampay::store::Memory {
            capacity: 100,
            idle: std::time::Duration::from_secs(600),
        },
    ));
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
