//! A real OTLP/HTTP trace receiver for the telemetry tests: an axum server decoding the
//! `ExportTraceServiceRequest` protobufs the hub posts to `/v1/traces`, keeping every span.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message as _;

use crate::harness::Server;

/// How long a test waits for a span: export batches add their delay to the hub's work.
pub const WAIT: Duration = Duration::from_secs(20);

/// One exported span, flattened.
#[derive(Debug, Clone)]
pub struct Exported {
    /// Its trace id, in hex.
    pub trace_id: String,
    /// Its span id, in hex.
    pub span_id: String,
    /// Its parent's span id, in hex (empty for a root).
    pub parent_span_id: String,
    /// Its name.
    pub name: String,
    /// Its attributes, as text.
    pub attrs: HashMap<String, String>,
    /// The attributes of its resource, as text.
    pub resource: HashMap<String, String>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn text(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn attrs(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), text(&kv.value)))
        .collect()
}

/// A real OTLP/HTTP receiver: `POST /v1/traces` with a protobuf `ExportTraceServiceRequest`.
pub struct Collector {
    spans: Arc<Mutex<Vec<Exported>>>,
    requests: Arc<Mutex<Vec<String>>>,
    server: Server,
}

impl Collector {
    /// Starts a collector on a free port.
    pub async fn start() -> Self {
        let spans: Arc<Mutex<Vec<Exported>>> = Arc::default();
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let (s, r) = (spans.clone(), requests.clone());
        let app = axum::Router::new()
            .route(
                "/v1/traces",
                axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                    let (s, r) = (s.clone(), r.clone());
                    async move {
                        let ct = headers
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        r.lock().expect("lock").push(ct.clone());
                        if ct != "application/x-protobuf" {
                            return StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response();
                        }
                        let Ok(req) = ExportTraceServiceRequest::decode(body) else {
                            return StatusCode::BAD_REQUEST.into_response();
                        };
                        let mut out = s.lock().expect("lock");
                        for rs in req.resource_spans {
                            let resource =
                                attrs(&rs.resource.map(|r| r.attributes).unwrap_or_default());
                            for ss in rs.scope_spans {
                                for sp in ss.spans {
                                    out.push(Exported {
                                        trace_id: hex(&sp.trace_id),
                                        span_id: hex(&sp.span_id),
                                        parent_span_id: hex(&sp.parent_span_id),
                                        name: sp.name.clone(),
                                        attrs: attrs(&sp.attributes),
                                        resource: resource.clone(),
                                    });
                                }
                            }
                        }
                        let reply = ExportTraceServiceResponse::default().encode_to_vec();
                        ([("content-type", "application/x-protobuf")], reply).into_response()
                    }
                }),
            )
            .fallback(|| async { StatusCode::NOT_FOUND });
        Collector {
            spans,
            requests,
            server: Server::http(app).await,
        }
    }

    /// The base URL to export to.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Exported> {
        self.spans.lock().expect("lock").clone()
    }

    /// The content type of every export request received so far.
    pub fn content_types(&self) -> Vec<String> {
        self.requests.lock().expect("lock").clone()
    }

    /// Waits for a span named `name` in trace `trace_id`.
    pub async fn span(&self, name: &str, trace_id: &str) -> Exported {
        let what = format!("span {name} of trace {trace_id} to be exported");
        let spans = self.spans.clone();
        let _dump = Dump(spans);
        nerve_testkit::eventually(WAIT, &what, || {
            let found = self
                .spans()
                .into_iter()
                .find(|s| s.name == name && s.trace_id == trace_id);
            async move { found }
        })
        .await
    }
}

/// Prints every span received when a wait for one fails, to show what came instead.
struct Dump(Arc<Mutex<Vec<Exported>>>);

impl Drop for Dump {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for s in self.0.lock().expect("lock").iter() {
                eprintln!(
                    "exported: {} trace {} span {} parent {} {:?}",
                    s.name, s.trace_id, s.span_id, s.parent_span_id, s.attrs
                );
            }
        }
    }
}
