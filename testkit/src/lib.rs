//! roampay's test support, shared by the API tests (`tests/api`) and the benchmarks
//! (`benches/`): the one fake Stripe ([`stripe::FakeStripe`], stateful, on wiremock)
//! and the chaos harness ([`chaos`]: a fleet of roampay processes under load, faults
//! and checks of money and events).

pub mod chaos;
pub mod stripe;
