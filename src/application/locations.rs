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
        // The id as first published, whatever case this publication writes it in.
        let key = self
            .location_keys
            .claim(location_id)
            .await
            .map_err(StoreFault::of_sqlx)?;
        let cmd = LocationCommand::Publish(PublishLocation {
            location_id: key.clone(),
            workspace_id: workspace_id.to_string(),
            location,
            actor: meta.actor.clone(),
            at: self.clock.now(),
        });
        self.locations.execute(&key, cmd, meta).await?;
        Ok(self.locations.load(&key).await?)
    }

    /// The location an id names, compared case-insensitively.
    pub(super) async fn location_named(&self, location_id: &str) -> Result<Location, StoreFault> {
        let stream = self.location_keys.stream_of(location_id).await;
        match stream.map_err(StoreFault::of_sqlx)? {
            Some(key) => self
                .locations
                .load_recent(&key)
                .await
                .map_err(StoreFault::of),
            // An id never published names an empty location.
            None => Ok(Location::default()),
        }
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
