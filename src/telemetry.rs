//! Logs and traces. Logs go to stderr, as JSON unless stderr is a terminal. Spans are
//! exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the standard
//! `OTEL_*` variables apply: `OTEL_EXPORTER_OTLP_PROTOCOL` `http/protobuf` (default) or
//! `http/json`, `OTEL_SERVICE_NAME`, `OTEL_BSP_SCHEDULE_DELAY`, …).
//!
//! Span fields are chosen to be safe: workspace, intent and Stripe object ids, routes,
//! statuses and outcomes — never a key, secret, signature, body or card detail.

use std::io::IsTerminal;

use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Keeps the exporter alive; `shutdown` flushes the spans not sent yet.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    pub fn shutdown(self) {
        if let Some(p) = self.provider {
            if let Err(e) = p.shutdown() {
                eprintln!("warning: could not flush traces: {e}");
            }
        }
    }
}

/// Installs the global subscriber (once, at start-up, outside the async runtime: the
/// OTLP exporter's HTTP client blocks).
pub fn init() -> Telemetry {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    // actix-web-prom warns on every Swagger UI asset that it cannot turn the route's
    // tail pattern into a label (the request is counted all the same): noise, unless
    // asked for by name.
    let quiet = std::env::var("RUST_LOG").map_or(true, |v| !v.contains("actix_web_prom"));
    let filter = if quiet {
        filter.add_directive("actix_web_prom=error".parse().expect("a valid directive"))
    } else {
        filter
    };
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if std::io::stderr().is_terminal() {
        fmt.boxed()
    } else {
        fmt.json().flatten_event(true).boxed()
    };
    // Log lines carry their own fields; spans go to the trace exporter only (formatting
    // every span's fields for the log would cost on every request for nothing).
    let fmt = fmt.with_filter(tracing_subscriber::filter::filter_fn(|m| m.is_event()));
    let (otel, provider, error) = match otlp_provider() {
        Ok(Some(provider)) => {
            let layer = tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("roampay"))
                .boxed();
            (Some(layer), Some(provider), None)
        }
        Ok(None) => (None, None, None),
        Err(e) => (None, None, Some(e)),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .init();
    if let Some(e) = error {
        tracing::warn!(error = %e, "OTLP trace export is off: the exporter could not be built");
    }
    Telemetry { provider }
}

const OTLP_ENDPOINTS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
];

/// Whether traces are exported (an OTLP endpoint is configured).
pub fn otlp_configured() -> bool {
    OTLP_ENDPOINTS
        .iter()
        .any(|k| std::env::var(k).is_ok_and(|v| !v.is_empty()))
}

/// The OTLP endpoints that are set are absolute `http(s)://` URLs.
pub fn check_otlp_endpoints() -> Result<(), String> {
    for k in OTLP_ENDPOINTS {
        if let Ok(v) = std::env::var(k).map(|v| v.trim().to_string()) {
            if !v.is_empty() {
                crate::config::check_http_url(k, &v)?;
            }
        }
    }
    Ok(())
}

fn otlp_provider() -> Result<Option<SdkTracerProvider>, opentelemetry_otlp::ExporterBuildError> {
    if !otlp_configured() {
        return Ok(None);
    }
    let protocol = match std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref() {
        Ok("http/json") => Protocol::HttpJson,
        _ => Protocol::HttpBinary,
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .build()?;
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "roampay".into());
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder().with_service_name(service).build())
            .build(),
    ))
}

/// Reads W3C `traceparent`/`tracestate` from request headers.
struct HeaderExtractor<'a>(&'a actix_web::http::header::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Makes `span` a child of the caller's trace when the request carries `traceparent`.
pub fn continue_trace(span: &tracing::Span, headers: &actix_web::http::header::HeaderMap) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if headers.contains_key("traceparent") {
        let parent = opentelemetry::global::get_text_map_propagator(|p| {
            p.extract(&HeaderExtractor(headers))
        });
        let _ = span.set_parent(parent);
    }
}

/// `traceparent` (and `tracestate`) for the current span, for outgoing requests; empty
/// when trace export is off.
pub fn trace_headers() -> Vec<(String, String)> {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    struct Headers(Vec<(String, String)>);
    impl opentelemetry::propagation::Injector for Headers {
        fn set(&mut self, key: &str, value: String) {
            self.0.push((key.to_string(), value));
        }
    }
    let context = tracing::Span::current().context();
    let mut headers = Headers(Vec::new());
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut headers));
    headers.0
}
