//! Given/when/then specifications of `ChargingIntent`, and a state-machine property.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;
use proptest::prelude::*;
use roampay_events::*;
use secrecy::SecretString;

use super::aggregate::{authorization_reference, STRIPE_UNAVAILABLE};
use super::*;
use crate::stripe::{CallError, CredentialCheck, PaymentIntentView};
use crate::testing::{pi, FakeStripe};

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 5, 0, 0).unwrap()
}

fn request(hash: &str) -> IntentRequest {
    IntentRequest {
        charging_intent_id: "ci-1".into(),
        workspace_id: "ws-1".into(),
        location_id: "LOC-1".into(),
        evse_uid: "EVSE-1".into(),
        connector_id: "1".into(),
        currency: "aud".into(),
        request_hash: hash.into(),
        requested_at: at(),
    }
}

fn stripe(create: Result<PaymentIntentView, CallError>) -> Arc<FakeStripe> {
    let mut s = FakeStripe::new(CredentialCheck::Valid { account_id: None });
    s.create = create;
    Arc::new(s)
}

fn framework(s: &Arc<FakeStripe>) -> TestFramework<ChargingIntent> {
    TestFramework::with(IntentServices::new(s.clone()))
}

fn paid(hash: &str) -> ChargingIntentCommand {
    ChargingIntentCommand::RequestRoamingPreAuth(RequestRoamingPreAuth {
        request: request(hash),
        paid: Some(PaidPreAuth {
            amount_cents: 5000,
            credential_version: 2,
            mode: StripeMode::Test,
            secret_key: SecretString::from("sk_test_fake".to_string()),
            email: None,
        }),
    })
}

fn created() -> ChargingIntentEvent {
    ChargingIntentEvent::WorkspacePaymentIntentCreated(WorkspacePaymentIntentCreated {
        request: request("h1"),
        authorization_reference: authorization_reference("ci-1"),
        payment_intent_id: "pi_fake".into(),
        amount_cents: 5000,
        credential_version: 2,
        livemode: false,
    })
}

fn observe(status: &str, event: Option<&str>) -> ChargingIntentCommand {
    let mut p = pi("pi_fake", status);
    p.metadata_charging_intent_id = Some("ci-1".into());
    if status == "requires_payment_method" {
        p.last_error_code = Some("card_declined".into());
    }
    ChargingIntentCommand::ProcessStripeAuthorizationWebhook(ProcessStripeAuthorizationWebhook {
        charging_intent_id: "ci-1".into(),
        workspace_id: "ws-1".into(),
        payment_intent: p,
        stripe_event_id: event.map(str::to_string),
        source: "webhook",
        at: at(),
    })
}

fn authorized(event: Option<&str>) -> ChargingIntentEvent {
    ChargingIntentEvent::WorkspacePaymentIntentAuthorizationReceived(
        WorkspacePaymentIntentAuthorizationReceived {
            charging_intent_id: "ci-1".into(),
            workspace_id: "ws-1".into(),
            payment_intent_id: "pi_fake".into(),
            stripe_event_id: event.map(str::to_string),
            source: "webhook".into(),
            authorized_amount_cents: 5000,
            received_at: at(),
        },
    )
}

#[test]
fn a_free_connector_is_authorized_without_calling_stripe() {
    let s = stripe(Err(CallError::Unreachable("must not be called".into())));
    let cmd = ChargingIntentCommand::RequestRoamingPreAuth(RequestRoamingPreAuth {
        request: request("h1"),
        paid: None,
    });
    framework(&s)
        .given_no_previous_events()
        .when(cmd)
        .then_expect_events(vec![ChargingIntentEvent::FreeSessionAuthorized(
            FreeSessionAuthorized {
                request: request("h1"),
            },
        )]);
    assert!(s.created.lock().unwrap().is_empty());
}

#[test]
fn a_paid_connector_creates_a_manual_capture_hold_with_ownership_metadata_and_a_deterministic_key()
{
    let s = stripe(Ok(pi("pi_fake", "requires_payment_method")));
    framework(&s)
        .given_no_previous_events()
        .when(paid("h1"))
        .then_expect_events(vec![created()]);
    let calls = s.created.lock().unwrap();
    let call = &calls[0];
    assert_eq!(call.amount_cents, 5000);
    assert_eq!(call.idempotency_key, "roampay:ws-1:ci-1:create");
    let meta: Vec<&str> = call.metadata.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        meta,
        [
            "workspace_id",
            "charging_intent_id",
            "credential_version",
            "location_id",
            "evse_uid",
            "connector_id"
        ]
    );
    assert!(call.metadata.contains(&("credential_version", "2".into())));
}

#[test]
fn stripe_refusals_and_outages_end_the_intent_failed_with_a_code() {
    for (err, code) in [
        (CallError::Unreachable("timeout".into()), STRIPE_UNAVAILABLE),
        (
            CallError::Api {
                status: 500,
                code: None,
            },
            STRIPE_UNAVAILABLE,
        ),
        (
            CallError::Api {
                status: 429,
                code: Some("rate_limit".into()),
            },
            STRIPE_UNAVAILABLE,
        ),
        (
            CallError::Api {
                status: 402,
                code: Some("card_declined".into()),
            },
            "card_declined",
        ),
        (
            CallError::Api {
                status: 400,
                code: Some("parameter_invalid_integer".into()),
            },
            "parameter_invalid_integer",
        ),
    ] {
        let s = stripe(Err(err));
        framework(&s)
            .given_no_previous_events()
            .when(paid("h1"))
            .then_expect_events(vec![
                ChargingIntentEvent::WorkspacePaymentIntentCreationFailed(
                    WorkspacePaymentIntentCreationFailed {
                        request: request("h1"),
                        failure_code: code.into(),
                    },
                ),
            ]);
    }
}

#[test]
fn the_same_request_again_is_a_no_op_and_another_body_under_the_same_key_is_refused() {
    let s = stripe(Ok(pi("pi_fake", "requires_payment_method")));
    framework(&s)
        .given(vec![created()])
        .when(paid("h1"))
        .then_expect_events(vec![]);
    framework(&s)
        .given(vec![created()])
        .when(paid("h2"))
        .then_expect_error(ChargingIntentError::IdempotencyKeyReused);
    assert!(
        s.created.lock().unwrap().is_empty(),
        "no second PaymentIntent"
    );
}

#[test]
fn a_hold_reported_by_stripe_authorizes_the_intent_once() {
    let s = stripe(Ok(pi("pi_fake", "requires_capture")));
    framework(&s)
        .given(vec![created()])
        .when(observe("requires_capture", Some("evt_1")))
        .then_expect_events(vec![authorized(Some("evt_1"))]);
    framework(&s)
        .given(vec![created(), authorized(Some("evt_1"))])
        .when(observe("requires_capture", Some("evt_1")))
        .then_expect_error(ChargingIntentError::DuplicateStripeEvent);
    framework(&s)
        .given(vec![created(), authorized(Some("evt_1"))])
        .when(observe("requires_capture", Some("evt_2")))
        .then_expect_error(ChargingIntentError::NoChange);
}

#[test]
fn a_late_earlier_status_never_moves_the_intent_backwards() {
    let s = stripe(Ok(pi("pi_fake", "requires_capture")));
    framework(&s)
        .given(vec![created(), authorized(None)])
        .when(observe("requires_confirmation", Some("evt_0")))
        .then_expect_error(ChargingIntentError::NoChange);
}

#[test]
fn a_declined_or_canceled_payment_ends_the_intent() {
    let s = stripe(Ok(pi("pi_fake", "requires_capture")));
    let events = framework(&s)
        .given(vec![created()])
        .when(observe("requires_payment_method", Some("evt_f")))
        .inspect_result()
        .unwrap();
    assert!(
        matches!(&events[..], [ChargingIntentEvent::WorkspacePaymentIntentFailed(e)] if e.status == "failed" && e.failure_code == "card_declined")
    );
    let events = framework(&s)
        .given(vec![created(), authorized(None)])
        .when(observe("canceled", Some("evt_c")))
        .inspect_result()
        .unwrap();
    assert!(
        matches!(&events[..], [ChargingIntentEvent::WorkspacePaymentIntentFailed(e)] if e.status == "cancelled")
    );
}

#[test]
fn a_payment_intent_that_is_not_this_intents_is_refused() {
    let s = stripe(Ok(pi("pi_fake", "requires_capture")));
    type Change = Box<dyn Fn(&mut ProcessStripeAuthorizationWebhook)>;
    let variants: Vec<Change> = vec![
        Box::new(|c| c.workspace_id = "ws-2".into()),
        Box::new(|c| c.payment_intent.id = "pi_other".into()),
        Box::new(|c| c.payment_intent.metadata_workspace_id = Some("ws-2".into())),
        Box::new(|c| c.payment_intent.metadata_charging_intent_id = None),
    ];
    for change in variants {
        let ChargingIntentCommand::ProcessStripeAuthorizationWebhook(mut cmd) =
            observe("requires_capture", Some("evt_1"))
        else {
            unreachable!()
        };
        change(&mut cmd);
        framework(&s)
            .given(vec![created()])
            .when(ChargingIntentCommand::ProcessStripeAuthorizationWebhook(
                cmd,
            ))
            .then_expect_error(ChargingIntentError::OwnershipMismatch);
    }
    let ChargingIntentCommand::ProcessStripeAuthorizationWebhook(mut cmd) =
        observe("requires_capture", Some("evt_1"))
    else {
        unreachable!()
    };
    cmd.payment_intent.livemode = true;
    framework(&s)
        .given(vec![created()])
        .when(ChargingIntentCommand::ProcessStripeAuthorizationWebhook(
            cmd,
        ))
        .then_expect_error(ChargingIntentError::LivemodeMismatch);
    framework(&s)
        .given_no_previous_events()
        .when(observe("requires_capture", None))
        .then_expect_error(ChargingIntentError::NotFound);
}

const STATUSES: &[&str] = &[
    "requires_payment_method",
    "requires_confirmation",
    "requires_action",
    "processing",
    "requires_capture",
    "canceled",
    "succeeded",
];

proptest! {
    /// Any sequence of Stripe statuses, duplicated and reordered: the intent never moves
    /// backwards and no Stripe event is applied twice.
    #[test]
    fn random_deliveries_never_move_backwards_nor_apply_an_event_twice(
        deliveries in proptest::collection::vec((0..STATUSES.len(), 0..4u8), 1..40)
    ) {
        let mut intent = ChargingIntent::default();
        intent.apply(created());
        let mut applied_ids = std::collections::BTreeSet::new();
        for (status, event) in deliveries {
            let before = intent.status;
            let event_id = format!("evt_{event}_{status}");
            let ChargingIntentCommand::ProcessStripeAuthorizationWebhook(cmd) = observe(STATUSES[status], Some(&event_id)) else { unreachable!() };
            if let Ok(events) = intent.apply_stripe_status_for_test(cmd) {
                prop_assert!(applied_ids.insert(event_id.clone()), "{event_id} applied twice");
                for e in events {
                    intent.apply(e);
                }
            }
            prop_assert!(intent.status.rank() >= before.rank(), "{:?} -> {:?}", before, intent.status);
            if before.is_final() {
                prop_assert_eq!(intent.status, before);
            }
        }
    }
}
