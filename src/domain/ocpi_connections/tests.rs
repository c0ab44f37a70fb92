//! Specifications of the connection lifecycle: every transition, every refusal.

use chrono::{TimeZone, Utc};
use cqrs_es::test::TestFramework;
use roampay_events::*;

use super::*;

type Spec = TestFramework<OcpiConnections>;

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, 10, 0, 0).unwrap()
}

fn party() -> OcpiParty {
    OcpiParty {
        country_code: "AU".into(),
        party_id: "CPO".into(),
        role: "CPO".into(),
        business_name: Some("Depot Charging".into()),
    }
}

fn exchanged(digest: &str, version: u32) -> Exchanged {
    Exchanged {
        party: party(),
        version: "2.2.1".into(),
        versions_url: "https://cpms.example.com/ocpi/versions".into(),
        endpoints: vec![OcpiEndpoint {
            identifier: "credentials".into(),
            role: "RECEIVER".into(),
            url: "https://cpms.example.com/ocpi/2.2.1/credentials".into(),
        }],
        token_digest: digest.into(),
        partner_token_version: version,
        partner_token_fingerprint: "fp-partner".into(),
        issued_token_fingerprint: "fp-issued".into(),
    }
}

fn created(id: &str) -> Event {
    Event::OcpiConnectionCreated(OcpiConnectionCreated {
        connection_id: id.into(),
        workspace_id: "ws-1".into(),
        name: "Depot CPMS".into(),
        token_a_digest: Some("digest-a".into()),
        actor: "alice".into(),
        created_at: at(),
    })
}

fn registered(id: &str, digest: &str, version: u32) -> Event {
    let e = exchanged(digest, version);
    Event::OcpiConnectionRegistered(OcpiConnectionRegistered {
        connection_id: id.into(),
        workspace_id: "ws-1".into(),
        direction: "inbound".into(),
        party: e.party,
        version: e.version,
        versions_url: e.versions_url,
        endpoints: e.endpoints,
        token_digest: e.token_digest,
        partner_token_version: e.partner_token_version,
        partner_token_fingerprint: e.partner_token_fingerprint,
        issued_token_fingerprint: e.issued_token_fingerprint,
        registered_at: at(),
    })
}

fn register(id: &str, digest: &str, version: u32) -> OcpiConnectionCommand {
    OcpiConnectionCommand::Register {
        connection_id: id.into(),
        direction: "inbound",
        exchanged: exchanged(digest, version),
        at: at(),
    }
}

fn unregister(id: &str, by: &'static str) -> OcpiConnectionCommand {
    OcpiConnectionCommand::Unregister {
        connection_id: id.into(),
        by,
        actor: "alice".into(),
        at: at(),
    }
}

#[test]
fn a_connection_is_created_once_per_id() {
    let create = OcpiConnectionCommand::Create {
        workspace_id: "ws-1".into(),
        connection_id: "c1".into(),
        name: "Depot CPMS".into(),
        token_a_digest: Some("digest-a".into()),
        actor: "alice".into(),
        at: at(),
    };
    Spec::with(())
        .given_no_previous_events()
        .when(create.clone())
        .then_expect_events(vec![created("c1")]);
    Spec::with(())
        .given(vec![created("c1")])
        .when(create)
        .then_expect_error(OcpiConnectionError::Exists);
}

#[test]
fn token_a_registers_once_and_the_partner_token_takes_the_next_vault_version() {
    Spec::with(())
        .given(vec![created("c1")])
        .when(register("c1", "digest-c", 1))
        .then_expect_events(vec![registered("c1", "digest-c", 1)]);
    Spec::with(())
        .given(vec![created("c1"), registered("c1", "digest-c", 1)])
        .when(register("c1", "digest-c2", 2))
        .then_expect_error(OcpiConnectionError::AlreadyRegistered);
    // Another connection of the workspace took version 1 meanwhile.
    Spec::with(())
        .given(vec![created("c1"), created("c2"), registered("c2", "d", 1)])
        .when(register("c1", "digest-c", 1))
        .then_expect_error(OcpiConnectionError::StaleTokenVersion { stored: 1, next: 2 });
    Spec::with(())
        .given(vec![created("c1")])
        .when(register("nope", "d", 1))
        .then_expect_error(OcpiConnectionError::NotFound);
}

#[test]
fn an_update_needs_a_registered_connection() {
    let update = |v| OcpiConnectionCommand::Update {
        connection_id: "c1".into(),
        exchanged: exchanged("digest-c2", v),
        at: at(),
    };
    Spec::with(())
        .given(vec![created("c1")])
        .when(update(1))
        .then_expect_error(OcpiConnectionError::NotRegistered);
    let e = exchanged("digest-c2", 2);
    Spec::with(())
        .given(vec![created("c1"), registered("c1", "digest-c", 1)])
        .when(update(2))
        .then_expect_events(vec![Event::OcpiConnectionCredentialsUpdated(
            OcpiConnectionCredentialsUpdated {
                connection_id: "c1".into(),
                workspace_id: "ws-1".into(),
                party: e.party,
                version: e.version,
                versions_url: e.versions_url,
                endpoints: e.endpoints,
                token_digest: e.token_digest,
                partner_token_version: 2,
                partner_token_fingerprint: e.partner_token_fingerprint,
                issued_token_fingerprint: e.issued_token_fingerprint,
                updated_at: at(),
            },
        )]);
}

#[test]
fn unregistering_ends_a_connection_once_and_the_partner_may_end_only_a_registered_one() {
    let gone = |by: &str| {
        Event::OcpiConnectionUnregistered(OcpiConnectionUnregistered {
            connection_id: "c1".into(),
            workspace_id: "ws-1".into(),
            by: by.into(),
            actor: "alice".into(),
            unregistered_at: at(),
        })
    };
    Spec::with(())
        .given(vec![created("c1")])
        .when(unregister("c1", "admin"))
        .then_expect_events(vec![gone("admin")]);
    Spec::with(())
        .given(vec![created("c1")])
        .when(unregister("c1", "partner"))
        .then_expect_error(OcpiConnectionError::NotRegistered);
    Spec::with(())
        .given(vec![created("c1"), registered("c1", "d", 1)])
        .when(unregister("c1", "partner"))
        .then_expect_events(vec![gone("partner")]);
    Spec::with(())
        .given(vec![created("c1"), gone("admin")])
        .when(unregister("c1", "admin"))
        .then_expect_events(vec![]);
    Spec::with(())
        .given(vec![created("c1"), gone("admin")])
        .when(register("c1", "d", 1))
        .then_expect_error(OcpiConnectionError::NotFound);
}

#[test]
fn a_token_opens_only_its_connection_in_its_state() {
    let mut state = OcpiConnections::default();
    for e in [created("c1"), created("c2")] {
        state.apply(e);
    }
    assert_eq!(
        state.open("c1", "digest-a").map(|(_, p)| p),
        Some(Presented::TokenA)
    );
    assert!(state.open("c1", "digest-x").is_none());
    assert!(state.open("c3", "digest-a").is_none());
    state.apply(registered("c1", "digest-c", 1));
    assert!(state.open("c1", "digest-a").is_none(), "token A is spent");
    assert_eq!(
        state.open("c1", "digest-c").map(|(_, p)| p),
        Some(Presented::Registered)
    );
    assert_eq!(state.next_token_version(), 2);
    state.apply(Event::OcpiConnectionUnregistered(
        OcpiConnectionUnregistered {
            connection_id: "c1".into(),
            workspace_id: "ws-1".into(),
            by: "partner".into(),
            actor: "cpo".into(),
            unregistered_at: at(),
        },
    ));
    assert!(
        state.open("c1", "digest-c").is_none(),
        "nothing after unregistering"
    );
}
