//! The `nerve-bus` CLI against a real Redis: list tasks, show a chain, inspect and redrive the
//! dead-letter queue, list agents, watch live events.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{DEADLINE, card};
use nerve_agentbus::{Agent, Bus, BusConfig, HandlerError, Message, SubmitRequest, TaskState};
use nerve_testkit::RedisServer;

fn cli(url: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_nerve-bus"))
        .args(["--redis", url, "--partitions", "4"])
        .args(args)
        .output()
        .expect("run nerve-bus");
    assert!(
        out.status.success(),
        "nerve-bus {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_lists_shows_chains_and_redrives() {
    let redis = RedisServer::start();
    let url = redis.url();
    let config = BusConfig {
        partitions: 4,
        max_deliveries: 1,
        ..BusConfig::fast()
    };
    let bus = Bus::redis(&url, config).await.expect("connect");
    let healed = Arc::new(AtomicBool::new(false));
    let hl = healed.clone();
    let agent = Agent::builder(&bus, card("cli-agent", &["cli"]))
        .on_task(move |ctx| {
            let hl = hl.clone();
            async move {
                if ctx.text() == "poison" && !hl.load(Ordering::SeqCst) {
                    return Err(HandlerError::Retry("not yet".into()));
                }
                Ok(Some(Message::agent_text("ok")))
            }
        })
        .start()
        .await
        .expect("start");

    // `watch` prints the next live event. It may subscribe a moment after it starts, so keep
    // publishing until it has seen one and exited.
    let mut watcher = Command::new(env!("CARGO_BIN_EXE_nerve-bus"))
        .args(["--redis", &url, "watch", "--count", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn watch");
    let deadline = Instant::now() + DEADLINE;
    loop {
        bus.publish_context("cli-ctx", serde_json::json!({"ping": true}))
            .await
            .expect("publish");
        if watcher.try_wait().expect("poll watcher").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = watcher.kill();
            panic!("nerve-bus watch printed no event");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut line = String::new();
    if let Some(mut out) = watcher.stdout.take() {
        out.read_to_string(&mut line).expect("read watch output");
    }
    assert!(line.contains("bus.context.updated"), "{line}");

    let good = bus
        .submit(SubmitRequest::text("cli", "hello"))
        .await
        .expect("submit");
    good.result(DEADLINE).await.expect("result");
    let bad = bus
        .submit(SubmitRequest::text("cli", "poison"))
        .await
        .expect("submit");
    assert_eq!(
        bad.result(DEADLINE).await.expect("result").state(),
        TaskState::Failed
    );

    let tasks = cli(&url, &["tasks"]);
    assert!(
        tasks.contains(&good.task_id) && tasks.contains(&bad.task_id),
        "{tasks}"
    );
    let chain = cli(&url, &["chain", &good.task_id]);
    assert!(
        chain.contains("[cli]") && chain.contains("by cli-agent"),
        "{chain}"
    );
    let agents = cli(&url, &["agents", "--capability", "cli"]);
    assert!(agents.contains("cli-agent"), "{agents}");
    let dlq = cli(&url, &["dlq", "list"]);
    assert!(
        dlq.contains("MaxDeliveryCountExceeded") && dlq.contains(&bad.task_id),
        "{dlq}"
    );

    healed.store(true, Ordering::SeqCst);
    let redrive = cli(&url, &["dlq", "redrive", "cli"]);
    assert!(redrive.contains("redrove 1"), "{redrive}");
    bus.wait_task(&bad.task_id, DEADLINE, |r| {
        r.state() == TaskState::Completed
    })
    .await
    .expect("redriven task completes");
    assert!(cli(&url, &["dlq", "list"]).trim().is_empty());
    agent.stop().await;
}
