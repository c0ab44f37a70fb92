//! The platform's billing customers and the workspace each belongs to (DESIGN.md §10:
//! the map lives on the write side). A customer is linked before the event that records
//! it, so a crash in between leaves a link the next attempt finds, never an event whose
//! invoices cannot be placed.

use roampay_projections::{on_db, Db};

/// Links `customer_id` to `workspace_id`; a customer already linked keeps its workspace.
pub async fn link(db: &Db, customer_id: &str, workspace_id: &str) -> Result<(), sqlx::Error> {
    on_db!(db, pool => {
        sqlx::query(
            "INSERT INTO billing_customers (customer_id, workspace_id) VALUES ($1, $2) \
             ON CONFLICT (customer_id) DO NOTHING",
        )
        .bind(customer_id)
        .bind(workspace_id)
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// The workspace `customer_id` belongs to, if it is one of ours.
pub async fn workspace_of(db: &Db, customer_id: &str) -> Result<Option<String>, sqlx::Error> {
    on_db!(db, pool => {
        sqlx::query_scalar("SELECT workspace_id FROM billing_customers WHERE customer_id = $1")
            .bind(customer_id)
            .fetch_optional(pool)
            .await
    })
}
