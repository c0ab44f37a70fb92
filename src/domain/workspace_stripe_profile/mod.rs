//! One `WorkspaceStripeProfile` per workspace: its roaming settings and the Stripe
//! credential set it owns.

pub mod aggregate;
pub mod command;
pub mod credentials;
pub mod error;
#[cfg(test)]
mod tests;

pub use aggregate::ConnectAccount;
pub use aggregate::{Credentials, Health, RoamingSettings, WorkspaceStripeProfile};
pub use command::*;
pub use error::WorkspaceStripeProfileError;
