//! The OpenAPI 3 description of the HTTP API, generated from the handlers'
//! `#[utoipa::path]` attributes, served at `GET /openapi.json` with Swagger UI (vendored
//! assets, no external request) at `/docs/`.
//!
//! Every schema is derived from the type the handler actually serializes (or reads),
//! collected from the paths below.

use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme,
};
use utoipa::{Modify, OpenApi};

use super::{
    billing, connect, deliveries, locations, ocpi, ocpi_config, ops, payments, refunds, sessions,
    support, webhooks,
};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::builder()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some("HS256 JWT with `sub`, `workspaces` and `scope` claims; `roampay token` prints one."))
                .build()),
        );
        components.add_security_scheme(
            "ocpi_token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`Token <base64 of the credentials token>` (OCPI 2.2.1): token A to register, then the connection's token.",
            ))),
        );
        components.add_security_scheme(
            "stripe_signature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Stripe-Signature",
                "Stripe's signature of the raw body with the workspace's webhook signing secret.",
            ))),
        );
        describe_access(openapi);
        add_headers(openapi);
        enumerate_error_codes(openapi);
        problem_examples(openapi);
    }
}

/// Each problem+json response gets an example of its own: its status and the first
/// code its description names (a generated client, and a reader, sees a 401 answer as
/// a 401, not as the one example of the `Problem` schema).
fn problem_examples(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
    for item in openapi.paths.paths.values_mut() {
        for op in operations(item) {
            for (status, response) in op.responses.responses.iter_mut() {
                let RefOr::T(response) = response else {
                    continue;
                };
                let Some(RefOr::T(content)) = response.content.get_mut("application/problem+json")
                else {
                    continue;
                };
                let status: u16 = status.parse().unwrap_or(500);
                content.example = Some(problem_example(status, &response.description));
            }
        }
    }
}

/// A problem+json body of `status` with the first code `description` names.
fn problem_example(status: u16, description: &str) -> serde_json::Value {
    let code = description
        .split('`')
        .nth(1)
        .filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        .unwrap_or(match status {
            401 => "unauthenticated",
            403 => "forbidden",
            404 => "not_found",
            422 => "validation_failed",
            429 => "rate_limited",
            503 => "store_unavailable",
            _ => "internal_error",
        });
    let title = actix_web::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    serde_json::json!({
        "type": format!("urn:roampay:problem:{code}"),
        "title": title,
        "status": status,
        "detail": description,
        "code": code,
        "request_id": "0193a6c2-5b1e-7c4d-9f2a-3b8e1d6f0a47",
    })
}

/// The error codes of the runbook's tables of HTTP error codes and webhook refusals
/// (a test keeps those tables and the code in step).
pub fn error_codes() -> Vec<String> {
    let runbook = include_str!("../../docs/runbook.md");
    let mut codes: Vec<String> = ["## HTTP error codes", "## Webhook refusals"]
        .iter()
        .filter_map(|heading| runbook.split_once(heading).map(|(_, rest)| rest))
        .flat_map(|section| {
            let end = section.find("\n## ").unwrap_or(section.len());
            section[..end]
                .lines()
                .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    codes.sort();
    codes.dedup();
    codes
}

/// `Problem.code` and `FieldError.code` as enums of the codes there are.
fn enumerate_error_codes(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
    use utoipa::openapi::RefOr;
    let Some(components) = openapi.components.as_mut() else {
        return;
    };
    for name in ["Problem", "FieldError"] {
        if let Some(RefOr::T(Schema::Object(o))) = components.schemas.get_mut(name) {
            let code = ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some("Stable snake_case error code (see docs/runbook.md)."))
                .enum_values(Some(error_codes()))
                .build();
            o.properties
                .insert("code".into(), RefOr::T(Schema::Object(code)));
        }
    }
}

/// The headers every answer carries (`X-Request-Id`), and those of some statuses:
/// `Retry-After` on 429 and 503, `Allow` on 405.
fn add_headers(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::schema::{Object, Type};
    use utoipa::openapi::{HeaderBuilder, RefOr};
    let header = |t: Type, text: &str| {
        RefOr::T(
            HeaderBuilder::new()
                .schema(Some(Object::with_type(t)))
                .description(Some(text))
                .build(),
        )
    };
    for item in openapi.paths.paths.values_mut() {
        for op in operations(item) {
            for (status, response) in op.responses.responses.iter_mut() {
                let RefOr::T(response) = response else {
                    continue;
                };
                let id = header(
                    Type::String,
                    "The request's id (echoed when the client sent one).",
                );
                response.headers.insert("X-Request-Id".into(), id);
                if status == "429" || status == "503" {
                    let wait = header(Type::Integer, "Seconds to wait before trying again.");
                    response.headers.insert("Retry-After".into(), wait);
                }
                if status == "405" {
                    let allow = header(Type::String, "The methods the path takes.");
                    response.headers.insert("Allow".into(), allow);
                }
            }
        }
    }
}

/// Who may call what, for the operations that do not take a bearer token alone:
/// probes need nothing, webhooks Stripe's signature, the driver endpoints a `driver`
/// token or nothing (when the workspace allows guests). Every operation's description
/// is at least its summary.
fn describe_access(openapi: &mut utoipa::openapi::OpenApi) {
    for (path, item) in openapi.paths.paths.iter_mut() {
        let required =
            if path.starts_with("/ocpi/stripe/webhook") || path == "/ocpi/stripe/connect/webhook" {
                vec![SecurityRequirement::new(
                    "stripe_signature",
                    Vec::<String>::new(),
                )]
            } else if ["/healthz", "/readyz", "/metrics"].contains(&path.as_str()) {
                vec![SecurityRequirement::default()]
            } else {
                vec![
                    SecurityRequirement::default(),
                    SecurityRequirement::new("bearer", Vec::<String>::new()),
                ]
            };
        for op in operations(item) {
            if op.security.is_none() {
                op.security = Some(required.clone());
            }
            if op.description.is_none() {
                op.description = op.summary.clone();
            }
        }
    }
}

fn operations(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// The description served, with the public URL as its server.
pub fn document(public_url: &str) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.servers = Some(vec![utoipa::openapi::Server::new(public_url)]);
    doc
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "roampay",
        contact(name = "roampay maintainers"),
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
        description = "Event-sourced payment orchestration for workspace-owned Stripe accounts. Errors are RFC 9457 problem+json with a stable `code`; every response carries `X-Request-Id`."
    ),
    paths(
        ops::healthz,
        ops::readyz,
        ops::metrics,
        ocpi_config::get,
        ocpi_config::patch,
        ocpi::connections::create,
        ocpi::connections::list,
        ocpi::connections::delete,
        ocpi::credentials::versions,
        ocpi_config::validate,
        locations::put,
        locations::get_emsp,
        payments::create,
        payments::get,
        payments::confirm,
        webhooks::shared,
        webhooks::per_workspace,
        connect::onboarding,
        connect::webhook,
        sessions::start,
        sessions::complete,
        sessions::cancel,
        support::audit,
        support::charging_intents,
        support::workspaces,
        support::payment_health,
        deliveries::list,
        deliveries::get,
        refunds::create,
        billing::get,
        billing::checkout,
        billing::portal,
        billing::webhook,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "ocpi-config", description = "Workspace Stripe credentials and roaming settings (Manage Web)"),
        (name = "ocpi-connections", description = "The workspace's OCPI 2.2.1 partner connections (its CPO platform)"),
        (name = "ocpi", description = "OCPI 2.2.1 as a CPO calls it (OCPI envelope, token authentication)"),
        (name = "locations", description = "Reference data pushed by the CPO side"),
        (name = "payments", description = "Pre-authorizations for Roaming Web"),
        (name = "webhooks", description = "Called by Stripe"),
        (name = "sessions", description = "OCPI session module: start, complete (capture), cancel"),
        (name = "support", description = "Audit and health views"),
        (name = "billing", description = "The platform's subscription of each workspace"),
        (name = "operations", description = "Probes and metrics"),
    )
)]
pub struct ApiDoc;

/// `/docs` → `/docs/` (Swagger UI resolves its assets relative to the slash).
pub async fn docs_redirect() -> actix_web::HttpResponse {
    actix_web::HttpResponse::PermanentRedirect()
        .insert_header((actix_web::http::header::LOCATION, "/docs/"))
        .finish()
}
