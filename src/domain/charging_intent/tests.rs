//! Given/when/then specifications of `ChargingIntent`, and a state-machine property.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;
use proptest::prelude::*;
use roampay_events::*;
use secrecy::SecretString;

use super::aggregate::{authorization_reference, hold_request, STRIPE_UNAVAILABLE};
use super::*;
use crate::infra::stripe::{
    CallError, CredentialCheck, DisputeView, PaymentIntentStatus, PaymentIntentView, RefundView,
    StripeAccount,
};
use crate::testing::{pi, StripeScript};

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
        driver: None,
    }
}

fn stripe(create: Result<PaymentIntentView, CallError>) -> Arc<StripeScript> {
    let mut s = StripeScript::new(CredentialCheck::Valid { account_id: None });
    s.create = create;
    Arc::new(s)
}

/// The aggregate has no services (`handle` calls nobody): the fake only serves the
/// helpers below, which call it as the payments service would.
fn framework(_stripe: &Arc<StripeScript>) -> TestFramework<ChargingIntent> {
    TestFramework::with(())
}

fn paid_pre_auth() -> PaidPreAuth {
    PaidPreAuth {
        amount_cents: 5000,
        credential_version: 2,
        mode: StripeMode::Test,
        on: StripeAccount::own(SecretString::from("sk_test_fake".to_string())),
        application_fee_bps: None,
        email: None,
    }
}

/// A paid pre-auth whose hold Stripe answered with `answer`.
fn paid_answered(hash: &str, answer: Result<String, CallError>) -> ChargingIntentCommand {
    ChargingIntentCommand::RequestRoamingPreAuth(RequestRoamingPreAuth {
        request: request(hash),
        hold: Hold::Asked {
            paid: paid_pre_auth(),
            answer,
        },
    })
}

fn paid(hash: &str) -> ChargingIntentCommand {
    paid_answered(hash, Ok("pi_fake".into()))
}

fn created() -> ChargingIntentEvent {
    ChargingIntentEvent::WorkspacePaymentIntentCreated(WorkspacePaymentIntentCreated {
        request: request("h1"),
        authorization_reference: authorization_reference("ci-1"),
        payment_intent_id: "pi_fake".into(),
        amount_cents: 5000,
        credential_version: 2,
        livemode: false,
        stripe_account_id: None,
        application_fee_bps: None,
    })
}

fn observe(status: &str, event: Option<&str>) -> ChargingIntentCommand {
    let mut p = pi("pi_fake", status);
    p.metadata_charging_intent_id = Some("ci-1".into());
    if status == "requires_payment_method" {
        p.last_payment_error = Some(card_declined());
    }
    ChargingIntentCommand::ProcessStripeAuthorizationWebhook(ProcessStripeAuthorizationWebhook {
        charging_intent_id: "ci-1".into(),
        workspace_id: "ws-1".into(),
        payment_intent: p,
        stripe_event_id: event.map(str::to_string),
        source: "webhook",
        connect_account: None,
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
            capture_before: None,
        },
    )
}

#[test]
fn a_free_connector_is_authorized_without_calling_stripe() {
    let s = stripe(Err(CallError::Unreachable("must not be called".into())));
    let cmd = ChargingIntentCommand::RequestRoamingPreAuth(RequestRoamingPreAuth {
        request: request("h1"),
        hold: Hold::Free,
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
    let s = stripe(Err(CallError::Unreachable(
        "the aggregate never calls".into(),
    )));
    framework(&s)
        .given_no_previous_events()
        .when(paid("h1"))
        .then_expect_events(vec![created()]);
    assert!(
        s.created.lock().unwrap().is_empty(),
        "the service calls Stripe"
    );
    let call = hold_request(&request("h1"), &paid_pre_auth());
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
        let s = stripe(Err(CallError::Unreachable(
            "the aggregate never calls".into(),
        )));
        framework(&s)
            .given_no_previous_events()
            .when(paid_answered("h1", Err(err)))
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

fn card_declined() -> LastPaymentError {
    LastPaymentError {
        code: Some("card_declined".into()),
        decline_code: Some("insufficient_funds".into()),
        message: Some("Your card has insufficient funds.".into()),
    }
}

fn attempt_failed(event: Option<&str>, source: &str) -> ChargingIntentEvent {
    ChargingIntentEvent::PaymentAttemptFailed(PaymentAttemptFailed {
        charging_intent_id: "ci-1".into(),
        workspace_id: "ws-1".into(),
        payment_intent_id: "pi_fake".into(),
        stripe_event_id: event.map(str::to_string),
        source: source.into(),
        error: card_declined(),
        failed_at: at(),
    })
}

#[test]
fn a_declined_attempt_keeps_the_intent_waiting_for_another_card_with_its_error() {
    let s = stripe(Ok(pi("pi_fake", "requires_capture")));
    framework(&s)
        .given(vec![created()])
        .when(observe("requires_payment_method", Some("evt_f")))
        .then_expect_events(vec![attempt_failed(Some("evt_f"), "webhook")]);
    let mut intent = ChargingIntent::default();
    intent.apply(created());
    intent.apply(attempt_failed(Some("evt_f"), "webhook"));
    assert_eq!(intent.status, IntentStatus::PendingPayment);
    assert_eq!(intent.last_payment_error, Some(card_declined()));
}

#[test]
fn a_retry_that_authorizes_after_a_decline_authorizes_the_intent_and_clears_the_error() {
    let s = stripe(Ok(pi("pi_fake", "requires_capture")));
    framework(&s)
        .given(vec![created(), attempt_failed(Some("evt_f"), "webhook")])
        .when(observe("requires_capture", Some("evt_2")))
        .then_expect_events(vec![authorized(Some("evt_2"))]);
    let mut intent = ChargingIntent::default();
    for e in [
        created(),
        attempt_failed(Some("evt_f"), "webhook"),
        authorized(Some("evt_2")),
    ] {
        intent.apply(e);
    }
    assert_eq!(intent.status, IntentStatus::Authorized);
    assert_eq!(intent.last_payment_error, None);
}

#[test]
fn the_same_decline_read_again_is_recorded_once_and_another_decline_again() {
    let s = stripe(Ok(pi("pi_fake", "requires_capture")));
    // Read by the confirm call, then reported by Stripe's webhook: one decline.
    framework(&s)
        .given(vec![created(), attempt_failed(None, "confirm")])
        .when(observe("requires_payment_method", Some("evt_g")))
        .then_expect_error(ChargingIntentError::NoChange);
    let ChargingIntentCommand::ProcessStripeAuthorizationWebhook(mut other) =
        observe("requires_payment_method", Some("evt_h"))
    else {
        unreachable!()
    };
    let mut expired = card_declined();
    expired.decline_code = Some("expired_card".into());
    other.payment_intent.last_payment_error = Some(expired.clone());
    let events = framework(&s)
        .given(vec![created(), attempt_failed(Some("evt_f"), "webhook")])
        .when(ChargingIntentCommand::ProcessStripeAuthorizationWebhook(
            other,
        ))
        .inspect_result()
        .unwrap();
    assert!(
        matches!(&events[..], [ChargingIntentEvent::PaymentAttemptFailed(e)] if e.error == expired)
    );
    framework(&s)
        .given(vec![created(), attempt_failed(Some("evt_f"), "webhook")])
        .when(observe("requires_payment_method", Some("evt_f")))
        .then_expect_error(ChargingIntentError::DuplicateStripeEvent);
}

#[test]
fn a_canceled_payment_intent_ends_the_intent_cancelled() {
    let s = stripe(Ok(pi("pi_fake", "requires_capture")));
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

// ---- Sessions: start, complete (capture), cancel, expiry, settlement ----

fn start(id: &str) -> ChargingIntentCommand {
    ChargingIntentCommand::StartSession(StartSession {
        ocpi_session_id: id.into(),
        at: at(),
    })
}

fn started() -> ChargingIntentEvent {
    ChargingIntentEvent::ChargingSessionStarted(ChargingSessionStarted {
        charging_intent_id: "ci-1".into(),
        workspace_id: "ws-1".into(),
        ocpi_session_id: "S-1".into(),
        started_at: at(),
    })
}

fn complete(amount: i64) -> ChargingIntentCommand {
    ChargingIntentCommand::CompleteSession(CompleteSession {
        final_amount_cents: amount,
        ocpi_session_id: Some("S-1".into()),
        at: at(),
    })
}

fn completion(final_amount: i64, capture: i64) -> ChargingIntentEvent {
    ChargingIntentEvent::SessionCompletionRequested(SessionCompletionRequested {
        charging_intent_id: "ci-1".into(),
        workspace_id: "ws-1".into(),
        ocpi_session_id: Some("S-1".into()),
        final_amount_cents: final_amount,
        capture_amount_cents: capture,
        requested_at: at(),
    })
}

fn captured(final_amount: i64, amount: i64, source: &str) -> ChargingIntentEvent {
    ChargingIntentEvent::WorkspaceSessionPaymentCaptured(WorkspaceSessionPaymentCaptured {
        charging_intent_id: "ci-1".into(),
        workspace_id: "ws-1".into(),
        ocpi_session_id: Some("S-1".into()),
        payment_intent_id: Some("pi_fake".into()),
        final_amount_cents: final_amount,
        captured_amount_cents: amount,
        source: source.into(),
        captured_at: at(),
    })
}

/// Authorized, charging, and a capture of 1234 decided but not yet carried out.
fn capture_pending() -> Vec<ChargingIntentEvent> {
    vec![
        created(),
        authorized(None),
        started(),
        completion(1234, 1234),
    ]
}

fn cancel(reason: ReleaseReason) -> ChargingIntentCommand {
    ChargingIntentCommand::CancelIntent(CancelIntent { reason, at: at() })
}

fn release_requested(reason: &str) -> ChargingIntentEvent {
    ChargingIntentEvent::HoldReleaseRequested(HoldReleaseRequested {
        charging_intent_id: "ci-1".into(),
        workspace_id: "ws-1".into(),
        reason: reason.into(),
        requested_at: at(),
    })
}

/// What the payments service does to settle the intent `given` leaves: the call the
/// intent plans, made on the fake (and the PaymentIntent read when it did not succeed),
/// recorded by `SettlePayment`. With nothing planned, an answer to a call it never made.
fn settle_via(s: &StripeScript, given: &[ChargingIntentEvent]) -> ChargingIntentCommand {
    let mut state = ChargingIntent::default();
    for e in given {
        state.apply(e.clone());
    }
    let (call, answer, now) = match state.settle_call() {
        None => (
            SettleCall {
                payment_intent_id: "pi_fake".into(),
                capture: None,
                idempotency_key: "never-planned".into(),
            },
            Ok(pi("pi_fake", "canceled")),
            None,
        ),
        Some(call) => {
            let (pi_id, key) = (&call.payment_intent_id, &call.idempotency_key);
            let answer = match call.capture {
                Some(c) => s.capture(pi_id, c, key),
                None => s.cancel(pi_id, key),
            };
            let now = match &answer {
                Ok(p) if call.done_by(p) => None,
                _ => Some(s.retrieve()),
            };
            (call, answer, now)
        }
    };
    ChargingIntentCommand::SettlePayment(SettlePayment {
        call,
        answer,
        now,
        at: at(),
    })
}

/// `given`, then the settlement the payments service would make.
fn settles(
    s: &Arc<StripeScript>,
    given: Vec<ChargingIntentEvent>,
) -> cqrs_es::test::AggregateResultValidator<ChargingIntent> {
    let cmd = settle_via(s, &given);
    framework(s).given(given).when(cmd)
}

fn deferred(step: &str, attempt: u32, code: &str) -> ChargingIntentEvent {
    ChargingIntentEvent::StripeCallDeferred(StripeCallDeferred {
        charging_intent_id: "ci-1".into(),
        workspace_id: "ws-1".into(),
        step: step.into(),
        attempt,
        failure_code: code.into(),
        deferred_at: at(),
    })
}

fn invalid(status: &'static str) -> ChargingIntentError {
    ChargingIntentError::InvalidTransition(status)
}

/// A Stripe fake whose PaymentIntent reads as `status`, with scripted capture/cancel answers.
fn stripe_reading(
    status: &str,
    answers: Vec<Result<PaymentIntentView, CallError>>,
) -> Arc<StripeScript> {
    let s = stripe(Ok(pi("pi_fake", status)));
    s.settle.lock().unwrap().extend(answers);
    s
}

fn succeeded(amount: i64) -> PaymentIntentView {
    let mut p = pi("pi_fake", "succeeded");
    p.amount_received = amount;
    p
}

#[test]
fn a_session_starts_only_on_an_authorized_hold_and_a_repeated_start_changes_nothing() {
    let s = stripe(Ok(pi("pi_fake", "requires_capture")));
    framework(&s)
        .given(vec![created(), authorized(None)])
        .when(start("S-1"))
        .then_expect_events(vec![started()]);
    framework(&s)
        .given(vec![created(), authorized(None), started()])
        .when(start("S-1"))
        .then_expect_events(vec![]);
    framework(&s)
        .given(vec![created(), authorized(None), started()])
        .when(start("S-2"))
        .then_expect_error(invalid("charging"));
    framework(&s)
        .given(vec![created()])
        .when(start("S-1"))
        .then_expect_error(invalid("pending_payment"));
    framework(&s)
        .given_no_previous_events()
        .when(start("S-1"))
        .then_expect_error(ChargingIntentError::NotFound);
}

#[test]
fn completion_captures_the_final_amount_capped_by_the_hold() {
    let s = stripe(Ok(pi("pi_fake", "requires_capture")));
    framework(&s)
        .given(vec![created(), authorized(None), started()])
        .when(complete(1234))
        .then_expect_events(vec![completion(1234, 1234)]);
    framework(&s)
        .given(vec![created(), authorized(None), started()])
        .when(complete(9000))
        .then_expect_events(vec![completion(9000, 5000)]);
    // Without a session start (a CDR that came alone) the hold is still captured.
    framework(&s)
        .given(vec![created(), authorized(None)])
        .when(complete(700))
        .then_expect_events(vec![completion(700, 700)]);
}

#[test]
fn settling_a_completion_captures_once_with_the_deterministic_key() {
    let s = stripe_reading("requires_capture", vec![]);
    settles(&s, capture_pending()).then_expect_events(vec![captured(1234, 1234, "capture")]);
    assert_eq!(
        *s.settled.lock().unwrap(),
        vec![(
            "capture".to_string(),
            1234,
            "roampay:ws-1:ci-1:capture".to_string()
        )]
    );
}

#[test]
fn a_zero_amount_releases_the_hold_instead_of_capturing() {
    let s = stripe_reading("requires_capture", vec![]);
    framework(&s)
        .given(vec![created(), authorized(None), started()])
        .when(complete(0))
        .then_expect_events(vec![completion(0, 0)]);
    settles(
        &s,
        vec![created(), authorized(None), started(), completion(0, 0)],
    )
    .then_expect_events(vec![captured(0, 0, "release")]);
    assert_eq!(s.settled.lock().unwrap()[0].0, "cancel");
    assert_eq!(s.settled.lock().unwrap()[0].2, "roampay:ws-1:ci-1:cancel");
}

#[test]
fn a_double_complete_is_one_capture_and_another_amount_is_refused() {
    let s = stripe(Ok(pi("pi_fake", "requires_capture")));
    let pending = capture_pending();
    framework(&s)
        .given(pending.clone())
        .when(complete(1234))
        .then_expect_events(vec![]);
    framework(&s)
        .given(pending)
        .when(complete(999))
        .then_expect_error(invalid("charging"));
    let done = vec![
        created(),
        authorized(None),
        started(),
        completion(1234, 1234),
        captured(1234, 1234, "capture"),
    ];
    framework(&s)
        .given(done.clone())
        .when(complete(1234))
        .then_expect_events(vec![]);
    framework(&s)
        .given(done.clone())
        .when(complete(1))
        .then_expect_error(invalid("completed"));
    settles(&s, done.clone()).then_expect_events(vec![]);
    framework(&s)
        .given(done)
        .when(cancel(ReleaseReason::Cancelled))
        .then_expect_error(invalid("completed"));
    assert!(s.settled.lock().unwrap().is_empty());
}

#[test]
fn complete_and_cancel_exclude_each_other() {
    let s = stripe(Ok(pi("pi_fake", "requires_capture")));
    framework(&s)
        .given(capture_pending())
        .when(cancel(ReleaseReason::Cancelled))
        .then_expect_error(invalid("charging"));
    framework(&s)
        .given(vec![
            created(),
            authorized(None),
            started(),
            release_requested("cancelled"),
        ])
        .when(complete(1234))
        .then_expect_error(invalid("charging"));
}

#[test]
fn a_cancel_releases_the_hold_and_expiry_only_applies_before_a_session() {
    let s = stripe_reading("requires_capture", vec![]);
    framework(&s)
        .given(vec![created(), authorized(None)])
        .when(cancel(ReleaseReason::Cancelled))
        .then_expect_events(vec![release_requested("cancelled")]);
    settles(
        &s,
        vec![created(), authorized(None), release_requested("cancelled")],
    )
    .then_expect_events(vec![ChargingIntentEvent::HoldReleased(HoldReleased {
        charging_intent_id: "ci-1".into(),
        workspace_id: "ws-1".into(),
        payment_intent_id: Some("pi_fake".into()),
        reason: "cancelled".into(),
        released_at: at(),
    })]);
    framework(&s)
        .given(vec![created()])
        .when(cancel(ReleaseReason::Expired))
        .then_expect_events(vec![release_requested("expired")]);
    framework(&s)
        .given(vec![created(), authorized(None), started()])
        .when(cancel(ReleaseReason::Expired))
        .then_expect_error(invalid("charging"));
    framework(&s)
        .given(vec![
            created(),
            authorized(None),
            release_requested("cancelled"),
        ])
        .when(cancel(ReleaseReason::Cancelled))
        .then_expect_events(vec![]);
}

#[test]
fn a_free_session_completes_and_cancels_without_stripe() {
    let s = stripe(Err(CallError::Unreachable("must not be called".into())));
    let free = ChargingIntentEvent::FreeSessionAuthorized(FreeSessionAuthorized {
        request: request("h1"),
    });
    let mut done = captured(0, 0, "free");
    if let ChargingIntentEvent::WorkspaceSessionPaymentCaptured(e) = &mut done {
        e.payment_intent_id = None;
    }
    framework(&s)
        .given(vec![free.clone(), started()])
        .when(complete(0))
        .then_expect_events(vec![done]);
    framework(&s)
        .given(vec![free])
        .when(cancel(ReleaseReason::Cancelled))
        .then_expect_events(vec![ChargingIntentEvent::HoldReleased(HoldReleased {
            charging_intent_id: "ci-1".into(),
            workspace_id: "ws-1".into(),
            payment_intent_id: None,
            reason: "cancelled".into(),
            released_at: at(),
        })]);
    assert!(s.settled.lock().unwrap().is_empty());
}

#[test]
fn a_capture_without_an_answer_is_deferred_and_retried_with_the_next_key() {
    let pending = capture_pending();
    // A 500, and Stripe still shows the hold: deferred, nothing recorded as captured.
    let s = stripe_reading(
        "requires_capture",
        vec![Err(CallError::Api {
            status: 500,
            code: None,
        })],
    );
    settles(&s, pending.clone()).then_expect_events(vec![deferred(
        "capture",
        0,
        STRIPE_UNAVAILABLE,
    )]);
    // The worker's next try carries the next attempt's key.
    let s = stripe_reading("requires_capture", vec![]);
    let mut after = pending.clone();
    after.push(deferred("capture", 0, STRIPE_UNAVAILABLE));
    settles(&s, after).then_expect_events(vec![captured(1234, 1234, "capture")]);
    assert_eq!(
        s.settled.lock().unwrap()[0].2,
        "roampay:ws-1:ci-1:capture-1"
    );
}

#[test]
fn a_capture_stripe_applied_before_failing_to_answer_is_a_success_not_a_second_capture() {
    let pending = capture_pending();
    // Timed out after Stripe applied it: the PaymentIntent reads `succeeded`.
    let s = stripe(Ok(succeeded(1234)));
    s.settle
        .lock()
        .unwrap()
        .push_back(Err(CallError::Unreachable("timeout".into())));
    settles(&s, pending.clone()).then_expect_events(vec![captured(1234, 1234, "stripe_state")]);
    assert_eq!(s.settled.lock().unwrap().len(), 1);
    // "Already captured" (payment_intent_unexpected_state) is a success too.
    let s = stripe(Ok(succeeded(1234)));
    s.settle.lock().unwrap().push_back(Err(CallError::Api {
        status: 400,
        code: Some("payment_intent_unexpected_state".into()),
    }));
    settles(&s, pending).then_expect_events(vec![captured(1234, 1234, "stripe_state")]);
}

#[test]
fn a_capture_stripe_refuses_ends_capture_failed_with_its_code() {
    let s = stripe_reading(
        "requires_capture",
        vec![Err(CallError::Api {
            status: 400,
            code: Some("charge_expired_for_capture".into()),
        })],
    );
    settles(&s, capture_pending()).then_expect_events(vec![
        ChargingIntentEvent::SessionCaptureFailed(SessionCaptureFailed {
            charging_intent_id: "ci-1".into(),
            workspace_id: "ws-1".into(),
            payment_intent_id: "pi_fake".into(),
            failure_code: "charge_expired_for_capture".into(),
            failed_at: at(),
        }),
    ]);
}

#[test]
fn a_succeeded_webhook_finishes_a_capture_under_way() {
    let s = stripe(Ok(pi("pi_fake", "requires_capture")));
    let mut cmd = observe("succeeded", Some("evt_9"));
    if let ChargingIntentCommand::ProcessStripeAuthorizationWebhook(c) = &mut cmd {
        c.payment_intent.amount_received = 1234;
    }
    framework(&s)
        .given(capture_pending())
        .when(cmd.clone())
        .then_expect_events(vec![captured(1234, 1234, "webhook")]);
    // Without a capture of ours under way, someone captured it in Stripe: recorded as
    // Stripe's amount (see the next specification).
    framework(&s)
        .given(vec![created(), authorized(None), started()])
        .when(cmd)
        .then_expect_events(vec![captured(1234, 1234, "webhook")]);
}

#[test]
fn a_hold_close_to_lapsing_is_flagged_once() {
    let s = stripe(Ok(pi("pi_fake", "requires_capture")));
    let flag = |at: DateTime<Utc>| {
        ChargingIntentCommand::FlagHoldExpiry(FlagHoldExpiry {
            capture_before: at,
            at,
        })
    };
    let flagged = ChargingIntentEvent::HoldExpiryApproaching(HoldExpiryApproaching {
        charging_intent_id: "ci-1".into(),
        workspace_id: "ws-1".into(),
        capture_before: at(),
        flagged_at: at(),
    });
    framework(&s)
        .given(vec![created(), authorized(None), started()])
        .when(flag(at()))
        .then_expect_events(vec![flagged.clone()]);
    framework(&s)
        .given(vec![created(), authorized(None), started(), flagged])
        .when(flag(at()))
        .then_expect_events(vec![]);
}

#[test]
fn a_capture_made_outside_roampay_completes_the_intent_with_stripes_amount() {
    let s = stripe(Ok(pi("pi_fake", "requires_capture")));
    let ChargingIntentCommand::ProcessStripeAuthorizationWebhook(mut cmd) =
        observe("succeeded", None)
    else {
        unreachable!()
    };
    cmd.payment_intent.amount_received = 3100;
    cmd.source = "reconcile";
    framework(&s)
        .given(vec![created(), authorized(None), started()])
        .when(ChargingIntentCommand::ProcessStripeAuthorizationWebhook(
            cmd.clone(),
        ))
        .then_expect_events(vec![ChargingIntentEvent::WorkspaceSessionPaymentCaptured(
            WorkspaceSessionPaymentCaptured {
                charging_intent_id: "ci-1".into(),
                workspace_id: "ws-1".into(),
                ocpi_session_id: Some("S-1".into()),
                payment_intent_id: Some("pi_fake".into()),
                final_amount_cents: 3100,
                captured_amount_cents: 3100,
                source: "reconcile".into(),
                captured_at: at(),
            },
        )]);
    // Already completed: nothing more to record.
    framework(&s)
        .given(vec![
            created(),
            authorized(None),
            started(),
            ChargingIntentEvent::WorkspaceSessionPaymentCaptured(WorkspaceSessionPaymentCaptured {
                charging_intent_id: "ci-1".into(),
                workspace_id: "ws-1".into(),
                ocpi_session_id: Some("S-1".into()),
                payment_intent_id: Some("pi_fake".into()),
                final_amount_cents: 3100,
                captured_amount_cents: 3100,
                source: "reconcile".into(),
                captured_at: at(),
            }),
        ])
        .when(ChargingIntentCommand::ProcessStripeAuthorizationWebhook(
            cmd,
        ))
        .then_expect_error(ChargingIntentError::NoChange);
}

/// How a decline ended an intent before contract v2 (such events are stored forever).
fn declined() -> ChargingIntentEvent {
    ChargingIntentEvent::WorkspacePaymentIntentFailed(WorkspacePaymentIntentFailed {
        charging_intent_id: "ci-1".into(),
        workspace_id: "ws-1".into(),
        payment_intent_id: "pi_fake".into(),
        stripe_event_id: Some("evt_f".into()),
        source: "webhook".into(),
        status: "failed".into(),
        failure_code: "card_declined".into(),
        received_at: at(),
    })
}

/// What the payments service does when Stripe reports a PaymentIntent in `status` on
/// the intent `given` leaves: cancel it on the fake when it is a stray hold, and record.
fn release_stray_via(
    s: &StripeScript,
    given: &[ChargingIntentEvent],
    status: &str,
) -> ChargingIntentCommand {
    let mut state = ChargingIntent::default();
    for e in given {
        state.apply(e.clone());
    }
    let mut p = pi("pi_fake", status);
    p.amount_capturable = 5000;
    let canceled = match state.stray_hold_key(&p) {
        None => false,
        Some(key) => match s.cancel(&p.id, &key) {
            Ok(after) => after.status == PaymentIntentStatus::Canceled,
            Err(_) => s
                .retrieve()
                .is_ok_and(|after| after.status == PaymentIntentStatus::Canceled),
        },
    };
    ChargingIntentCommand::ReleaseStrayHold(ReleaseStrayHold {
        payment_intent: p,
        canceled,
        at: at(),
    })
}

/// `given`, then a stray hold in `status` reported and handled.
fn strays(
    s: &Arc<StripeScript>,
    given: Vec<ChargingIntentEvent>,
    status: &str,
) -> cqrs_es::test::AggregateResultValidator<ChargingIntent> {
    let cmd = release_stray_via(s, &given, status);
    framework(s).given(given).when(cmd)
}

#[test]
fn a_hold_found_after_the_intent_failed_is_cancelled_once() {
    let s = stripe(Ok(pi("pi_fake", "requires_capture")));
    let released = ChargingIntentEvent::StrayHoldReleased(StrayHoldReleased {
        charging_intent_id: "ci-1".into(),
        workspace_id: "ws-1".into(),
        payment_intent_id: "pi_fake".into(),
        amount_cents: 5000,
        released_at: at(),
    });
    strays(&s, vec![created(), declined()], "requires_capture")
        .then_expect_events(vec![released.clone()]);
    assert_eq!(
        s.settled
            .lock()
            .unwrap()
            .last()
            .map(|c| (c.0.clone(), c.2.clone())),
        Some(("cancel".into(), "roampay:ws-1:ci-1:cancel-stray".into())),
        "cancelled in Stripe with its own idempotency key"
    );
    // Once only; and never for an intent still open, nor for a PaymentIntent without a hold.
    strays(
        &s,
        vec![created(), declined(), released],
        "requires_capture",
    )
    .then_expect_events(vec![]);
    strays(&s, vec![created(), authorized(None)], "requires_capture").then_expect_events(vec![]);
    strays(&s, vec![created(), declined()], "requires_payment_method").then_expect_events(vec![]);
}

#[test]
fn a_stray_hold_stripe_does_not_cancel_is_refused_for_a_later_retry() {
    let s = stripe_reading(
        "requires_capture",
        vec![Err(CallError::Unreachable("timeout".into()))],
    );
    strays(&s, vec![created(), declined()], "requires_capture")
        .then_expect_error(ChargingIntentError::StripeUnavailable);
}

// ---- Refunds and disputes ----

/// Completed with 1234 captured.
fn completed_1234() -> Vec<ChargingIntentEvent> {
    let mut history = capture_pending();
    history.push(captured(1234, 1234, "capture"));
    history
}

fn ask_refund(key: &str, amount: Option<i64>) -> ChargingIntentCommand {
    ChargingIntentCommand::RequestRefund(RequestRefund {
        refund_key: key.into(),
        amount_cents: amount,
        reason: Some("requested_by_customer".into()),
        at: at(),
    })
}

fn refund_requested(key: &str, amount: i64) -> ChargingIntentEvent {
    ChargingIntentEvent::RefundRequested(RefundRequested {
        charging_intent_id: "ci-1".into(),
        workspace_id: "ws-1".into(),
        payment_intent_id: "pi_fake".into(),
        refund_key: key.into(),
        amount_cents: amount,
        reason: Some("requested_by_customer".into()),
        requested_at: at(),
    })
}

fn refund_succeeded(key: &str, id: &str, amount: i64, source: &str) -> ChargingIntentEvent {
    ChargingIntentEvent::RefundSucceeded(RefundSucceeded {
        charging_intent_id: "ci-1".into(),
        workspace_id: "ws-1".into(),
        refund_key: key.into(),
        refund_id: id.into(),
        amount_cents: amount,
        source: source.into(),
        succeeded_at: at(),
        stripe_event_id: None,
    })
}

fn stripe_refund(id: &str, amount: i64, status: &str) -> RefundView {
    RefundView {
        id: id.into(),
        payment_intent_id: Some("pi_fake".into()),
        amount,
        status: status.into(),
        failure_reason: None,
    }
}

#[test]
fn a_refund_within_the_capture_is_requested_and_the_rest_is_enforced() {
    let s = stripe(Ok(pi("pi_fake", "succeeded")));
    framework(&s)
        .given(completed_1234())
        .when(ask_refund("key-a", Some(234)))
        .then_expect_events(vec![refund_requested("key-a", 234)]);
    let mut history = completed_1234();
    history.push(refund_requested("key-a", 1000));
    framework(&s)
        .given(history.clone())
        .when(ask_refund("key-b", Some(235)))
        .then_expect_error(ChargingIntentError::RefundExceedsCaptured { refundable: 234 });
    framework(&s)
        .given(history.clone())
        .when(ask_refund("key-b", None))
        .then_expect_events(vec![refund_requested("key-b", 234)]);
    // The same key again is the same refund; with another amount it is refused.
    framework(&s)
        .given(history.clone())
        .when(ask_refund("key-a", Some(1000)))
        .then_expect_events(vec![]);
    framework(&s)
        .given(history)
        .when(ask_refund("key-a", Some(999)))
        .then_expect_error(ChargingIntentError::IdempotencyKeyReused);
}

#[test]
fn only_a_completed_intent_with_a_capture_can_be_refunded() {
    let s = stripe(Ok(pi("pi_fake", "succeeded")));
    framework(&s)
        .given(vec![created(), authorized(None)])
        .when(ask_refund("key-a", None))
        .then_expect_error(invalid("authorized"));
    let mut zero = capture_pending();
    zero.push(captured(0, 0, "release"));
    framework(&s)
        .given(zero)
        .when(ask_refund("key-a", None))
        .then_expect_error(invalid("completed"));
}

/// What the refunds service does for the refund `refund_key` of the intent `given`
/// leaves: the refund call the intent plans, made on the fake, and its answer recorded.
/// (Answered already: an answer to a call it never made.)
fn refund_via(
    s: &StripeScript,
    given: &[ChargingIntentEvent],
    refund_key: &str,
) -> ChargingIntentCommand {
    let mut state = ChargingIntent::default();
    for e in given {
        state.apply(e.clone());
    }
    let answer = match state.refund_call(refund_key) {
        Some(call) => s.refund(&call),
        None => Err(CallError::Unreachable("never asked".into())),
    };
    ChargingIntentCommand::ExecuteRefund(ExecuteRefund {
        refund_key: refund_key.into(),
        answer,
        at: at(),
    })
}

#[test]
fn a_requested_refund_is_carried_out_once_with_a_deterministic_key() {
    let s = stripe(Ok(pi("pi_fake", "succeeded")));
    let mut history = completed_1234();
    history.push(refund_requested("key-a", 234));
    framework(&s)
        .given(history.clone())
        .when(refund_via(&s, &history, "key-a"))
        .then_expect_events(vec![refund_succeeded("key-a", "re_fake1", 234, "api")]);
    let asked = s.refunds.lock().unwrap()[0].clone();
    assert_eq!(
        (asked.amount_cents, asked.reason.as_deref()),
        (234, Some("requested_by_customer"))
    );
    assert!(asked
        .idempotency_key
        .starts_with("roampay:ws-1:ci-1:refund-"));
    history.push(refund_succeeded("key-a", "re_fake1", 234, "api"));
    let again = refund_via(&s, &history, "key-a");
    assert_eq!(s.refunds.lock().unwrap().len(), 1, "not asked again");
    framework(&s)
        .given(history)
        .when(again)
        .then_expect_events(vec![]);
}

#[test]
fn a_refund_stripe_does_not_answer_stays_requested_and_a_refusal_fails_it() {
    let mut history = completed_1234();
    history.push(refund_requested("key-a", 234));
    let s = stripe(Ok(pi("pi_fake", "succeeded")));
    *s.refund_answer.lock().unwrap() = Some(Err(CallError::Unreachable("timeout".into())));
    framework(&s)
        .given(history.clone())
        .when(refund_via(&s, &history, "key-a"))
        .then_expect_error(ChargingIntentError::StripeUnavailable);
    *s.refund_answer.lock().unwrap() = Some(Err(CallError::Api {
        status: 400,
        code: Some("charge_disputed".into()),
    }));
    let execute = refund_via(&s, &history, "key-a");
    let events = framework(&s)
        .given(history)
        .when(execute)
        .inspect_result()
        .unwrap();
    assert!(
        matches!(&events[..], [ChargingIntentEvent::RefundFailed(e)] if e.failure_code == "charge_disputed")
    );
}

#[test]
fn a_refund_made_in_the_dashboard_is_recorded_once() {
    let s = stripe(Ok(pi("pi_fake", "succeeded")));
    let record = |status: &str| {
        ChargingIntentCommand::RecordRefund(RecordRefund {
            refund: stripe_refund("re_dash", 300, status),
            source: "webhook",
            stripe_event_id: None,
            at: at(),
        })
    };
    framework(&s)
        .given(completed_1234())
        .when(record("succeeded"))
        .then_expect_events(vec![refund_succeeded(
            "stripe:re_dash",
            "re_dash",
            300,
            "webhook",
        )]);
    let mut history = completed_1234();
    history.push(refund_succeeded(
        "stripe:re_dash",
        "re_dash",
        300,
        "webhook",
    ));
    framework(&s)
        .given(history)
        .when(record("succeeded"))
        .then_expect_error(ChargingIntentError::NoChange);
    let mut other = stripe_refund("re_dash", 300, "succeeded");
    other.payment_intent_id = Some("pi_other".into());
    framework(&s)
        .given(completed_1234())
        .when(ChargingIntentCommand::RecordRefund(RecordRefund {
            refund: other,
            source: "webhook",
            stripe_event_id: None,
            at: at(),
        }))
        .then_expect_error(ChargingIntentError::OwnershipMismatch);
}

#[test]
fn a_dispute_opens_moves_and_closes() {
    let s = stripe(Ok(pi("pi_fake", "succeeded")));
    let dispute = |status: &str| {
        ChargingIntentCommand::RecordDispute(RecordDispute {
            dispute: DisputeView {
                id: "dp_1".into(),
                payment_intent_id: Some("pi_fake".into()),
                amount: 1234,
                reason: "fraudulent".into(),
                status: status.into(),
            },
            stripe_event_id: None,
            at: at(),
        })
    };
    let opened = ChargingIntentEvent::DisputeOpened(DisputeChanged {
        charging_intent_id: "ci-1".into(),
        workspace_id: "ws-1".into(),
        dispute_id: "dp_1".into(),
        amount_cents: 1234,
        reason: "fraudulent".into(),
        status: "needs_response".into(),
        at: at(),
        stripe_event_id: None,
    });
    framework(&s)
        .given(completed_1234())
        .when(dispute("needs_response"))
        .then_expect_events(vec![opened.clone()]);
    let mut history = completed_1234();
    history.push(opened);
    framework(&s)
        .given(history.clone())
        .when(dispute("needs_response"))
        .then_expect_error(ChargingIntentError::NoChange);
    let events = framework(&s)
        .given(history)
        .when(dispute("lost"))
        .inspect_result()
        .unwrap();
    assert!(matches!(&events[..], [ChargingIntentEvent::DisputeClosed(e)] if e.status == "lost"));
}

#[test]
fn a_pre_authorization_never_paid_expires_also_after_declines() {
    let s = stripe_reading("requires_payment_method", vec![]);
    framework(&s)
        .given(vec![created(), attempt_failed(Some("evt_f"), "webhook")])
        .when(cancel(ReleaseReason::Expired))
        .then_expect_events(vec![release_requested("expired")]);
}

#[test]
fn stripes_hold_deadline_is_read_once_and_the_lapse_flagged_once() {
    let s = stripe(Ok(pi("pi_fake", "requires_capture")));
    let deadline = at() + chrono::Duration::hours(2);
    let mut fresh = pi("pi_fake", "requires_capture");
    fresh.capture_before = Some(deadline);
    let read = ChargingIntentCommand::ReadHoldDeadline(ReadHoldDeadline {
        payment_intent: fresh,
        at: at(),
    });
    let learnt = ChargingIntentEvent::HoldDeadlineRead(HoldDeadlineRead {
        charging_intent_id: "ci-1".into(),
        workspace_id: "ws-1".into(),
        payment_intent_id: "pi_fake".into(),
        capture_before: Some(deadline),
        read_at: at(),
    });
    framework(&s)
        .given(vec![created(), authorized(None)])
        .when(read.clone())
        .then_expect_events(vec![learnt.clone()]);
    framework(&s)
        .given(vec![created(), authorized(None), learnt.clone()])
        .when(read)
        .then_expect_events(vec![]);
    let mut intent = ChargingIntent::default();
    for e in [created(), authorized(None), learnt.clone()] {
        intent.apply(e);
    }
    assert_eq!(intent.capture_before, Some(deadline));
    // Knowing the deadline is not flagging it: the flag is recorded once.
    let flag = ChargingIntentCommand::FlagHoldExpiry(FlagHoldExpiry {
        capture_before: deadline,
        at: at(),
    });
    let flagged = ChargingIntentEvent::HoldExpiryApproaching(HoldExpiryApproaching {
        charging_intent_id: "ci-1".into(),
        workspace_id: "ws-1".into(),
        capture_before: deadline,
        flagged_at: at(),
    });
    framework(&s)
        .given(vec![created(), authorized(None), learnt.clone()])
        .when(flag.clone())
        .then_expect_events(vec![flagged.clone()]);
    framework(&s)
        .given(vec![created(), authorized(None), learnt, flagged])
        .when(flag)
        .then_expect_events(vec![]);
}

#[test]
fn a_failed_payment_intent_leaves_nothing_to_settle_as_the_read_model_says() {
    let mut state = ChargingIntent::default();
    for e in [created(), authorized(None), release_requested("cancelled")] {
        state.apply(e);
    }
    assert!(state.settle_call().is_some(), "a release is pending");
    state.apply(declined());
    assert_eq!(state.settle_call(), None);
    assert_eq!(state.status, IntentStatus::Failed);
}

#[test]
fn capture_or_cancel_is_one_rule() {
    assert_eq!(roampay_events::settlement_step(1), "capture");
    assert_eq!(roampay_events::settlement_step(0), "cancel");
    let mut state = ChargingIntent::default();
    for e in capture_pending() {
        state.apply(e);
    }
    let call = state.settle_call().unwrap();
    assert_eq!(call.capture.map(|c| c.amount_cents), Some(1234));
}
