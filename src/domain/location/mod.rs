//! `Location`: reference data pushed by the CPO side. A location belongs to the first
//! workspace that publishes it.

pub mod aggregate;
pub mod command;
pub mod error;
pub mod vocabulary;

pub use aggregate::Location;
pub use command::{LocationCommand, PublishLocation, RemoveLocation};
pub use error::LocationError;
