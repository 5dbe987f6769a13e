//! Task API behaviour: lifecycle and update streams, cancellation, input-required, request/reply,
//! the agent registry, shared context and correlation trees.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nerve_agentbus::{
    Agent, Artifact, BusError, HandlerError, Message, RpcError, StreamResponse, SubmitRequest,
    TaskState, correlation,
};
use nerve_testkit::eventually;
use serde_json::json;

use crate::common::{DEADLINE, Harness, card, config};

pub async fn lifecycle_with_updates_stream(h: &impl Harness) {
    let bus = h.bus(config()).await;
    let handle = bus
        .submit(SubmitRequest::text("echo", "hello").context_id("ctx-1"))
        .await
        .expect("submit");
    let mut updates = handle.updates();
    let first = updates.next().await.expect("next").expect("snapshot");
    assert!(matches!(&first, StreamResponse::Task(t) if t.status.state == TaskState::Submitted));
    let agent = Agent::builder(&bus, card("echo-agent", &["echo"]))
        .on_task(|ctx| async move {
            ctx.progress("thinking")
                .await
                .map_err(|e| HandlerError::Fail(e.to_string()))?;
            ctx.artifact(Artifact::text("answer", format!("echo: {}", ctx.text())))
                .await
                .map_err(|e| HandlerError::Fail(e.to_string()))?;
            Ok(Some(Message::agent_text("done")))
        })
        .start()
        .await
        .expect("start");
    let mut seen = Vec::new();
    while let Some(u) = updates.next().await.expect("next") {
        seen.push(match u {
            StreamResponse::StatusUpdate(s) => format!("status:{}", s.status.state),
            StreamResponse::ArtifactUpdate(a) => format!("artifact:{}", a.artifact.artifact_id),
            StreamResponse::Task(t) => format!("task:{}", t.status.state),
            StreamResponse::Message(_) => "message".to_string(),
        });
    }
    assert_eq!(
        seen,
        [
            "status:TASK_STATE_WORKING",
            "status:TASK_STATE_WORKING",
            "artifact:answer",
            "status:TASK_STATE_COMPLETED"
        ]
    );
    let rec = handle.result(DEADLINE).await.expect("result");
    assert_eq!(rec.version, 5);
    assert_eq!(rec.task.context_id, "ctx-1");
    assert_eq!(
        rec.task.artifacts[0].parts[0].text.as_deref(),
        Some("echo: hello")
    );
    let texts: Vec<String> = rec.task.history.iter().map(Message::text).collect();
    assert_eq!(texts, ["hello", "thinking", "done"]);
    agent.stop().await;
}

pub async fn cancellation_reaches_the_handler(h: &impl Harness) {
    let bus = h.bus(config()).await;
    let saw_cancel = Arc::new(AtomicBool::new(false));
    let s = saw_cancel.clone();
    let agent = Agent::builder(&bus, card("slow-agent", &["slow"]))
        .on_task(move |ctx| {
            let s = s.clone();
            async move {
                let _ = ctx.progress("started").await;
                let token = ctx.cancelled();
                tokio::select! {
                    _ = token.cancelled() => {
                        s.store(true, Ordering::SeqCst);
                        Err(HandlerError::Fail("stopped".into()))
                    }
                    _ = tokio::time::sleep(Duration::from_secs(60)) => Ok(None),
                }
            }
        })
        .start()
        .await
        .expect("start");
    let handle = bus
        .submit(SubmitRequest::text("slow", "long job"))
        .await
        .expect("submit");
    bus.wait_task(&handle.task_id, DEADLINE, |r| r.version >= 3)
        .await
        .expect("handler started");
    let rec = handle.cancel().await.expect("cancel");
    assert_eq!(rec.state(), TaskState::Canceled);
    eventually(DEADLINE, "handler sees cancellation", || async {
        saw_cancel.load(Ordering::SeqCst).then_some(())
    })
    .await;
    let again = handle.cancel().await;
    assert!(matches!(
        again,
        Err(BusError::NotCancelable {
            state: TaskState::Canceled,
            ..
        })
    ));
    let rec = bus
        .task(&handle.task_id)
        .await
        .expect("load")
        .expect("exists");
    assert_eq!(
        rec.state(),
        TaskState::Canceled,
        "the handler's late failure is ignored"
    );
    agent.stop().await;
}

pub async fn input_required_round_trip(h: &impl Harness) {
    let bus = h.bus(config()).await;
    let agent = Agent::builder(&bus, card("asker", &["ask"]))
        .on_task(|ctx| async move {
            let answer = ctx
                .ask(Message::agent_text("which colour?"), DEADLINE)
                .await
                .map_err(|e| HandlerError::Fail(e.to_string()))?;
            Ok(Some(Message::agent_text(format!(
                "you chose {}",
                answer.text()
            ))))
        })
        .start()
        .await
        .expect("start");
    let handle = bus
        .submit(SubmitRequest::text("ask", "paint it"))
        .await
        .expect("submit");
    let paused = handle.settled(DEADLINE).await.expect("settled");
    assert_eq!(paused.state(), TaskState::InputRequired);
    let question = paused.task.status.message.as_ref().map(Message::text);
    assert_eq!(question.as_deref(), Some("which colour?"));
    bus.reply_input(&handle.task_id, Message::user_text("blue"))
        .await
        .expect("reply");
    let rec = handle.result(DEADLINE).await.expect("result");
    assert_eq!(rec.state(), TaskState::Completed);
    let last = rec.task.status.message.as_ref().map(Message::text);
    assert_eq!(last.as_deref(), Some("you chose blue"));
    agent.stop().await;
}

pub async fn request_reply_and_timeout(h: &impl Harness) {
    let bus = h.bus(config()).await;
    let agent = Agent::builder(&bus, card("calc", &["calc"]))
        .on_request(|req| async move {
            let a = req.payload["a"].as_i64().ok_or("a missing")?;
            let b = req.payload["b"].as_i64().ok_or("b missing")?;
            Ok(json!(a + b))
        })
        .start()
        .await
        .expect("start");
    let sum = bus
        .request("calc", json!({"a": 2, "b": 3}), DEADLINE)
        .await
        .expect("reply");
    assert_eq!(sum, json!(5));
    match bus.request("calc", json!({"a": 2}), DEADLINE).await {
        Err(RpcError::Remote { code, message }) => {
            assert_eq!(code, "HandlerError");
            assert_eq!(message, "b missing");
        }
        other => panic!("expected a remote error, got {other:?}"),
    }
    let timeout = Duration::from_millis(400);
    let reply = match bus.request("nobody-serves-this", json!({}), timeout).await {
        Err(RpcError::Timeout { reply }) => reply,
        other => panic!("expected a timeout, got {other:?}"),
    };
    assert_eq!(
        reply.data.as_ref().map(|d| d["error"]["code"].clone()),
        Some(json!("Timeout"))
    );
    let chain = bus
        .transport()
        .correlation(reply.correlation_id())
        .await
        .expect("chain");
    let kinds: Vec<&str> = chain.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(kinds, ["bus.rpc.request", "bus.rpc.reply"]);
    assert_eq!(reply.causationid.as_deref(), Some(chain[0].id.as_str()));
    assert_eq!(
        chain[0].replyto.as_deref(),
        Some(format!("rpc:{}", chain[0].id).as_str())
    );
    agent.stop().await;
}

pub async fn registry_discovery_and_expiry(h: &impl Harness) {
    let bus = h.bus(config()).await;
    let a = Agent::builder(&bus, card("agent-a", &["search"]))
        .start()
        .await
        .expect("a");
    let b = Agent::builder(&bus, card("agent-b", &["search", "summarize"]))
        .start()
        .await
        .expect("b");
    let ids =
        |cards: Vec<nerve_agentbus::AgentCard>| cards.into_iter().map(|c| c.id).collect::<Vec<_>>();
    assert_eq!(
        ids(bus.agents_for("search").await.expect("list")),
        ["agent-a", "agent-b"]
    );
    assert_eq!(
        ids(bus.agents_for("summarize").await.expect("list")),
        ["agent-b"]
    );
    b.stop().await;
    assert_eq!(
        ids(bus.agents_for("summarize").await.expect("list")),
        Vec::<String>::new()
    );
    // A crashed agent stops heartbeating and leaves once its registration lapses.
    a.abort();
    eventually(DEADLINE, "crashed agent leaves the registry", || async {
        bus.agents_for("search").await.ok().filter(|c| c.is_empty())
    })
    .await;
}

pub async fn shared_context_latest_for_late_joiners(h: &impl Harness) {
    let writer = h.bus(config()).await;
    assert_eq!(
        writer
            .publish_context("ctx-7", json!({"step": 1}))
            .await
            .expect("v1"),
        1
    );
    assert_eq!(
        writer
            .publish_context("ctx-7", json!({"step": 2}))
            .await
            .expect("v2"),
        2
    );
    let late = h.bus(config()).await;
    let now = late.context("ctx-7").await.expect("load").expect("exists");
    assert_eq!((now.version, now.value.clone()), (2, json!({"step": 2})));
    let waiter = {
        let late = late.clone();
        tokio::spawn(async move { late.wait_context("ctx-7", 3, DEADLINE).await })
    };
    writer
        .publish_context("ctx-7", json!({"step": 3}))
        .await
        .expect("v3");
    let got = waiter.await.expect("join").expect("v3 seen");
    assert_eq!((got.version, got.value), (3, json!({"step": 3})));
    assert!(late.context("ctx-unknown").await.expect("load").is_none());
}

pub async fn three_agent_chain_reads_back_as_tree(h: &impl Harness) {
    let bus = h.bus(config()).await;
    let planner = delegating_agent(&bus, "planner", "plan", "research", "plan: ").await;
    let researcher = delegating_agent(&bus, "researcher", "research", "write", "facts, ").await;
    let writer = Agent::builder(&bus, card("writer", &["write"]))
        .on_task(|_| async { Ok(Some(Message::agent_text("written"))) })
        .start()
        .await
        .expect("writer");
    let handle = bus
        .submit(SubmitRequest::text("plan", "make a report"))
        .await
        .expect("submit");
    let rec = handle.result(DEADLINE).await.expect("result");
    let last = rec.task.status.message.as_ref().map(Message::text);
    assert_eq!(last.as_deref(), Some("plan: facts, written"));

    // Events are recorded just after each record changes; wait for the root's last one.
    let tree = eventually(DEADLINE, "whole chain recorded", || async {
        let tree = bus.correlation_tree(&handle.correlation_id).await.ok()?;
        let root_done = tree
            .roots
            .first()
            .is_some_and(|r| r.state == TaskState::Completed);
        root_done.then_some(tree)
    })
    .await;
    assert_eq!(tree.correlation_id, handle.task_id);
    assert!(tree.other_events.is_empty(), "{:?}", tree.other_events);
    assert_eq!(tree.roots.len(), 1);
    let expected_events = ["bus.task.submitted", "bus.task.status", "bus.task.status"];
    let expected_states = [
        Some(TaskState::Submitted),
        Some(TaskState::Working),
        Some(TaskState::Completed),
    ];
    let mut node = &tree.roots[0];
    for (cap, agent) in [
        ("plan", "planner"),
        ("research", "researcher"),
        ("write", "writer"),
    ] {
        assert_eq!(node.capability, cap);
        assert_eq!(node.agent.as_deref(), Some(agent));
        assert_eq!(node.state, TaskState::Completed);
        let kinds: Vec<&str> = node.events.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(kinds, expected_events, "{cap}");
        let states: Vec<Option<TaskState>> = node.events.iter().map(|e| e.state).collect();
        assert_eq!(states, expected_states, "{cap}");
        let dur = node.duration_ms.expect("finished");
        if let Some(child) = node.children.first() {
            assert_eq!(node.children.len(), 1);
            assert!(child.submitted_at_ms >= node.submitted_at_ms);
            assert!(child.duration_ms.expect("child finished") <= dur);
            node = child;
        } else {
            assert_eq!(cap, "write", "the chain ends at the writer");
        }
    }
    let text = correlation::render(&tree);
    for needle in ["[plan]", "[research]", "[write]", "by writer"] {
        assert!(text.contains(needle), "{needle} missing in\n{text}");
    }
    for a in [planner, researcher, writer] {
        a.stop().await;
    }
}

/// An agent that hands each task to `next` as a sub-task and completes with `prefix` + its answer.
async fn delegating_agent(
    bus: &nerve_agentbus::Bus,
    id: &str,
    capability: &str,
    next: &'static str,
    prefix: &'static str,
) -> nerve_agentbus::AgentHandle {
    let fail = |e: BusError| HandlerError::Fail(e.to_string());
    Agent::builder(bus, card(id, &[capability]))
        .on_task(move |ctx| async move {
            let sub = ctx
                .submit(SubmitRequest::text(
                    next,
                    format!("help with {}", ctx.text()),
                ))
                .await
                .map_err(fail)?;
            let done = sub.result(DEADLINE).await.map_err(fail)?;
            let got = done
                .task
                .status
                .message
                .map(|m| m.text())
                .unwrap_or_default();
            Ok(Some(Message::agent_text(format!("{prefix}{got}"))))
        })
        .start()
        .await
        .expect("start delegating agent")
}
