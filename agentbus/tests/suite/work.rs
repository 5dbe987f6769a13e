//! Plain queue workers (`Bus::enqueue` + `Bus::work`): a message is done once, a failing one is
//! retried with backoff and then dead-lettered with its last error, a duplicate id is dropped;
//! and the push-notification settings a task holds are stored, bounded and removed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use nerve_agentbus::{EnqueueOutcome, Envelope, Settle, SubmitRequest};
use nerve_testkit::eventually;
use serde_json::json;

use crate::common::{DEADLINE, Harness, config};

pub async fn worker_retries_then_dead_letters(h: &impl Harness) {
    let bus = h.bus(config()).await;
    let runs = Arc::new(AtomicU32::new(0));
    let seen = Arc::new(AtomicU32::new(0));
    let (r, s) = (runs.clone(), seen.clone());
    let worker = bus
        .work(
            "chores",
            "chore-worker",
            4,
            move |env: Envelope, deliveries| {
                let (r, s) = (r.clone(), s.clone());
                async move {
                    s.fetch_max(deliveries, Ordering::SeqCst);
                    if env.data.as_ref().and_then(|d| d.get("fail")).is_some() {
                        r.fetch_add(1, Ordering::SeqCst);
                        Settle::Retry("receiver said 503".into())
                    } else {
                        Settle::Done
                    }
                }
            },
        )
        .await
        .expect("worker");
    let ok = Envelope::new("bus://test", "test.chore").with_data(json!({"n": 1}));
    assert_eq!(
        bus.enqueue("chores", &ok).await.expect("enqueue"),
        EnqueueOutcome::Enqueued
    );
    assert_eq!(
        bus.enqueue("chores", &ok).await.expect("enqueue again"),
        EnqueueOutcome::Duplicate,
        "the same id within the dedupe window is dropped"
    );
    let bad = Envelope::new("bus://test", "test.chore").with_data(json!({"fail": true}));
    bus.enqueue("chores", &bad).await.expect("enqueue bad");
    let max = bus.config().max_deliveries;
    eventually(DEADLINE, "the failing message is dead-lettered", || async {
        let dead = bus.dead_letters("chores").await.expect("dead letters");
        dead.iter().any(|d| d.envelope.id == bad.id).then_some(())
    })
    .await;
    let dead = bus.dead_letters("chores").await.expect("dead letters");
    assert_eq!(dead.len(), 1, "only the failing message is dead: {dead:?}");
    assert_eq!(dead[0].reason, "MaxDeliveryCountExceeded");
    assert!(
        dead[0].description.contains("receiver said 503"),
        "{}",
        dead[0].description
    );
    assert_eq!(
        runs.load(Ordering::SeqCst),
        max,
        "tried max_deliveries times"
    );
    assert_eq!(seen.load(Ordering::SeqCst), max);
    let levels = bus.queue_levels("chores").await.expect("levels");
    assert_eq!((levels.waiting, levels.in_flight, levels.dead), (0, 0, 1));
    worker.stop().await;
}

pub async fn push_configs_are_bounded_per_task(h: &impl Harness) {
    let bus = h.bus(config()).await;
    let task = bus
        .submit(SubmitRequest::text("nobody-serves", "x"))
        .await
        .expect("submit")
        .task_id;
    let t = bus.transport();
    assert!(
        t.push_config_put(&task, "b", "{\"n\":2}", 2)
            .await
            .expect("put")
    );
    assert!(
        t.push_config_put(&task, "a", "{\"n\":1}", 2)
            .await
            .expect("put")
    );
    assert!(
        !t.push_config_put(&task, "c", "{}", 2).await.expect("put"),
        "a third config over the bound of two is refused"
    );
    assert!(
        t.push_config_put(&task, "a", "{\"n\":3}", 2)
            .await
            .expect("put"),
        "replacing an existing id is within the bound"
    );
    let all = t.push_configs(&task).await.expect("list");
    assert_eq!(
        all,
        vec![
            ("a".into(), "{\"n\":3}".into()),
            ("b".into(), "{\"n\":2}".into())
        ]
    );
    assert!(t.push_config_delete(&task, "a").await.expect("delete"));
    assert!(
        !t.push_config_delete(&task, "a")
            .await
            .expect("delete again")
    );
    assert!(
        t.push_configs("no-such-task")
            .await
            .expect("list")
            .is_empty()
    );
    assert_eq!(t.push_configs(&task).await.expect("list").len(), 1);
}
