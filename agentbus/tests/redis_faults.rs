//! Fault injection on Redis: a consumer process killed with SIGKILL mid-task, and Redis itself
//! killed and restarted (AOF) while producers and agents run.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{DEADLINE, card, completes_once_on_survivor, config};
use nerve_agentbus::transport::TransportError;
use nerve_agentbus::{Agent, Bus, BusError, SubmitRequest, TaskState};
use nerve_testkit::{RedisServer, eventually};

/// A child process killed (SIGKILL) when dropped, so a failing test leaves nothing behind.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_worker_process(url: &str, id: &str, capability: &str) -> ChildGuard {
    let child = Command::new(env!("CARGO_BIN_EXE_nerve-bus"))
        .args(["--redis", url, "--partitions", "4", "--lease-ms", "1000"])
        .args([
            "agent",
            "--id",
            id,
            "--capability",
            capability,
            "--work-ms",
            "600000",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn nerve-bus agent");
    ChildGuard(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_process_killed_mid_task_completes_elsewhere_once() {
    let redis = RedisServer::start();
    let bus = Bus::redis(&redis.url(), config()).await.expect("connect");
    let mut worker = spawn_worker_process(&redis.url(), "worker-proc", "crashy");
    eventually(DEADLINE, "worker process registers", || async {
        let cards = bus.agents_for("crashy").await.ok()?;
        cards.iter().any(|c| c.id == "worker-proc").then_some(())
    })
    .await;

    let handle = bus
        .submit(SubmitRequest::text("crashy", "job"))
        .await
        .expect("submit");
    bus.wait_task(&handle.task_id, DEADLINE, |r| {
        r.agent.as_deref() == Some("worker-proc")
            && r.state() == TaskState::Working
            && r.version >= 3
    })
    .await
    .expect("the worker process is mid-task");
    worker.0.kill().expect("SIGKILL the worker process");
    worker.0.wait().expect("reap");

    let (survivor, chain) = completes_once_on_survivor(&bus, "crashy", &handle).await;
    let working_by_dead: usize = chain
        .iter()
        .filter(|e| e.source == "agent://worker-proc")
        .count();
    assert!(
        working_by_dead >= 1,
        "the killed process had started the task"
    );
    survivor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_loses_no_acknowledged_task() {
    let mut redis = RedisServer::start_with_aof();
    let bus = Bus::redis(&redis.url(), config()).await.expect("connect");
    let done = Arc::new(Mutex::new(Vec::<String>::new()));
    // Handlers hold their tasks until Redis is back, so the outage hits both tasks in flight
    // and tasks still queued.
    let (gate_tx, gate_rx) = tokio::sync::watch::channel(false);
    let d = done.clone();
    let agent = Agent::builder(&bus, card("steady", &["durable"]))
        .max_in_flight(3)
        .on_task(move |ctx| {
            let (d, mut gate) = (d.clone(), gate_rx.clone());
            async move {
                let _ = gate.wait_for(|open| *open).await;
                d.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(ctx.task_id().to_string());
                Ok(None)
            }
        })
        .start()
        .await
        .expect("start");
    let mut acknowledged = Vec::new();
    for i in 0..10 {
        let h = bus
            .submit(SubmitRequest::text("durable", format!("before {i}")))
            .await
            .expect("submit");
        acknowledged.push(h);
    }
    eventually(DEADLINE, "three tasks in flight", || async {
        let mut working = 0;
        for h in &acknowledged {
            let rec = bus.task(&h.task_id).await.ok()??;
            if rec.state() == TaskState::Working {
                working += 1;
            }
        }
        (working == 3).then_some(())
    })
    .await;

    redis.kill();
    let during = tokio::time::timeout(
        Duration::from_secs(15),
        bus.submit(SubmitRequest::text("durable", "during outage")),
    )
    .await
    .expect("a producer gets an answer, not a hang");
    match during {
        Err(BusError::Transport(TransportError::Unavailable(msg))) => {
            assert!(!msg.is_empty());
        }
        Err(other) => panic!("expected Unavailable, got {other}"),
        Ok(_) => panic!("submit cannot succeed while Redis is down"),
    }

    redis.restart();
    gate_tx.send(true).expect("open the gate");
    eventually(DEADLINE, "producers succeed again", || async {
        let h = bus
            .submit(SubmitRequest::text("durable", "after restart"))
            .await
            .ok()?;
        Some(h)
    })
    .await;
    for i in 0..5 {
        let h = bus
            .submit(SubmitRequest::text("durable", format!("after {i}")))
            .await
            .expect("submit");
        acknowledged.push(h);
    }
    for h in &acknowledged {
        let rec = h
            .result(Duration::from_secs(30))
            .await
            .expect("acknowledged task finishes");
        assert_eq!(rec.state(), TaskState::Completed, "task {}", h.task_id);
    }
    let done = done.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for h in &acknowledged {
        assert!(
            done.contains(&h.task_id),
            "task {} never handled",
            h.task_id
        );
    }
    agent.stop().await;
}
