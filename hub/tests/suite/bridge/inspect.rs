//! Looking across the bus: the approvals waiting for a person and the recent chains
//! (`bus.tasks`), dead letters and their redrive, and an ask nobody answers in time, which
//! fails with words a person reads rather than a bare `Timeout`.

use serde_json::{Value, json};

use crate::harness::{BusClient, FAST_BUS, Hub, WAIT, post};

fn ids(answer: &Value) -> Vec<String> {
    answer["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|r| r["task"]["id"].as_str().expect("id").to_string())
        .collect()
}

#[tokio::test]
async fn pending_approvals_and_recent_chains() {
    let hub = Hub::start_with_config(FAST_BUS);
    let mut agent =
        BusClient::connect(&hub, "refunder", &["bus.serve.refund", "bus.submit.lookup"]).await;
    agent.register("refunder", &["refund"]).await;
    let mut user = BusClient::connect(&hub, "ann", &["bus.submit.refund"]).await;
    let root = user
        .ok(
            "bus.submit",
            json!({"capability": "refund", "text": "order 42"}),
        )
        .await["taskId"]
        .as_str()
        .expect("id")
        .to_string();
    let pushed = agent.push("bus.task").await;
    let child = agent
        .ok(
            "bus.submit",
            json!({"capability": "lookup", "text": "42", "parentTaskId": root}),
        )
        .await["taskId"]
        .as_str()
        .expect("id")
        .to_string();
    let ask = agent
        .start_invoke(
            "bus.task.ask",
            json!({"taskId": pushed["task"]["id"], "question": "Refund 10 EUR?"}),
        )
        .await;

    let watcher = hub.token("bus", Some("page"), &["bus.watch"], &[]);
    let pending = nerve_testkit::eventually(WAIT, "the ask to be pending", || async {
        let (status, v) = post(
            &hub,
            "/bus/api/bus.tasks",
            &watcher,
            json!({"state": "TASK_STATE_INPUT_REQUIRED"}),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        (!ids(&v).is_empty()).then_some(v)
    })
    .await;
    assert_eq!(ids(&pending), vec![root.clone()]);
    assert_eq!(
        pending["tasks"][0]["task"]["status"]["message"]["parts"][0]["text"],
        "Refund 10 EUR?"
    );
    let (_, chains) = post(
        &hub,
        "/bus/api/bus.tasks",
        &watcher,
        json!({"rootsOnly": true}),
    )
    .await;
    assert_eq!(ids(&chains), vec![root.clone()]);
    let (_, all) = post(&hub, "/bus/api/bus.tasks", &watcher, json!({})).await;
    assert_eq!(ids(&all).len(), 2, "{all}");
    assert!(ids(&all).contains(&child));
    let (status, _) = post(
        &hub,
        "/bus/api/bus.tasks",
        &watcher,
        json!({"state": "nonsense"}),
    )
    .await;
    assert_eq!(status, 400);
    let nobody = hub.token("bus", Some("x"), &["bus.submit.refund"], &[]);
    assert_eq!(
        post(&hub, "/bus/api/bus.tasks", &nobody, json!({})).await.0,
        403
    );

    let replier = hub.token("bus", Some("ann"), &["bus.reply.refund"], &[]);
    let (status, _) = post(
        &hub,
        "/bus/api/bus.task.reply",
        &replier,
        json!({"taskId": root, "text": "yes"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(agent.response(&ask).await.expect("answer")["text"], "yes");
}

#[tokio::test]
async fn an_unanswered_ask_says_what_nobody_answered() {
    let hub = Hub::start_with_config(FAST_BUS);
    let mut agent = BusClient::connect(&hub, "refunder", &["bus.serve.refund"]).await;
    agent.register("refunder", &["refund"]).await;
    let mut user = BusClient::connect(&hub, "ann", &["bus.submit.refund"]).await;
    user.ok(
        "bus.submit",
        json!({"capability": "refund", "text": "order 42"}),
    )
    .await;
    let pushed = agent.push("bus.task").await;
    let e = agent
        .invoke(
            "bus.task.ask",
            json!({"taskId": pushed["task"]["id"], "question": "Refund 10 EUR?", "timeoutMs": 1000}),
        )
        .await
        .expect_err("nobody answers");
    assert_eq!(e["name"], "Timeout");
    assert_eq!(
        e["message"],
        "nobody answered \"Refund 10 EUR?\" within 1 s"
    );
}

#[tokio::test]
async fn dead_letters_are_listed_and_put_back_by_an_admin() {
    let hub = Hub::start_with_config(FAST_BUS);
    let mut agent = BusClient::connect(&hub, "flaky", &["bus.serve.flaky"]).await;
    agent.register("flaky", &["flaky"]).await;
    let submitter = hub.token("bus", Some("ann"), &["bus.submit.flaky"], &[]);
    let (_, sub) = post(
        &hub,
        "/bus/api/bus.submit",
        &submitter,
        json!({"capability": "flaky", "text": "x"}),
    )
    .await;
    // Every delivery is retried until the bus gives up: ten deliveries, then a dead letter.
    let task_id = sub["taskId"].as_str().expect("id").to_string();
    for _ in 0..10 {
        let task = agent.push("bus.task").await;
        assert_eq!(task["task"]["id"], task_id.as_str());
        agent
            .ok(
                "bus.task.retry",
                json!({"taskId": task_id, "reason": "flaky"}),
            )
            .await;
    }
    let watcher = hub.token("bus", Some("ops"), &["bus.watch"], &[]);
    let dead = nerve_testkit::eventually(WAIT, "a dead letter", || async {
        let (_, v) = post(&hub, "/bus/api/bus.dlq.list", &watcher, json!({})).await;
        (!v["deadLetters"].as_array().expect("list").is_empty()).then_some(v)
    })
    .await;
    let letter = &dead["deadLetters"][0];
    assert_eq!(letter["envelope"]["taskid"], sub["taskId"]);
    assert_eq!(letter["reason"], "MaxDeliveryCountExceeded");
    let redrive = json!({"capability": "flaky"});
    assert_eq!(
        post(&hub, "/bus/api/bus.dlq.redrive", &watcher, redrive.clone())
            .await
            .0,
        403
    );
    let admin = hub.token("bus", Some("ops"), &["bus.admin"], &[]);
    let (status, v) = post(&hub, "/bus/api/bus.dlq.redrive", &admin, redrive).await;
    assert_eq!((status, v["redriven"].as_u64()), (200, Some(1)), "{v}");
    assert_eq!(agent.push("bus.task").await["task"]["id"], sub["taskId"]);
}
