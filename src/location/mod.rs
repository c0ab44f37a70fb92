//! `Location`: reference data pushed by the CPO side. A location belongs to the first
//! workspace that publishes it.

pub mod aggregate;
pub mod command;
pub mod error;

pub use aggregate::Location;
pub use command::{LocationCommand, PublishLocation, RemoveLocation};
pub use error::LocationError;

/// The stream of a location: its id folded to lower case, since OCPI ids are CiString
/// (compared case-insensitively), so `LOC-A` and `loc-a` are one location.
pub fn location_key(location_id: &str) -> String {
    location_id.to_ascii_lowercase()
}
