//! Delivery guarantees: leases, dedupe, scheduling, TTL, dead letters, per-key order,
//! backpressure and crash redelivery.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nerve_agentbus::{
    Agent, BusConfig, EnqueueOutcome, Envelope, HandlerError, MAX_DELIVERY_COUNT_EXCEEDED, Message,
    Partition, SubmitRequest, TTL_EXPIRED, TaskState, clock,
};
use nerve_testkit::eventually;

use crate::common::{DEADLINE, Harness, card, config, counting_agent};

pub async fn lease_renewal_and_claim(h: &impl Harness) {
    let bus = h.bus(config()).await;
    let t = bus.transport();
    let p = Partition::new("lease", 0);
    let env = Envelope::new("test://producer", "test.message");
    assert_eq!(
        t.enqueue(&p, &env, None).await.ok(),
        Some(EnqueueOutcome::Enqueued)
    );
    let got = t
        .fetch(&p, "a", 10, Duration::from_millis(200))
        .await
        .expect("fetch");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].deliveries, 1);
    assert_eq!(got[0].envelope.id, env.id);
    let none = t
        .fetch(&p, "b", 10, Duration::from_millis(50))
        .await
        .expect("fetch");
    assert!(
        none.is_empty(),
        "a held message is not handed to another consumer"
    );

    // While "a" keeps renewing, "b" cannot take it over.
    let ids = vec![got[0].entry_id.clone()];
    for _ in 0..6 {
        t.renew(&p, "a", &ids).await.expect("renew");
        let stolen = t
            .claim_stale(&p, "b", Duration::from_millis(700), 10)
            .await
            .expect("claim");
        assert!(stolen.is_empty(), "a renewed lease must not be claimed");
        tokio::time::sleep(Duration::from_millis(80)).await;
    }
    // Once "a" stops renewing, the lease lapses and "b" gets it with a higher delivery count.
    let claimed = eventually(DEADLINE, "lease lapses", || async {
        let c = t
            .claim_stale(&p, "b", Duration::from_millis(700), 10)
            .await
            .ok()?;
        (!c.is_empty()).then_some(c)
    })
    .await;
    assert_eq!(claimed[0].deliveries, 2);
    t.ack(&claimed[0]).await.expect("ack");
    let after = t
        .claim_stale(&p, "c", Duration::ZERO, 10)
        .await
        .expect("claim");
    assert!(after.is_empty(), "acked messages are gone");
}

pub async fn dedupe_drops_resends(h: &impl Harness) {
    let bus = h.bus(config()).await;
    let other = h.bus(config()).await;
    let (agent, runs) = counting_agent(&bus, "dedupe-agent", "dedupe").await;
    let req = || SubmitRequest::text("dedupe", "charge card").idempotency_key("order-42");
    let first = bus.submit(req()).await.expect("submit");
    let second = bus.submit(req()).await.expect("resubmit");
    let third = other.submit(req()).await.expect("resubmit elsewhere");
    assert_eq!(first.outcome, EnqueueOutcome::Enqueued);
    assert_eq!(second.outcome, EnqueueOutcome::Duplicate);
    assert_eq!(third.outcome, EnqueueOutcome::Duplicate);
    assert_eq!(first.task_id, "order-42");
    assert_eq!(second.task_id, first.task_id);
    let done = first.result(DEADLINE).await.expect("result");
    assert_eq!(done.state(), TaskState::Completed);
    // A later task with the same key is queued behind any duplicate; once it is done, every
    // duplicate would have run.
    let sentinel = bus
        .submit(SubmitRequest::text("dedupe", "sentinel").partition_key("order-42"))
        .await
        .expect("sentinel");
    sentinel.result(DEADLINE).await.expect("sentinel result");
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "order-42 ran once, the sentinel once"
    );
    agent.stop().await;
}

pub async fn scheduled_delivery_and_cancel(h: &impl Harness) {
    let bus = h.bus(config()).await;
    let seen = Arc::new(Mutex::new(Vec::<(String, u64)>::new()));
    let s = seen.clone();
    let agent = Agent::builder(&bus, card("sched-agent", &["sched"]))
        .on_task(move |ctx| {
            let s = s.clone();
            async move {
                s.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((ctx.text(), clock::now_ms()));
                Ok(None)
            }
        })
        .start()
        .await
        .expect("start");
    let delay = Duration::from_millis(2000);
    let due = clock::now_ms() + delay.as_millis() as u64;
    let kept = bus
        .submit(SubmitRequest::text("sched", "kept").delay(delay))
        .await
        .expect("schedule");
    let dropped = bus
        .submit(SubmitRequest::text("sched", "dropped").delay(delay))
        .await
        .expect("schedule");
    assert_eq!(kept.outcome, EnqueueOutcome::Scheduled);
    assert!(bus.cancel_scheduled(&dropped).await.expect("cancel"));
    assert!(!bus.cancel_scheduled(&dropped).await.expect("cancel again"));
    let rec = kept.result(DEADLINE).await.expect("kept result");
    assert_eq!(rec.state(), TaskState::Completed);
    let canceled = bus
        .task(&dropped.task_id)
        .await
        .expect("load")
        .expect("exists");
    assert_eq!(canceled.state(), TaskState::Canceled);
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(seen.len(), 1, "only the kept task ran: {seen:?}");
    assert_eq!(seen[0].0, "kept");
    assert!(
        seen[0].1 >= due,
        "ran {} ms before its delivery time",
        due - seen[0].1
    );
    agent.stop().await;
}

pub async fn ttl_expiry_dead_letters(h: &impl Harness) {
    let bus = h.bus(config()).await;
    let handle = bus
        .submit(SubmitRequest::text("ttl", "too late").ttl(Duration::from_millis(200)))
        .await
        .expect("submit");
    let expiry = clock::now_ms() + 200;
    eventually(DEADLINE, "expiry time passes", || async {
        (clock::now_ms() > expiry).then_some(())
    })
    .await;
    let (agent, runs) = counting_agent(&bus, "ttl-agent", "ttl").await;
    let rec = handle.result(DEADLINE).await.expect("result");
    assert_eq!(rec.state(), TaskState::Failed);
    assert_eq!(
        rec.task.metadata.get("reason").and_then(|v| v.as_str()),
        Some(TTL_EXPIRED)
    );
    let dead = bus.dead_letters("ttl").await.expect("dlq");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, TTL_EXPIRED);
    assert_eq!(dead[0].envelope.id, handle.task_id);
    assert_eq!(
        runs.load(Ordering::SeqCst),
        0,
        "an expired task never reaches a handler"
    );
    agent.stop().await;
}

pub async fn poison_message_dead_letters_then_redrives(h: &impl Harness) {
    let cfg = BusConfig {
        max_deliveries: 3,
        ..config()
    };
    let bus = h.bus(cfg).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let healed = Arc::new(AtomicBool::new(false));
    let (r, hl) = (runs.clone(), healed.clone());
    let agent = Agent::builder(&bus, card("poison-agent", &["poison"]))
        .on_task(move |_| {
            let (r, hl) = (r.clone(), hl.clone());
            async move {
                r.fetch_add(1, Ordering::SeqCst);
                if hl.load(Ordering::SeqCst) {
                    Ok(Some(Message::agent_text("fine now")))
                } else {
                    Err(HandlerError::Retry("boom".into()))
                }
            }
        })
        .start()
        .await
        .expect("start");
    let handle = bus
        .submit(SubmitRequest::text("poison", "x"))
        .await
        .expect("submit");
    let rec = handle.result(DEADLINE).await.expect("result");
    assert_eq!(rec.state(), TaskState::Failed);
    let meta = &rec.task.metadata;
    assert_eq!(
        meta.get("reason").and_then(|v| v.as_str()),
        Some(MAX_DELIVERY_COUNT_EXCEEDED)
    );
    assert_eq!(meta.get("deliveries").and_then(|v| v.as_u64()), Some(3));
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    let dead = bus.dead_letters("poison").await.expect("dlq");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, MAX_DELIVERY_COUNT_EXCEEDED);
    assert_eq!(dead[0].deliveries, 3);
    assert!(
        dead[0].description.contains("boom"),
        "{}",
        dead[0].description
    );

    healed.store(true, Ordering::SeqCst);
    assert!(bus.redrive(&dead[0]).await.expect("redrive"));
    let rec = bus
        .wait_task(&handle.task_id, DEADLINE, |r| {
            r.state() == TaskState::Completed
        })
        .await
        .expect("completes after redrive");
    assert_eq!(
        rec.task.metadata.get("redriven").and_then(|v| v.as_u64()),
        Some(1)
    );
    assert!(bus.dead_letters("poison").await.expect("dlq").is_empty());
    assert_eq!(runs.load(Ordering::SeqCst), 4);
    agent.stop().await;
}

pub async fn per_key_order_under_concurrency(h: &impl Harness) {
    const KEYS: usize = 3;
    const PER_KEY: usize = 12;
    let log = Arc::new(Mutex::new(HashMap::<String, Vec<usize>>::new()));
    let busy = Arc::new(Mutex::new(HashMap::<String, bool>::new()));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let mut agents = Vec::new();
    for i in 0..2 {
        let bus = h.bus(config()).await;
        let (log, busy, overlaps) = (log.clone(), busy.clone(), overlaps.clone());
        let agent = Agent::builder(&bus, card(&format!("order-{i}"), &["ordered"]))
            .max_in_flight(8)
            .on_task(move |ctx| {
                let (log, busy, overlaps) = (log.clone(), busy.clone(), overlaps.clone());
                async move {
                    let text = ctx.text();
                    let (key, seq) = text.split_once('#').unwrap_or(("?", "0"));
                    let seq: usize = seq.parse().unwrap_or(usize::MAX);
                    {
                        let mut b = busy.lock().unwrap_or_else(|e| e.into_inner());
                        if b.insert(key.to_string(), true) == Some(true) {
                            overlaps.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    log.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(key.to_string())
                        .or_default()
                        .push(seq);
                    // Simulated work of varying length, so unordered handling would show.
                    tokio::time::sleep(Duration::from_millis(((seq * 7) % 5) as u64)).await;
                    busy.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(key.to_string(), false);
                    Ok(None)
                }
            })
            .start()
            .await
            .expect("start");
        agents.push(agent);
    }
    let mut producers = Vec::new();
    for k in 0..KEYS {
        let bus = h.bus(config()).await;
        producers.push(tokio::spawn(async move {
            let mut handles = Vec::new();
            for seq in 0..PER_KEY {
                let req = SubmitRequest::text("ordered", format!("key{k}#{seq}"))
                    .partition_key(format!("key{k}"));
                handles.push(bus.submit(req).await.expect("submit"));
            }
            for h in handles {
                h.result(DEADLINE).await.expect("result");
            }
        }));
    }
    for p in producers {
        p.await.expect("producer");
    }
    let log = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for k in 0..KEYS {
        let expected: Vec<usize> = (0..PER_KEY).collect();
        assert_eq!(
            log.get(&format!("key{k}")),
            Some(&expected),
            "key{k} out of order"
        );
    }
    assert_eq!(
        overlaps.load(Ordering::SeqCst),
        0,
        "two tasks of one key ran at once"
    );
    for a in agents {
        a.stop().await;
    }
}

pub async fn max_in_flight_backpressure(h: &impl Harness) {
    let bus = h.bus(config()).await;
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let (r, p) = (running.clone(), peak.clone());
    let agent = Agent::builder(&bus, card("bp-agent", &["bp"]))
        .max_in_flight(2)
        .on_task(move |_| {
            let (r, p, mut rx) = (r.clone(), p.clone(), release_rx.clone());
            async move {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                let _ = rx.wait_for(|go| *go).await;
                r.fetch_sub(1, Ordering::SeqCst);
                Ok(None)
            }
        })
        .start()
        .await
        .expect("start");
    let mut handles = Vec::new();
    for i in 0..6 {
        handles.push(
            bus.submit(SubmitRequest::text("bp", format!("job {i}")))
                .await
                .expect("submit"),
        );
    }
    eventually(DEADLINE, "two handlers running", || async {
        (running.load(Ordering::SeqCst) == 2).then_some(())
    })
    .await;
    let mut working = 0;
    for h in &handles {
        let rec = bus.task(&h.task_id).await.expect("load").expect("exists");
        if rec.state() == TaskState::Working {
            working += 1;
        }
    }
    assert_eq!(
        working, 2,
        "only max_in_flight tasks are taken while the agent is busy"
    );
    release_tx.send(true).expect("release");
    for h in handles {
        assert_eq!(
            h.result(DEADLINE).await.expect("result").state(),
            TaskState::Completed
        );
    }
    assert_eq!(peak.load(Ordering::SeqCst), 2);
    agent.stop().await;
}
