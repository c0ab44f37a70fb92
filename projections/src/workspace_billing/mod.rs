//! `workspace_billing`: one row per workspace with its subscription's standing, for the
//! session worker (grace over, purge due), metrics and support.

use chrono::{DateTime, Utc};
use roampay_events::{AnyEvent, WorkspaceSubscriptionEvent as S};

use crate::db::{Db, DbTx};
use crate::log::StoredEvent;
use crate::runner::{Projection, ProjectionError};
use crate::{on_db, on_tx};

pub struct WorkspaceBilling;

fn db_err(source: sqlx::Error) -> ProjectionError {
    ProjectionError::Database {
        projection: "workspace_billing",
        source,
    }
}

/// The columns an event sets (the others keep their value).
#[derive(Default)]
struct Change {
    status: Option<&'static str>,
    plan: Option<Option<String>>,
    customer: Option<String>,
    grace_until: Option<Option<DateTime<Utc>>>,
    purge_after: Option<Option<DateTime<Utc>>>,
    purged: Option<bool>,
}

fn change_of(event: &S) -> Change {
    match event {
        S::WorkspaceBillingCustomerCreated(e) => Change {
            customer: Some(e.stripe_customer_id.clone()),
            ..Change::default()
        },
        S::WorkspaceSubscriptionActivated(e) => Change {
            status: Some(e.status.as_str()),
            plan: Some(e.plan.clone()),
            grace_until: Some(None),
            purge_after: Some(None),
            ..Change::default()
        },
        S::WorkspacePlanChanged(e) => Change {
            plan: Some(e.plan.clone()),
            ..Change::default()
        },
        S::WorkspaceInvoicePaymentFailed(e) => Change {
            status: Some("past_due"),
            grace_until: Some(Some(e.grace_until)),
            ..Change::default()
        },
        S::WorkspaceSuspended(_) => Change {
            status: Some("suspended"),
            ..Change::default()
        },
        S::WorkspaceReinstated(_) => Change {
            status: Some("active"),
            grace_until: Some(None),
            ..Change::default()
        },
        S::WorkspaceSubscriptionCancelled(e) => Change {
            status: Some("cancelled"),
            grace_until: Some(None),
            purge_after: Some(Some(e.purge_after)),
            ..Change::default()
        },
        S::WorkspaceDataPurged(_) => Change {
            purged: Some(true),
            ..Change::default()
        },
        S::WorkspaceSubscriptionUpdated(_)
        | S::WorkspacePaymentActionRequired(_)
        | S::WorkspacePaymentActionCompleted(_)
        | S::WorkspaceCheckoutCompleted(_) => Change::default(),
    }
}

#[async_trait::async_trait]
impl Projection for WorkspaceBilling {
    fn name(&self) -> &'static str {
        "workspace_billing"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["workspace_billing"]
    }

    fn takes(&self, aggregate_type: &str) -> bool {
        aggregate_type == "WorkspaceSubscription"
    }

    async fn apply(&self, tx: &mut DbTx, events: &[StoredEvent]) -> Result<(), ProjectionError> {
        for stored in events {
            let AnyEvent::WorkspaceSubscription(event) = &stored.event else {
                continue;
            };
            let c = change_of(event);
            let at = stored.metadata.recorded_at.unwrap_or_else(Utc::now);
            on_tx!(tx, t => sqlx::query(
                "INSERT INTO workspace_billing (workspace_id, status, updated_at)
                 VALUES ($1, 'none', $2) ON CONFLICT (workspace_id) DO NOTHING")
                .bind(event.workspace_id())
                .bind(at)
                .execute(t)
                .await
                .map(|_| ()))
            .map_err(db_err)?;
            on_tx!(tx, t => sqlx::query(
                "UPDATE workspace_billing SET
                    status = COALESCE($2, status),
                    plan = CASE WHEN $3 THEN $4 ELSE plan END,
                    stripe_customer_id = COALESCE($5, stripe_customer_id),
                    grace_until = CASE WHEN $6 THEN $7 ELSE grace_until END,
                    purge_after = CASE WHEN $8 THEN $9 ELSE purge_after END,
                    purged = COALESCE($10, purged),
                    updated_at = $11
                  WHERE workspace_id = $1")
                .bind(event.workspace_id())
                .bind(c.status)
                .bind(c.plan.is_some())
                .bind(c.plan.clone().flatten())
                .bind(c.customer.clone())
                .bind(c.grace_until.is_some())
                .bind(c.grace_until.flatten())
                .bind(c.purge_after.is_some())
                .bind(c.purge_after.flatten())
                .bind(c.purged)
                .bind(at)
                .execute(t)
                .await
                .map(|_| ()))
            .map_err(db_err)?;
        }
        Ok(())
    }
}

/// Past-due workspaces whose grace ended at or before `now`.
pub async fn grace_over(
    db: &Db,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    on_db!(db, pool => sqlx::query_scalar(
        "SELECT workspace_id FROM workspace_billing
          WHERE status = 'past_due' AND grace_until <= $1 ORDER BY grace_until LIMIT $2")
        .bind(now)
        .bind(limit)
        .fetch_all(pool)
        .await)
}

/// Cancelled workspaces whose retention ended at or before `now`, not purged yet.
pub async fn purge_due(
    db: &Db,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    on_db!(db, pool => sqlx::query_scalar(
        "SELECT workspace_id FROM workspace_billing
          WHERE status = 'cancelled' AND NOT purged AND purge_after <= $1
          ORDER BY purge_after LIMIT $2")
        .bind(now)
        .bind(limit)
        .fetch_all(pool)
        .await)
}

/// How many workspaces are in each billing status (those never subscribed are not
/// counted: they have no row).
pub async fn counts(db: &Db) -> Result<Vec<(String, i64)>, sqlx::Error> {
    on_db!(db, pool => sqlx::query_as(
        "SELECT status, COUNT(*) FROM workspace_billing GROUP BY status")
        .fetch_all(pool)
        .await)
}
