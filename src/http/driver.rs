//! Driver endpoints: public when the workspace allows guests, else a `driver` token;
//! and a per-IP rate limit on the public payment endpoints.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::HttpRequest;
use governor::clock::DefaultClock;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use super::auth::{bearer, Principal};
use super::error::ApiError;
use super::AppState;
use crate::application::payments::DriverGate;

pub type IpRateLimiter = Arc<RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock>>;

pub fn rate_limiter(per_minute: u32) -> IpRateLimiter {
    let quota = Quota::per_minute(NonZeroU32::new(per_minute.max(1)).expect("positive"));
    Arc::new(RateLimiter::keyed(quota))
}

/// The caller's address: the socket peer, or behind a trusted proxy the address it
/// forwarded (see [`super::client`]).
pub fn client_ip(state: &AppState, req: &HttpRequest) -> IpAddr {
    state.trusted_proxies.client_of(req)
}

/// Forgets addresses whose bucket is full again (they would be let through anyway):
/// the limiter's memory follows the clients of the last minute, not every client ever.
pub fn prune<C>(
    limiter: &RateLimiter<
        IpAddr,
        DefaultKeyedStateStore<IpAddr>,
        C,
        governor::middleware::NoOpMiddleware<C::Instant>,
    >,
) where
    C: governor::clock::Clock,
{
    limiter.retain_recent();
    limiter.shrink_to_fit();
}

pub fn rate_limit(state: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
    spend(&state.rate_limiter, state, req)
}

/// One request from the client taken from `limiter`; 429 `rate_limited` (with
/// `Retry-After`) when its allowance is spent.
pub fn spend(limiter: &IpRateLimiter, state: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
    limiter
        .check_key(&super::client::rate_key(client_ip(state, req)))
        .map_err(|not_until| {
            use governor::clock::{Clock, DefaultClock};
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "Too many requests from this address; slow down.",
            );
            e.retry_after_secs = Some(wait.as_secs_f64().ceil().max(1.0) as u64);
            e
        })
}

/// A driver let in: the token's `sub`, or none for a guest.
pub struct Driver {
    pub sub: Option<String>,
}

impl Driver {
    /// The actor recorded in the audit trail.
    pub fn actor(&self) -> &str {
        self.sub.as_deref().unwrap_or("guest")
    }
}

/// Admits a driver to a workspace's payment endpoints.
pub fn admit(state: &AppState, req: &HttpRequest, gate: &DriverGate) -> Result<Driver, ApiError> {
    let sub = principal(state, req, gate)?.map(|p| p.sub);
    Ok(Driver { sub })
}

fn principal(
    state: &AppState,
    req: &HttpRequest,
    gate: &DriverGate,
) -> Result<Option<Principal>, ApiError> {
    let workspace_id = gate.workspace_id.as_str();
    let token = bearer(req)?;
    if gate.allow_guest_access && token.is_none() {
        return Ok(None);
    }
    let Some(token) = token else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "driver_token_required",
            "This workspace does not allow guests: sign in and send a driver token.",
        ));
    };
    let principal = state.auth.verify(token)?;
    principal.authorize("driver", Some(workspace_id))?;
    Ok(Some(principal))
}

/// OCPI CiString(36): printable ASCII, 1 to 36 characters.
pub fn ci_string(field: &str, value: &str) -> Result<String, ApiError> {
    if (1..=36).contains(&value.len()) && value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        Ok(value.to_string())
    } else {
        Err(ApiError::bad_request(
            "invalid_id",
            format!("{field} must be 1 to 36 printable ASCII characters."),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::num::NonZeroU32;
    use std::time::Duration;

    use governor::clock::FakeRelativeClock;
    use governor::state::keyed::DefaultKeyedStateStore;
    use governor::{Quota, RateLimiter};

    #[test]
    fn pruning_forgets_addresses_whose_bucket_refilled() {
        let clock = FakeRelativeClock::default();
        let quota = Quota::per_minute(NonZeroU32::new(120).unwrap());
        let limiter = RateLimiter::new(
            quota,
            DefaultKeyedStateStore::<IpAddr>::default(),
            clock.clone(),
        );
        for i in 0..1000u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            assert!(limiter.check_key(&ip).is_ok());
        }
        assert_eq!(limiter.len(), 1000);
        super::prune(&limiter);
        assert_eq!(limiter.len(), 1000, "still within their minute");
        clock.advance(Duration::from_secs(61));
        let recent = IpAddr::from([203, 0, 113, 9]);
        assert!(limiter.check_key(&recent).is_ok());
        super::prune(&limiter);
        assert_eq!(limiter.len(), 1, "only the recent client is remembered");
    }
}
