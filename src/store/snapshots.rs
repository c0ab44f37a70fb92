//! Snapshots of aggregates whose streams grow for years (a connector's reservations, a
//! location's publications, a workspace's credential checks): the state at a sequence,
//! so that a load reads the snapshot and only the events after it.
//!
//! A snapshot is a cache of the log, written after the commit that crossed a multiple
//! of the interval: losing one (a crash before it is written, a state that no longer
//! decodes after a change of the aggregate) only costs a longer load. cqrs-es's own
//! snapshot strategy is not used: it counts snapshots in the load context, which a
//! command decided on a remembered state does not have.

use cqrs_es::Aggregate;
use roampay_projections::Db;
use sqlx::Row;

/// The latest snapshot of `id`, if any decodes.
pub(super) async fn latest<A: Aggregate>(
    db: &Db,
    id: &str,
) -> Result<Option<(usize, A)>, sqlx::Error> {
    let row = match db {
        Db::Postgres(p) => sqlx::query(
            "SELECT last_sequence, payload::text FROM snapshots \
             WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY last_sequence DESC LIMIT 1",
        )
        .bind(A::TYPE)
        .bind(id)
        .fetch_optional(p)
        .await?
        .map(|r| (r.get::<i64, _>(0), r.get::<String, _>(1))),
        Db::Sqlite(p) => sqlx::query(
            "SELECT last_sequence, payload FROM snapshots \
             WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY last_sequence DESC LIMIT 1",
        )
        .bind(A::TYPE)
        .bind(id)
        .fetch_optional(p)
        .await?
        .map(|r| (r.get::<i64, _>(0), r.get::<String, _>(1))),
    };
    Ok(row.and_then(|(seq, payload)| {
        let state = serde_json::from_str::<A>(&payload).ok()?;
        Some((usize::try_from(seq).ok()?, state))
    }))
}

/// The events of `id` after `sequence`, in order.
pub(super) async fn events_after<A: Aggregate>(
    db: &Db,
    id: &str,
    sequence: usize,
) -> Result<Vec<(usize, A::Event)>, Box<dyn std::error::Error + Send + Sync>> {
    let after = i64::try_from(sequence)?;
    let rows: Vec<(i64, String)> = match db {
        Db::Postgres(p) => {
            sqlx::query_as(
                "SELECT sequence, payload::text FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 ORDER BY sequence",
            )
            .bind(A::TYPE)
            .bind(id)
            .bind(after)
            .fetch_all(p)
            .await?
        }
        Db::Sqlite(p) => {
            sqlx::query_as(
                "SELECT sequence, payload FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 ORDER BY sequence",
            )
            .bind(A::TYPE)
            .bind(id)
            .bind(after)
            .fetch_all(p)
            .await?
        }
    };
    rows.into_iter()
        .map(|(seq, payload)| Ok((usize::try_from(seq)?, serde_json::from_str(&payload)?)))
        .collect()
}

/// Stores `state` as of `sequence` and drops the older snapshots of `id`.
pub(super) async fn write<A: Aggregate>(
    db: &Db,
    id: &str,
    sequence: usize,
    state: &A,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let payload = serde_json::to_string(state)?;
    let seq = i64::try_from(sequence)?;
    const INSERT: &str = "INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence, current_snapshot, payload) \
                          VALUES ($1, $2, $3, $3, $4) ON CONFLICT DO NOTHING";
    const PRUNE: &str =
        "DELETE FROM snapshots WHERE aggregate_type = $1 AND aggregate_id = $2 AND last_sequence < $3";
    match db {
        Db::Postgres(p) => {
            sqlx::query(&INSERT.replace("$4)", "$4::json)"))
                .bind(A::TYPE)
                .bind(id)
                .bind(seq)
                .bind(&payload)
                .execute(p)
                .await?;
            sqlx::query(PRUNE)
                .bind(A::TYPE)
                .bind(id)
                .bind(seq)
                .execute(p)
                .await?;
        }
        Db::Sqlite(p) => {
            sqlx::query(INSERT)
                .bind(A::TYPE)
                .bind(id)
                .bind(seq)
                .bind(&payload)
                .execute(p)
                .await?;
            sqlx::query(PRUNE)
                .bind(A::TYPE)
                .bind(id)
                .bind(seq)
                .execute(p)
                .await?;
        }
    }
    Ok(())
}
