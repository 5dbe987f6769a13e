//! `nerve-bus` exports its traces over OTLP/HTTP to a real receiver: `submit` in one process
//! and `agent` in another, on a real Redis, make one trace in which the agent's `bus.deliver`
//! span is a child of the submitter's `nerve-bus.submit` span.

mod common;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use common::DEADLINE;
use nerve_testkit::{RedisServer, eventually};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message as _;

/// One exported span: trace id, span id, parent span id (hex), name, service name.
#[derive(Debug, Clone)]
struct Span {
    trace: String,
    id: String,
    parent: String,
    name: String,
    service: String,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A real OTLP/HTTP receiver on a free port, keeping every span it is sent.
async fn collector() -> (String, Arc<Mutex<Vec<Span>>>) {
    let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
    let kept = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let kept = kept.clone();
            async move {
                let Ok(req) = ExportTraceServiceRequest::decode(body) else {
                    return StatusCode::BAD_REQUEST.into_response();
                };
                let mut out = kept.lock().expect("lock");
                for rs in req.resource_spans {
                    let attrs: HashMap<String, String> = rs
                        .resource
                        .map(|r| r.attributes)
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|kv| match kv.value.and_then(|v| v.value) {
                            Some(any_value::Value::StringValue(s)) => Some((kv.key, s)),
                            _ => None,
                        })
                        .collect();
                    let service = attrs.get("service.name").cloned().unwrap_or_default();
                    for ss in rs.scope_spans {
                        for sp in ss.spans {
                            out.push(Span {
                                trace: hex(&sp.trace_id),
                                id: hex(&sp.span_id),
                                parent: hex(&sp.parent_span_id),
                                name: sp.name,
                                service: service.clone(),
                            });
                        }
                    }
                }
                let reply = ExportTraceServiceResponse::default().encode_to_vec();
                ([("content-type", "application/x-protobuf")], reply).into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind collector");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://127.0.0.1:{port}"), spans)
}

/// Kills the agent process when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_and_agent_export_one_trace() {
    let redis = RedisServer::start();
    let url = redis.url();
    let (endpoint, spans) = collector().await;
    let bin = env!("CARGO_BIN_EXE_nerve-bus");
    // Short batches, so the running agent's spans leave while it runs.
    let _agent = Killed(
        Command::new(bin)
            .args([
                "--redis",
                &url,
                "--partitions",
                "2",
                "--otlp-endpoint",
                &endpoint,
            ])
            .args([
                "--service-name",
                "traced-agent",
                "agent",
                "--id",
                "tracer-1",
            ])
            .args(["--capability", "traced"])
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn agent"),
    );
    let out = Command::new(bin)
        .args([
            "--redis",
            &url,
            "--partitions",
            "2",
            "--otlp-endpoint",
            &endpoint,
        ])
        .args(["submit", "traced", "hello", "--wait", "20"])
        .output()
        .expect("run submit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("echo: hello"), "{printed}");

    // `submit` flushed its spans before it exited.
    let submit = spans
        .lock()
        .expect("lock")
        .iter()
        .find(|s| s.name == "nerve-bus.submit")
        .cloned()
        .expect("the submit span was exported before the command exited");
    assert_eq!(submit.service, "nerve-bus");
    let deliver = eventually(DEADLINE, "the agent's delivery span", || {
        let found = spans
            .lock()
            .expect("lock")
            .iter()
            .find(|s| s.name == "bus.deliver" && s.trace == submit.trace)
            .cloned();
        async move { found }
    })
    .await;
    assert_eq!(deliver.service, "traced-agent");
    assert_eq!(
        deliver.parent, submit.id,
        "the delivery is a child of the submit span"
    );
}

#[test]
fn a_bad_endpoint_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_nerve-bus"))
        .args(["--otlp-endpoint", "ftp://example.com", "tasks"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("http:// or https://"), "{err}");
}
