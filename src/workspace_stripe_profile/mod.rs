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

use std::sync::Arc;

use crate::stripe::StripeGateway;
use crate::vault::SecretVault;

/// What the aggregate may reach while deciding: the vault and Stripe.
#[derive(Clone)]
pub struct ProfileServices {
    pub vault: Arc<dyn SecretVault>,
    pub stripe: Arc<dyn StripeGateway>,
}
