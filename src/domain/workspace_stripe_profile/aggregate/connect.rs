//! Stripe Connect in the `WorkspaceStripeProfile`: the workspace's connected account,
//! its onboarding and status, and which connection (keys or Connect) new payments use.
//! Kept in the profile (ADR 0007) because "may this workspace take a paid session, and
//! how" is one decision over both connections.

use chrono::{DateTime, Utc};
use roampay_events::{
    connect_health, HealthStatus, StripeConnection, WorkspaceStripeConnectAccountCreated,
    WorkspaceStripeConnectAccountUpdated, WorkspaceStripeConnectDeauthorized,
    WorkspaceStripeConnectionSwitched, WorkspaceStripeOnboardingLinkIssued,
    WorkspaceStripeProfileEvent as Event,
};
use serde::{Deserialize, Serialize};

use super::super::command::*;
use super::super::error::WorkspaceStripeProfileError as Error;
use super::{Health, WorkspaceStripeProfile};
use crate::infra::stripe::connect::AccountView;

/// The workspace's connected account, as Stripe last reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectAccount {
    pub account_id: String,
    pub account_type: String,
    pub charges_enabled: bool,
    pub payouts_enabled: bool,
    pub details_submitted: bool,
    pub requirements_due: Vec<String>,
    pub deauthorized_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    /// The last Stripe events applied to it (a redelivery is recognised).
    #[serde(default)]
    pub seen_events: Vec<String>,
}

/// How many Stripe event ids an account remembers.
const SEEN_EVENTS: usize = 32;

impl ConnectAccount {
    fn saw(&mut self, event_id: Option<String>) {
        if let Some(id) = event_id {
            self.seen_events.push(id);
            let excess = self.seen_events.len().saturating_sub(SEEN_EVENTS);
            self.seen_events.drain(..excess);
        }
    }
}

impl ConnectAccount {
    /// `valid` once Stripe enables charges; `pending` while onboarding is unfinished;
    /// `invalid` when access was lost or Stripe needs more before it charges again.
    pub fn health(&self) -> Health {
        let (status, failure) = connect_health(
            self.charges_enabled,
            self.details_submitted,
            self.deauthorized_at.is_some(),
        );
        Health {
            status,
            checked_at: Some(self.updated_at),
            failure_code: failure.map(|(code, _)| code.to_string()),
            failure_message: failure.map(|(_, message)| message.to_string()),
        }
    }

    fn same_status(&self, a: &AccountView) -> bool {
        self.charges_enabled == a.charges_enabled
            && self.payouts_enabled == a.payouts_enabled
            && self.details_submitted == a.details_submitted
            && self.requirements_due == a.requirements_due
    }
}

impl WorkspaceStripeProfile {
    /// How new payments are taken: the admin's choice, else the keys when there are
    /// some; `None` when nothing is connected.
    pub fn connection(&self) -> Option<StripeConnection> {
        match self.connection_choice {
            Some(StripeConnection::Connect) if self.connect.is_some() => {
                Some(StripeConnection::Connect)
            }
            _ => self.credentials.as_ref().map(|_| StripeConnection::Keys),
        }
    }

    /// The connected account, while the workspace is in connect mode.
    pub fn connected_account(&self) -> Option<&ConnectAccount> {
        self.connect
            .as_ref()
            .filter(|_| self.connection() == Some(StripeConnection::Connect))
    }

    /// The connected account when it may take new payments.
    pub fn serving_account(&self) -> Option<&ConnectAccount> {
        self.connected_account()
            .filter(|a| a.health().status == HealthStatus::Valid)
    }

    /// The health of a connection, whichever is in use or not.
    pub fn health_of(&self, connection: StripeConnection) -> HealthStatus {
        match connection {
            StripeConnection::Keys => self.keys_health_status(),
            StripeConnection::Connect => self
                .connect
                .as_ref()
                .map_or(HealthStatus::Unconfigured, |a| a.health().status),
        }
    }

    /// The idempotency key of the workspace's next connected account: the same for
    /// every attempt until one is recorded (so a retry never makes a second account),
    /// a new one after a deauthorization.
    pub fn next_account_key(&self, ws: &str) -> String {
        format!(
            "roampay-connect-account-{ws}-{}",
            self.connect_accounts_created + 1
        )
    }

    /// Whether a Stripe event about the connected account was applied already.
    pub fn connect_event_seen(&self, event_id: &str) -> bool {
        self.connect
            .as_ref()
            .is_some_and(|a| a.seen_events.iter().any(|e| e == event_id))
    }

    /// The account onboarding should continue with: the current one, unless access to
    /// it was lost.
    pub fn onboarding_account(&self) -> Option<&ConnectAccount> {
        self.connect
            .as_ref()
            .filter(|a| a.deauthorized_at.is_none())
    }

    pub(super) fn record_account(&self, cmd: RecordConnectAccount) -> Vec<Event> {
        if self
            .onboarding_account()
            .is_some_and(|a| a.account_id == cmd.account.id)
        {
            return vec![]; // the same account again (a retried onboarding)
        }
        let a = cmd.account;
        let mut events = vec![Event::WorkspaceStripeConnectAccountCreated(
            WorkspaceStripeConnectAccountCreated {
                workspace_id: cmd.workspace_id.clone(),
                account_id: a.id,
                account_type: cmd.account_type.as_str().into(),
                charges_enabled: a.charges_enabled,
                payouts_enabled: a.payouts_enabled,
                details_submitted: a.details_submitted,
                requirements_due: a.requirements_due,
                created_by: cmd.actor.clone(),
                created_at: cmd.at,
            },
        )];
        // Nothing connected yet: onboarding puts the workspace in connect mode at once.
        if self.connection().is_none() {
            let to = StripeConnection::Connect;
            events.push(switched(&cmd.workspace_id, to, &cmd.actor, cmd.at));
        }
        events
    }

    pub(super) fn record_link(&self, cmd: RecordOnboardingLink) -> Result<Vec<Event>, Error> {
        if self
            .onboarding_account()
            .is_none_or(|a| a.account_id != cmd.account_id)
        {
            return Err(Error::ConnectAccountUnknown);
        }
        Ok(vec![Event::WorkspaceStripeOnboardingLinkIssued(
            WorkspaceStripeOnboardingLinkIssued {
                workspace_id: cmd.workspace_id,
                account_id: cmd.account_id,
                expires_at: cmd.expires_at,
                issued_by: cmd.actor,
                issued_at: cmd.at,
            },
        )])
    }

    pub(super) fn refresh_account(&self, cmd: RefreshConnectAccount) -> Vec<Event> {
        let Some(current) = self
            .onboarding_account()
            .filter(|a| a.account_id == cmd.account.id)
        else {
            return vec![]; // not this workspace's account (any more)
        };
        if current.same_status(&cmd.account) {
            return vec![];
        }
        let a = cmd.account;
        vec![Event::WorkspaceStripeConnectAccountUpdated(
            WorkspaceStripeConnectAccountUpdated {
                workspace_id: cmd.workspace_id,
                account_id: a.id,
                charges_enabled: a.charges_enabled,
                payouts_enabled: a.payouts_enabled,
                details_submitted: a.details_submitted,
                requirements_due: a.requirements_due,
                stripe_event_id: cmd.stripe_event_id,
                updated_at: cmd.at,
            },
        )]
    }

    pub(super) fn deauthorize(&self, cmd: DeauthorizeConnectAccount) -> Vec<Event> {
        if self
            .onboarding_account()
            .is_none_or(|a| a.account_id != cmd.account_id)
        {
            return vec![]; // deauthorized already, or another account
        }
        vec![Event::WorkspaceStripeConnectDeauthorized(
            WorkspaceStripeConnectDeauthorized {
                workspace_id: cmd.workspace_id,
                account_id: cmd.account_id,
                source: cmd.source,
                stripe_event_id: cmd.stripe_event_id,
                deauthorized_at: cmd.at,
            },
        )]
    }

    pub(super) fn switch(&self, cmd: SwitchStripeConnection) -> Result<Vec<Event>, Error> {
        if self.connection() == Some(cmd.to) {
            return Ok(vec![]);
        }
        let health = self.health_of(cmd.to);
        if health != HealthStatus::Valid {
            return Err(Error::ConnectionNotReady(health.as_str()));
        }
        Ok(vec![switched(
            &cmd.workspace_id,
            cmd.to,
            &cmd.actor,
            cmd.at,
        )])
    }

    pub(super) fn apply_connect(&mut self, event: Event) {
        match event {
            Event::WorkspaceStripeConnectAccountCreated(e) => {
                self.connect_accounts_created += 1;
                self.connect = Some(ConnectAccount {
                    account_id: e.account_id,
                    account_type: e.account_type,
                    charges_enabled: e.charges_enabled,
                    payouts_enabled: e.payouts_enabled,
                    details_submitted: e.details_submitted,
                    requirements_due: e.requirements_due,
                    deauthorized_at: None,
                    updated_at: e.created_at,
                    seen_events: Vec::new(),
                });
            }
            Event::WorkspaceStripeConnectAccountUpdated(e) => {
                if let Some(a) = self
                    .connect
                    .as_mut()
                    .filter(|a| a.account_id == e.account_id)
                {
                    a.charges_enabled = e.charges_enabled;
                    a.payouts_enabled = e.payouts_enabled;
                    a.details_submitted = e.details_submitted;
                    a.requirements_due = e.requirements_due;
                    a.updated_at = e.updated_at;
                    a.saw(e.stripe_event_id);
                }
            }
            Event::WorkspaceStripeConnectDeauthorized(e) => {
                if let Some(a) = self
                    .connect
                    .as_mut()
                    .filter(|a| a.account_id == e.account_id)
                {
                    a.deauthorized_at = Some(e.deauthorized_at);
                    a.charges_enabled = false;
                    a.payouts_enabled = false;
                    a.updated_at = e.deauthorized_at;
                    a.saw(e.stripe_event_id);
                }
            }
            Event::WorkspaceStripeConnectionSwitched(e) => {
                self.connection_choice = Some(e.connection);
            }
            // An onboarding link changes nothing the service decides on.
            _ => {}
        }
    }
}

fn switched(ws: &str, to: StripeConnection, actor: &str, at: DateTime<Utc>) -> Event {
    Event::WorkspaceStripeConnectionSwitched(WorkspaceStripeConnectionSwitched {
        workspace_id: ws.to_string(),
        connection: to,
        switched_by: actor.to_string(),
        switched_at: at,
    })
}
