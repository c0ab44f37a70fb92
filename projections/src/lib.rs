//! The read side of roampay: projectors that catch up from the durable global order
//! of the event log, each with its own checkpoint, writing in batches.
//!
//! A projector's table writes and its checkpoint move in one transaction, so a crash
//! at any point loses nothing and applies nothing twice. Projections only copy what
//! events carry: no clock, no Stripe.

pub mod audit_log;
pub mod charging_intents;
pub mod credential_health;
pub mod db;
pub mod dead_letters;
pub mod log;
pub mod runner;
pub mod webhook_deliveries;
pub mod workspace_billing;

pub use db::{Db, DbTx};
pub use log::{Position, StoredEvent};
pub use runner::{DeadLetterHook, DeferredIndex, Projection, ProjectionError, Projector};

/// Every projection this crate maintains, in the order they are caught up.
pub fn all() -> Vec<Box<dyn Projection>> {
    vec![
        Box::new(credential_health::CredentialHealth),
        Box::new(audit_log::AuditLog),
        Box::new(charging_intents::ChargingIntents),
        Box::new(workspace_billing::WorkspaceBilling),
    ]
}

/// Batch size for a rebuild from zero (larger batches, fewer round trips).
pub const REPLAY_BATCH: i64 = 5000;
