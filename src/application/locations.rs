//! Locations: published by the CPO side, read by Roaming Web with the workspace's
//! checkout configuration.

use cqrs_es::AggregateError;
use roampay_events::LocationData;

use std::sync::Arc;

use roampay_projections::Db;

use super::accounts::Accounts;
use super::StoreFault;
use crate::domain::location::{
    Location, LocationCommand, LocationError as Refused, PublishLocation, RemoveLocation,
};
use crate::domain::workspace_stripe_profile::WorkspaceStripeProfile;
use crate::infra::clock::Clock;
use crate::infra::store::location_keys::LocationKeys;
use crate::infra::store::{Aggregates, Metadata};

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

/// What a driver's location answer is made of.
pub struct DriverLocation {
    pub location: Location,
    pub profile: WorkspaceStripeProfile,
    /// What Stripe.js on the driver's browser starts with for the workspace's new
    /// payments: the publishable key, and in connect mode the connected account.
    pub publishable_key: Option<String>,
    pub stripe_account: Option<String>,
}

/// Locations' use cases.
pub struct Locations {
    pub(super) locations: Arc<Aggregates<Location>>,
    /// Which stream each (case-folded) location id names.
    pub(super) location_keys: LocationKeys,
    /// Read only: the checkout configuration a driver's location answer carries.
    pub(super) profiles: Arc<Aggregates<WorkspaceStripeProfile>>,
    pub(super) accounts: Arc<Accounts>,
    pub(super) db: Db,
    pub(super) clock: Arc<dyn Clock>,
}

impl Locations {
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

    /// A published location, its workspace's profile and the keys Stripe.js starts
    /// with; `None` for an unknown id.
    pub async fn location_for_driver(
        &self,
        location_id: &str,
    ) -> Result<Option<DriverLocation>, LocationError> {
        let location = self.location_named(location_id).await?;
        let Some(ws) = location.workspace_id.clone() else {
            return Ok(None);
        };
        let profile = self
            .profiles
            .load_recent(&ws)
            .await
            .map_err(StoreFault::of)?;
        let (publishable_key, stripe_account) = self.accounts.browser_keys(&profile);
        Ok(Some(DriverLocation {
            location,
            profile,
            publishable_key,
            stripe_account,
        }))
    }

    /// Removes every location the workspace owns (a sweep over all locations: purges
    /// are rare).
    pub async fn remove_all_of(&self, ws: &str, meta: &Metadata) -> Result<(), StoreFault> {
        let ids = crate::infra::store::aggregate_ids::<Location>(&self.db)
            .await
            .map_err(StoreFault::of_sqlx)?;
        for id in ids {
            let location = self.locations.load(&id).await.map_err(StoreFault::of)?;
            if location.workspace_id.as_deref() != Some(ws) {
                continue;
            }
            let cmd = LocationCommand::Remove(RemoveLocation {
                location_id: id.clone(),
                workspace_id: ws.to_string(),
                actor: meta.actor.clone(),
                at: self.clock.now(),
            });
            self.locations
                .execute(&id, cmd, meta)
                .await
                .map_err(StoreFault::of)?;
        }
        Ok(())
    }
}
