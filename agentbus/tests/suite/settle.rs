//! The short paths of a lifecycle: a completion is recorded and its message settled in one step,
//! a result wait registered at submission misses nothing, and the live feed hands each event to
//! a process's receivers exactly once.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use nerve_agentbus::envelope::types;
use nerve_agentbus::{SubmitRequest, TaskState};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use crate::common::{DEADLINE, Harness, config, counting_agent, is_completion};

pub async fn completion_settles_its_message_once(h: &impl Harness) {
    let bus = h.bus(config()).await;
    let (agent, runs) = counting_agent(&bus, "settler", "settle").await;
    let handle = bus
        .submit(SubmitRequest::text("settle", "x"))
        .await
        .expect("submit");
    let rec = handle.result(DEADLINE).await.expect("result");
    assert_eq!(rec.state(), TaskState::Completed);
    // A graceful stop waits for the in-flight completion (event and settlement) to finish.
    agent.stop().await;
    let chain = bus
        .transport()
        .correlation(&handle.correlation_id)
        .await
        .expect("chain");
    assert_eq!(
        chain.iter().filter(|e| is_completion(e)).count(),
        1,
        "the completion is recorded once"
    );
    // Nothing is left held or ready: the message was settled with the completion.
    let t = bus.transport();
    let held = t
        .claim_stale(&handle.partition, "probe", Duration::ZERO, 10)
        .await
        .expect("claim");
    assert!(held.is_empty(), "completed message still pending: {held:?}");
    let ready = t
        .fetch(&handle.partition, "probe", 10, Duration::from_millis(50))
        .await
        .expect("fetch");
    assert!(ready.is_empty(), "completed message delivered again");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

pub async fn result_waits_see_finished_and_duplicate_tasks(h: &impl Harness) {
    let bus = h.bus(config()).await;
    let (agent, _runs) = counting_agent(&bus, "finisher", "finish").await;
    let handle = bus
        .submit(SubmitRequest::text("finish", "x").idempotency_key("finish-once"))
        .await
        .expect("submit");
    // The task finishes before anyone asks for the result: the wait registered at submission
    // kept the wake-up, and the poll would find it anyway; it must not take the whole deadline.
    bus.wait_terminal(&handle.task_id, DEADLINE)
        .await
        .expect("finished");
    let started = Instant::now();
    let rec = handle.result(DEADLINE).await.expect("late result");
    assert_eq!(rec.state(), TaskState::Completed);
    assert!(started.elapsed() < Duration::from_secs(5));
    // A resubmission is a duplicate of a finished task: its wait reads the task first.
    let again = bus
        .submit(SubmitRequest::text("finish", "x").idempotency_key("finish-once"))
        .await
        .expect("resubmit");
    assert_eq!(again.task_id, handle.task_id);
    let started = Instant::now();
    let rec = again.result(DEADLINE).await.expect("duplicate result");
    assert_eq!(rec.state(), TaskState::Completed);
    assert!(started.elapsed() < Duration::from_secs(5));
    agent.stop().await;
}

pub async fn live_feed_delivers_each_event_once(h: &impl Harness) {
    let bus = h.bus(config()).await;
    let other = h.bus(config()).await;
    let mut live = bus.transport().live();
    let (agent, _runs) = counting_agent(&bus, "feeder", "feed").await;
    let handle = bus
        .submit(SubmitRequest::text("feed", "x"))
        .await
        .expect("submit");
    handle.result(DEADLINE).await.expect("result");
    agent.stop().await;
    // A marker from another handle (another process on Redis) comes through the shared feed
    // after every event recorded before it, so a second copy of any of ours would come first.
    let marker = other
        .publish_context("feed-marker", json!({"done": true}))
        .await
        .expect("marker");
    assert_eq!(marker, 1);
    let deadline = Instant::now() + DEADLINE;
    let mut ids = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = tokio::time::timeout(left, live.recv())
            .await
            .expect("marker arrives before the deadline");
        let ev = match ev {
            Ok(ev) => ev,
            Err(RecvError::Lagged(n)) => panic!("receiver lagged by {n}"),
            Err(RecvError::Closed) => panic!("feed closed"),
        };
        if ev.event_type == types::CONTEXT_UPDATED && ev.contextid.as_deref() == Some("feed-marker")
        {
            break;
        }
        if ev.taskid.as_deref() == Some(handle.task_id.as_str()) {
            ids.push(ev.id.clone());
        }
    }
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "an event arrived twice: {ids:?}");
    // Submitted, working, completed.
    assert_eq!(ids.len(), 3, "events of the task: {ids:?}");
}
