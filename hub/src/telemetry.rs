//! OpenTelemetry trace export and W3C Trace Context propagation.
//!
//! Off by default. With an OTLP endpoint configured (`[telemetry] otlp_endpoint`,
//! `--otlp-endpoint`, `NERVE_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`), the hub's
//! `tracing` spans are exported in batches over OTLP/HTTP (protobuf) to `<endpoint>/v1/traces`,
//! and the batch is flushed when the hub shuts down.
//!
//! Propagation: a REST, `/bus/api`, A2A or WebSocket upgrade request carrying `traceparent`
//! (and `tracestate`) makes the hub's span for it a child of the caller's span; upstream
//! webhooks carry the `traceparent` of the hub's span (the CloudEvents distributed-tracing
//! extension, binary mode); bus tasks submitted through the hub carry it in their envelope,
//! and the bus's delivery span is parented to the envelope's `traceparent` through the hook
//! of [`nerve_agentbus::trace`]. So one trace covers REST call → bus task → agent handling.
//!
//! When export is off, no OpenTelemetry layer is installed, the hub's request spans are not
//! even created (`enabled()` is one relaxed atomic load), and only an explicit `traceparent`
//! of a bus submission is passed through into the envelope unchanged.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::HeaderMap;
use opentelemetry::KeyValue;
use opentelemetry::propagation::Extractor;
use serde::Deserialize;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C header naming the caller's span.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C header carrying vendor trace state.
pub const TRACESTATE: &str = "tracestate";

/// Whether spans are exported (set once at startup).
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Trace export settings (`[telemetry]`).
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    /// OTLP/HTTP collector base URL, e.g. `http://127.0.0.1:4318` (spans go to
    /// `<url>/v1/traces`; a URL already ending in `/v1/traces` is used as is). None: no export.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported resource (default `nerve`).
    pub service_name: String,
    /// Timeout of one export request, in milliseconds (default 10000).
    pub export_timeout_ms: u64,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        TelemetrySettings {
            otlp_endpoint: None,
            service_name: "nerve".into(),
            export_timeout_ms: 10_000,
        }
    }
}

impl TelemetrySettings {
    /// Checks the endpoint and ranges.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(e) = &self.otlp_endpoint {
            let url = url::Url::parse(e)
                .map_err(|err| format!("invalid telemetry.otlp_endpoint '{e}': {err}"))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(format!(
                    "telemetry.otlp_endpoint '{e}' must be an https:// or http:// URL \
                     (OTLP/HTTP, e.g. http://127.0.0.1:4318)"
                ));
            }
        }
        if self.service_name.trim().is_empty() {
            return Err("telemetry.service_name must not be empty".into());
        }
        if self.export_timeout_ms == 0 {
            return Err("telemetry.export_timeout_ms must be > 0".into());
        }
        Ok(())
    }

    /// The URL spans are posted to, if export is configured.
    pub fn traces_url(&self) -> Option<String> {
        let base = self.otlp_endpoint.as_deref()?.trim_end_matches('/');
        Some(if base.ends_with("/v1/traces") {
            base.to_string()
        } else {
            format!("{base}/v1/traces")
        })
    }
}

/// The running exporter; [`Telemetry::shutdown`] flushes the spans not yet sent.
pub struct Telemetry {
    inner: nerve_agentbus::telemetry::Telemetry,
}

impl Telemetry {
    /// Installs the process's logging (`filter`, to stderr) and, when `settings` name an
    /// endpoint, the batch exporter of the spans of the hub and the bus (the setup shared with
    /// `nerve-bus`, [`nerve_agentbus::telemetry::init`]). `node_id` becomes
    /// `service.instance.id`. Call it outside the async runtime: the exporter owns its own
    /// sending thread.
    pub fn start(
        settings: &TelemetrySettings,
        node_id: &str,
        filter: tracing_subscriber::EnvFilter,
    ) -> anyhow::Result<Self> {
        let export = settings
            .traces_url()
            .map(|url| nerve_agentbus::telemetry::Export {
                traces_url: url,
                service_name: &settings.service_name,
                resource: vec![
                    KeyValue::new("service.instance.id", node_id.to_string()),
                    KeyValue::new("nerve.node_id", node_id.to_string()),
                    KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
                ],
                timeout: Duration::from_millis(settings.export_timeout_ms),
                tracer: "nerve",
                // Log events are not exported: their fields (e.g. a webhook URL with a
                // function key) are not vetted for secrets.
                targets: &["nerve_hub", "nerve_agentbus"],
            });
        let inner = nerve_agentbus::telemetry::init(filter, export)?;
        ENABLED.store(inner.exporting(), Ordering::Relaxed);
        Ok(Telemetry { inner })
    }

    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.inner.exporting()
    }

    /// Exports the spans still queued and stops the exporter.
    pub fn shutdown(self) {
        ENABLED.store(false, Ordering::Relaxed);
        self.inner.shutdown("nerve");
    }
}

/// Whether spans are exported.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Makes `span` a child of the caller's span named by the request's `traceparent` and
/// `tracestate` headers; no-op when export is off or the headers are absent or malformed.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &HeaderMap) {
    if enabled()
        && headers.contains_key(TRACEPARENT)
        && let Some(cx) = nerve_agentbus::telemetry::extract(&HeaderExtractor(headers))
    {
        // Fails only for a span already closed or disabled: then there is nothing to parent.
        let _ = span.set_parent(cx);
    }
}

/// Makes `span` a child of the span named by a W3C `traceparent` value (e.g. an envelope's).
pub fn set_parent_from_traceparent(span: &tracing::Span, traceparent: &str) {
    if enabled() {
        nerve_agentbus::telemetry::set_parent(span, traceparent);
    }
}

/// The `traceparent` (and `tracestate`) headers naming the current span, for outgoing
/// requests; empty when export is off or there is no current span.
pub fn current_headers() -> Vec<(&'static str, String)> {
    if !enabled() {
        return Vec::new();
    }
    nerve_agentbus::telemetry::current_headers()
}

/// The `traceparent` naming the current span; None when export is off or there is none.
pub fn current_traceparent() -> Option<String> {
    current_headers()
        .into_iter()
        .find_map(|(k, v)| (k == TRACEPARENT).then_some(v))
}

/// The `traceparent` a bus task submitted now should carry: with export on, the current
/// span's (a child of the caller's); with export off, the caller's own value passed through.
pub fn traceparent_for_submit(callers: Option<String>) -> Option<String> {
    if enabled() {
        current_traceparent().or(callers)
    } else {
        callers
    }
}

/// The request's `traceparent` header, if present and well-formed.
pub fn header_traceparent(headers: &HeaderMap) -> Option<String> {
    let tp = headers.get(TRACEPARENT)?.to_str().ok()?.trim();
    nerve_agentbus::envelope::validate_traceparent(tp)
        .ok()
        .map(|_| tp.to_string())
}

/// A span for the request handled now, or a disabled span when export is off (zero cost).
#[macro_export]
macro_rules! request_span {
    ($name:expr, $($fields:tt)*) => {
        if $crate::telemetry::enabled() {
            tracing::info_span!($name, $($fields)*)
        } else {
            tracing::Span::none()
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_url_appends_the_signal_path_once() {
        let s = |e: &str| TelemetrySettings {
            otlp_endpoint: Some(e.into()),
            ..Default::default()
        };
        assert_eq!(
            s("http://c:4318").traces_url().as_deref(),
            Some("http://c:4318/v1/traces")
        );
        assert_eq!(
            s("http://c:4318/").traces_url().as_deref(),
            Some("http://c:4318/v1/traces")
        );
        assert_eq!(
            s("http://c:4318/v1/traces").traces_url().as_deref(),
            Some("http://c:4318/v1/traces")
        );
        assert_eq!(TelemetrySettings::default().traces_url(), None);
    }

    #[test]
    fn validation() {
        let mut s = TelemetrySettings::default();
        assert!(s.validate().is_ok());
        s.otlp_endpoint = Some("not a url".into());
        assert!(s.validate().is_err());
        s.otlp_endpoint = Some("grpc://collector:4317".into());
        assert!(s.validate().is_err());
        s.otlp_endpoint = Some("https://collector:4318".into());
        assert!(s.validate().is_ok());
        s.otlp_endpoint = Some("http://collector:4318".into());
        assert!(s.validate().is_ok());
        s.service_name = " ".into();
        assert!(s.validate().is_err());
    }

    #[test]
    fn pass_through_only_when_export_is_off() {
        let mut h = HeaderMap::new();
        assert_eq!(header_traceparent(&h), None);
        h.insert(TRACEPARENT, "garbage".parse().unwrap());
        assert_eq!(header_traceparent(&h), None);
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        h.insert(TRACEPARENT, tp.parse().unwrap());
        assert_eq!(header_traceparent(&h).as_deref(), Some(tp));
        assert_eq!(
            traceparent_for_submit(header_traceparent(&h)).as_deref(),
            Some(tp)
        );
        assert!(current_headers().is_empty());
    }
}
