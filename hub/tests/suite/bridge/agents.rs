//! Agents over the hub's WebSocket: register with bus roles, receive tasks, report progress and
//! artifacts, ask a human, complete; a dropped agent's task goes to another agent; every
//! operation checks the token's bus roles.

use serde_json::json;

use crate::harness::{BusClient, FAST_BUS, Hub, JSON, WAIT, card, http_get, metric, post, refused};

#[tokio::test]
async fn an_agent_serves_a_task_end_to_end() {
    let hub = Hub::start_with_config(FAST_BUS);
    let mut agent = BusClient::connect(&hub, "echo-1", &["bus.serve.echo"]).await;
    let reg = agent.register("echo-1", &["echo"]).await;
    assert_eq!(reg["capabilities"], json!(["echo"]));

    let mut client = BusClient::connect(&hub, "alice", &["bus.submit.echo"]).await;
    let sub = client
        .ok("bus.submit", json!({"capability": "echo", "text": "hello"}))
        .await;
    let task_id = sub["taskId"].as_str().expect("task id").to_string();
    assert_eq!(sub["correlationId"], sub["taskId"]);

    let pushed = agent.push("bus.task").await;
    assert_eq!(pushed["task"]["id"], task_id.as_str());
    assert_eq!(pushed["task"]["history"][0]["parts"][0]["text"], "hello");
    assert_eq!(pushed["task"]["history"][0]["metadata"]["userId"], "alice");
    agent
        .ok(
            "bus.task.status",
            json!({"taskId": task_id, "state": "TASK_STATE_WORKING", "text": "thinking"}),
        )
        .await;
    agent
        .ok(
            "bus.task.artifact",
            json!({"taskId": task_id, "artifact": {"artifactId": "a1", "parts": [{"text": "HELLO"}]}}),
        )
        .await;
    agent.complete(&task_id, "done").await;

    let done = client
        .ok(
            "bus.task.wait",
            json!({"taskId": task_id, "timeoutMs": 10000}),
        )
        .await;
    let task = &done["task"]["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED");
    assert_eq!(task["artifacts"][0]["parts"][0]["text"], "HELLO");
    assert_eq!(done["task"]["agent"], "echo-1");
    let texts: Vec<&str> = task["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|m| m["parts"][0]["text"].as_str())
        .collect();
    assert_eq!(texts, ["hello", "thinking", "done"]);

    // Settling twice is refused: the task is no longer held.
    let again = agent
        .invoke("bus.task.complete", json!({"taskId": task_id}))
        .await;
    assert_eq!(again.expect_err("second settle")["name"], "NotFound");
}

#[tokio::test]
async fn bus_roles_are_checked_for_every_operation() {
    let hub = Hub::start_with_config(FAST_BUS);
    let mut c = BusClient::connect(&hub, "mallory", &["bus.submit.echo"]).await;
    let e = c
        .invoke("bus.register", json!({"card": card("m", &["echo"])}))
        .await
        .expect_err("serve without role");
    assert_eq!(e["name"], "Forbidden");
    let e = c
        .invoke("bus.submit", json!({"capability": "billing", "text": "x"}))
        .await
        .expect_err("submit elsewhere");
    assert_eq!(e["name"], "Forbidden");
    let sub = c
        .ok("bus.submit", json!({"capability": "echo", "text": "x"}))
        .await;
    let id = sub["taskId"].as_str().expect("id");
    // Its own task is readable; history and others' tasks need bus.watch.
    c.ok("bus.task.get", json!({"taskId": id})).await;
    let e = c
        .invoke("bus.history", json!({"taskId": id}))
        .await
        .expect_err("history without watch");
    assert_eq!(e["name"], "Forbidden");
    let e = c
        .invoke("bus.task.reply", json!({"taskId": id, "text": "yes"}))
        .await
        .expect_err("reply without role");
    assert_eq!(e["name"], "Forbidden");
    let e = c
        .invoke("bus.subscribe", json!({"group": format!("task.{id}")}))
        .await
        .expect_err("subscribe without watch");
    assert_eq!(e["name"], "Forbidden");
    let e = c
        .invoke("bus.nope", json!({}))
        .await
        .expect_err("unknown op");
    assert_eq!(e["name"], "NotFound");

    // Another user's task is not readable without bus.watch.
    let mut other = BusClient::connect(&hub, "eve", &["bus.submit.echo"]).await;
    let e = other
        .invoke("bus.task.get", json!({"taskId": id}))
        .await
        .expect_err("foreign task");
    assert_eq!(e["name"], "Forbidden");

    // The REST twin: no token is 401, a token without roles 403, agent ops 400.
    let (status, _) = post(&hub, "/bus/api/bus.submit", "bad", json!({})).await;
    assert_eq!(status, 401);
    let t = hub.token("bus", Some("x"), &[], &[]);
    let (status, body) = post(
        &hub,
        "/bus/api/bus.submit",
        &t,
        json!({"capability": "echo", "text": "x"}),
    )
    .await;
    assert_eq!((status, body["name"].as_str()), (403, Some("Forbidden")));
    let (status, _) = post(&hub, "/bus/api/bus.register", &t, json!({})).await;
    assert_eq!(status, 400);
    // A token for another hub is refused at the upgrade.
    let chat = hub.token("chat", Some("x"), &["bus.admin"], &[]);
    let url = format!("ws://127.0.0.1:{}/bus/ws?access_token={chat}", hub.port);
    let (status, _) = refused(&url, Some(JSON)).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_dropped_agents_task_goes_to_another_agent() {
    let hub = Hub::start_with_config(FAST_BUS);
    let mut first = BusClient::connect(&hub, "w1", &["bus.serve.work"]).await;
    first.register("w1", &["work"]).await;
    let mut client = BusClient::connect(&hub, "c", &["bus.submit.work"]).await;
    let sub = client
        .ok("bus.submit", json!({"capability": "work", "text": "job"}))
        .await;
    let task_id = sub["taskId"].as_str().expect("id").to_string();
    let got = first.push("bus.task").await;
    assert_eq!(got["deliveries"], 1);
    first.ws.drop_socket();

    let mut second = BusClient::connect(&hub, "w2", &["bus.serve.work"]).await;
    second.register("w2", &["work"]).await;
    let again = second.push("bus.task").await;
    assert_eq!(again["task"]["id"], task_id.as_str());
    assert!(again["deliveries"].as_u64() >= Some(2), "{again}");
    second.complete(&task_id, "ok").await;
    let done = client
        .ok(
            "bus.task.wait",
            json!({"taskId": task_id, "timeoutMs": 10000}),
        )
        .await;
    assert_eq!(
        done["task"]["task"]["status"]["state"],
        "TASK_STATE_COMPLETED"
    );
    assert_eq!(done["task"]["agent"], "w2");
}

#[tokio::test]
async fn frames_outside_the_protocol_are_refused_or_close_the_socket() {
    let hub = Hub::start_with_config(FAST_BUS);
    let mut c = BusClient::connect(&hub, "x", &["bus.watch"]).await;
    c.ws.send(json!({"type": "joinGroup", "group": "g", "ackId": 1}))
        .await;
    let ack = c.ws.ack(1).await;
    assert_eq!(
        (ack["success"].as_bool(), ack["error"]["name"].as_str()),
        (Some(false), Some("BadRequest"))
    );
    c.ws.send(json!({"type": "ping"})).await;
    assert_eq!(c.ws.next_json().await["type"], "pong");
    c.ws.send(json!({"type": "event", "event": "bus.nope", "ackId": 2}))
        .await;
    let ack = c.ws.ack(2).await;
    assert_eq!(ack["error"]["name"], "NotFound");
    c.ws.send_raw(tokio_tungstenite::tungstenite::Message::Text(
        "not json".into(),
    ))
    .await;
    let closed = c.ws.closed().await;
    assert_eq!(closed.code, Some(1007));
}

#[tokio::test]
async fn bus_metrics_show_in_flight_redeliveries_and_dead_letters() {
    let hub = Hub::start_with_config(FAST_BUS);
    let mut agent = BusClient::connect(&hub, "flaky", &["bus.serve.flaky"]).await;
    agent.register("flaky", &["flaky"]).await;
    let mut client = BusClient::connect(&hub, "c", &["bus.submit.flaky", "bus.submit.idle"]).await;
    let port = hub.port;
    let scrape =
        |name: &'static str| async move { metric(&http_get(port, "/metrics").await, name) };
    // Two tasks for a capability nobody serves wait in its queue.
    for _ in 0..2 {
        client
            .ok("bus.submit", json!({"capability": "idle", "text": "later"}))
            .await;
    }
    nerve_testkit::eventually(WAIT, "two messages waiting", || async move {
        (scrape("nerve_bus_depth").await == 2.0).then_some(())
    })
    .await;
    let sub = client
        .ok("bus.submit", json!({"capability": "flaky", "text": "job"}))
        .await;
    let task_id = sub["taskId"].as_str().expect("id").to_string();
    // The agent holds the task: one delivery in flight on this node.
    let got = agent.push("bus.task").await;
    assert_eq!(got["deliveries"], 1);
    nerve_testkit::eventually(WAIT, "one delivery in flight", || async move {
        (scrape("nerve_bus_in_flight").await == 1.0).then_some(())
    })
    .await;
    // It asks for a retry every time until the bus gives up: 10 deliveries by default, so
    // 9 redeliveries, then one dead letter.
    let mut deliveries = 1;
    loop {
        agent
            .ok(
                "bus.task.retry",
                json!({"taskId": task_id, "reason": "not now"}),
            )
            .await;
        if deliveries == 10 {
            break;
        }
        let again = agent.push("bus.task").await;
        deliveries = again["deliveries"].as_u64().expect("deliveries");
    }
    let done = client
        .ok(
            "bus.task.wait",
            json!({"taskId": task_id, "timeoutMs": 20000}),
        )
        .await;
    assert_eq!(done["task"]["task"]["status"]["state"], "TASK_STATE_FAILED");
    nerve_testkit::eventually(
        WAIT,
        "redeliveries, a dead letter and nothing in flight",
        || async move {
            let s = http_get(port, "/metrics").await;
            let counted = (
                metric(&s, "nerve_bus_redeliveries_total"),
                metric(&s, "nerve_bus_dead_letters_total"),
                metric(&s, "nerve_bus_in_flight"),
            );
            (counted == (9.0, 1.0, 0.0)).then_some(())
        },
    )
    .await;
}
