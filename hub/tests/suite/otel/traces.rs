//! OpenTelemetry trace export end to end: the real `nerve` binary exports over OTLP/HTTP to a
//! real receiver in the test (an axum server decoding `ExportTraceServiceRequest` protobufs),
//! and W3C `traceparent` is followed from a REST call into the hub's spans, from a WebSocket
//! upgrade into the upstream webhook, and from a bus submission through the bus delivery to the
//! agent. Without an endpoint nothing is exported and nothing about OTLP is printed.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::collector::{Collector, Exported, WAIT};

use crate::harness::{
    BusClient, Client, FAST_BUS, Hub, JSON, Upstream, config_check, handler_toml,
};

/// A random W3C trace id and parent span id, and the `traceparent` naming them.
fn new_traceparent() -> (String, String, String) {
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let span = uuid::Uuid::new_v4().simple().to_string()[..16].to_string();
    let tp = format!("00-{trace}-{span}-01");
    (trace, span, tp)
}

fn trace_id_of(traceparent: &str) -> &str {
    traceparent.split('-').nth(1).unwrap_or_default()
}

fn parent_id_of(traceparent: &str) -> &str {
    traceparent.split('-').nth(2).unwrap_or_default()
}

/// Starts a hub exporting to `collector` with a long batch delay (only the shutdown flush
/// sends spans) or a short one.
fn exporting_hub(collector: &Collector, toml: &str, batch_delay_ms: &str) -> Hub {
    let endpoint = collector.endpoint();
    Hub::start_with_env(
        &[],
        toml,
        &["--otlp-endpoint", &endpoint, "--node-id", "otel-node-1"],
        &[("OTEL_BSP_SCHEDULE_DELAY", batch_delay_ms)],
    )
}

/// Sends "hello" as text over REST to `url` with `token` and extra `headers`; returns the
/// status.
async fn rest_send(url: &str, token: &str, headers: &[(&str, &str)]) -> u16 {
    let mut req = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("content-type", "text/plain")
        .body("hello");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.send().await.expect("REST send").status().as_u16()
}

/// Asserts no exported attribute (span or resource) carries a secret.
fn assert_no_secrets(spans: &[Exported], secrets: &[&str]) {
    for s in spans {
        for (k, v) in s.attrs.iter().chain(s.resource.iter()) {
            for secret in secrets {
                assert!(
                    !v.contains(secret),
                    "span {} attribute {k} carries a secret: {v}",
                    s.name
                );
            }
            assert!(
                !k.contains("token") && !k.contains("key"),
                "span {} exports attribute {k}",
                s.name
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_call_joins_the_callers_trace_and_is_flushed_at_shutdown() {
    let collector = Collector::start().await;
    // A batch delay of a minute: only the flush on graceful shutdown can deliver in time.
    let mut hub = exporting_hub(&collector, "", "60000");
    let (trace, parent, tp) = new_traceparent();
    let url = format!(
        "http://127.0.0.1:{}/api/hubs/Chat/:send?api-version=2024-12-01",
        hub.port
    );
    let token = hub.rest(0).token(&url);
    let headers = [
        ("traceparent", tp.as_str()),
        ("tracestate", "vendor=opaque"),
    ];
    assert_eq!(rest_send(&url, &token, &headers).await, 202);
    assert!(
        collector.spans().is_empty(),
        "exported before the batch was due"
    );
    assert!(hub.terminate(), "nerve exits cleanly");

    let rest = collector.span("rest sendToAll", &trace).await;
    assert_eq!(
        rest.parent_span_id, parent,
        "the REST span is a child of the caller's"
    );
    assert_eq!(rest.attrs.get("hub").map(String::as_str), Some("chat"));
    assert_eq!(rest.attrs.get("op").map(String::as_str), Some("sendToAll"));
    assert_eq!(
        rest.attrs
            .get("http.response.status_code")
            .map(String::as_str),
        Some("202")
    );
    assert_eq!(
        rest.resource.get("service.name").map(String::as_str),
        Some("nerve")
    );
    assert_eq!(
        rest.resource.get("service.instance.id").map(String::as_str),
        Some("otel-node-1")
    );
    let all = collector.spans();
    assert_no_secrets(&all, &[hub.key(), &token]);
    let types = collector.content_types();
    assert!(
        types.iter().all(|t| t == "application/x-protobuf"),
        "{types:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_webhook_carries_the_trace_of_the_websocket_upgrade() {
    let collector = Collector::start().await;
    let upstream =
        Upstream::start(Arc::new(|_| Some(StatusCode::NO_CONTENT.into_response()))).await;
    let toml = handler_toml("chat", upstream.port, "*", &["connect"], "");
    let mut hub = exporting_hub(&collector, &toml, "60000");
    let (trace, parent, tp) = new_traceparent();
    let token = hub.token("chat", Some("alice"), &[], &[]);
    let mut req = hub
        .url("chat", &token)
        .into_client_request()
        .expect("request");
    req.headers_mut()
        .insert("sec-websocket-protocol", JSON.parse().expect("header"));
    req.headers_mut()
        .insert("traceparent", tp.parse().expect("header"));
    let (ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("connect");
    let seen = upstream
        .wait_for("azure.webpubsub.sys.connect", |_| true)
        .await;
    let sent = seen
        .header("traceparent")
        .expect("traceparent header")
        .to_string();
    assert_eq!(
        trace_id_of(&sent),
        trace,
        "the webhook continues the client's trace"
    );
    assert_ne!(
        parent_id_of(&sent),
        parent,
        "the hub's own span is the parent"
    );
    drop(ws);
    assert!(hub.terminate());

    let call = collector.span("upstream connect", &trace).await;
    assert_eq!(
        call.span_id,
        parent_id_of(&sent),
        "the header names the upstream span"
    );
    assert_eq!(call.attrs.get("event").map(String::as_str), Some("connect"));
    assert_eq!(call.attrs.get("hub").map(String::as_str), Some("chat"));
    assert_eq!(call.attrs.get("user").map(String::as_str), Some("alice"));
    assert_eq!(call.attrs.get("outcome").map(String::as_str), Some("ok"));
    let connect = collector.span("ws.connect", &trace).await;
    assert_eq!(connect.parent_span_id, parent);
    assert_eq!(call.parent_span_id, connect.span_id);
    assert_no_secrets(&collector.spans(), &[hub.key(), &token]);
}

/// Submits an `echo` task through `/bus/api` with `traceparent`; answers the token it used
/// and the result.
async fn submit_echo(hub: &Hub, traceparent: &str) -> (String, Value) {
    let token = hub.token("bus", Some("alice"), &["bus.submit.echo"], &[]);
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/bus/api/bus.submit", hub.port))
        .bearer_auth(&token)
        .header("traceparent", traceparent)
        .json(&json!({"capability": "echo", "text": "hello"}))
        .send()
        .await
        .expect("submit");
    assert_eq!(r.status().as_u16(), 200);
    (token, r.json().await.expect("json"))
}

/// An exporting hub with a short batch delay (spans arrive while it runs) and agent `id`
/// serving `echo` on /bus/ws.
async fn hub_with_echo_agent(collector: &Collector, id: &str) -> (Hub, BusClient) {
    let hub = exporting_hub(collector, FAST_BUS, "100");
    let mut agent = BusClient::connect(&hub, id, &["bus.serve.echo"]).await;
    agent.register(id, &["echo"]).await;
    (hub, agent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_task_is_handled_in_the_submitters_trace() {
    let collector = Collector::start().await;
    let (hub, mut agent) = hub_with_echo_agent(&collector, "echo-1").await;

    let (trace, parent, tp) = new_traceparent();
    let (token, submitted) = submit_echo(&hub, &tp).await;
    let task_id = submitted["taskId"].as_str().expect("task id").to_string();

    let pushed = agent.push("bus.task").await;
    assert_eq!(pushed["task"]["id"], task_id.as_str());
    let agent_tp = pushed["traceparent"]
        .as_str()
        .expect("traceparent in the push");
    assert_eq!(
        trace_id_of(agent_tp),
        trace,
        "the agent continues the submitter's trace"
    );
    agent.complete(&task_id, "done").await;

    let op = collector.span("bus.submit", &trace).await;
    assert_eq!(op.parent_span_id, parent);
    assert_eq!(op.attrs.get("op").map(String::as_str), Some("bus.submit"));
    assert_eq!(op.attrs.get("task"), Some(&task_id));
    let deliver = collector.span("bus.deliver", &trace).await;
    assert_eq!(
        deliver.parent_span_id, op.span_id,
        "delivery is parented to the submit"
    );
    assert_eq!(deliver.attrs.get("task"), Some(&task_id));
    assert_eq!(
        deliver.attrs.get("agent").map(String::as_str),
        Some("echo-1")
    );
    assert_eq!(
        parent_id_of(agent_tp),
        deliver.span_id,
        "the agent's parent is the delivery"
    );
    assert_no_secrets(&collector.spans(), &[hub.key(), &token]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_nothing_is_exported_and_nothing_is_said() {
    let collector = Collector::start().await;
    let upstream =
        Upstream::start(Arc::new(|_| Some(StatusCode::NO_CONTENT.into_response()))).await;
    let toml = format!(
        "{}{}",
        FAST_BUS,
        handler_toml("chat", upstream.port, "*", &["connect"], "")
    );
    // The collector listens where an exporter would send by default: nothing may arrive.
    let mut hub = Hub::start_with(&[], &toml, &["--log-level", "info"]);

    // REST with a traceparent still works.
    let (_, _, tp) = new_traceparent();
    let url = format!("http://127.0.0.1:{}/api/hubs/chat/:send", hub.port);
    let token = hub.rest(0).token(&url);
    assert_eq!(
        rest_send(&url, &token, &[("traceparent", tp.as_str())]).await,
        202
    );

    // The webhook gets no trace headers of the hub's own.
    let token = hub.token("chat", Some("bob"), &[], &[]);
    let ws = Client::connect(&hub.url("chat", &token), Some(JSON))
        .await
        .expect("connect");
    let seen = upstream
        .wait_for("azure.webpubsub.sys.connect", |_| true)
        .await;
    assert_eq!(seen.header("traceparent"), None);
    drop(ws);

    // A bus submission's own traceparent passes through into the envelope unchanged.
    let mut agent = BusClient::connect(&hub, "echo-2", &["bus.serve.echo"]).await;
    agent.register("echo-2", &["echo"]).await;
    let (_, _, tp) = new_traceparent();
    submit_echo(&hub, &tp).await;
    let pushed = agent.push("bus.task").await;
    assert_eq!(pushed["traceparent"], tp.as_str());

    assert!(hub.terminate());
    let printed = hub.printed().to_lowercase();
    assert!(printed.contains("nerve is listening"), "{printed}");
    for word in ["otlp", "opentelemetry", "telemetry", "trace export"] {
        assert!(
            !printed.contains(word),
            "startup mentions {word}: {printed}"
        );
    }
    assert!(collector.content_types().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check_reports_telemetry() {
    let out = config_check(
        "[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"\nservice_name = \"edge\"\n",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("# spans go to http://127.0.0.1:4318/v1/traces over OTLP/HTTP"),
        "{stdout}"
    );
    assert!(stdout.contains("service_name = \"edge\""), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a2a_and_agent_socket_submissions_carry_the_trace() {
    let collector = Collector::start().await;
    let (hub, mut agent) = hub_with_echo_agent(&collector, "echo-3").await;

    // A2A JSON-RPC with a traceparent header.
    let (trace, parent, tp) = new_traceparent();
    let token = hub.token("bus", Some("a2a"), &["bus.submit.echo"], &[]);
    let message = json!({"messageId": "m-1", "role": "ROLE_USER", "parts": [{"text": "hi"}]});
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/a2a", hub.port))
        .bearer_auth(&token)
        .header("traceparent", &tp)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
                      "params": {"message": message,
                                 "configuration": {"returnImmediately": true}}}))
        .send()
        .await
        .expect("POST /a2a");
    assert_eq!(r.status().as_u16(), 200);
    let pushed = agent.push("bus.task").await;
    let a2a_task = pushed["task"]["id"].as_str().expect("id").to_string();
    let agent_tp = pushed["traceparent"].as_str().expect("traceparent");
    assert_eq!(trace_id_of(agent_tp), trace);
    agent.complete(&a2a_task, "done").await;
    let a2a = collector.span("a2a", &trace).await;
    assert_eq!(a2a.parent_span_id, parent);
    assert_eq!(
        a2a.attrs.get("method").map(String::as_str),
        Some("SendMessage")
    );
    assert_eq!(a2a.attrs.get("task"), Some(&a2a_task));
    let deliver = collector.span("bus.deliver", &trace).await;
    assert_eq!(deliver.parent_span_id, a2a.span_id);

    // An agent-protocol submission names its trace in the operation's data.
    let (trace, parent, tp) = new_traceparent();
    let mut client = BusClient::connect(&hub, "alice", &["bus.submit.echo"]).await;
    let bad = client
        .invoke(
            "bus.submit",
            json!({"capability": "echo", "text": "x", "traceparent": "00-nope"}),
        )
        .await
        .expect_err("malformed traceparent");
    assert_eq!(bad["name"], "BadRequest");
    let sub = client
        .ok(
            "bus.submit",
            json!({"capability": "echo", "text": "hello", "traceparent": tp}),
        )
        .await;
    let pushed = agent.push("bus.task").await;
    assert_eq!(pushed["task"]["id"], sub["taskId"]);
    assert_eq!(
        trace_id_of(pushed["traceparent"].as_str().expect("traceparent")),
        trace
    );
    let op = collector.span("bus.submit", &trace).await;
    assert_eq!(op.parent_span_id, parent);
    assert_no_secrets(&collector.spans(), &[hub.key(), &token]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_is_logged_and_does_not_disturb_the_hub() {
    // A port nobody listens on.
    let port = nerve_testkit::free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut hub = Hub::start_with_env(
        &[],
        "",
        &["--otlp-endpoint", &endpoint],
        &[("OTEL_BSP_SCHEDULE_DELAY", "100")],
    );
    let url = format!("http://127.0.0.1:{}/api/hubs/chat/:send", hub.port);
    for _ in 0..3 {
        assert_eq!(rest_send(&url, &hub.rest(0).token(&url), &[]).await, 202);
    }
    nerve_testkit::eventually(WAIT, "the failed export to be logged", || {
        let logged = hub.logs().contains("ExportError");
        async move { logged.then_some(()) }
    })
    .await;
    assert!(hub.terminate(), "nerve still exits cleanly");
}
