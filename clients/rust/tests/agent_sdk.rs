//! The agent SDK against the real binary: an agent serves a capability, another client
//! submits to it and sees progress, an artifact and an input-required round trip; cancels
//! reach the handler; deadlines hold.

mod common;

use std::time::Duration;

use common::Nerve;
use nerve_client::{Agent, AgentCard, Artifact, BusClient, Push, Submit, TaskError, Until};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);
const SUBMITTER: &[&str] = &[
    "bus.submit.billing.refund",
    "bus.reply.billing.refund",
    "bus.submit.billing.slow",
    "bus.watch",
    "bus.context.conv-1",
];

fn refund_agent(hub: &Nerve) -> Agent {
    let token = hub.bus_token("refunder-1", &["bus.serve.billing.refund"]);
    Agent::new(&hub.endpoint, &token, AgentCard::new("refunder", "Refunds"))
        .heartbeat_every(Duration::from_millis(100))
        .skill("billing.refund", |task| async move {
            task.progress(&format!("checking {}", task.text())).await?;
            task.artifact(Artifact::data("quote", json!({"amount": 10})))
                .await?;
            let answer = task.ask("Refund 10 EUR?", WAIT).await?;
            if answer != "yes" {
                return Err(TaskError::Reject("the human said no".into()));
            }
            Ok(format!("refunded ({answer})"))
        })
}

#[tokio::test]
async fn an_agent_serves_a_submitter_end_to_end() {
    let hub = Nerve::start();
    let agent = refund_agent(&hub);
    let handle = agent.handle();
    let runner = tokio::spawn(agent.run());
    tokio::time::timeout(WAIT, handle.registered())
        .await
        .expect("registered");

    let (client, mut pushes) =
        BusClient::connect(&hub.endpoint, &hub.bus_token("user-1", SUBMITTER))
            .await
            .expect("connect");
    let cards = client.agents(Some("billing.refund")).await.expect("agents");
    assert_eq!(cards.len(), 1);
    assert_eq!(cards[0]["id"], "refunder");

    // The idempotency key becomes the task id, so the watch starts before the task exists.
    client.subscribe("task.refund-42").await.expect("subscribe");
    let sub = client
        .submit(Submit::new("billing.refund", "order 42").idempotency_key("refund-42"))
        .await
        .expect("submit");
    assert_eq!(sub.task_id, "refund-42");
    let asked = client
        .wait(&sub.task_id, Until::Settled, None, WAIT)
        .await
        .expect("input-required");
    assert_eq!(asked.state(), "TASK_STATE_INPUT_REQUIRED");
    assert_eq!(asked.status_text(), "Refund 10 EUR?");
    client.reply(&sub.task_id, "yes").await.expect("reply");
    let done = client
        .wait(&sub.task_id, Until::Terminal, None, WAIT)
        .await
        .expect("done");
    assert_eq!(done.state(), "TASK_STATE_COMPLETED");
    assert_eq!(done.status_text(), "refunded (yes)");
    let quote = done.task.artifacts.first().and_then(|a| a.parts.first());
    assert_eq!(
        quote.and_then(|p| p.data.clone()),
        Some(json!({"amount": 10}))
    );

    // Progress is visible to the submitter: the history, and the live events it subscribed to.
    let history = client
        .history(json!({"taskId": sub.task_id}))
        .await
        .expect("history");
    let events = history["events"].as_array().cloned().unwrap_or_default();
    let progress = events.iter().any(|e| {
        e["envelope"]["data"]["statusUpdate"]["status"]["message"]["parts"][0]["text"]
            == "checking order 42"
    });
    assert!(progress, "no progress event in {events:?}");
    let mut live = Vec::new();
    while live.len() < events.len() {
        match tokio::time::timeout(WAIT, pushes.recv()).await {
            Ok(Some(Push::Event { cursor, .. })) => live.push(serde_json::Value::String(cursor)),
            Ok(Some(_)) => {}
            other => panic!("live events ended early: {other:?}"),
        }
    }
    let recorded: Vec<_> = events.iter().map(|e| e["cursor"].clone()).collect();
    assert_eq!(live, recorded, "the live feed differs from the history");

    // "no" rejects through the handler's error.
    let sub2 = client
        .submit(Submit::new("billing.refund", "order 43"))
        .await
        .expect("submit");
    client
        .wait(&sub2.task_id, Until::Settled, None, WAIT)
        .await
        .expect("asked");
    client.reply(&sub2.task_id, "no").await.expect("reply");
    let rejected = client
        .wait(&sub2.task_id, Until::Terminal, None, WAIT)
        .await
        .expect("rejected");
    assert_eq!(rejected.state(), "TASK_STATE_REJECTED");

    // Shared context.
    let version = client
        .publish_context("conv-1", json!({"order": 42}))
        .await
        .expect("publish");
    assert!(version >= 1);
    let ctx = client.read_context("conv-1").await.expect("read");
    assert_eq!(ctx.map(|c| c["value"].clone()), Some(json!({"order": 42})));
    nerve_testkit::eventually(WAIT, "agent heartbeats", || {
        let beats = handle.heartbeats();
        async move { (beats >= 2).then_some(()) }
    })
    .await;

    handle.stop();
    tokio::time::timeout(WAIT, runner)
        .await
        .expect("agent stops")
        .expect("join")
        .expect("run");
}

#[tokio::test]
async fn cancellation_reaches_the_handler_and_deadlines_hold() {
    let hub = Nerve::start();
    let (started_tx, mut started) = tokio::sync::mpsc::channel::<()>(1);
    let (cancelled_tx, mut cancelled) = tokio::sync::mpsc::channel::<()>(1);
    let token = hub.bus_token("slow-1", &["bus.serve.billing.slow"]);
    let agent = Agent::new(&hub.endpoint, &token, AgentCard::new("slow", "Slow")).skill(
        "billing.slow",
        move |task| {
            let (started_tx, cancelled_tx) = (started_tx.clone(), cancelled_tx.clone());
            async move {
                let _ = started_tx.send(()).await;
                task.cancelled().await;
                let _ = cancelled_tx.send(()).await;
                Ok(String::new())
            }
        },
    );
    let handle = agent.handle();
    let runner = tokio::spawn(agent.run());
    tokio::time::timeout(WAIT, handle.registered())
        .await
        .expect("registered");
    let (client, _pushes) = BusClient::connect(&hub.endpoint, &hub.bus_token("user-1", SUBMITTER))
        .await
        .expect("connect");
    let sub = client
        .submit(Submit::new("billing.slow", "forever"))
        .await
        .expect("submit");
    tokio::time::timeout(WAIT, started.recv())
        .await
        .expect("started");
    let e = client
        .wait(
            &sub.task_id,
            Until::Terminal,
            None,
            Duration::from_millis(500),
        )
        .await
        .expect_err("deadline");
    assert_eq!(e.name(), Some("Timeout"));
    client.cancel(&sub.task_id).await.expect("cancel");
    let record = client.get(&sub.task_id).await.expect("get");
    assert_eq!(record.state(), "TASK_STATE_CANCELED");
    tokio::time::timeout(WAIT, cancelled.recv())
        .await
        .expect("the handler saw the cancellation");
    let e = client
        .submit(Submit::new("orders.lookup", "not allowed"))
        .await
        .expect_err("forbidden");
    assert_eq!(e.name(), Some("Forbidden"));
    handle.stop();
    tokio::time::timeout(WAIT, runner)
        .await
        .expect("agent stops")
        .expect("join")
        .expect("run");
}

#[tokio::test]
async fn a_dropped_agent_socket_reconnects_and_gets_its_task_again() {
    let hub = Nerve::start();
    let (seen_tx, mut seen) = tokio::sync::mpsc::channel::<u64>(4);
    let token = hub.bus_token("refunder-1", &["bus.serve.billing.refund"]);
    let agent = Agent::new(&hub.endpoint, &token, AgentCard::new("refunder", "Refunds")).skill(
        "billing.refund",
        move |task| {
            let seen_tx = seen_tx.clone();
            async move {
                let _ = seen_tx.send(task.deliveries).await;
                if task.deliveries == 1 {
                    // The hub requeues what this socket held; this handler is then dropped.
                    task.bus().drop_socket().await;
                    std::future::pending::<()>().await;
                }
                Ok("second time lucky".to_string())
            }
        },
    );
    let handle = agent.handle();
    let runner = tokio::spawn(agent.run());
    tokio::time::timeout(WAIT, handle.registered())
        .await
        .expect("registered");
    let (client, _pushes) = BusClient::connect(&hub.endpoint, &hub.bus_token("user-1", SUBMITTER))
        .await
        .expect("connect");
    let done = client
        .call(Submit::new("billing.refund", "order 7"), WAIT)
        .await
        .expect("done");
    assert_eq!(done.state(), "TASK_STATE_COMPLETED");
    assert_eq!(done.status_text(), "second time lucky");
    assert_eq!(seen.recv().await, Some(1));
    assert_eq!(seen.recv().await, Some(2));
    handle.stop();
    tokio::time::timeout(WAIT, runner)
        .await
        .expect("agent stops")
        .expect("join")
        .expect("run");
}

#[tokio::test]
async fn an_agent_delegates_a_sub_task_in_the_same_chain() {
    let hub = Nerve::start();
    let orders_token = hub.bus_token("orders-1", &["bus.serve.orders.lookup"]);
    let orders = Agent::new(
        &hub.endpoint,
        &orders_token,
        AgentCard::new("orders", "Orders"),
    )
    .skill("orders.lookup", |task| async move {
        Ok(format!("order {} shipped", task.text()))
    });
    let triage_token = hub.bus_token(
        "triage-1",
        &["bus.serve.support.triage", "bus.submit.orders.lookup"],
    );
    let triage = Agent::new(
        &hub.endpoint,
        &triage_token,
        AgentCard::new("triage", "Triage"),
    )
    .skill("support.triage", |task| async move {
        let found = task
            .delegate(Submit::new("orders.lookup", "42"), WAIT)
            .await?;
        Ok(format!("triaged: {}", found.status_text()))
    });
    let handles = [orders.handle(), triage.handle()];
    let runners = [tokio::spawn(orders.run()), tokio::spawn(triage.run())];
    for h in &handles {
        tokio::time::timeout(WAIT, h.registered())
            .await
            .expect("registered");
    }
    let token = hub.bus_token("user-1", &["bus.submit.support.triage", "bus.watch"]);
    let (client, _pushes) = BusClient::connect(&hub.endpoint, &token)
        .await
        .expect("connect");
    let sub = client
        .submit(Submit::new("support.triage", "where is my order?"))
        .await
        .expect("submit");
    let done = client
        .wait(&sub.task_id, Until::Terminal, None, WAIT)
        .await
        .expect("done");
    assert_eq!(done.status_text(), "triaged: order 42 shipped");
    let chain = client
        .invoke("bus.chain", json!({"correlationId": sub.correlation_id}))
        .await
        .expect("chain");
    let root = &chain["roots"][0];
    assert_eq!(root["capability"], "support.triage");
    assert_eq!(root["children"][0]["capability"], "orders.lookup");
    assert_eq!(root["children"][0]["state"], "TASK_STATE_COMPLETED");
    for h in &handles {
        h.stop();
    }
    for r in runners {
        tokio::time::timeout(WAIT, r)
            .await
            .expect("agent stops")
            .expect("join")
            .expect("run");
    }
}

#[tokio::test]
async fn a_refused_token_or_card_stops_the_agent() {
    let hub = Nerve::start();
    let bad = format!("{}x", hub.bus_token("x", &["bus.serve.a.b"]));
    let agent = Agent::new(&hub.endpoint, &bad, AgentCard::new("x", "X"))
        .skill("a.b", |_task| async { Ok(String::new()) });
    let e = tokio::time::timeout(WAIT, agent.run())
        .await
        .expect("run ends")
        .expect_err("bad token");
    assert_eq!(e.http_status(), Some(401));
    assert!(e.to_string().contains("signature is invalid"), "{e}");
    let token = hub.bus_token("y", &["bus.serve.a.b"]);
    let agent = Agent::new(&hub.endpoint, &token, AgentCard::new("y", "Y"))
        .skill("c.d", |_task| async { Ok(String::new()) });
    let e = tokio::time::timeout(WAIT, agent.run())
        .await
        .expect("run ends")
        .expect_err("unserved capability");
    assert_eq!(e.name(), Some("Forbidden"));
}
