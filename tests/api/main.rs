//! API tests: the real `roampay serve` binary on port 0, against a fresh SQLite file
//! or a fresh PostgreSQL database per test, with Stripe played by wiremock.

use roampay_testkit::stripe as fake_stripe;
mod support;

mod audit;
mod auth;
mod billing;
mod bursts;
mod canary;
mod chaos;
mod connect;
mod crash;
mod credentials;
mod dead_letters;
mod deliveries;
mod docs;
mod drivers;
mod event_store;
mod hostile;
mod http_basics;
mod localstripe;
mod observability;
mod ocpi;
mod ocpi_config;
mod operator_safety;
mod outage;
mod payments;
mod reconcile;
mod refunds;
mod sessions;
mod stripe_faults;
mod structure;
mod support_search;
mod vault;
