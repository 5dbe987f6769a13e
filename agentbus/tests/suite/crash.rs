//! Crash handling: work held by a crashed consumer is redelivered and finishes once, and a
//! message that keeps crashing its consumers is dead-lettered by delivery count.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nerve_agentbus::{
    Agent, BusConfig, MAX_DELIVERY_COUNT_EXCEEDED, Message, SubmitRequest, TaskEvent, TaskState,
};

use crate::common::{DEADLINE, Harness, card, completes_once_on_survivor, config, counting_agent};

pub async fn crashed_consumer_work_is_redelivered_once(h: &impl Harness) {
    let bus_a = h.bus(config()).await;
    let bus_b = h.bus(config()).await;
    let crasher = Agent::builder(&bus_a, card("crasher", &["fragile"]))
        .on_task(|ctx| async move {
            let _ = ctx.progress("working on it").await;
            std::future::pending::<()>().await;
            Ok(None)
        })
        .start()
        .await
        .expect("start");
    let handle = bus_b
        .submit(SubmitRequest::text("fragile", "job"))
        .await
        .expect("submit");
    bus_b
        .wait_task(&handle.task_id, DEADLINE, |r| {
            r.agent.as_deref() == Some("crasher") && r.version >= 3
        })
        .await
        .expect("crasher picks it up");
    crasher.abort();
    let (survivor, _) = completes_once_on_survivor(&bus_b, "fragile", &handle).await;
    // A late update from the crashed handler's point of view is refused: the task is terminal.
    let late = bus_b
        .update_task(
            &handle.task_id,
            &TaskEvent::status(TaskState::Working),
            Some(3),
            "agent://crasher",
        )
        .await;
    assert!(late.is_err());
    survivor.stop().await;
}

pub async fn crash_loop_dead_letters_by_delivery_count(h: &impl Harness) {
    let cfg = BusConfig {
        max_deliveries: 2,
        ..config()
    };
    let bus = h.bus(cfg).await;
    let t = bus.transport();
    let handle = bus
        .submit(SubmitRequest::text("crashloop", "x"))
        .await
        .expect("submit");
    // Two consumers take the message and vanish without settling it, as crashing ones would.
    let first = t
        .fetch(&handle.partition, "ghost-1", 1, Duration::from_millis(500))
        .await
        .expect("fetch");
    assert_eq!(first.len(), 1);
    let second = t
        .claim_stale(&handle.partition, "ghost-2", Duration::ZERO, 1)
        .await
        .expect("claim");
    assert_eq!(second[0].deliveries, 2);
    let (agent, runs) = counting_agent(&bus, "loop-agent", "crashloop").await;
    let rec = handle.result(DEADLINE).await.expect("result");
    assert_eq!(rec.state(), TaskState::Failed);
    let reason = rec.task.metadata.get("reason").and_then(|v| v.as_str());
    assert_eq!(reason, Some(MAX_DELIVERY_COUNT_EXCEEDED));
    let dead = bus.dead_letters("crashloop").await.expect("dlq");
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].deliveries, 3,
        "dead-lettered on the delivery past the limit"
    );
    assert_eq!(
        runs.load(Ordering::SeqCst),
        0,
        "the handler never runs a crash-looping task"
    );
    agent.stop().await;
}

pub async fn panicking_handler_is_retried(h: &impl Harness) {
    let bus = h.bus(config()).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let agent = Agent::builder(&bus, card("panicky", &["panicky"]))
        .on_task(move |ctx| {
            let r = r.clone();
            async move {
                if r.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("handler bug on first delivery");
                }
                Ok(Some(Message::agent_text(format!(
                    "ok on delivery {}",
                    ctx.deliveries()
                ))))
            }
        })
        .start()
        .await
        .expect("start");
    let handle = bus
        .submit(SubmitRequest::text("panicky", "x"))
        .await
        .expect("submit");
    let rec = handle.result(DEADLINE).await.expect("result");
    assert_eq!(rec.state(), TaskState::Completed);
    let last = rec.task.status.message.as_ref().map(Message::text);
    assert_eq!(last.as_deref(), Some("ok on delivery 2"));
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    agent.stop().await;
}
