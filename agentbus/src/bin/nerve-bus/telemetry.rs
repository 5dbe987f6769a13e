//! Trace export for `nerve-bus`, as the hub does it: with `--otlp-endpoint` (or
//! `NERVE_OTLP_ENDPOINT`, else `OTEL_EXPORTER_OTLP_ENDPOINT`) the command's `tracing` spans go
//! over OTLP/HTTP (protobuf) to `<endpoint>/v1/traces` in batches, flushed before it exits.
//!
//! `submit` runs in a `nerve-bus.submit` span whose W3C `traceparent` the task's envelope
//! carries, and `agent` makes each `bus.deliver` span a child of the envelope's `traceparent`
//! (the bus's parent hook), so one trace runs from the submitting shell to the agent that
//! handled the task, across processes and hubs.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Result, bail};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Timeout of one export request.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The running exporter; `shutdown` flushes what is queued.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// The URL spans are posted to for an OTLP base `endpoint`.
pub fn traces_url(endpoint: &str) -> Result<String> {
    let url = reqwest::Url::parse(endpoint)
        .map_err(|e| anyhow::anyhow!("invalid --otlp-endpoint '{endpoint}': {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!("--otlp-endpoint '{endpoint}' must be an http:// or https:// URL (OTLP/HTTP)");
    }
    let base = endpoint.trim_end_matches('/');
    Ok(if base.ends_with("/v1/traces") {
        base.to_string()
    } else {
        format!("{base}/v1/traces")
    })
}

/// Installs logging to stderr and, with an endpoint, the OTLP layer. Call it before the async
/// runtime starts: the exporter sends from a thread of its own.
pub fn init(endpoint: Option<&str>, service_name: &str) -> Result<Telemetry> {
    let filter = tracing_subscriber::EnvFilter::from_default_env();
    let Some(endpoint) = endpoint else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
        return Ok(Telemetry { provider: None });
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(traces_url(endpoint)?)
        .with_timeout(EXPORT_TIMEOUT)
        .build()?;
    let resource = Resource::builder()
        .with_service_name(service_name.to_string())
        .with_attributes([KeyValue::new("service.version", env!("CARGO_PKG_VERSION"))])
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("nerve-bus");
    // Spans of this command and of the bus are exported at info level whatever RUST_LOG says;
    // log events are not exported (their fields are not vetted for secrets).
    let exported = tracing_subscriber::filter::filter_fn(|m| {
        m.is_span()
            && *m.level() <= tracing::Level::INFO
            && (m.target().starts_with("nerve_bus") || m.target().starts_with("nerve_agentbus"))
    });
    tracing_subscriber::registry()
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(exported),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter),
        )
        .init();
    nerve_agentbus::trace::set_parent_hook(set_parent);
    Ok(Telemetry {
        provider: Some(provider),
    })
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the spans still queued.
    pub fn shutdown(self) {
        if let Some(p) = self.provider
            && let Err(e) = p.shutdown()
        {
            eprintln!("nerve-bus: flushing traces failed: {e}");
        }
    }
}

/// Makes `span` a child of the remote span named by `traceparent` (the bus's parent hook).
fn set_parent(span: &tracing::Span, traceparent: &str) {
    let carrier = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    let _ = span.set_parent(cx);
}

/// The W3C `traceparent` of the current span, when it is exported.
pub fn current_traceparent() -> Option<String> {
    let cx: Context = tracing::Span::current().context();
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}
