//! Browsers watching a chain through ordinary hub groups: live task events in `task.<id>` and
//! `correlation.<id>`, a human answer to input-required over `POST /bus/api`, and cursor-based
//! catch-up with `bus.history` that loses nothing across a reconnect.

use serde_json::json;

use super::task_state;
use crate::harness::{ALL_ROLES, BusClient, FAST_BUS, Hub, RELIABLE, post};

#[tokio::test]
async fn a_browser_watches_a_chain_answers_and_resumes_by_cursor() {
    let hub = Hub::start_with_config(FAST_BUS);
    let mut agent = BusClient::connect(
        &hub,
        "triage",
        &["bus.serve.triage", "bus.submit.lookup", "bus.serve.lookup"],
    )
    .await;
    agent.register("triage", &["triage", "lookup"]).await;
    let user_token = hub.token(
        "bus",
        Some("ann"),
        &["bus.submit.triage", "bus.reply.triage", "bus.watch"],
        &[],
    );
    let (status, sub) = post(
        &hub,
        "/bus/api/bus.submit",
        &user_token,
        json!({"capability": "triage", "text": "refund order 42"}),
    )
    .await;
    assert_eq!(status, 200, "{sub}");
    let root = sub["taskId"].as_str().expect("id").to_string();

    // The browser joins the chain's groups, then catches up from the start.
    let mut browser = hub
        .connect("bus", Some("ann"), ALL_ROLES, Some(RELIABLE))
        .await;
    browser.until(|v| v["event"] == "connected").await;
    for (i, g) in [format!("task.{root}"), format!("correlation.{root}")]
        .iter()
        .enumerate()
    {
        browser
            .send(json!({"type": "joinGroup", "group": g, "ackId": i + 1}))
            .await;
        browser.ack(i as u64 + 1).await;
    }

    // The agent delegates a sub-task, then asks the human.
    let task = agent.push("bus.task").await;
    assert_eq!(task["task"]["id"], root.as_str());
    let child = agent
        .ok(
            "bus.submit",
            json!({"capability": "lookup", "text": "order 42", "parentTaskId": root}),
        )
        .await;
    assert_eq!(child["correlationId"], root.as_str());
    let child_id = child["taskId"].as_str().expect("child").to_string();
    let sub_task = agent.push("bus.task").await;
    assert_eq!(sub_task["task"]["id"], child_id.as_str());
    agent.complete(&child_id, "order 42: 30 EUR").await;
    let ask = agent
        .start_invoke(
            "bus.task.ask",
            json!({"taskId": root, "question": "Refund 30 EUR?", "timeoutMs": 20000}),
        )
        .await;

    // The browser sees input-required live on task.<root>, with the chain ids on the envelope.
    let asked = browser
        .until(|v| {
            v["group"] == format!("task.{root}")
                && task_state(v) == Some("TASK_STATE_INPUT_REQUIRED")
        })
        .await;
    let env = &asked["data"]["envelope"];
    assert_eq!(env["correlationid"], root.as_str());
    assert_eq!(env["taskid"], root.as_str());
    let cursor = asked["data"]["cursor"]
        .as_str()
        .expect("cursor")
        .to_string();
    assert_eq!(cursor, env["id"].as_str().expect("id"));

    // The sub-task's events reached correlation.<root> too.
    let (_, hist) = post(
        &hub,
        "/bus/api/bus.history",
        &user_token,
        json!({"correlationId": root}),
    )
    .await;
    let tree = &hist["snapshot"];
    assert_eq!(tree["roots"][0]["taskId"], root.as_str());
    assert_eq!(tree["roots"][0]["children"][0]["taskId"], child_id.as_str());
    assert_eq!(
        tree["roots"][0]["children"][0]["state"],
        "TASK_STATE_COMPLETED"
    );

    // The browser drops; meanwhile the human answers (from another tab) and the task finishes.
    browser.drop_socket();
    let (status, replied) = post(
        &hub,
        "/bus/api/bus.task.reply",
        &user_token,
        json!({"taskId": root, "text": "approve"}),
    )
    .await;
    assert_eq!(status, 200, "{replied}");
    let answer = agent.response(&ask).await.expect("ask answered");
    assert_eq!(answer["text"], "approve");
    assert_eq!(answer["answer"]["metadata"]["userId"], "ann");
    agent.complete(&root, "refunded").await;

    // Resume: history after the last cursor the browser applied holds exactly what it missed.
    let (_, missed) = post(
        &hub,
        "/bus/api/bus.history",
        &user_token,
        json!({"taskId": root, "after": cursor}),
    )
    .await;
    assert_eq!(missed["reset"], false);
    let states: Vec<&str> = missed["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["envelope"]["data"]["statusUpdate"]["status"]["state"].as_str())
        .collect();
    assert_eq!(states, ["TASK_STATE_WORKING", "TASK_STATE_COMPLETED"]);
    assert_eq!(
        missed["snapshot"]["task"]["status"]["state"],
        "TASK_STATE_COMPLETED"
    );
    // Nothing after the newest cursor; an unknown cursor resets to the full history.
    let last = missed["cursor"].as_str().expect("cursor");
    let (_, none) = post(
        &hub,
        "/bus/api/bus.history",
        &user_token,
        json!({"taskId": root, "after": last}),
    )
    .await;
    assert_eq!(none["events"], json!([]));
    let (_, reset) = post(
        &hub,
        "/bus/api/bus.history",
        &user_token,
        json!({"taskId": root, "after": "not-a-cursor"}),
    )
    .await;
    assert_eq!(reset["reset"], true);
    assert!(
        reset["events"].as_array().map_or(0, Vec::len) >= 5,
        "{reset}"
    );

    // Answering a finished task is a conflict.
    let (status, _) = post(
        &hub,
        "/bus/api/bus.task.reply",
        &user_token,
        json!({"taskId": root, "text": "again"}),
    )
    .await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn an_agent_subscribes_to_events_and_shares_context() {
    let hub = Hub::start_with_config(FAST_BUS);
    let mut w = BusClient::connect(
        &hub,
        "watcher",
        &["bus.watch", "bus.context.conv-1", "bus.submit.x"],
    )
    .await;
    let sub = w
        .ok(
            "bus.submit",
            json!({"capability": "x", "text": "a", "contextId": "conv-1"}),
        )
        .await;
    let id = sub["taskId"].as_str().expect("id").to_string();
    w.ok("bus.subscribe", json!({"group": "context.conv-1"}))
        .await;
    let v = w
        .ok(
            "bus.context.publish",
            json!({"contextId": "conv-1", "value": {"k": 1}}),
        )
        .await;
    assert_eq!(v["version"], 1);
    let ev = w.push("bus.event").await;
    assert_eq!(ev["group"], "context.conv-1");
    assert_eq!(ev["envelope"]["type"], "bus.context.updated");
    w.ok("bus.task.cancel", json!({"taskId": id})).await;
    let ev = w.push("bus.event").await;
    assert_eq!(ev["envelope"]["taskid"], id.as_str());
    let got = w
        .ok("bus.context.get", json!({"contextId": "conv-1"}))
        .await;
    assert_eq!(got["context"]["value"], json!({"k": 1}));
    let e = w
        .invoke(
            "bus.context.publish",
            json!({"contextId": "conv-2", "value": 1}),
        )
        .await
        .expect_err("other context");
    assert_eq!(e["name"], "Forbidden");
}
