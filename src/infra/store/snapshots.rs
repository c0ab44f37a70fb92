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
use roampay_projections::on_db;
use roampay_projections::Db;

/// How the store hands JSON back as text (PostgreSQL keeps it as `json`).
fn payload(db: &Db) -> &'static str {
    match db {
        Db::Postgres(_) => "payload::text",
        Db::Sqlite(_) => "payload",
    }
}

/// The latest snapshot of `id`, if any decodes.
pub(super) async fn latest<A: Aggregate>(
    db: &Db,
    id: &str,
) -> Result<Option<(usize, A)>, sqlx::Error> {
    let sql = format!(
        "SELECT last_sequence, {} FROM snapshots \
         WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY last_sequence DESC LIMIT 1",
        payload(db)
    );
    let row: Option<(i64, String)> =
        on_db!(db, p => sqlx::query_as(&sql).bind(A::TYPE).bind(id).fetch_optional(p).await)?;
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
    let sql = format!(
        "SELECT sequence, {} FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 ORDER BY sequence",
        payload(db)
    );
    let rows: Vec<(i64, String)> = on_db!(db, p => sqlx::query_as(&sql)
        .bind(A::TYPE)
        .bind(id)
        .bind(after)
        .fetch_all(p)
        .await)?;
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
    let cast = match db {
        Db::Postgres(_) => "::json",
        Db::Sqlite(_) => "",
    };
    let insert = format!(
        "INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence, current_snapshot, payload) \
         VALUES ($1, $2, $3, $3, $4{cast}) ON CONFLICT DO NOTHING"
    );
    const PRUNE: &str =
        "DELETE FROM snapshots WHERE aggregate_type = $1 AND aggregate_id = $2 AND last_sequence < $3";
    on_db!(db, p => {
        sqlx::query(&insert).bind(A::TYPE).bind(id).bind(seq).bind(&payload).execute(p).await?;
        sqlx::query(PRUNE).bind(A::TYPE).bind(id).bind(seq).execute(p).await?;
    });
    Ok(())
}
