//! Stripe webhook signature verification over the raw body.
//!
//! Our own verifier rather than async-stripe's: during a secret roll Stripe signs with
//! both the old and the new secret (two `v1` entries), so every `v1` is compared with
//! every active secret, in constant time; timestamps are refused when too old *or* too
//! far in the future.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Why a delivery was refused (each is a stable error `code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    MissingSignature,
    InvalidSignatureHeader,
    SignatureMismatch,
    TimestampOutOfTolerance,
}

impl SignatureError {
    pub fn code(self) -> &'static str {
        match self {
            Self::MissingSignature => "missing_signature",
            Self::InvalidSignatureHeader => "invalid_signature_header",
            Self::SignatureMismatch => "signature_mismatch",
            Self::TimestampOutOfTolerance => "timestamp_out_of_tolerance",
        }
    }
}

/// A positive tolerance in seconds, applied both ways.
#[derive(Debug, Clone, Copy)]
pub struct Tolerance(i64);

impl Tolerance {
    /// Refuses 0 or less: such a tolerance would refuse (or, read as "off", accept)
    /// every delivery.
    pub fn new(secs: i64) -> Result<Self, String> {
        if secs > 0 {
            Ok(Self(secs))
        } else {
            Err(format!(
                "the webhook tolerance must be a positive number of seconds, got {secs}"
            ))
        }
    }
}

struct Header<'a> {
    timestamp: i64,
    signatures: Vec<&'a str>,
}

fn parse_header(header: &str) -> Result<Header<'_>, SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let Some((key, value)) = part.trim().split_once('=') else {
            continue;
        };
        match key {
            "t" => timestamp = value.parse::<i64>().ok(),
            "v1" => signatures.push(value),
            _ => {}
        }
    }
    match timestamp {
        Some(timestamp) if !signatures.is_empty() => Ok(Header {
            timestamp,
            signatures,
        }),
        _ => Err(SignatureError::InvalidSignatureHeader),
    }
}

/// What is wrong with a platform endpoint's signing secret, if anything: it must be one
/// Stripe could have made, `whsec_` and at least 16 more characters. An empty one would
/// verify signatures made with the empty key, which anyone can make.
pub fn platform_secret_problem(secret: &SecretString) -> Option<&'static str> {
    let value = secret.expose_secret();
    match value.strip_prefix("whsec_") {
        _ if value.trim().is_empty() => Some("set but empty"),
        Some(rest) if rest.len() >= 16 && rest.bytes().all(|b| b.is_ascii_graphic()) => None,
        _ => Some("not a webhook signing secret"),
    }
}

/// The `v1` signature Stripe would send for `payload` at `timestamp`.
pub fn sign(secret: &SecretString, timestamp: i64, payload: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose_secret().as_bytes())
        .expect("any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    hex::encode(mac.finalize().into_bytes())
}

/// Verifies a delivery. Returns the index of the secret that matched.
pub fn verify(
    payload: &[u8],
    header: Option<&str>,
    secrets: &[&SecretString],
    tolerance: Tolerance,
    now: i64,
) -> Result<usize, SignatureError> {
    let header = header.ok_or(SignatureError::MissingSignature)?;
    if header.trim().is_empty() {
        return Err(SignatureError::MissingSignature);
    }
    let parsed = parse_header(header)?;
    let mut matched = None;
    for (i, secret) in secrets.iter().enumerate() {
        let expected = sign(secret, parsed.timestamp, payload);
        for candidate in &parsed.signatures {
            // Compare every pair: no early exit that would time which one matched.
            let equal: bool = expected.as_bytes().ct_eq(candidate.as_bytes()).into();
            if equal && matched.is_none() {
                matched = Some(i);
            }
        }
    }
    let index = matched.ok_or(SignatureError::SignatureMismatch)?;
    // `abs_diff` cannot overflow (a timestamp near i64::MIN or MAX is simply far off).
    if now.abs_diff(parsed.timestamp) > tolerance.0.unsigned_abs() {
        return Err(SignatureError::TimestampOutOfTolerance);
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    //! The cases of Stripe's SDK webhook suites (stripe-node `Webhook.spec`,
    //! stripe-python `test_webhook.py`, stripe-go `webhook/client_test.go`).
    use super::*;

    const NOW: i64 = 1_763_800_000;
    const PAYLOAD: &[u8] = br#"{"id": "evt_test_webhook", "object": "event"}"#;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_string())
    }

    fn tol() -> Tolerance {
        Tolerance::new(300).unwrap()
    }

    fn header(t: i64, sigs: &[String]) -> String {
        let mut h = format!("t={t}");
        for s in sigs {
            h.push_str(&format!(",v1={s}"));
        }
        h
    }

    #[test]
    fn a_timestamp_at_the_ends_of_i64_is_out_of_tolerance_not_an_overflow() {
        let s = secret("whsec_test_secret");
        for t in [i64::MIN, NOW - i64::MAX, i64::MAX] {
            let header = format!("t={t},v1={}", sign(&s, t, PAYLOAD));
            assert_eq!(
                verify(
                    PAYLOAD,
                    Some(&header),
                    &[&s],
                    Tolerance::new(300).unwrap(),
                    NOW
                ),
                Err(SignatureError::TimestampOutOfTolerance),
                "t = {t}"
            );
        }
    }

    #[test]
    fn a_valid_signature_verifies() {
        let s = secret("whsec_test_secret");
        let h = header(NOW, &[sign(&s, NOW, PAYLOAD)]);
        assert_eq!(verify(PAYLOAD, Some(&h), &[&s], tol(), NOW), Ok(0));
    }

    #[test]
    fn a_signature_made_with_another_secret_is_refused() {
        let h = header(NOW, &[sign(&secret("whsec_other"), NOW, PAYLOAD)]);
        assert_eq!(
            verify(
                PAYLOAD,
                Some(&h),
                &[&secret("whsec_test_secret")],
                tol(),
                NOW
            ),
            Err(SignatureError::SignatureMismatch)
        );
    }

    #[test]
    fn a_missing_or_garbage_header_is_refused() {
        let s = secret("whsec_test_secret");
        assert_eq!(
            verify(PAYLOAD, None, &[&s], tol(), NOW),
            Err(SignatureError::MissingSignature)
        );
        assert_eq!(
            verify(PAYLOAD, Some(""), &[&s], tol(), NOW),
            Err(SignatureError::MissingSignature)
        );
        for garbage in [
            "bad_header",
            "t=,v1=",
            "v1=abc",
            "t=notanumber,v1=abc",
            "t=123",
        ] {
            assert_eq!(
                verify(PAYLOAD, Some(garbage), &[&s], tol(), NOW),
                Err(SignatureError::InvalidSignatureHeader),
                "{garbage}"
            );
        }
    }

    #[test]
    fn a_header_with_only_a_v0_signature_is_refused() {
        let s = secret("whsec_test_secret");
        let h = format!("t={NOW},v0={}", sign(&s, NOW, PAYLOAD));
        assert_eq!(
            verify(PAYLOAD, Some(&h), &[&s], tol(), NOW),
            Err(SignatureError::InvalidSignatureHeader)
        );
    }

    #[test]
    fn an_extra_junk_v1_in_either_order_still_verifies() {
        let s = secret("whsec_test_secret");
        let good = sign(&s, NOW, PAYLOAD);
        for sigs in [
            vec!["bad_signature".to_string(), good.clone()],
            vec![good.clone(), "bad_signature".to_string()],
        ] {
            assert_eq!(
                verify(PAYLOAD, Some(&header(NOW, &sigs)), &[&s], tol(), NOW),
                Ok(0)
            );
        }
        let with_v0 = format!("t={NOW},v0=junk,v1={good},v2=other");
        assert_eq!(verify(PAYLOAD, Some(&with_v0), &[&s], tol(), NOW), Ok(0));
    }

    #[test]
    fn during_a_roll_either_secret_verifies_either_signature() {
        let old = secret("whsec_old_secret");
        let new = secret("whsec_new_secret");
        let both = header(NOW, &[sign(&old, NOW, PAYLOAD), sign(&new, NOW, PAYLOAD)]);
        assert_eq!(verify(PAYLOAD, Some(&both), &[&new], tol(), NOW), Ok(0));
        assert_eq!(verify(PAYLOAD, Some(&both), &[&old], tol(), NOW), Ok(0));
        let only_old = header(NOW, &[sign(&old, NOW, PAYLOAD)]);
        assert_eq!(
            verify(PAYLOAD, Some(&only_old), &[&new, &old], tol(), NOW),
            Ok(1)
        );
    }

    #[test]
    fn timestamps_too_old_or_too_far_ahead_are_refused() {
        let s = secret("whsec_test_secret");
        for t in [NOW - 301, NOW + 301] {
            let h = header(t, &[sign(&s, t, PAYLOAD)]);
            assert_eq!(
                verify(PAYLOAD, Some(&h), &[&s], tol(), NOW),
                Err(SignatureError::TimestampOutOfTolerance),
                "{t}"
            );
        }
        for t in [NOW - 300, NOW + 300] {
            let h = header(t, &[sign(&s, t, PAYLOAD)]);
            assert_eq!(verify(PAYLOAD, Some(&h), &[&s], tol(), NOW), Ok(0), "{t}");
        }
    }

    #[test]
    fn a_timestamp_that_was_not_signed_is_refused() {
        let s = secret("whsec_test_secret");
        let h = header(NOW, &[sign(&s, NOW - 10, PAYLOAD)]);
        assert_eq!(
            verify(PAYLOAD, Some(&h), &[&s], tol(), NOW),
            Err(SignatureError::SignatureMismatch)
        );
    }

    #[test]
    fn one_changed_byte_is_refused() {
        let s = secret("whsec_test_secret");
        let h = header(NOW, &[sign(&s, NOW, PAYLOAD)]);
        let mut tampered = PAYLOAD.to_vec();
        tampered[10] ^= 1;
        assert_eq!(
            verify(&tampered, Some(&h), &[&s], tol(), NOW),
            Err(SignatureError::SignatureMismatch)
        );
    }

    #[test]
    fn a_non_utf8_body_is_verified_over_its_raw_bytes() {
        let s = secret("whsec_test_secret");
        let body = [0xff, 0xfe, b'{', 0x80];
        let h = header(NOW, &[sign(&s, NOW, &body)]);
        assert_eq!(
            verify(&body, Some(&h), &[&s], tol(), NOW),
            Ok(0),
            "the signature holds; the JSON check comes after"
        );
    }

    #[test]
    fn a_tolerance_of_zero_or_less_is_refused_at_start_up() {
        assert!(Tolerance::new(0).is_err());
        assert!(Tolerance::new(-5).is_err());
        assert!(Tolerance::new(1).is_ok());
    }

    #[test]
    fn no_active_secret_verifies_nothing() {
        let s = secret("whsec_test_secret");
        let h = header(NOW, &[sign(&s, NOW, PAYLOAD)]);
        assert_eq!(
            verify(PAYLOAD, Some(&h), &[], tol(), NOW),
            Err(SignatureError::SignatureMismatch)
        );
    }
}
