//! What the application acts through: the event store (PostgreSQL or SQLite), Stripe,
//! the vault of secrets, and the clock.

pub mod clock;
pub mod ocpi;
pub mod store;
pub mod stripe;
pub mod vault;
