//! Deliveries run in a `bus.deliver` span handed to the process's parent hook with the
//! envelope's `traceparent`, and the task handler runs inside that span.

mod common;

use std::sync::Mutex;

use common::{DEADLINE, card, config};
use nerve_agentbus::transport::MemoryTransport;
use nerve_agentbus::{Agent, Bus, Message, SubmitRequest, TaskState};
use tracing_subscriber::prelude::*;

/// (span name, traceparent) of every hook call.
static HOOKED: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

fn hook(span: &tracing::Span, traceparent: &str) {
    let name = span.metadata().map(|m| m.name()).unwrap_or("disabled");
    HOOKED
        .lock()
        .expect("lock")
        .push((name.to_string(), traceparent.to_string()));
}

#[tokio::test]
async fn the_handler_runs_in_a_delivery_span_parented_by_the_hook() {
    // Spans are only real with a subscriber; this one keeps them without printing.
    let _guard = tracing_subscriber::registry().set_default();
    assert!(nerve_agentbus::trace::set_parent_hook(hook));
    assert!(
        !nerve_agentbus::trace::set_parent_hook(hook),
        "installed once"
    );

    let bus = Bus::new(std::sync::Arc::new(MemoryTransport::default()), config());
    let seen: std::sync::Arc<Mutex<Vec<String>>> = Default::default();
    let s = seen.clone();
    let _agent = Agent::builder(&bus, card("tracer", &["trace"]))
        .on_task(move |_ctx| {
            let s = s.clone();
            async move {
                let current = tracing::Span::current();
                let name = current.metadata().map(|m| m.name()).unwrap_or("none");
                s.lock().expect("lock").push(name.to_string());
                Ok(None)
            }
        })
        .start()
        .await
        .expect("agent");

    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let traced = bus
        .submit(SubmitRequest::new("trace", Message::user_text("a")).traceparent(tp))
        .await
        .expect("submit");
    let plain = bus
        .submit(SubmitRequest::new("trace", Message::user_text("b")))
        .await
        .expect("submit");
    for id in [&traced.task_id, &plain.task_id] {
        let rec = bus
            .wait_task(id, DEADLINE, |r| r.state().is_terminal())
            .await
            .expect("task finishes");
        assert_eq!(rec.state(), TaskState::Completed);
    }

    assert_eq!(
        *HOOKED.lock().expect("lock"),
        vec![("bus.deliver".to_string(), tp.to_string())],
        "the hook sees only the traced delivery"
    );
    assert_eq!(
        *seen.lock().expect("lock"),
        vec!["bus.deliver".to_string(), "bus.deliver".to_string()]
    );
}
