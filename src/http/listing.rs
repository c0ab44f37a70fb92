//! What every support list shares: strict query parameters (an unknown one is 400
//! `unknown_parameter`, a bad value 400 `invalid_parameter`) and CSV answers
//! (`Accept: text/csv`, RFC 4180, a header row of the JSON field names, nested objects
//! as JSON text), streamed row by row.

use std::collections::HashMap;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::{RefOr, Schema};

use super::error::ApiError;

/// A list's query parameters, checked against the ones it takes.
pub struct Params(HashMap<String, String>);

pub fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_parameter", detail)
}

impl Params {
    pub fn parse(req: &HttpRequest, allowed: &[&str]) -> Result<Self, ApiError> {
        let pairs = actix_web::web::Query::<Vec<(String, String)>>::from_query(req.query_string())
            .map_err(|_| invalid("The query string could not be read."))?
            .into_inner();
        let mut out = HashMap::new();
        for (k, v) in pairs {
            if !allowed.contains(&k.as_str()) {
                return Err(ApiError::bad_request(
                    "unknown_parameter",
                    format!(
                        "{k:?} is not a parameter of this list; it takes {}.",
                        allowed.join(", ")
                    ),
                ));
            }
            if out.insert(k.clone(), v).is_some() {
                return Err(invalid(format!("{k} is given twice.")));
            }
        }
        Ok(Self(out))
    }

    pub fn text(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }

    /// An RFC 3339 timestamp.
    pub fn time(&self, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        self.0
            .get(name)
            .map(|v| {
                DateTime::parse_from_rfc3339(v)
                    .map(|d| d.with_timezone(&Utc))
                    .map_err(|_| invalid(format!("{name} must be an RFC 3339 timestamp.")))
            })
            .transpose()
    }

    /// `limit`: 1..=200, default 50.
    pub fn limit(&self) -> Result<i64, ApiError> {
        match self.0.get("limit") {
            None => Ok(50),
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=200).contains(n))
                .ok_or_else(|| invalid("limit must be a whole number from 1 to 200.")),
        }
    }

    /// A value that must be one of `known`.
    pub fn one_of(&self, name: &str, known: &[&str]) -> Result<Option<String>, ApiError> {
        match self.0.get(name) {
            Some(v) if !known.contains(&v.as_str()) => Err(invalid(format!(
                "{name} must be one of {}.",
                known.join(", ")
            ))),
            other => Ok(other.cloned()),
        }
    }
}

/// Whether the client asked for CSV.
pub fn wants_csv(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().starts_with("text/csv")))
}

/// The JSON field names of `T`, in the order its schema declares them.
fn columns<T: utoipa::PartialSchema>() -> Vec<String> {
    match T::schema() {
        RefOr::T(Schema::Object(o)) => o.properties.keys().cloned().collect(),
        _ => vec![],
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => inert(s),
        Value::Bool(_) | Value::Number(_) => v.to_string(),
        nested => inert(&nested.to_string()),
    }
}

/// A text cell a spreadsheet will not run: one starting with `=`, `+`, `-`, `@`, tab or
/// carriage return gets a leading `'` (OWASP, CSV injection). Request ids and other
/// values a sender chooses reach these exports.
fn inert(text: &str) -> String {
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{text}"),
        _ => text.to_string(),
    }
}

fn csv_line(fields: impl IntoIterator<Item = String>) -> Bytes {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    // Writing to memory cannot fail.
    let _ = w.write_record(fields);
    Bytes::from(w.into_inner().unwrap_or_default())
}

/// `items` as CSV, streamed: the header row, then one row per item.
pub fn csv<T: Serialize + utoipa::PartialSchema + 'static>(items: Vec<T>) -> HttpResponse {
    let names = columns::<T>();
    let header = csv_line(names.clone());
    let rows = items.into_iter().map(move |item| {
        let v = serde_json::to_value(&item).unwrap_or(Value::Null);
        csv_line(names.iter().map(|n| cell(v.get(n).unwrap_or(&Value::Null))))
    });
    let body = futures::stream::iter(
        std::iter::once(header)
            .chain(rows)
            .map(Ok::<_, std::convert::Infallible>),
    );
    HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8; header=present")
        .streaming(body)
}

#[cfg(test)]
mod tests {
    #[test]
    fn formulas_are_made_inert_and_plain_text_is_not() {
        for (given, kept) in [
            ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
            ("+1", "'+1"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("req-1", "req-1"),
            ("", ""),
        ] {
            assert_eq!(super::inert(given), kept);
        }
    }
}
