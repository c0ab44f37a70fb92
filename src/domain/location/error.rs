#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    #[error("location {0} belongs to another workspace")]
    OwnedByOtherWorkspace(String),
}
