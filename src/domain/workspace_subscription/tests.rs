//! Given/when/then specifications of the billing lifecycle.

use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use roampay_events::*;

use super::*;

fn t(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 5, 0, 0).unwrap() + Duration::minutes(minutes)
}

const GRACE: i64 = 7 * 24 * 60;
const RETENTION: i64 = 90 * 24 * 60;

fn fact(event_id: &str, minutes: i64, fact: StripeFact) -> WorkspaceSubscriptionCommand {
    WorkspaceSubscriptionCommand::ApplyStripeFact {
        workspace_id: "ws-1".into(),
        stripe_event_id: event_id.into(),
        created: t(minutes),
        fact,
        // Received when Stripe created it (the service passes its own receipt time).
        grace_until: t(minutes) + Duration::minutes(GRACE),
        purge_after: t(minutes) + Duration::minutes(RETENTION),
    }
}

fn subscription(status: &str, plan: &str) -> StripeFact {
    StripeFact::Subscription {
        subscription_id: "sub_1".into(),
        status: status.into(),
        plan: Some(plan.into()),
        current_period_end: Some(t(30 * 24 * 60)),
        cancel_at_period_end: false,
    }
}

fn activated(event_id: &str, minutes: i64) -> Event {
    Event::WorkspaceSubscriptionActivated(WorkspaceSubscriptionActivated {
        workspace_id: "ws-1".into(),
        stripe_event_id: event_id.into(),
        stripe_subscription_id: "sub_1".into(),
        status: BillingStatus::Active,
        plan: Some("standard".into()),
        current_period_end: Some(t(30 * 24 * 60)),
        cancel_at_period_end: false,
        occurred_at: t(minutes),
    })
}

fn failed(event_id: &str, minutes: i64) -> Event {
    Event::WorkspaceInvoicePaymentFailed(WorkspaceInvoicePaymentFailed {
        workspace_id: "ws-1".into(),
        stripe_event_id: event_id.into(),
        stripe_invoice_id: Some("in_1".into()),
        grace_until: t(minutes + GRACE),
        occurred_at: t(minutes),
    })
}

fn paid(invoice: &str) -> StripeFact {
    StripeFact::InvoicePaid {
        invoice_id: Some(invoice.into()),
    }
}

fn framework() -> TestFramework<WorkspaceSubscription> {
    TestFramework::with(())
}

fn fold(events: Vec<Event>) -> WorkspaceSubscription {
    let mut s = WorkspaceSubscription::default();
    for e in events {
        Aggregate::apply(&mut s, e);
    }
    s
}

#[test]
fn an_active_subscription_activates_the_workspace_once() {
    framework()
        .given_no_previous_events()
        .when(fact("evt_1", 1, subscription("active", "standard")))
        .then_expect_events(vec![activated("evt_1", 1)]);
    framework()
        .given(vec![activated("evt_1", 1)])
        .when(fact("evt_1", 1, subscription("active", "standard")))
        .then_expect_events(vec![]);
    let s = fold(vec![activated("evt_1", 1)]);
    assert!(s.status.in_good_standing());
}

#[test]
fn a_failed_renewal_starts_grace_and_grace_over_suspends() {
    framework()
        .given(vec![activated("evt_1", 1)])
        .when(fact(
            "evt_2",
            10,
            StripeFact::InvoicePaymentFailed {
                invoice_id: Some("in_1".into()),
            },
        ))
        .then_expect_events(vec![failed("evt_2", 10)]);
    let given = vec![activated("evt_1", 1), failed("evt_2", 10)];
    assert!(
        fold(given.clone()).status.in_good_standing(),
        "past due keeps working"
    );
    framework()
        .given(given.clone())
        .when(WorkspaceSubscriptionCommand::ExpireGrace {
            at: t(10 + GRACE - 1),
        })
        .then_expect_events(vec![]);
    framework()
        .given(given)
        .when(WorkspaceSubscriptionCommand::ExpireGrace { at: t(10 + GRACE) })
        .then_expect_events(vec![Event::WorkspaceSuspended(WorkspaceSuspended {
            workspace_id: "ws-1".into(),
            grace_until: t(10 + GRACE),
            suspended_at: t(10 + GRACE),
        })]);
}

#[test]
fn a_payment_arriving_during_grace_reinstates_and_grace_no_longer_suspends() {
    let reinstated = Event::WorkspaceReinstated(WorkspaceReinstated {
        workspace_id: "ws-1".into(),
        stripe_event_id: "evt_3".into(),
        stripe_invoice_id: Some("in_1".into()),
        occurred_at: t(20),
    });
    framework()
        .given(vec![activated("evt_1", 1), failed("evt_2", 10)])
        .when(fact("evt_3", 20, paid("in_1")))
        .then_expect_events(vec![reinstated.clone()]);
    framework()
        .given(vec![activated("evt_1", 1), failed("evt_2", 10), reinstated])
        .when(WorkspaceSubscriptionCommand::ExpireGrace {
            at: t(10 + GRACE + 1),
        })
        .then_expect_events(vec![]);
}

#[test]
fn paying_after_suspension_reinstates() {
    let suspended = Event::WorkspaceSuspended(WorkspaceSuspended {
        workspace_id: "ws-1".into(),
        grace_until: t(10 + GRACE),
        suspended_at: t(10 + GRACE),
    });
    let given = vec![activated("evt_1", 1), failed("evt_2", 10), suspended];
    assert!(!fold(given.clone()).status.in_good_standing());
    let events = framework()
        .given(given)
        .when(fact("evt_4", 11 + GRACE, paid("in_1")))
        .inspect_result()
        .unwrap();
    assert!(
        matches!(events.as_slice(), [Event::WorkspaceReinstated(_)]),
        "{events:?}"
    );
}

#[test]
fn a_cancellation_during_grace_cancels_and_purge_waits_for_retention() {
    let cancelled = Event::WorkspaceSubscriptionCancelled(WorkspaceSubscriptionCancelled {
        workspace_id: "ws-1".into(),
        stripe_event_id: "evt_5".into(),
        purge_after: t(30 + RETENTION),
        occurred_at: t(30),
    });
    framework()
        .given(vec![activated("evt_1", 1), failed("evt_2", 10)])
        .when(fact("evt_5", 30, StripeFact::SubscriptionDeleted))
        .then_expect_events(vec![cancelled.clone()]);
    let given = vec![activated("evt_1", 1), failed("evt_2", 10), cancelled];
    framework()
        .given(given.clone())
        .when(WorkspaceSubscriptionCommand::ExpireGrace { at: t(10 + GRACE) })
        .then_expect_events(vec![]);
    framework()
        .given(given.clone())
        .when(WorkspaceSubscriptionCommand::Purge {
            at: t(30 + RETENTION - 1),
        })
        .then_expect_events(vec![]);
    let purged = Event::WorkspaceDataPurged(WorkspaceDataPurged {
        workspace_id: "ws-1".into(),
        purged_at: t(30 + RETENTION),
    });
    framework()
        .given(given.clone())
        .when(WorkspaceSubscriptionCommand::Purge {
            at: t(30 + RETENTION),
        })
        .then_expect_events(vec![purged.clone()]);
    let mut all = given;
    all.push(purged);
    framework()
        .given(all.clone())
        .when(WorkspaceSubscriptionCommand::Purge {
            at: t(31 + RETENTION),
        })
        .then_expect_events(vec![]);
    assert_eq!(
        fold(all).status,
        BillingStatus::Cancelled,
        "stays cancelled"
    );
}

#[test]
fn out_of_order_subscription_facts_never_move_the_state_back() {
    // The "past_due" update of minute 10 arrives after the "active" one of minute 20.
    let reinstated_state = vec![activated("evt_1", 1), failed("evt_2", 10)];
    let late_active = fact("evt_3", 20, subscription("active", "standard"));
    let events = framework()
        .given(reinstated_state.clone())
        .when(late_active)
        .inspect_result()
        .unwrap();
    let mut all = reinstated_state;
    all.extend(events);
    assert_eq!(fold(all.clone()).status, BillingStatus::Active);
    framework()
        .given(all)
        .when(fact("evt_old", 10, subscription("past_due", "standard")))
        .then_expect_events(vec![]);
}

#[test]
fn plan_and_period_changes_are_recorded_and_the_customer_once() {
    let mut changed = subscription("active", "professional");
    if let StripeFact::Subscription {
        cancel_at_period_end,
        ..
    } = &mut changed
    {
        *cancel_at_period_end = true;
    }
    let events = framework()
        .given(vec![activated("evt_1", 1)])
        .when(fact("evt_2", 5, changed))
        .inspect_result()
        .unwrap();
    let names: Vec<&str> = events.iter().map(|e| e.event_type()).collect();
    assert_eq!(
        names,
        vec!["WorkspacePlanChanged", "WorkspaceSubscriptionUpdated"]
    );
    let customer = WorkspaceSubscriptionCommand::RecordCustomer {
        workspace_id: "ws-1".into(),
        customer_id: "cus_1".into(),
        at: t(0),
    };
    let created = Event::WorkspaceBillingCustomerCreated(WorkspaceBillingCustomerCreated {
        workspace_id: "ws-1".into(),
        stripe_customer_id: "cus_1".into(),
        created_at: t(0),
    });
    framework()
        .given_no_previous_events()
        .when(customer.clone())
        .then_expect_events(vec![created.clone()]);
    framework()
        .given(vec![created])
        .when(customer)
        .then_expect_events(vec![]);
}

#[test]
fn action_required_is_flagged_once_and_cleared_by_payment() {
    let action = fact(
        "evt_6",
        12,
        StripeFact::PaymentActionRequired {
            invoice_id: Some("in_1".into()),
        },
    );
    let events = framework()
        .given(vec![activated("evt_1", 1), failed("evt_2", 10)])
        .when(action)
        .inspect_result()
        .unwrap();
    let mut all = vec![activated("evt_1", 1), failed("evt_2", 10)];
    all.extend(events);
    assert!(fold(all.clone()).payment_action_required);
    framework()
        .given(all.clone())
        .when(fact(
            "evt_7",
            13,
            StripeFact::PaymentActionRequired {
                invoice_id: Some("in_1".into()),
            },
        ))
        .then_expect_events(vec![]);
    let events = framework()
        .given(all.clone())
        .when(fact("evt_8", 14, paid("in_1")))
        .inspect_result()
        .unwrap();
    all.extend(events);
    assert!(!fold(all).payment_action_required);
}

#[test]
fn a_trial_that_converts_makes_the_workspace_active() {
    let trialing = Event::WorkspaceSubscriptionActivated(WorkspaceSubscriptionActivated {
        status: BillingStatus::Trialing,
        stripe_event_id: "evt_1".into(),
        occurred_at: t(1),
        ..match activated("evt_1", 1) {
            Event::WorkspaceSubscriptionActivated(e) => e,
            _ => unreachable!(),
        }
    });
    framework()
        .given(vec![trialing.clone()])
        .when(fact("evt_2", 2, subscription("active", "standard")))
        .then_expect_events(vec![activated("evt_2", 2)]);
    // The same standing again changes nothing.
    framework()
        .given(vec![trialing.clone()])
        .when(fact("evt_2", 2, subscription("trialing", "standard")))
        .then_expect_events(vec![]);
    assert_eq!(
        fold(vec![trialing, activated("evt_2", 2)]).status,
        BillingStatus::Active
    );
}

#[test]
fn a_payment_needing_action_while_active_is_cleared_when_paid() {
    let action = Event::WorkspacePaymentActionRequired(WorkspacePaymentActionRequired {
        workspace_id: "ws-1".into(),
        stripe_event_id: "evt_2".into(),
        stripe_invoice_id: Some("in_1".into()),
        occurred_at: t(2),
    });
    let completed = Event::WorkspacePaymentActionCompleted(WorkspacePaymentActionCompleted {
        workspace_id: "ws-1".into(),
        stripe_event_id: "evt_3".into(),
        stripe_invoice_id: Some("in_1".into()),
        occurred_at: t(3),
    });
    framework()
        .given(vec![activated("evt_1", 1), action.clone()])
        .when(fact("evt_3", 3, paid("in_1")))
        .then_expect_events(vec![completed.clone()]);
    let s = fold(vec![activated("evt_1", 1), action, completed]);
    assert!(!s.payment_action_required);
    assert_eq!(s.status, BillingStatus::Active);
    // A payment with nothing pending while active records nothing.
    framework()
        .given(vec![activated("evt_1", 1)])
        .when(fact("evt_3", 3, paid("in_1")))
        .then_expect_events(vec![]);
}
