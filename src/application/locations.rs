//! Locations: published by the CPO side, read by Roaming Web with the workspace's
//! checkout configuration.

use cqrs_es::AggregateError;
use roampay_events::LocationData;

use super::{Services, StoreFault};
use crate::location::{Location, LocationCommand, LocationError as Refused, PublishLocation};
use crate::store::Metadata;
use crate::workspace_stripe_profile::WorkspaceStripeProfile;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    #[error("this location id is already registered by another workspace")]
    OwnedByOtherWorkspace,
    #[error(transparent)]
    Store(#[from] StoreFault),
}

impl From<AggregateError<Refused>> for LocationError {
    fn from(e: AggregateError<Refused>) -> Self {
        match e {
            AggregateError::UserError(Refused::OwnedByOtherWorkspace(_)) => {
                Self::OwnedByOtherWorkspace
            }
            other => Self::Store(StoreFault::of(other)),
        }
    }
}

impl Services {
    /// `PublishLocation`; answers with the stored location.
    pub async fn publish_location(
        &self,
        workspace_id: &str,
        location_id: &str,
        location: LocationData,
        meta: &Metadata,
    ) -> Result<Location, LocationError> {
        let cmd = LocationCommand::Publish(PublishLocation {
            location_id: location_id.to_string(),
            workspace_id: workspace_id.to_string(),
            location,
            actor: meta.actor.clone(),
            at: self.clock.now(),
        });
        self.locations.execute(location_id, cmd, meta).await?;
        Ok(self.locations.load(location_id).await?)
    }

    /// A published location and its workspace's profile; `None` for an unknown id.
    pub async fn location_for_driver(
        &self,
        location_id: &str,
    ) -> Result<Option<(Location, WorkspaceStripeProfile)>, LocationError> {
        let location = self.locations.load_recent(location_id).await?;
        let Some(ws) = location.workspace_id.clone() else {
            return Ok(None);
        };
        let profile = self
            .profiles
            .load_recent(&ws)
            .await
            .map_err(StoreFault::of)?;
        Ok(Some((location, profile)))
    }
}
