//! Trace export for `nerve-bus`, as the hub does it (one setup in
//! [`nerve_agentbus::telemetry`]): with `--otlp-endpoint` (or `NERVE_OTLP_ENDPOINT`, else
//! `OTEL_EXPORTER_OTLP_ENDPOINT`) the command's `tracing` spans go over OTLP/HTTP (protobuf)
//! to `<endpoint>/v1/traces` in batches, flushed before it exits.
//!
//! `submit` runs in a `nerve-bus.submit` span whose W3C `traceparent` the task's envelope
//! carries, and `agent` makes each `bus.deliver` span a child of the envelope's `traceparent`
//! (the bus's parent hook), so one trace runs from the submitting shell to the agent that
//! handled the task, across processes and hubs.

use std::time::Duration;

use anyhow::Result;
use nerve_agentbus::telemetry::{Export, Telemetry};
use opentelemetry::KeyValue;

pub use nerve_agentbus::telemetry::current_traceparent;

/// Timeout of one export request.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Installs logging to stderr (`RUST_LOG`) and, with an endpoint, the OTLP layer. Call it
/// before the async runtime starts: the exporter sends from a thread of its own.
pub fn init(endpoint: Option<&str>, service_name: &str) -> Result<Telemetry> {
    let export = match endpoint {
        None => None,
        Some(e) => Some(Export {
            traces_url: nerve_agentbus::telemetry::traces_url(e)
                .map_err(|why| anyhow::anyhow!("--otlp-endpoint '{e}': {why}"))?,
            service_name,
            resource: vec![KeyValue::new("service.version", env!("CARGO_PKG_VERSION"))],
            timeout: EXPORT_TIMEOUT,
            tracer: "nerve-bus",
            targets: &["nerve_bus", "nerve_agentbus"],
        }),
    };
    nerve_agentbus::telemetry::init(tracing_subscriber::EnvFilter::from_default_env(), export)
}
