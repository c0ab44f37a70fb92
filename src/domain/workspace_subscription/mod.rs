//! `WorkspaceSubscription`: one per workspace, the platform's subscription of it.
//! Stripe's subscription and invoice webhooks, the grace timer and the retention timer
//! drive it through `none → trialing/active → past_due → suspended`, back to `active`
//! when paid, and to `cancelled` (then purged) when it ends.
//!
//! Each Stripe fact applies once (its event id is remembered) and never moves the state
//! backwards: a fact older (by Stripe's `created`) than the newest applied about the
//! subscription's state is ignored.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use roampay_events::{
    BillingStatus, WorkspaceBillingCustomerCreated, WorkspaceCheckoutCompleted,
    WorkspaceDataPurged, WorkspaceInvoicePaymentFailed, WorkspacePaymentActionCompleted,
    WorkspacePaymentActionRequired, WorkspacePlanChanged, WorkspaceReinstated,
    WorkspaceSubscriptionActivated, WorkspaceSubscriptionCancelled,
    WorkspaceSubscriptionEvent as Event, WorkspaceSubscriptionUpdated, WorkspaceSuspended,
};
use serde::{Deserialize, Serialize};

use crate::infra::store::Never;

#[cfg(test)]
mod tests;

/// How many Stripe event ids are remembered (Stripe redelivers within days; a state
/// fact older than the newest applied is ignored anyway).
const REMEMBERED_EVENTS: usize = 512;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceSubscription {
    pub workspace_id: Option<String>,
    pub status: BillingStatus,
    pub plan: Option<String>,
    pub stripe_customer_id: Option<String>,
    pub stripe_subscription_id: Option<String>,
    pub current_period_end: Option<DateTime<Utc>>,
    pub cancel_at_period_end: bool,
    pub grace_until: Option<DateTime<Utc>>,
    pub payment_action_required: bool,
    pub purge_after: Option<DateTime<Utc>>,
    pub purged: bool,
    /// The newest Stripe `created` of a fact applied.
    pub last_fact_at: Option<DateTime<Utc>>,
    pub seen_events: Vec<String>,
}

/// What Stripe said, already read from its event.
#[derive(Debug, Clone, PartialEq)]
pub enum StripeFact {
    /// `customer.subscription.created|updated` (and the subscription of a completed
    /// Checkout Session): its own status decides.
    Subscription {
        subscription_id: String,
        /// Stripe's subscription status (`trialing`, `active`, `past_due`, `unpaid`,
        /// `canceled`, `incomplete`, `incomplete_expired`, `paused`).
        status: String,
        plan: Option<String>,
        current_period_end: Option<DateTime<Utc>>,
        cancel_at_period_end: bool,
    },
    SubscriptionDeleted,
    /// A Checkout Session completed (the customer and subscription are told apart).
    CheckoutCompleted {
        session_id: Option<String>,
    },
    InvoicePaid {
        invoice_id: Option<String>,
    },
    InvoicePaymentFailed {
        invoice_id: Option<String>,
    },
    PaymentActionRequired {
        invoice_id: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub enum WorkspaceSubscriptionCommand {
    RecordCustomer {
        workspace_id: String,
        customer_id: String,
        at: DateTime<Utc>,
    },
    ApplyStripeFact {
        workspace_id: String,
        stripe_event_id: String,
        /// Stripe's `created` of the event (orders facts; never starts a timer).
        created: DateTime<Utc>,
        fact: StripeFact,
        /// When the grace of a payment failing now ends: counted from when roampay
        /// received the event, never from a time the event states.
        grace_until: DateTime<Utc>,
        /// When the data of a workspace cancelled now is purged (from receipt, too).
        purge_after: DateTime<Utc>,
    },
    /// The grace of a past-due workspace is over at `at`?
    ExpireGrace { at: DateTime<Utc> },
    /// The retention of a cancelled workspace is over at `at`?
    Purge { at: DateTime<Utc> },
}

impl WorkspaceSubscription {
    fn ws(&self, given: &str) -> String {
        self.workspace_id
            .clone()
            .unwrap_or_else(|| given.to_string())
    }

    fn record_customer(
        &self,
        workspace_id: String,
        customer_id: String,
        at: DateTime<Utc>,
    ) -> Vec<Event> {
        if self.stripe_customer_id.is_some() {
            return vec![];
        }
        vec![Event::WorkspaceBillingCustomerCreated(
            WorkspaceBillingCustomerCreated {
                workspace_id,
                stripe_customer_id: customer_id,
                created_at: at,
            },
        )]
    }

    fn apply_fact(
        &self,
        ws: String,
        event_id: String,
        created: DateTime<Utc>,
        fact: StripeFact,
        grace_until: DateTime<Utc>,
        purge_after: DateTime<Utc>,
    ) -> Vec<Event> {
        if self.seen_events.contains(&event_id) || self.purged {
            return vec![];
        }
        let stale = self.last_fact_at.is_some_and(|last| created < last);
        match fact {
            StripeFact::Subscription { .. } if stale => vec![],
            StripeFact::Subscription {
                subscription_id,
                status,
                plan,
                current_period_end,
                cancel_at_period_end,
            } => self.subscription_state(
                ws,
                event_id,
                created,
                SubscriptionState {
                    subscription_id,
                    status,
                    plan,
                    current_period_end,
                    cancel_at_period_end,
                },
                grace_until,
                purge_after,
            ),
            StripeFact::SubscriptionDeleted => self.cancelled(ws, event_id, created, purge_after),
            StripeFact::CheckoutCompleted { session_id } => {
                vec![Event::WorkspaceCheckoutCompleted(
                    WorkspaceCheckoutCompleted {
                        workspace_id: ws,
                        stripe_event_id: event_id,
                        stripe_checkout_session_id: session_id,
                        occurred_at: created,
                    },
                )]
            }
            StripeFact::InvoicePaid { invoice_id } => match self.status {
                BillingStatus::PastDue | BillingStatus::Suspended if !stale => {
                    vec![Event::WorkspaceReinstated(WorkspaceReinstated {
                        workspace_id: ws,
                        stripe_event_id: event_id,
                        stripe_invoice_id: invoice_id,
                        occurred_at: created,
                    })]
                }
                _ if self.payment_action_required && !stale => {
                    vec![Event::WorkspacePaymentActionCompleted(
                        WorkspacePaymentActionCompleted {
                            workspace_id: ws,
                            stripe_event_id: event_id,
                            stripe_invoice_id: invoice_id,
                            occurred_at: created,
                        },
                    )]
                }
                _ => vec![],
            },
            StripeFact::InvoicePaymentFailed { invoice_id } => match self.status {
                BillingStatus::Active | BillingStatus::Trialing if !stale => {
                    vec![self.payment_failed(ws, event_id, invoice_id, created, grace_until)]
                }
                _ => vec![],
            },
            StripeFact::PaymentActionRequired { invoice_id } if !self.payment_action_required => {
                vec![Event::WorkspacePaymentActionRequired(
                    WorkspacePaymentActionRequired {
                        workspace_id: ws,
                        stripe_event_id: event_id,
                        stripe_invoice_id: invoice_id,
                        occurred_at: created,
                    },
                )]
            }
            StripeFact::PaymentActionRequired { .. } => vec![],
        }
    }

    fn payment_failed(
        &self,
        ws: String,
        event_id: String,
        invoice_id: Option<String>,
        created: DateTime<Utc>,
        grace_until: DateTime<Utc>,
    ) -> Event {
        Event::WorkspaceInvoicePaymentFailed(WorkspaceInvoicePaymentFailed {
            workspace_id: ws,
            stripe_event_id: event_id,
            stripe_invoice_id: invoice_id,
            grace_until,
            occurred_at: created,
        })
    }

    fn cancelled(
        &self,
        ws: String,
        event_id: String,
        created: DateTime<Utc>,
        purge_after: DateTime<Utc>,
    ) -> Vec<Event> {
        if self.status == BillingStatus::Cancelled {
            return vec![];
        }
        vec![Event::WorkspaceSubscriptionCancelled(
            WorkspaceSubscriptionCancelled {
                workspace_id: ws,
                stripe_event_id: event_id,
                purge_after,
                occurred_at: created,
            },
        )]
    }

    fn subscription_state(
        &self,
        ws: String,
        event_id: String,
        created: DateTime<Utc>,
        s: SubscriptionState,
        grace_until: DateTime<Utc>,
        purge_after: DateTime<Utc>,
    ) -> Vec<Event> {
        use BillingStatus as B;
        let now_status = match s.status.as_str() {
            "trialing" => B::Trialing,
            "active" => B::Active,
            "past_due" | "unpaid" => B::PastDue,
            "canceled" | "incomplete_expired" => B::Cancelled,
            _ => return vec![], // incomplete, paused: nothing changes yet
        };
        match (self.status, now_status) {
            (_, B::Cancelled) => self.cancelled(ws, event_id, created, purge_after),
            // Never subscribed, subscribed again, or a trial converting (or extended):
            // the subscription's standing as Stripe now states it.
            (B::None | B::Cancelled, B::Trialing | B::Active)
            | (B::Trialing, B::Active)
            | (B::Active, B::Trialing) => {
                vec![Event::WorkspaceSubscriptionActivated(
                    WorkspaceSubscriptionActivated {
                        workspace_id: ws,
                        stripe_event_id: event_id,
                        stripe_subscription_id: s.subscription_id,
                        status: now_status,
                        plan: s.plan,
                        current_period_end: s.current_period_end,
                        cancel_at_period_end: s.cancel_at_period_end,
                        occurred_at: created,
                    },
                )]
            }
            (B::PastDue | B::Suspended, B::Trialing | B::Active) => {
                vec![Event::WorkspaceReinstated(WorkspaceReinstated {
                    workspace_id: ws,
                    stripe_event_id: event_id,
                    stripe_invoice_id: None,
                    occurred_at: created,
                })]
            }
            (B::Trialing | B::Active, B::PastDue) => {
                vec![self.payment_failed(ws, event_id, None, created, grace_until)]
            }
            (B::Trialing | B::Active, _) => self.changes(ws, event_id, created, s),
            _ => vec![],
        }
    }

    /// The same standing, other details: the plan, the period, cancellation at its end.
    fn changes(
        &self,
        ws: String,
        event_id: String,
        created: DateTime<Utc>,
        s: SubscriptionState,
    ) -> Vec<Event> {
        let mut events = vec![];
        if s.plan.is_some() && s.plan != self.plan {
            events.push(Event::WorkspacePlanChanged(WorkspacePlanChanged {
                workspace_id: ws.clone(),
                stripe_event_id: event_id.clone(),
                from_plan: self.plan.clone(),
                plan: s.plan,
                occurred_at: created,
            }));
        }
        if s.current_period_end != self.current_period_end
            || s.cancel_at_period_end != self.cancel_at_period_end
        {
            events.push(Event::WorkspaceSubscriptionUpdated(
                WorkspaceSubscriptionUpdated {
                    workspace_id: ws,
                    stripe_event_id: event_id,
                    current_period_end: s.current_period_end,
                    cancel_at_period_end: s.cancel_at_period_end,
                    occurred_at: created,
                },
            ));
        }
        events
    }

    fn expire_grace(&self, at: DateTime<Utc>) -> Vec<Event> {
        match (self.status, self.grace_until, &self.workspace_id) {
            (BillingStatus::PastDue, Some(until), Some(ws)) if until <= at => {
                vec![Event::WorkspaceSuspended(WorkspaceSuspended {
                    workspace_id: ws.clone(),
                    grace_until: until,
                    suspended_at: at,
                })]
            }
            _ => vec![],
        }
    }

    fn purge(&self, at: DateTime<Utc>) -> Vec<Event> {
        match (
            self.status,
            self.purge_after,
            &self.workspace_id,
            self.purged,
        ) {
            (BillingStatus::Cancelled, Some(after), Some(ws), false) if after <= at => {
                vec![Event::WorkspaceDataPurged(WorkspaceDataPurged {
                    workspace_id: ws.clone(),
                    purged_at: at,
                })]
            }
            _ => vec![],
        }
    }

    fn remember(&mut self, event_id: Option<&str>, at: Option<DateTime<Utc>>) {
        if let Some(id) = event_id {
            self.seen_events.push(id.to_string());
            let excess = self.seen_events.len().saturating_sub(REMEMBERED_EVENTS);
            self.seen_events.drain(..excess);
        }
        if let Some(at) = at {
            self.last_fact_at = Some(self.last_fact_at.map_or(at, |l| l.max(at)));
        }
    }
}

/// A subscription as Stripe describes it in an event.
struct SubscriptionState {
    subscription_id: String,
    status: String,
    plan: Option<String>,
    current_period_end: Option<DateTime<Utc>>,
    cancel_at_period_end: bool,
}

impl Aggregate for WorkspaceSubscription {
    const TYPE: &'static str = "WorkspaceSubscription";
    type Command = WorkspaceSubscriptionCommand;
    type Event = Event;
    type Error = Never;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), Never> {
        use WorkspaceSubscriptionCommand as C;
        let events = match command {
            C::RecordCustomer {
                workspace_id,
                customer_id,
                at,
            } => self.record_customer(self.ws(&workspace_id), customer_id, at),
            C::ApplyStripeFact {
                workspace_id,
                stripe_event_id,
                created,
                fact,
                grace_until,
                purge_after,
            } => self.apply_fact(
                self.ws(&workspace_id),
                stripe_event_id,
                created,
                fact,
                grace_until,
                purge_after,
            ),
            C::ExpireGrace { at } => self.expire_grace(at),
            C::Purge { at } => self.purge(at),
        };
        for event in events {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.workspace_id = Some(event.workspace_id().to_string());
        let fact_at = match &event {
            Event::WorkspaceSubscriptionActivated(e) => Some(e.occurred_at),
            Event::WorkspaceSubscriptionUpdated(e) => Some(e.occurred_at),
            Event::WorkspacePlanChanged(e) => Some(e.occurred_at),
            Event::WorkspaceInvoicePaymentFailed(e) => Some(e.occurred_at),
            Event::WorkspaceReinstated(e) => Some(e.occurred_at),
            Event::WorkspaceSubscriptionCancelled(e) => Some(e.occurred_at),
            _ => None,
        };
        let event_id = event.stripe_event_id().map(str::to_string);
        match event {
            Event::WorkspaceBillingCustomerCreated(e) => {
                self.stripe_customer_id = Some(e.stripe_customer_id)
            }
            Event::WorkspaceSubscriptionActivated(e) => {
                self.status = e.status;
                self.stripe_subscription_id = Some(e.stripe_subscription_id);
                self.plan = e.plan;
                self.current_period_end = e.current_period_end;
                self.cancel_at_period_end = e.cancel_at_period_end;
                self.grace_until = None;
                self.purge_after = None;
            }
            Event::WorkspaceSubscriptionUpdated(e) => {
                self.current_period_end = e.current_period_end;
                self.cancel_at_period_end = e.cancel_at_period_end;
            }
            Event::WorkspacePlanChanged(e) => self.plan = e.plan,
            Event::WorkspaceInvoicePaymentFailed(e) => {
                self.status = BillingStatus::PastDue;
                self.grace_until = Some(e.grace_until);
            }
            Event::WorkspacePaymentActionRequired(_) => self.payment_action_required = true,
            Event::WorkspacePaymentActionCompleted(_) => self.payment_action_required = false,
            Event::WorkspaceSuspended(_) => self.status = BillingStatus::Suspended,
            Event::WorkspaceReinstated(_) => {
                self.status = BillingStatus::Active;
                self.grace_until = None;
                self.payment_action_required = false;
            }
            Event::WorkspaceSubscriptionCancelled(e) => {
                self.status = BillingStatus::Cancelled;
                self.grace_until = None;
                self.purge_after = Some(e.purge_after);
            }
            Event::WorkspaceDataPurged(_) => self.purged = true,
            Event::WorkspaceCheckoutCompleted(_) => {}
        }
        self.remember(event_id.as_deref(), fact_at);
    }
}
