//! What roampay accepts from Stripe's payloads, checked before anything is stored:
//! object ids and codes have a shape, free text is made safe to store (PostgreSQL
//! `text` cannot hold NUL). Anything else is refused (`invalid_payload`).

use serde_json::Value;

/// A field of Stripe's payload that failed its check (named for logs, never echoed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the Stripe payload's {0} is not well-formed")]
pub struct InvalidField(pub &'static str);

/// Object ids: `^[A-Za-z0-9_]{1,255}$` (`pi_…`, `evt_…`, `ch_…`, `re_…`, `dp_…`).
pub fn is_object_id(s: &str) -> bool {
    (1..=255).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Codes: `^[a-z0-9_]{1,100}$` (`card_declined`, `insufficient_funds`, …).
pub fn is_code(s: &str) -> bool {
    (1..=100).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Our own ids carried in metadata (workspace and charging intent ids).
pub fn is_metadata_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The string at `pointer`, if present, checked with `ok`.
pub fn checked(
    v: &Value,
    pointer: &str,
    field: &'static str,
    ok: fn(&str) -> bool,
) -> Result<Option<String>, InvalidField> {
    match v.pointer(pointer) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if ok(s) => Ok(Some(s.clone())),
        Some(_) => Err(InvalidField(field)),
    }
}

/// Free text (a decline message for the driver): control characters dropped, at most
/// 500 characters kept.
pub fn text(v: &Value, pointer: &str) -> Option<String> {
    let s = v.pointer(pointer)?.as_str()?;
    let clean: String = s.chars().filter(|c| !c.is_control()).take(500).collect();
    (!clean.is_empty()).then_some(clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_codes_have_a_shape() {
        assert!(is_object_id("pi_3Hx9aB"));
        for bad in ["", "pi 1", "pi\u{0}1", "pi-1", &"a".repeat(256)] {
            assert!(!is_object_id(bad), "{bad:?}");
        }
        assert!(is_code("card_declined"));
        for bad in ["", "Card", "card declined", "card\u{0}", &"a".repeat(101)] {
            assert!(!is_code(bad), "{bad:?}");
        }
    }

    #[test]
    fn free_text_loses_control_characters() {
        let v = serde_json::json!({"m": "Your card\u{0} was\ndeclined."});
        assert_eq!(text(&v, "/m").as_deref(), Some("Your card wasdeclined."));
    }
}
