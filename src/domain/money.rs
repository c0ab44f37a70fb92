//! Money is integer minor units with a currency, never a float.

use std::fmt;

/// A lower-case ISO 4217 code that Stripe can charge in.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency(String);

/// Stripe's presentment currencies (lower case).
const CURRENCIES: &[&str] = &[
    "aed", "afn", "all", "amd", "ang", "aoa", "ars", "aud", "awg", "azn", "bam", "bbd", "bdt",
    "bgn", "bhd", "bif", "bmd", "bnd", "bob", "brl", "bsd", "bwp", "byn", "bzd", "cad", "cdf",
    "chf", "clp", "cny", "cop", "crc", "cve", "czk", "djf", "dkk", "dop", "dzd", "egp", "etb",
    "eur", "fjd", "fkp", "gbp", "gel", "gip", "gmd", "gnf", "gtq", "gyd", "hkd", "hnl", "htg",
    "huf", "idr", "ils", "inr", "isk", "jmd", "jod", "jpy", "kes", "kgs", "khr", "kmf", "krw",
    "kwd", "kyd", "kzt", "lak", "lbp", "lkr", "lrd", "lsl", "mad", "mdl", "mga", "mkd", "mmk",
    "mnt", "mop", "mur", "mvr", "mwk", "mxn", "myr", "mzn", "nad", "ngn", "nio", "nok", "npr",
    "nzd", "omr", "pab", "pen", "pgk", "php", "pkr", "pln", "pyg", "qar", "ron", "rsd", "rub",
    "rwf", "sar", "sbd", "scr", "sek", "sgd", "shp", "sle", "sos", "srd", "std", "szl", "thb",
    "tjs", "tnd", "top", "try", "ttd", "twd", "tzs", "uah", "ugx", "usd", "uyu", "uzs", "vnd",
    "vuv", "wst", "xaf", "xcd", "xof", "xpf", "yer", "zar", "zmw",
];

impl Currency {
    pub fn parse(code: &str) -> Option<Self> {
        CURRENCIES
            .binary_search(&code)
            .ok()
            .map(|_| Self(code.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Currency {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value).ok_or_else(|| format!("unsupported currency {value:?}"))
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> Self {
        c.0
    }
}

impl Default for Currency {
    fn default() -> Self {
        Self("aud".into())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The amount held on a driver's card before a paid session: 50..=1,000,000 minor units.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "i64", into = "i64")]
pub struct PreAuthAmount(i64);

impl PreAuthAmount {
    pub const MIN: i64 = 50;
    pub const MAX: i64 = 1_000_000;
    pub const DEFAULT: Self = Self(5000);

    pub fn parse(cents: i64) -> Option<Self> {
        (Self::MIN..=Self::MAX)
            .contains(&cents)
            .then_some(Self(cents))
    }
    pub fn cents(self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for PreAuthAmount {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, Self::Error> {
        Self::parse(v).ok_or_else(|| format!("pre-authorization amount {v} out of range"))
    }
}

impl From<PreAuthAmount> for i64 {
    fn from(a: PreAuthAmount) -> Self {
        a.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_list_is_sorted_for_binary_search() {
        assert!(CURRENCIES.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn currencies_and_amounts_parse_only_within_their_domain() {
        assert!(Currency::parse("aud").is_some());
        assert!(Currency::parse("AUD").is_none());
        assert!(Currency::parse("xyz").is_none());
        assert!(PreAuthAmount::parse(49).is_none());
        assert_eq!(PreAuthAmount::parse(50).map(PreAuthAmount::cents), Some(50));
        assert!(PreAuthAmount::parse(1_000_001).is_none());
    }
}
