//! Parsed credential values: built only through `parse`, so a value of these types is
//! well-formed by construction. Secrets are `SecretString`: their `Debug` is redacted.

use roampay_events::{SecretKeyKind, StripeMode};
use secrecy::SecretString;

/// Why a credential string was refused (the stable `errors[].code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialFormatError {
    InvalidPublishableKey,
    InvalidSecretKey,
    InvalidWebhookSigningSecret,
}

impl CredentialFormatError {
    pub fn code(self) -> &'static str {
        match self {
            Self::InvalidPublishableKey => "invalid_publishable_key",
            Self::InvalidSecretKey => "invalid_secret_key",
            Self::InvalidWebhookSigningSecret => "invalid_webhook_signing_secret",
        }
    }
}

const MAX_KEY_LEN: usize = 255;
const MIN_BODY_LEN: usize = 8;

/// `<prefix>_<test|live>_<body>` with an alphanumeric body.
fn parse_moded(value: &str, prefixes: &[&str]) -> Option<(usize, StripeMode)> {
    if value.len() > MAX_KEY_LEN {
        return None;
    }
    for (i, prefix) in prefixes.iter().enumerate() {
        for (mode, tag) in [(StripeMode::Test, "test"), (StripeMode::Live, "live")] {
            let head = format!("{prefix}_{tag}_");
            if let Some(body) = value.strip_prefix(&head) {
                let ok = body.len() >= MIN_BODY_LEN
                    && body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                return ok.then_some((i, mode));
            }
        }
    }
    None
}

fn last4(s: &str) -> String {
    s.chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect()
}

/// A Stripe publishable key (`pk_test_…` / `pk_live_…`); public by design.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishableKey {
    value: String,
    mode: StripeMode,
}

impl PublishableKey {
    pub fn parse(value: &str) -> Result<Self, CredentialFormatError> {
        let value = value.trim();
        parse_moded(value, &["pk"])
            .map(|(_, mode)| Self {
                value: value.to_string(),
                mode,
            })
            .ok_or(CredentialFormatError::InvalidPublishableKey)
    }
    pub fn as_str(&self) -> &str {
        &self.value
    }
    pub fn mode(&self) -> StripeMode {
        self.mode
    }
}

/// A secret (`sk_`) or restricted (`rk_`) API key.
#[derive(Debug, Clone)]
pub struct StripeSecretKey {
    value: SecretString,
    kind: SecretKeyKind,
    mode: StripeMode,
    last4: String,
}

impl StripeSecretKey {
    /// Takes the submitted text, which is zeroed once parsed.
    pub fn parse(value: String) -> Result<Self, CredentialFormatError> {
        let value = zeroize::Zeroizing::new(value);
        let trimmed = value.trim();
        let (i, mode) =
            parse_moded(trimmed, &["sk", "rk"]).ok_or(CredentialFormatError::InvalidSecretKey)?;
        let kind = if i == 0 {
            SecretKeyKind::Secret
        } else {
            SecretKeyKind::Restricted
        };
        Ok(Self {
            last4: last4(trimmed),
            value: SecretString::from(trimmed.to_string()),
            kind,
            mode,
        })
    }
    pub fn secret(&self) -> &SecretString {
        &self.value
    }
    pub fn kind(&self) -> SecretKeyKind {
        self.kind
    }
    pub fn mode(&self) -> StripeMode {
        self.mode
    }
    pub fn last4(&self) -> &str {
        &self.last4
    }
}

/// A webhook endpoint signing secret (`whsec_…`). It carries no mode.
#[derive(Debug, Clone)]
pub struct WebhookSigningSecret {
    value: SecretString,
    last4: String,
}

impl WebhookSigningSecret {
    /// Takes the submitted text, which is zeroed once parsed.
    pub fn parse(value: String) -> Result<Self, CredentialFormatError> {
        let value = zeroize::Zeroizing::new(value);
        let trimmed = value.trim();
        let ok = trimmed.len() <= MAX_KEY_LEN
            && trimmed.strip_prefix("whsec_").is_some_and(|body| {
                body.len() >= MIN_BODY_LEN
                    && body
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"+/=_".contains(&b))
            });
        if !ok {
            return Err(CredentialFormatError::InvalidWebhookSigningSecret);
        }
        Ok(Self {
            last4: last4(trimmed),
            value: SecretString::from(trimmed.to_string()),
        })
    }
    pub fn secret(&self) -> &SecretString {
        &self.value
    }
    pub fn last4(&self) -> &str {
        &self.last4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> String {
        v.to_string()
    }

    #[test]
    fn keys_of_each_kind_and_mode_parse() {
        assert_eq!(
            PublishableKey::parse("pk_test_51HxAbcdefgh")
                .unwrap()
                .mode(),
            StripeMode::Test
        );
        assert_eq!(
            PublishableKey::parse("pk_live_51HxAbcdefgh")
                .unwrap()
                .mode(),
            StripeMode::Live
        );
        let sk = StripeSecretKey::parse(s("sk_live_51HxAbcdefgh")).unwrap();
        assert_eq!(
            (sk.kind(), sk.mode(), sk.last4()),
            (SecretKeyKind::Secret, StripeMode::Live, "efgh")
        );
        let rk = StripeSecretKey::parse(s("rk_test_51HxAbcdefgh")).unwrap();
        assert_eq!(
            (rk.kind(), rk.mode()),
            (SecretKeyKind::Restricted, StripeMode::Test)
        );
        assert_eq!(
            WebhookSigningSecret::parse(s("whsec_abcDEF123456"))
                .unwrap()
                .last4(),
            "3456"
        );
    }

    #[test]
    fn malformed_keys_are_refused() {
        for bad in [
            "",
            "pk_",
            "pk_test_",
            "pk_prod_abcdefghij",
            "sk_test_abcdefghij",
            "pk_test_abc def ghij",
            "pk_test_short",
        ] {
            assert!(PublishableKey::parse(bad).is_err(), "{bad}");
        }
        for bad in [
            "pk_test_abcdefghij",
            "sk_test_",
            "sk_demo_abcdefghij",
            "whsec_abcdefghij",
            "sk_test_abc-defghij",
        ] {
            assert!(StripeSecretKey::parse(s(bad)).is_err(), "{bad}");
        }
        for bad in [
            "whsec_",
            "sk_test_abcdefghij",
            "whsec_abc",
            "whsec_abc defghij",
        ] {
            assert!(WebhookSigningSecret::parse(s(bad)).is_err(), "{bad}");
        }
        assert!(PublishableKey::parse(&format!("pk_test_{}", "a".repeat(300))).is_err());
    }

    #[test]
    fn debug_output_never_shows_a_secret() {
        let sk = StripeSecretKey::parse(s("sk_test_CANARYcanary123")).unwrap();
        let wh = WebhookSigningSecret::parse(s("whsec_CANARYcanary456")).unwrap();
        let dbg = format!("{sk:?}{wh:?}");
        assert!(!dbg.contains("CANARY"), "{dbg}");
    }
}
