//! Reads of `charging_intents`: support lists, the sweep, the session worker,
//! reconciliation and the payment-health view.

use chrono::{DateTime, Utc};
use sqlx::Row as _;

use super::{Row, COLUMNS};
use crate::db::{Bind, Db, Where, WorkspaceScope};
use crate::{bind_all, on_db};

/// Filters of the support list.
#[derive(Debug, Clone, Default)]
pub struct IntentFilter {
    pub workspaces: WorkspaceScope,
    pub status: Option<String>,
    pub payment_intent_id: Option<String>,
    pub ocpi_session_id: Option<String>,
    pub authorization_reference: Option<String>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
    /// Intents created before this one: the page cursor.
    pub before_id: Option<String>,
    pub limit: i64,
}

/// A page of intents, newest first by creation, and whether more follow.
pub async fn list(db: &Db, f: &IntentFilter) -> Result<(Vec<(String, Row)>, bool), sqlx::Error> {
    let mut w = Where::default();
    w.workspaces(&f.workspaces);
    let text = |v: &Option<String>| v.clone().map(Bind::Text);
    for (clause, bind) in [
        ("status = ?", text(&f.status)),
        ("payment_intent_id = ?", text(&f.payment_intent_id)),
        ("ocpi_session_id = ?", text(&f.ocpi_session_id)),
        (
            "authorization_reference = ?",
            text(&f.authorization_reference),
        ),
        ("created_at >= ?", f.created_from.map(Bind::Time)),
        ("created_at <= ?", f.created_to.map(Bind::Time)),
        (
            "(created_at, charging_intent_id) < (SELECT created_at, charging_intent_id
               FROM charging_intents WHERE charging_intent_id = ?)",
            text(&f.before_id),
        ),
    ] {
        if let Some(bind) = bind {
            w.push(clause, bind);
        }
    }
    let (clause, limit) = w.sql_with_limit(f.limit + 1);
    let sql = format!(
        "SELECT {COLUMNS} FROM charging_intents {clause}
          ORDER BY created_at DESC, charging_intent_id DESC LIMIT {limit}"
    );
    let mut rows: Vec<(String, Row)> = on_db!(db, pool => {
        bind_all!(sqlx::query(&sql), w.binds())
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| decode!(r))
            .collect::<Result<_, _>>()?
    });
    let has_more = rows.len() as i64 > f.limit;
    rows.truncate(f.limit as usize);
    Ok((rows, has_more))
}

async fn ids(
    db: &Db,
    sql: &str,
    at: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    on_db!(db, pool => sqlx::query_scalar(sql).bind(at).bind(limit).fetch_all(pool).await)
}

/// Intents still waiting for payment, created at or before `created_before`: (intent,
/// workspace), oldest first.
pub async fn pending_payment(
    db: &Db,
    created_before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    on_db!(db, pool => sqlx::query_as(
        "SELECT charging_intent_id, workspace_id FROM charging_intents
          WHERE status = 'pending_payment' AND created_at <= $1 ORDER BY created_at LIMIT $2")
        .bind(created_before)
        .bind(limit)
        .fetch_all(pool)
        .await)
}

/// Captures and releases decided but not confirmed by Stripe, untouched since `before`.
pub async fn unsettled(
    db: &Db,
    before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    ids(
        db,
        "SELECT charging_intent_id FROM charging_intents
              WHERE settlement IS NOT NULL AND updated_at <= $1 ORDER BY updated_at LIMIT $2",
        before,
        limit,
    )
    .await
}

/// Holds nobody started a session on since `authorized_before`, and pre-authorizations
/// never paid since `created_before`.
pub async fn unused(
    db: &Db,
    authorized_before: DateTime<Utc>,
    created_before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    on_db!(db, pool => sqlx::query_scalar(
        "SELECT charging_intent_id FROM charging_intents
          WHERE settlement IS NULL
            AND ((status = 'authorized' AND COALESCE(authorized_at, created_at) <= $1)
              OR (status = 'pending_payment' AND created_at <= $2))
          ORDER BY created_at LIMIT $3")
        .bind(authorized_before)
        .bind(created_before)
        .bind(limit)
        .fetch_all(pool)
        .await)
}

/// Open guest intents of a workspace still waiting for payment, counted up to
/// `at_most` (the cap is all a caller needs to know: the cost stays bounded by it, on a
/// partial index, however many intents pile up).
pub async fn pending_guest_intents(db: &Db, ws: &str, at_most: i64) -> Result<i64, sqlx::Error> {
    on_db!(db, pool => sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT 1 FROM charging_intents
          WHERE workspace_id = $1 AND status = 'pending_payment' AND driver IS NULL
          LIMIT $2) AS capped")
        .bind(ws)
        .bind(at_most)
        .fetch_one(pool)
        .await)
}

/// Holds not flagged yet whose lapse is near: Stripe's `capture_before` at or before
/// `deadline_by`, or (when Stripe did not say) authorized at or before
/// `authorized_before`.
pub async fn lapsing_unflagged(
    db: &Db,
    deadline_by: DateTime<Utc>,
    authorized_before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    on_db!(db, pool => sqlx::query_scalar(
        "SELECT charging_intent_id FROM charging_intents
          WHERE status IN ('authorized', 'charging') AND NOT lapse_flagged
            AND ((capture_before IS NOT NULL AND capture_before <= $1)
              OR (capture_before IS NULL AND authorized_at <= $2))
          ORDER BY authorized_at LIMIT $3")
        .bind(deadline_by)
        .bind(authorized_before)
        .bind(limit)
        .fetch_all(pool)
        .await)
}

/// Paid holds whose deadline Stripe has not been asked for yet.
pub async fn deadline_unread(db: &Db, limit: i64) -> Result<Vec<String>, sqlx::Error> {
    on_db!(db, pool => sqlx::query_scalar(
        "SELECT charging_intent_id FROM charging_intents
          WHERE status IN ('authorized', 'charging') AND payment_intent_id IS NOT NULL
            AND NOT deadline_read AND settlement IS NULL
          ORDER BY authorized_at LIMIT $1")
        .bind(limit)
        .fetch_all(pool)
        .await)
}

/// Every paid intent of a workspace: (intent, PaymentIntent).
pub async fn paid_of_workspace(db: &Db, ws: &str) -> Result<Vec<(String, String)>, sqlx::Error> {
    on_db!(db, pool => sqlx::query_as(
        "SELECT charging_intent_id, payment_intent_id FROM charging_intents
          WHERE workspace_id = $1 AND payment_intent_id IS NOT NULL")
        .bind(ws)
        .fetch_all(pool)
        .await)
}

/// A recent failure, for the payment-health view.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Failure {
    pub charging_intent_id: String,
    pub status: String,
    pub failure_code: Option<String>,
    pub payment_intent_id: Option<String>,
    pub at: DateTime<Utc>,
}

/// What the payment-health view shows of a workspace's intents.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct IntentHealth {
    pub by_status: std::collections::BTreeMap<String, i64>,
    pub settlements_pending: i64,
    pub holds_lapsing_soon: i64,
    /// Completed sessions that cost more than was captured (the hold capped it), and
    /// what was left uncollected in minor units.
    pub captured_below_cost: i64,
    pub uncollected_cents: i64,
    pub recent_failures: Vec<Failure>,
}

pub async fn health_of_workspace(db: &Db, ws: &str) -> Result<IntentHealth, sqlx::Error> {
    let health = on_db!(db, pool => {
        let by_status = sqlx::query_as::<_, (String, i64)>(
            "SELECT status, COUNT(*) FROM charging_intents WHERE workspace_id = $1 GROUP BY status")
            .bind(ws).fetch_all(pool).await?.into_iter().collect();
        let settlements_pending = sqlx::query_scalar(
            "SELECT COUNT(*) FROM charging_intents WHERE workspace_id = $1 AND settlement IS NOT NULL")
            .bind(ws).fetch_one(pool).await?;
        let holds_lapsing_soon = sqlx::query_scalar(
            "SELECT COUNT(*) FROM charging_intents
              WHERE workspace_id = $1 AND lapse_flagged AND status IN ('authorized', 'charging')")
            .bind(ws).fetch_one(pool).await?;
        let (captured_below_cost, uncollected_cents): (i64, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(*), CAST(SUM(final_amount_cents - captured_amount_cents) AS BIGINT) FROM charging_intents
              WHERE workspace_id = $1 AND status = 'completed'
                AND final_amount_cents > captured_amount_cents")
            .bind(ws).fetch_one(pool).await?;
        let recent_failures = sqlx::query(
            "SELECT charging_intent_id, status, failure_code, payment_intent_id, updated_at
               FROM charging_intents WHERE workspace_id = $1 AND failure_code IS NOT NULL
              ORDER BY updated_at DESC LIMIT 10")
            .bind(ws).fetch_all(pool).await?
            .iter()
            .map(|r| -> Result<Failure, sqlx::Error> {
                Ok(Failure {
                    charging_intent_id: r.try_get("charging_intent_id")?,
                    status: r.try_get("status")?,
                    failure_code: r.try_get("failure_code")?,
                    payment_intent_id: r.try_get("payment_intent_id")?,
                    at: r.try_get("updated_at")?,
                })
            })
            .collect::<Result<_, _>>()?;
        IntentHealth {
            by_status,
            settlements_pending,
            holds_lapsing_soon,
            captured_below_cost,
            uncollected_cents: uncollected_cents.unwrap_or(0),
            recent_failures,
        }
    });
    Ok(health)
}

/// The intent of a workspace whose PaymentIntent carries `authorization_reference`
/// (how an OCPI session or CDR names its payment).
pub async fn by_authorization_reference(
    db: &Db,
    ws: &str,
    authorization_reference: &str,
) -> Result<Option<String>, sqlx::Error> {
    on_db!(db, pool => sqlx::query_scalar(
        "SELECT charging_intent_id FROM charging_intents
          WHERE authorization_reference = $1 AND workspace_id = $2 LIMIT 1")
        .bind(authorization_reference)
        .bind(ws)
        .fetch_optional(pool)
        .await)
}
