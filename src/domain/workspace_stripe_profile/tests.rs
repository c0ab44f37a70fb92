//! Given/when/then specifications of `WorkspaceStripeProfile`. The vault and Stripe
//! are in-memory fakes here; the API tests use the real vault and a fake Stripe server.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use roampay_events::*;

use super::credentials::{PublishableKey, StripeSecretKey, WebhookSigningSecret};
use super::*;
use crate::domain::money::{Currency, PreAuthAmount};
use crate::infra::stripe::CredentialCheck;

use crate::testing::{fingerprint as fp, FakeVault, StripeScript};

const PK: &str = "pk_test_51HxPublishable";
const SK: &str = "sk_test_51HxSecretKeyAAAA";
const RK: &str = "rk_test_51HxRestrictedBBBB";
const WH: &str = "whsec_SigningSecretCCCC";
const WH2: &str = "whsec_SigningSecretDDDD";

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 5, 0, 0).unwrap()
}

/// The vault and Stripe as the credentials service uses them around the aggregate.
struct Fakes {
    vault: Arc<FakeVault>,
    stripe: Arc<StripeScript>,
}

fn fakes(check: CredentialCheck) -> Fakes {
    let vault = Arc::new(FakeVault::default());
    // The fakes' vault already holds the key the `given` events refer to.
    vault
        .stored
        .lock()
        .unwrap()
        .insert(("ws-1".into(), "secret_key", 1), SK.into());
    vault
        .stored
        .lock()
        .unwrap()
        .insert(("ws-1".into(), "secret_key", 2), RK.into());
    Fakes {
        vault,
        stripe: Arc::new(StripeScript::new(check)),
    }
}

fn valid() -> CredentialCheck {
    CredentialCheck::Valid {
        account_id: Some("acct_1".into()),
    }
}

impl Fakes {
    /// What the credentials service does before it sends `cmd` to the profile `given`
    /// leaves: a save gets its fingerprints and its new secrets stored under the
    /// planned version; a validation gets the set it targets checked with Stripe.
    fn prepare(
        &self,
        given: &[WorkspaceStripeProfileEvent],
        cmd: WorkspaceStripeProfileCommand,
    ) -> WorkspaceStripeProfileCommand {
        use crate::infra::vault::{SecretField, SecretVault};
        use cqrs_es::Aggregate;
        use futures::executor::block_on;
        let mut state = WorkspaceStripeProfile::default();
        for e in given {
            state.apply(e.clone());
        }
        match cmd {
            WorkspaceStripeProfileCommand::SaveWorkspaceStripeCredentials(mut c) => {
                let ws = c.workspace_id.clone();
                if let Some(sk) = &c.secret_key {
                    let fp = self
                        .vault
                        .fingerprint(&ws, SecretField::SecretKey, sk.secret());
                    c.fingerprints.secret_key = Some(block_on(fp).unwrap());
                }
                if let Some(wh) = &c.webhook_signing_secret {
                    let field = SecretField::WebhookSigningSecret;
                    let fp = self.vault.fingerprint(&ws, field, wh.secret());
                    c.fingerprints.webhook_signing_secret = Some(block_on(fp).unwrap());
                }
                if let Ok(Some(plan)) = state.save_plan(&c) {
                    for (field, fp) in &plan.store {
                        let secret = match field {
                            SecretField::SecretKey => c.secret_key.as_ref().unwrap().secret(),
                            SecretField::WebhookSigningSecret => {
                                c.webhook_signing_secret.as_ref().unwrap().secret()
                            }
                            other => panic!("a credential set plans no {other:?}"),
                        };
                        let put = self.vault.put(&ws, *field, plan.version, fp, secret);
                        block_on(put).unwrap();
                    }
                    c.stored_as = plan.version;
                }
                WorkspaceStripeProfileCommand::SaveWorkspaceStripeCredentials(c)
            }
            WorkspaceStripeProfileCommand::ValidateWorkspaceStripeCredentials(mut c) => {
                if let Ok(Some(target)) = state.validation_target(c.scope) {
                    // The key the check would use is in the vault, under its version.
                    block_on(self.vault.get(
                        &c.workspace_id,
                        SecretField::SecretKey,
                        target.secret_key_version,
                        &target.secret_key.fingerprint,
                    ))
                    .unwrap();
                    let check = self.stripe.check();
                    c.checked = Some((target, check));
                }
                WorkspaceStripeProfileCommand::ValidateWorkspaceStripeCredentials(c)
            }
            other => other,
        }
    }
}

/// `given`, then `cmd` as the credentials service sends it (Stripe answering `check`).
fn run_checking(
    check: CredentialCheck,
    given: Vec<WorkspaceStripeProfileEvent>,
    cmd: WorkspaceStripeProfileCommand,
) -> cqrs_es::test::AggregateResultValidator<WorkspaceStripeProfile> {
    let cmd = fakes(check).prepare(&given, cmd);
    TestFramework::<WorkspaceStripeProfile>::with(())
        .given(given)
        .when(cmd)
}

/// [`run_checking`] with Stripe finding the set valid.
fn run(
    given: Vec<WorkspaceStripeProfileEvent>,
    cmd: WorkspaceStripeProfileCommand,
) -> cqrs_es::test::AggregateResultValidator<WorkspaceStripeProfile> {
    run_checking(valid(), given, cmd)
}

fn save(pk: Option<&str>, sk: Option<&str>, wh: Option<&str>) -> WorkspaceStripeProfileCommand {
    WorkspaceStripeProfileCommand::SaveWorkspaceStripeCredentials(SaveWorkspaceStripeCredentials {
        workspace_id: "ws-1".into(),
        publishable_key: pk.map(|k| PublishableKey::parse(k).unwrap()),
        secret_key: sk.map(|k| StripeSecretKey::parse(k.to_string()).unwrap()),
        webhook_signing_secret: wh.map(|k| WebhookSigningSecret::parse(k.to_string()).unwrap()),
        fingerprints: Default::default(),
        stored_as: 0,
        actor: "alice".into(),
        at: at(),
    })
}

fn validate(scope: ValidationScope) -> WorkspaceStripeProfileCommand {
    WorkspaceStripeProfileCommand::ValidateWorkspaceStripeCredentials(
        ValidateWorkspaceStripeCredentials {
            workspace_id: "ws-1".into(),
            scope,
            checked: None,
            at: at(),
        },
    )
}

fn remove() -> WorkspaceStripeProfileCommand {
    WorkspaceStripeProfileCommand::RemoveWorkspaceStripeCredentials(
        RemoveWorkspaceStripeCredentials {
            workspace_id: "ws-1".into(),
            actor: "alice".into(),
            at: at(),
        },
    )
}

fn sref(secret: &str) -> SecretRef {
    SecretRef {
        fingerprint: fp(secret),
        last4: secret[secret.len() - 4..].to_string(),
    }
}

fn saved_v1() -> WorkspaceStripeProfileEvent {
    WorkspaceStripeProfileEvent::WorkspaceStripeCredentialsUpdated(
        WorkspaceStripeCredentialsUpdated {
            workspace_id: "ws-1".into(),
            credential_version: 1,
            mode: StripeMode::Test,
            publishable_key: Some(PK.into()),
            secret_key: Some(sref(SK)),
            secret_key_kind: Some(SecretKeyKind::Secret),
            webhook_signing_secret: Some(sref(WH)),
            updated_by: "alice".into(),
            updated_at: at(),
        },
    )
}

fn validated(version: u32) -> WorkspaceStripeProfileEvent {
    WorkspaceStripeProfileEvent::WorkspaceStripeCredentialsValidated(
        WorkspaceStripeCredentialsValidated {
            workspace_id: "ws-1".into(),
            credential_version: version,
            mode: StripeMode::Test,
            account_id: Some("acct_1".into()),
            validated_at: at(),
        },
    )
}

fn failed(code: &str) -> WorkspaceStripeProfileEvent {
    WorkspaceStripeProfileEvent::WorkspaceStripeCredentialsValidationFailed(
        WorkspaceStripeCredentialsValidationFailed {
            workspace_id: "ws-1".into(),
            credential_version: 1,
            failure_code: code.into(),
            failure_message: format!("{code} message"),
            validated_at: at(),
        },
    )
}

fn fold(events: Vec<WorkspaceStripeProfileEvent>) -> WorkspaceStripeProfile {
    let mut p = WorkspaceStripeProfile::default();
    for e in events {
        cqrs_es::Aggregate::apply(&mut p, e);
    }
    p
}

#[test]
fn a_first_save_with_all_three_values_records_version_one() {
    run(vec![], save(Some(PK), Some(SK), Some(WH))).then_expect_events(vec![saved_v1()]);
}

#[test]
fn a_first_save_without_all_three_values_is_refused() {
    for cmd in [
        save(Some(PK), Some(SK), None),
        save(Some(PK), None, Some(WH)),
        save(None, Some(SK), Some(WH)),
    ] {
        run(vec![], cmd).then_expect_error(WorkspaceStripeProfileError::IncompleteCredentials);
    }
}

#[test]
fn test_and_live_keys_mixed_in_one_set_are_refused() {
    run(
        vec![],
        save(Some("pk_live_51HxPublishable"), Some(SK), Some(WH)),
    )
    .then_expect_error(WorkspaceStripeProfileError::CredentialModeMismatch {
        publishable: "live",
        secret: "test",
    });
}

#[test]
fn rotating_to_a_key_of_the_other_mode_is_refused() {
    run(
        vec![saved_v1()],
        save(None, Some("sk_live_51HxSecretKeyLIVE"), None),
    )
    .then_expect_error(WorkspaceStripeProfileError::CredentialModeMismatch {
        publishable: "test",
        secret: "live",
    });
}

#[test]
fn a_new_key_for_a_set_that_serves_nothing_applies_at_once() {
    run(
        vec![saved_v1(), failed("authentication_failed")],
        save(None, Some(RK), None),
    )
    .then_expect_events(vec![
        WorkspaceStripeProfileEvent::WorkspaceStripeCredentialsUpdated(
            WorkspaceStripeCredentialsUpdated {
                workspace_id: "ws-1".into(),
                credential_version: 2,
                mode: StripeMode::Test,
                publishable_key: None,
                secret_key: Some(sref(RK)),
                secret_key_kind: Some(SecretKeyKind::Restricted),
                webhook_signing_secret: None,
                updated_by: "alice".into(),
                updated_at: at(),
            },
        ),
    ]);
}

#[test]
fn the_webhook_signing_secret_alone_can_be_rotated() {
    let events = run(vec![saved_v1()], save(None, None, Some(WH2)))
        .inspect_result()
        .unwrap();
    let [WorkspaceStripeProfileEvent::WorkspaceStripeCredentialsUpdated(e)] = events.as_slice()
    else {
        panic!("expected one update, got {events:?}")
    };
    assert_eq!(
        (
            e.credential_version,
            e.secret_key.is_none(),
            e.publishable_key.is_none()
        ),
        (2, true, true)
    );
    assert_eq!(e.webhook_signing_secret, Some(sref(WH2)));
}

#[test]
fn saving_the_same_values_again_changes_nothing() {
    run(vec![saved_v1()], save(Some(PK), Some(SK), Some(WH))).then_expect_events(vec![]);
}

#[test]
fn removal_records_a_new_version_and_a_second_removal_is_a_no_op() {
    run(vec![saved_v1()], remove()).then_expect_events(vec![
        WorkspaceStripeProfileEvent::WorkspaceStripeCredentialsRemoved(
            WorkspaceStripeCredentialsRemoved {
                workspace_id: "ws-1".into(),
                credential_version: 2,
                removed_by: "alice".into(),
                removed_at: at(),
            },
        ),
    ]);
    run(vec![], remove()).then_expect_events(vec![]);
}

#[test]
fn after_removal_a_save_must_carry_a_whole_set_again() {
    let removed = WorkspaceStripeProfileEvent::WorkspaceStripeCredentialsRemoved(
        WorkspaceStripeCredentialsRemoved {
            workspace_id: "ws-1".into(),
            credential_version: 2,
            removed_by: "alice".into(),
            removed_at: at(),
        },
    );
    run(
        vec![saved_v1(), removed.clone()],
        save(None, Some(RK), None),
    )
    .then_expect_error(WorkspaceStripeProfileError::IncompleteCredentials);
    let events = run(
        vec![saved_v1(), removed],
        save(Some(PK), Some(SK), Some(WH)),
    )
    .inspect_result()
    .unwrap();
    assert!(
        matches!(&events[..], [WorkspaceStripeProfileEvent::WorkspaceStripeCredentialsUpdated(e)] if e.credential_version == 3)
    );
}

#[test]
fn a_successful_round_trip_marks_the_set_valid() {
    let result = run(vec![saved_v1()], validate(ValidationScope::Always));
    result.then_expect_events(vec![validated(1)]);
}

#[test]
fn each_stripe_refusal_is_recorded_with_its_failure_code() {
    for code in [
        "authentication_failed",
        "permission_denied",
        "livemode_mismatch",
        "stripe_unreachable",
    ] {
        let check = CredentialCheck::Failed {
            code,
            message: format!("{code} message"),
        };
        run_checking(check, vec![saved_v1()], validate(ValidationScope::Always))
            .then_expect_events(vec![failed(code)]);
    }
}

#[test]
fn refusals_make_the_set_invalid_but_unreachable_stripe_leaves_it_pending() {
    assert_eq!(
        fold(vec![saved_v1(), failed("permission_denied")]).health_status(),
        HealthStatus::Invalid
    );
    assert_eq!(
        fold(vec![saved_v1(), failed("stripe_unreachable")]).health_status(),
        HealthStatus::Pending
    );
    assert_eq!(
        fold(vec![saved_v1(), validated(1)]).health_status(),
        HealthStatus::Valid
    );
    assert_eq!(
        fold(vec![saved_v1(), validated(1), remove_event()]).health_status(),
        HealthStatus::Unconfigured
    );
}

fn remove_event() -> WorkspaceStripeProfileEvent {
    WorkspaceStripeProfileEvent::WorkspaceStripeCredentialsRemoved(
        WorkspaceStripeCredentialsRemoved {
            workspace_id: "ws-1".into(),
            credential_version: 2,
            removed_by: "alice".into(),
            removed_at: at(),
        },
    )
}

#[test]
fn a_still_unreachable_stripe_records_nothing_new() {
    let check = CredentialCheck::Failed {
        code: "stripe_unreachable",
        message: "down".into(),
    };
    run_checking(
        check,
        vec![saved_v1(), failed("stripe_unreachable")],
        validate(ValidationScope::OnlyPending),
    )
    .then_expect_events(vec![]);
}

#[test]
fn background_validation_leaves_a_set_that_is_no_longer_pending_alone() {
    run(
        vec![saved_v1(), validated(1)],
        validate(ValidationScope::OnlyPending),
    )
    .then_expect_events(vec![]);
    run(vec![], validate(ValidationScope::OnlyPending)).then_expect_events(vec![]);
}

#[test]
fn saving_the_same_values_re_checks_an_invalid_set_but_not_a_valid_one() {
    run(
        vec![saved_v1(), failed("permission_denied")],
        validate(ValidationScope::UnlessValid),
    )
    .then_expect_events(vec![validated(1)]);
    run(
        vec![saved_v1(), validated(1)],
        validate(ValidationScope::UnlessValid),
    )
    .then_expect_events(vec![]);
}

#[test]
fn validating_without_credentials_is_refused() {
    run(vec![], validate(ValidationScope::Always))
        .then_expect_error(WorkspaceStripeProfileError::CredentialsNotConfigured);
}

#[test]
fn a_validation_result_for_an_older_version_does_not_apply() {
    let rotated = save_event_v2_secret();
    let p = fold(vec![saved_v1(), rotated, validated(1)]);
    assert_eq!(p.health_status(), HealthStatus::Pending);
}

fn save_event_v2_secret() -> WorkspaceStripeProfileEvent {
    WorkspaceStripeProfileEvent::WorkspaceStripeCredentialsUpdated(
        WorkspaceStripeCredentialsUpdated {
            workspace_id: "ws-1".into(),
            credential_version: 2,
            mode: StripeMode::Test,
            publishable_key: None,
            secret_key: Some(sref(RK)),
            secret_key_kind: Some(SecretKeyKind::Restricted),
            webhook_signing_secret: Some(sref(WH2)),
            updated_by: "alice".into(),
            updated_at: at(),
        },
    )
}

#[test]
fn a_replaced_webhook_secret_verifies_only_for_the_overlap_window() {
    let p = fold(vec![saved_v1(), save_event_v2_secret()]);
    let c = p.credentials.as_ref().unwrap();
    let overlap = Duration::hours(24);
    let within: Vec<_> = c
        .active_webhook_secrets(at() + Duration::hours(23), overlap)
        .iter()
        .map(|s| s.version)
        .collect();
    assert_eq!(within, vec![1, 2]);
    let after: Vec<_> = c
        .active_webhook_secrets(at() + Duration::hours(25), overlap)
        .iter()
        .map(|s| s.version)
        .collect();
    assert_eq!(after, vec![2]);
}

#[test]
fn intents_keep_the_secret_key_of_the_version_they_were_created_under() {
    let p = fold(vec![saved_v1(), save_event_v2_secret(), remove_event()]);
    assert_eq!(p.secret_key_for(1).unwrap().secret, sref(SK));
    assert_eq!(p.secret_key_for(2).unwrap().secret, sref(RK));
    assert!(p.credentials.is_none(), "removed");
}

#[test]
fn settings_changes_record_only_what_changed() {
    let cmd = WorkspaceStripeProfileCommand::UpdateWorkspaceOcpiConfig(UpdateWorkspaceOcpiConfig {
        workspace_id: "ws-1".into(),
        allow_guest_access: Some(true),
        allow_user_registration: Some(false), // already false
        pre_auth_cents: PreAuthAmount::parse(7500),
        currency: Currency::parse("aud"), // already aud
        application_fee_bps: None,
        actor: "alice".into(),
        at: at(),
    });
    let updated =
        WorkspaceStripeProfileEvent::WorkspaceOcpiConfigUpdated(WorkspaceOcpiConfigUpdated {
            workspace_id: "ws-1".into(),
            allow_guest_access: Some(true),
            allow_user_registration: None,
            pre_auth_cents: Some(7500),
            currency: None,
            application_fee_bps: None,
            updated_by: "alice".into(),
            updated_at: at(),
        });
    run(vec![], cmd.clone()).then_expect_events(vec![updated.clone()]);
    let applied = fold(vec![updated]);
    assert_eq!(applied.settings.pre_auth_cents.cents(), 7500);
    assert!(applied.settings.allow_guest_access);
}

// --- Candidates, revocation, webhook health (v2) ---------------------------------

fn candidate_v2_rk() -> WorkspaceStripeProfileEvent {
    WorkspaceStripeProfileEvent::WorkspaceStripeCandidateSaved(WorkspaceStripeCandidateSaved {
        workspace_id: "ws-1".into(),
        credential_version: 2,
        mode: StripeMode::Test,
        publishable_key: PK.into(),
        secret_key: sref(RK),
        secret_key_kind: SecretKeyKind::Restricted,
        secret_key_version: 2,
        updated_by: "alice".into(),
        updated_at: at(),
    })
}

fn promoted(candidate: u32, version: u32) -> WorkspaceStripeProfileEvent {
    WorkspaceStripeProfileEvent::WorkspaceStripeCandidatePromoted(
        WorkspaceStripeCandidatePromoted {
            workspace_id: "ws-1".into(),
            candidate_version: candidate,
            credential_version: version,
            account_id: Some("acct_1".into()),
            promoted_at: at(),
        },
    )
}

fn revoke(version: u32, status: u16) -> WorkspaceStripeProfileCommand {
    WorkspaceStripeProfileCommand::RevokeWorkspaceStripeCredentials(
        RevokeWorkspaceStripeCredentials {
            workspace_id: "ws-1".into(),
            credential_version: version,
            http_status: status,
            stripe_operation: "POST /v1/payment_intents".into(),
            at: at(),
        },
    )
}

fn revoked(version: u32, code: &str, message: &str) -> WorkspaceStripeProfileEvent {
    WorkspaceStripeProfileEvent::WorkspaceStripeCredentialsRevoked(
        WorkspaceStripeCredentialsRevoked {
            workspace_id: "ws-1".into(),
            credential_version: version,
            failure_code: code.into(),
            failure_message: message.into(),
            stripe_operation: "POST /v1/payment_intents".into(),
            revoked_at: at(),
        },
    )
}

#[test]
fn a_new_key_for_a_valid_set_is_a_candidate_and_the_active_set_keeps_serving() {
    run(vec![saved_v1(), validated(1)], save(None, Some(RK), None))
        .then_expect_events(vec![candidate_v2_rk()]);
    let p = fold(vec![saved_v1(), validated(1), candidate_v2_rk()]);
    let active = p.serving().expect("the active set still serves");
    assert_eq!((active.version, &active.secret_key.secret), (1, &sref(SK)));
    assert_eq!(p.active_version(), 1);
    let c = p.candidate.as_ref().unwrap();
    assert_eq!((c.version, c.health.status), (2, HealthStatus::Pending));
}

#[test]
fn a_new_webhook_secret_with_a_new_key_applies_at_once_and_the_key_waits() {
    let events = run(
        vec![saved_v1(), validated(1)],
        save(None, Some(RK), Some(WH2)),
    )
    .inspect_result()
    .unwrap();
    let [WorkspaceStripeProfileEvent::WorkspaceStripeCandidateSaved(c), WorkspaceStripeProfileEvent::WorkspaceStripeCredentialsUpdated(wh)] =
        events.as_slice()
    else {
        panic!("expected a candidate and a webhook update, got {events:?}")
    };
    assert_eq!((wh.credential_version, wh.secret_key.is_none()), (2, true));
    assert_eq!((c.credential_version, c.secret_key_version), (2, 2));
    let mut all = vec![saved_v1(), validated(1)];
    all.extend(events.clone());
    let p = fold(all.clone());
    assert_eq!(
        p.health_status(),
        HealthStatus::Valid,
        "a webhook secret alone changes no health"
    );
    assert_eq!(
        p.active_version(),
        1,
        "payments keep version 1 until the candidate is proven"
    );
    assert_eq!(
        p.credentials
            .as_ref()
            .unwrap()
            .current_webhook_secret()
            .secret,
        sref(WH2)
    );
    all.push(promoted(2, 2));
    let p = fold(all);
    assert_eq!(p.secret_key_for(1).unwrap().secret, sref(SK));
    assert_eq!(p.secret_key_for(2).unwrap().secret, sref(RK));
}

#[test]
fn a_valid_candidate_is_promoted_as_the_next_version() {
    run(
        vec![saved_v1(), validated(1), candidate_v2_rk()],
        validate(ValidationScope::UnlessValid),
    )
    .then_expect_events(vec![promoted(2, 2)]);
    let p = fold(vec![
        saved_v1(),
        validated(1),
        candidate_v2_rk(),
        promoted(2, 2),
    ]);
    assert!(p.candidate.is_none());
    let active = p.serving().unwrap();
    assert_eq!((active.version, &active.secret_key.secret), (2, &sref(RK)));
    assert_eq!(active.secret_key.kind, SecretKeyKind::Restricted);
}

#[test]
fn a_candidate_promoted_after_another_version_was_handed_out_gets_a_new_one() {
    let webhook_v3 = WorkspaceStripeProfileEvent::WorkspaceStripeCredentialsUpdated(
        WorkspaceStripeCredentialsUpdated {
            workspace_id: "ws-1".into(),
            credential_version: 3,
            mode: StripeMode::Test,
            publishable_key: None,
            secret_key: None,
            secret_key_kind: None,
            webhook_signing_secret: Some(sref(WH2)),
            updated_by: "alice".into(),
            updated_at: at(),
        },
    );
    let given = vec![saved_v1(), validated(1), candidate_v2_rk(), webhook_v3];
    run(given.clone(), validate(ValidationScope::OnlyPending))
        .then_expect_events(vec![promoted(2, 4)]);
    let mut all = given;
    all.push(promoted(2, 4));
    let p = fold(all);
    assert_eq!(
        p.secret_key_for(3).unwrap().secret,
        sref(SK),
        "intents of v3 keep the old key"
    );
    assert_eq!(p.secret_key_for(4).unwrap().secret, sref(RK));
}

#[test]
fn a_refused_candidate_stays_visible_and_changes_nothing_for_payments() {
    let rejected = WorkspaceStripeProfileEvent::WorkspaceStripeCandidateRejected(
        WorkspaceStripeCandidateRejected {
            workspace_id: "ws-1".into(),
            candidate_version: 2,
            failure_code: "account_mismatch".into(),
            failure_message: "other account".into(),
            rejected_at: at(),
        },
    );
    run_checking(
        CredentialCheck::Failed {
            code: "account_mismatch",
            message: "other account".into(),
        },
        vec![saved_v1(), validated(1), candidate_v2_rk()],
        validate(ValidationScope::UnlessValid),
    )
    .then_expect_events(vec![rejected.clone()]);
    let p = fold(vec![saved_v1(), validated(1), candidate_v2_rk(), rejected]);
    assert_eq!(p.serving().unwrap().secret_key.secret, sref(SK));
    let c = p.candidate.as_ref().unwrap();
    assert_eq!(
        (c.health.status, c.health.failure_code.as_deref()),
        (HealthStatus::Invalid, Some("account_mismatch"))
    );
}

#[test]
fn an_unreachable_stripe_leaves_the_candidate_pending_and_the_active_set_serving() {
    let events = run_checking(
        CredentialCheck::Failed {
            code: STRIPE_UNREACHABLE,
            message: "timeout".into(),
        },
        vec![saved_v1(), validated(1), candidate_v2_rk()],
        validate(ValidationScope::UnlessValid),
    )
    .inspect_result()
    .unwrap();
    let mut all = vec![saved_v1(), validated(1), candidate_v2_rk()];
    all.extend(events);
    let p = fold(all);
    assert_eq!(
        p.candidate.as_ref().unwrap().health.status,
        HealthStatus::Pending
    );
    assert_eq!(p.health_status(), HealthStatus::Valid);
}

#[test]
fn stripe_refusing_the_active_key_revokes_the_set() {
    run(vec![saved_v1(), validated(1)], revoke(1, 401))
        .then_expect_events(vec![revoked(
            1,
            "key_revoked",
            "Stripe no longer accepts the secret key (it was rolled or deleted in the Dashboard): save a new one.",
        )]);
    let p = fold(vec![
        saved_v1(),
        validated(1),
        revoked(1, "key_revoked", "m"),
    ]);
    assert_eq!(p.health_status(), HealthStatus::Invalid);
    assert!(p.serving().is_none(), "no new paid pre-auths");
}

#[test]
fn a_refused_permission_is_permission_denied_and_a_second_refusal_records_nothing() {
    let events = run(vec![saved_v1(), validated(1)], revoke(1, 403))
        .inspect_result()
        .unwrap();
    let [WorkspaceStripeProfileEvent::WorkspaceStripeCredentialsRevoked(e)] = events.as_slice()
    else {
        panic!("{events:?}")
    };
    assert_eq!(e.failure_code, "permission_denied");
    run(
        vec![saved_v1(), validated(1), events[0].clone()],
        revoke(1, 401),
    )
    .then_expect_events(vec![]);
}

#[test]
fn a_candidate_racing_a_payment_an_old_key_refused_after_promotion_revokes_nothing() {
    // A pre-auth took version 1 while the candidate was being proven; the candidate
    // won, and the old key (rolled in the Dashboard) is refused when the old intent is
    // settled: the new active set is not concerned.
    let given = vec![saved_v1(), validated(1), candidate_v2_rk(), promoted(2, 2)];
    run(given.clone(), revoke(1, 401)).then_expect_events(vec![]);
    // The same refusal while the candidate is still pending concerns the active set.
    run(vec![saved_v1(), validated(1), candidate_v2_rk()], revoke(1, 401))
        .then_expect_events(vec![revoked(
            1,
            "key_revoked",
            "Stripe no longer accepts the secret key (it was rolled or deleted in the Dashboard): save a new one.",
        )]);
    let p = fold(given);
    assert_eq!(
        p.secret_key_for(1).unwrap().secret,
        sref(SK),
        "the old intent settles with its key"
    );
}

#[test]
fn the_periodic_check_revokes_a_refused_set_and_leaves_it_valid_when_stripe_is_down() {
    let events = run_checking(
        CredentialCheck::Failed {
            code: "authentication_failed",
            message: "no".into(),
        },
        vec![saved_v1(), validated(1)],
        validate(ValidationScope::Recheck),
    )
    .inspect_result()
    .unwrap();
    let [WorkspaceStripeProfileEvent::WorkspaceStripeCredentialsRevoked(e)] = events.as_slice()
    else {
        panic!("{events:?}")
    };
    assert_eq!(
        (e.failure_code.as_str(), e.stripe_operation.as_str()),
        ("key_revoked", "credential check")
    );
    run_checking(
        CredentialCheck::Failed {
            code: STRIPE_UNREACHABLE,
            message: "timeout".into(),
        },
        vec![saved_v1(), validated(1)],
        validate(ValidationScope::Recheck),
    )
    .then_expect_events(vec![]);
    // A set that is not valid is not the periodic check's business.
    run(vec![saved_v1()], validate(ValidationScope::Recheck)).then_expect_events(vec![]);
}

fn delivery(refused: Option<&str>, minutes: i64) -> WorkspaceStripeProfileCommand {
    WorkspaceStripeProfileCommand::RecordWebhookDelivery(RecordWebhookDelivery {
        workspace_id: "ws-1".into(),
        stripe_event_id: Some("evt_1".into()),
        event_type: Some("balance.available".into()),
        refused: refused.map(str::to_string),
        at: at() + Duration::minutes(minutes),
    })
}

fn verified(minutes: i64) -> WorkspaceStripeProfileEvent {
    WorkspaceStripeProfileEvent::WorkspaceWebhookVerified(WorkspaceWebhookVerified {
        workspace_id: "ws-1".into(),
        stripe_event_id: "evt_1".into(),
        event_type: "balance.available".into(),
        verified_at: at() + Duration::minutes(minutes),
    })
}

fn failing(minutes: i64) -> WorkspaceStripeProfileEvent {
    WorkspaceStripeProfileEvent::WorkspaceWebhookFailing(WorkspaceWebhookFailing {
        workspace_id: "ws-1".into(),
        code: "signature_mismatch".into(),
        failing_since: at() + Duration::minutes(minutes),
    })
}

#[test]
fn webhook_health_records_transitions_and_at_most_an_hourly_verified_fact() {
    run(vec![saved_v1()], delivery(None, 0)).then_expect_events(vec![verified(0)]);
    run(vec![saved_v1(), verified(0)], delivery(None, 30)).then_expect_events(vec![]);
    run(vec![saved_v1(), verified(0)], delivery(None, 61)).then_expect_events(vec![verified(61)]);
    run(
        vec![saved_v1(), verified(0)],
        delivery(Some("signature_mismatch"), 5),
    )
    .then_expect_events(vec![failing(5)]);
    run(
        vec![saved_v1(), verified(0), failing(5)],
        delivery(Some("signature_mismatch"), 6),
    )
    .then_expect_events(vec![]);
    run(vec![saved_v1(), verified(0), failing(5)], delivery(None, 7))
        .then_expect_events(vec![verified(7)]);
    let p = fold(vec![saved_v1(), verified(0), failing(5)]);
    assert_eq!(p.webhook.status(3), aggregate::WebhookStatus::Failing);
    assert_eq!(
        p.webhook.status(0),
        aggregate::WebhookStatus::Verified,
        "refusals older than a day"
    );
    let p = fold(vec![saved_v1()]);
    assert_eq!(p.webhook.status(0), aggregate::WebhookStatus::Unverified);
}

fn purge() -> WorkspaceStripeProfileCommand {
    WorkspaceStripeProfileCommand::PurgeWorkspaceStripeProfile(PurgeWorkspaceStripeProfile {
        workspace_id: "ws-1".into(),
        actor: "alice".into(),
        at: at(),
    })
}

fn purged() -> WorkspaceStripeProfileEvent {
    WorkspaceStripeProfileEvent::WorkspaceOcpiConfigPurged(
        roampay_events::WorkspaceOcpiConfigPurged {
            workspace_id: "ws-1".into(),
            purged_by: "alice".into(),
            purged_at: at(),
        },
    )
}

#[test]
fn a_purge_removes_the_credentials_then_forgets_everything_but_the_version() {
    run(vec![saved_v1(), validated(1)], purge()).then_expect_events(vec![remove_event(), purged()]);
    let after = fold(vec![saved_v1(), validated(1), remove_event(), purged()]);
    assert_eq!(
        after,
        WorkspaceStripeProfile {
            workspace_id: Some("ws-1".into()),
            credential_version: 2,
            ..WorkspaceStripeProfile::default()
        }
    );
    // Purged already, or never configured: nothing to forget.
    run(vec![saved_v1(), remove_event(), purged()], purge()).then_expect_events(vec![]);
    run(vec![], purge()).then_expect_events(vec![]);
}

mod connect {
    //! Stripe Connect: onboarding states, switching, deauthorization.
    use super::*;
    use crate::infra::stripe::connect::{AccountType, AccountView};

    fn account(id: &str, charges: bool, details: bool, due: &[&str]) -> AccountView {
        AccountView {
            id: id.into(),
            charges_enabled: charges,
            payouts_enabled: charges,
            details_submitted: details,
            requirements_due: due.iter().map(|s| s.to_string()).collect(),
            metadata_workspace_id: Some("ws-1".into()),
        }
    }

    fn record(a: AccountView) -> WorkspaceStripeProfileCommand {
        WorkspaceStripeProfileCommand::RecordConnectAccount(RecordConnectAccount {
            workspace_id: "ws-1".into(),
            account: a,
            account_type: AccountType::Standard,
            actor: "alice".into(),
            at: at(),
        })
    }

    fn created(id: &str) -> WorkspaceStripeProfileEvent {
        WorkspaceStripeProfileEvent::WorkspaceStripeConnectAccountCreated(
            WorkspaceStripeConnectAccountCreated {
                workspace_id: "ws-1".into(),
                account_id: id.into(),
                account_type: "standard".into(),
                charges_enabled: false,
                payouts_enabled: false,
                details_submitted: false,
                requirements_due: vec!["external_account".into()],
                created_by: "alice".into(),
                created_at: at(),
            },
        )
    }

    fn switched(to: StripeConnection) -> WorkspaceStripeProfileEvent {
        WorkspaceStripeProfileEvent::WorkspaceStripeConnectionSwitched(
            WorkspaceStripeConnectionSwitched {
                workspace_id: "ws-1".into(),
                connection: to,
                switched_by: "alice".into(),
                switched_at: at(),
            },
        )
    }

    fn refresh(a: AccountView, event: &str) -> WorkspaceStripeProfileCommand {
        WorkspaceStripeProfileCommand::RefreshConnectAccount(RefreshConnectAccount {
            workspace_id: "ws-1".into(),
            account: a,
            stripe_event_id: Some(event.into()),
            at: at(),
        })
    }

    fn enabled(id: &str, event: &str) -> WorkspaceStripeProfileEvent {
        WorkspaceStripeProfileEvent::WorkspaceStripeConnectAccountUpdated(
            WorkspaceStripeConnectAccountUpdated {
                workspace_id: "ws-1".into(),
                account_id: id.into(),
                charges_enabled: true,
                payouts_enabled: true,
                details_submitted: true,
                requirements_due: vec![],
                stripe_event_id: Some(event.into()),
                updated_at: at(),
            },
        )
    }

    fn deauthorize(id: &str) -> WorkspaceStripeProfileCommand {
        WorkspaceStripeProfileCommand::DeauthorizeConnectAccount(DeauthorizeConnectAccount {
            workspace_id: "ws-1".into(),
            account_id: id.into(),
            source: "webhook".into(),
            stripe_event_id: Some("evt_deauth".into()),
            at: at(),
        })
    }

    fn switch(to: StripeConnection) -> WorkspaceStripeProfileCommand {
        WorkspaceStripeProfileCommand::SwitchStripeConnection(SwitchStripeConnection {
            workspace_id: "ws-1".into(),
            to,
            actor: "alice".into(),
            at: at(),
        })
    }

    #[test]
    fn onboarding_a_workspace_with_nothing_connected_puts_it_in_connect_mode_pending() {
        run(
            vec![],
            record(account("acct_A", false, false, &["external_account"])),
        )
        .then_expect_events(vec![created("acct_A"), switched(StripeConnection::Connect)]);
        let p = fold(vec![created("acct_A"), switched(StripeConnection::Connect)]);
        assert_eq!(p.connection(), Some(StripeConnection::Connect));
        assert_eq!(p.health_status(), HealthStatus::Pending);
        assert!(p.serving_account().is_none(), "pending takes no payments");
    }

    #[test]
    fn a_keys_workspace_that_onboards_stays_on_its_keys_until_it_switches() {
        run(
            vec![saved_v1(), validated(1)],
            record(account("acct_A", false, false, &["external_account"])),
        )
        .then_expect_events(vec![created("acct_A")]);
        let p = fold(vec![saved_v1(), validated(1), created("acct_A")]);
        assert_eq!(p.connection(), Some(StripeConnection::Keys));
        assert_eq!(p.health_status(), HealthStatus::Valid);
    }

    #[test]
    fn the_same_account_recorded_again_changes_nothing() {
        run(
            vec![created("acct_A"), switched(StripeConnection::Connect)],
            record(account("acct_A", false, false, &[])),
        )
        .then_expect_events(vec![]);
    }

    #[test]
    fn the_account_key_is_the_same_until_an_account_is_recorded_and_new_after_deauthorization() {
        let fresh = WorkspaceStripeProfile::default();
        assert_eq!(
            fresh.next_account_key("ws-1"),
            "roampay-connect-account-ws-1-1"
        );
        let with_account = fold(vec![created("acct_A")]);
        assert!(with_account.onboarding_account().is_some());
        let deauthorized = fold(vec![
            created("acct_A"),
            WorkspaceStripeProfileEvent::WorkspaceStripeConnectDeauthorized(
                WorkspaceStripeConnectDeauthorized {
                    workspace_id: "ws-1".into(),
                    account_id: "acct_A".into(),
                    source: "webhook".into(),
                    stripe_event_id: None,
                    deauthorized_at: at(),
                },
            ),
        ]);
        assert!(deauthorized.onboarding_account().is_none());
        assert_eq!(
            deauthorized.next_account_key("ws-1"),
            "roampay-connect-account-ws-1-2"
        );
    }

    #[test]
    fn charges_enabled_makes_connect_valid_and_a_redelivery_is_recognised() {
        let given = vec![created("acct_A"), switched(StripeConnection::Connect)];
        run(
            given.clone(),
            refresh(account("acct_A", true, true, &[]), "evt_1"),
        )
        .then_expect_events(vec![enabled("acct_A", "evt_1")]);
        let mut events = given;
        events.push(enabled("acct_A", "evt_1"));
        let p = fold(events.clone());
        assert_eq!(p.health_status(), HealthStatus::Valid);
        assert!(p.connect_event_seen("evt_1"));
        // The same status again records nothing.
        run(events, refresh(account("acct_A", true, true, &[]), "evt_2"))
            .then_expect_events(vec![]);
    }

    #[test]
    fn charges_disabled_after_onboarding_is_invalid_with_requirements_due() {
        let mut events = vec![
            created("acct_A"),
            switched(StripeConnection::Connect),
            enabled("acct_A", "evt_1"),
        ];
        let p = fold(events.clone());
        assert_eq!(p.health_status(), HealthStatus::Valid);
        events.push(
            WorkspaceStripeProfileEvent::WorkspaceStripeConnectAccountUpdated(
                WorkspaceStripeConnectAccountUpdated {
                    workspace_id: "ws-1".into(),
                    account_id: "acct_A".into(),
                    charges_enabled: false,
                    payouts_enabled: true,
                    details_submitted: true,
                    requirements_due: vec!["individual.verification.document".into()],
                    stripe_event_id: Some("evt_2".into()),
                    updated_at: at(),
                },
            ),
        );
        let p = fold(events);
        let h = p.health();
        assert_eq!(h.status, HealthStatus::Invalid);
        assert_eq!(h.failure_code.as_deref(), Some("connect_requirements_due"));
        assert!(p.serving_account().is_none());
    }

    #[test]
    fn an_update_about_another_account_is_not_this_workspaces() {
        run(
            vec![created("acct_A"), switched(StripeConnection::Connect)],
            refresh(account("acct_B", true, true, &[]), "evt_1"),
        )
        .then_expect_events(vec![]);
        run(
            vec![created("acct_A"), switched(StripeConnection::Connect)],
            deauthorize("acct_B"),
        )
        .then_expect_events(vec![]);
    }

    #[test]
    fn deauthorization_makes_connect_invalid_once() {
        let given = vec![
            created("acct_A"),
            switched(StripeConnection::Connect),
            enabled("acct_A", "evt_1"),
        ];
        let deauthorized = WorkspaceStripeProfileEvent::WorkspaceStripeConnectDeauthorized(
            WorkspaceStripeConnectDeauthorized {
                workspace_id: "ws-1".into(),
                account_id: "acct_A".into(),
                source: "webhook".into(),
                stripe_event_id: Some("evt_deauth".into()),
                deauthorized_at: at(),
            },
        );
        run(given.clone(), deauthorize("acct_A")).then_expect_events(vec![deauthorized.clone()]);
        let mut events = given;
        events.push(deauthorized);
        let p = fold(events.clone());
        assert_eq!(
            p.health().failure_code.as_deref(),
            Some("account_deauthorized")
        );
        assert_eq!(p.health_status(), HealthStatus::Invalid);
        assert_eq!(p.connection(), Some(StripeConnection::Connect));
        run(events, deauthorize("acct_A")).then_expect_events(vec![]);
    }

    #[test]
    fn switching_needs_the_target_ready() {
        // Connect still pending: no switch from valid keys.
        run(
            vec![saved_v1(), validated(1), created("acct_A")],
            switch(StripeConnection::Connect),
        )
        .then_expect_error(WorkspaceStripeProfileError::ConnectionNotReady("pending"));
        // Enabled: the switch is recorded, and new payments use the account.
        let given = vec![
            saved_v1(),
            validated(1),
            created("acct_A"),
            enabled("acct_A", "evt_1"),
        ];
        run(given.clone(), switch(StripeConnection::Connect))
            .then_expect_events(vec![switched(StripeConnection::Connect)]);
        let mut events = given;
        events.push(switched(StripeConnection::Connect));
        let p = fold(events.clone());
        assert_eq!(
            p.serving_account().map(|a| a.account_id.as_str()),
            Some("acct_A")
        );
        // Back to the keys, which are valid; asking for the mode in use changes nothing.
        run(events.clone(), switch(StripeConnection::Keys))
            .then_expect_events(vec![switched(StripeConnection::Keys)]);
        run(events, switch(StripeConnection::Connect)).then_expect_events(vec![]);
    }

    #[test]
    fn switching_to_keys_that_are_not_configured_is_refused() {
        run(
            vec![
                created("acct_A"),
                switched(StripeConnection::Connect),
                enabled("acct_A", "evt_1"),
            ],
            switch(StripeConnection::Keys),
        )
        .then_expect_error(WorkspaceStripeProfileError::ConnectionNotReady(
            "unconfigured",
        ));
    }

    #[test]
    fn a_keys_set_saved_in_connect_mode_does_not_change_the_connection() {
        let p = fold(vec![
            created("acct_A"),
            switched(StripeConnection::Connect),
            enabled("acct_A", "evt_1"),
            saved_v1(),
            validated(1),
        ]);
        assert_eq!(p.connection(), Some(StripeConnection::Connect));
        assert_eq!(p.keys_health_status(), HealthStatus::Valid);
    }

    #[test]
    fn an_onboarding_link_is_recorded_for_the_current_account_only() {
        let link = |id: &str| {
            WorkspaceStripeProfileCommand::RecordOnboardingLink(RecordOnboardingLink {
                workspace_id: "ws-1".into(),
                account_id: id.into(),
                expires_at: None,
                actor: "alice".into(),
                at: at(),
            })
        };
        run(vec![created("acct_A")], link("acct_A")).then_expect_events(vec![
            WorkspaceStripeProfileEvent::WorkspaceStripeOnboardingLinkIssued(
                WorkspaceStripeOnboardingLinkIssued {
                    workspace_id: "ws-1".into(),
                    account_id: "acct_A".into(),
                    expires_at: None,
                    issued_by: "alice".into(),
                    issued_at: at(),
                },
            ),
        ]);
        run(vec![created("acct_A")], link("acct_B"))
            .then_expect_error(WorkspaceStripeProfileError::ConnectAccountUnknown);
    }
}
