//! One `WorkspaceStripeProfile` per workspace: its roaming settings and the Stripe
//! credential set it owns.

pub mod aggregate;
pub mod command;
pub mod connect;
pub mod credentials;
pub mod error;
#[cfg(test)]
mod tests;

pub use aggregate::{Credentials, Health, RoamingSettings, WorkspaceStripeProfile};
pub use command::*;
pub use connect::ConnectAccount;
pub use error::WorkspaceStripeProfileError;
