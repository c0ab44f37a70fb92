//! Locations: published by the CPO side, read by Roaming Web with the workspace's
//! checkout configuration.

use cqrs_es::AggregateError;
use roampay_events::LocationData;

use super::{Services, StoreFault};
use crate::location::{
    location_key, Location, LocationCommand, LocationError as Refused, PublishLocation,
};
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
        let key = self.location_stream(location_id).await?;
        self.locations.execute(&key, cmd, meta).await?;
        Ok(self.locations.load(&key).await?)
    }

    /// The stream a location id names: its [`location_key`], or a stream written under
    /// the id as given before ids were folded (v2), when only that one exists.
    pub(super) async fn location_stream(&self, location_id: &str) -> Result<String, StoreFault> {
        let key = location_key(location_id);
        if key == location_id {
            return Ok(key);
        }
        let folded = self
            .locations
            .load_recent(&key)
            .await
            .map_err(StoreFault::of)?;
        if folded.workspace_id.is_some() {
            return Ok(key);
        }
        let given = self
            .locations
            .load_recent(location_id)
            .await
            .map_err(StoreFault::of)?;
        Ok(match given.workspace_id {
            Some(_) => location_id.to_string(),
            None => key,
        })
    }

    /// The location an id names, compared case-insensitively.
    pub(super) async fn location_named(&self, location_id: &str) -> Result<Location, StoreFault> {
        let key = self.location_stream(location_id).await?;
        self.locations
            .load_recent(&key)
            .await
            .map_err(StoreFault::of)
    }

    /// A published location and its workspace's profile; `None` for an unknown id.
    pub async fn location_for_driver(
        &self,
        location_id: &str,
    ) -> Result<Option<(Location, WorkspaceStripeProfile)>, LocationError> {
        let location = self.location_named(location_id).await?;
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
