//! Logging and OTLP trace export set up once for a process: the `nerve` hub and the `nerve-bus`
//! CLI both call [`init`], so both export the same way.
//!
//! Log lines go to stderr through the given filter. With an [`Export`], the process's
//! `tracing` spans of the named crates also go over OTLP/HTTP (protobuf) in batches, at info
//! level whatever the log filter says; log events are never exported (their fields are not
//! vetted for secrets). The bus's delivery spans are parented to their envelope's
//! `traceparent` through [`crate::trace::set_parent_hook`], installed here.
//!
//! Propagation helpers accept W3C Trace Context level 2 senders: a `traceparent` whose flags
//! carry bits beyond `sampled` (e.g. `03`, the `random` bit of current OpenTelemetry SDKs)
//! continues the caller's trace instead of starting a new one.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Where and as what a process exports its spans.
pub struct Export<'a> {
    /// The URL spans are posted to (see [`traces_url`]).
    pub traces_url: String,
    /// `service.name` of the exported resource.
    pub service_name: &'a str,
    /// Further resource attributes (`service.version`, instance ids).
    pub resource: Vec<KeyValue>,
    /// Timeout of one export request.
    pub timeout: Duration,
    /// The instrumentation scope name of the exported spans.
    pub tracer: &'static str,
    /// Target prefixes (crate names) whose spans are exported.
    pub targets: &'static [&'static str],
}

/// The running exporter, if any; [`Telemetry::shutdown`] flushes what is queued.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// The URL spans are posted to for an OTLP base `endpoint`: `<endpoint>/v1/traces`, or the
/// endpoint as is when it already ends so. Errors name what is wrong with it.
pub fn traces_url(endpoint: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(endpoint).map_err(|e| format!("invalid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(
            "must be an http:// or https:// URL (OTLP/HTTP, e.g. http://127.0.0.1:4318)".into(),
        );
    }
    let base = endpoint.trim_end_matches('/');
    Ok(if base.ends_with("/v1/traces") {
        base.to_string()
    } else {
        format!("{base}/v1/traces")
    })
}

/// Installs the process's subscriber: log lines to stderr through `filter` and, with `export`,
/// the OTLP layer. Call it once, before the async runtime starts: the exporter sends from a
/// thread of its own.
pub fn init(filter: EnvFilter, export: Option<Export<'_>>) -> anyhow::Result<Telemetry> {
    let Some(export) = export else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
        return Ok(Telemetry { provider: None });
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(export.traces_url)
        .with_timeout(export.timeout)
        .build()?;
    let resource = Resource::builder()
        .with_service_name(export.service_name.to_string())
        .with_attributes(export.resource)
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer(export.tracer);
    let targets = export.targets;
    let exported = tracing_subscriber::filter::filter_fn(move |m| {
        m.is_span()
            && *m.level() <= tracing::Level::INFO
            && targets.iter().any(|t| m.target().starts_with(t))
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
    crate::trace::set_parent_hook(set_parent);
    Ok(Telemetry {
        provider: Some(provider),
    })
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the spans still queued and stops the exporter; `who` names the process in the
    /// message printed if that fails.
    pub fn shutdown(self, who: &str) {
        if let Some(p) = self.provider
            && let Err(e) = p.shutdown()
        {
            eprintln!("{who}: flushing traces failed: {e}");
        }
    }
}

/// A version-00 `traceparent` with its flags reduced to the `sampled` bit, which is all this
/// propagator reads; other values unchanged.
fn level1(traceparent: &str) -> Cow<'_, str> {
    let tp = traceparent.trim();
    match tp.rsplit_once('-') {
        Some((head, flags)) if tp.starts_with("00-") && flags.len() == 2 => {
            match u8::from_str_radix(flags, 16) {
                Ok(f) if f > 1 => Cow::Owned(format!("{head}-{:02x}", f & 1)),
                _ => Cow::Borrowed(tp),
            }
        }
        _ => Cow::Borrowed(tp),
    }
}

/// The remote context named by `traceparent` (and `tracestate`) in `carrier`; None when absent
/// or malformed.
pub fn extract(carrier: &dyn Extractor) -> Option<Context> {
    let tp = carrier.get("traceparent")?;
    let normal = level1(tp);
    let cx = if normal == tp {
        TraceContextPropagator::new().extract(carrier)
    } else {
        let mut fixed: HashMap<String, String> = HashMap::new();
        fixed.insert("traceparent".into(), normal.into_owned());
        if let Some(ts) = carrier.get("tracestate") {
            fixed.insert("tracestate".into(), ts.to_string());
        }
        TraceContextPropagator::new().extract(&fixed)
    };
    cx.span().span_context().is_valid().then_some(cx)
}

/// Makes `span` a child of the remote span named by `traceparent`; no-op when it is malformed
/// (the bus's parent hook).
pub fn set_parent(span: &tracing::Span, traceparent: &str) {
    let carrier = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    if let Some(cx) = extract(&carrier) {
        // Fails only for a span already closed or disabled: then there is nothing to parent.
        let _ = span.set_parent(cx);
    }
}

/// The `traceparent` and `tracestate` naming the current span; empty when there is none or it
/// is not exported.
pub fn current_headers() -> Vec<(&'static str, String)> {
    let cx: Context = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return Vec::new();
    }
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    ["traceparent", "tracestate"]
        .into_iter()
        .filter_map(|k| carrier.remove(k).map(|v| (k, v)))
        .collect()
}

/// The W3C `traceparent` of the current span, when it is exported.
pub fn current_traceparent() -> Option<String> {
    current_headers()
        .into_iter()
        .find_map(|(k, v)| (k == "traceparent").then_some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7";

    #[test]
    fn traces_url_appends_the_signal_path_once() {
        assert_eq!(
            traces_url("http://c:4318").unwrap(),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://c:4318/").unwrap(),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://c/v1/traces").unwrap(),
            "https://c/v1/traces"
        );
        assert!(traces_url("grpc://c:4317").unwrap_err().contains("http://"));
        assert!(traces_url("not a url").is_err());
    }

    #[test]
    fn level_2_flags_continue_the_trace() {
        for flags in ["01", "03", "02", "00"] {
            let carrier = HashMap::from([("traceparent".to_string(), format!("{TP}-{flags}"))]);
            let cx = extract(&carrier).expect("a valid context");
            let sc = cx.span().span_context().clone();
            assert_eq!(
                sc.trace_id().to_string(),
                "4bf92f3577b34da6a3ce929d0e0e4736"
            );
            assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
            assert_eq!(sc.is_sampled(), flags == "01" || flags == "03");
            assert!(sc.is_remote());
        }
        for bad in [
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        ] {
            let carrier = HashMap::from([("traceparent".to_string(), bad.to_string())]);
            assert!(extract(&carrier).is_none(), "{bad}");
        }
        assert_eq!(level1(&format!("{TP}-zz")), format!("{TP}-zz"));
        assert_eq!(level1(&format!("{TP}-ff")), format!("{TP}-01"));
    }
}
