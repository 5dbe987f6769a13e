//! The bus on Redis Streams shared by two hub processes: an agent on one hub serves a task
//! submitted, watched and answered through the other, and the watcher sees the agent's events
//! live in the second hub's groups.

use nerve_testkit::RedisServer;
use serde_json::json;

use super::task_state;
use crate::harness::{ALL_ROLES, BusClient, Hub, RELIABLE, WAIT, post};

#[tokio::test]
async fn two_hubs_share_one_bus_on_redis() {
    let redis = RedisServer::start();
    let config = format!(
        "[bus]\ntransport = \"redis\"\nredis_url = \"{}\"\nfast = true\n",
        redis.url()
    );
    let a = Hub::start_with_config(&config);
    let b = Hub::start_with_config(&config);

    let mut agent = BusClient::connect(&a, "remote-1", &["bus.serve.remote"]).await;
    agent.register("remote-1", &["remote"]).await;
    let user = b.token(
        "bus",
        Some("bo"),
        &["bus.submit.remote", "bus.reply.remote", "bus.watch"],
        &[],
    );
    // Hub B knows the agent registered on hub A (once B's own bus has reached Redis: until
    // then it answers Unavailable).
    let agents = nerve_testkit::eventually(WAIT, "hub B's bus to list the agent", || {
        let (b, user) = (&b, &user);
        async move {
            let (_, agents) = post(
                b,
                "/bus/api/bus.agents",
                user,
                json!({"capability": "remote"}),
            )
            .await;
            (agents["name"] != "Unavailable").then_some(agents)
        }
    })
    .await;
    assert_eq!(agents["agents"][0]["id"], "remote-1", "{agents}");

    let (status, sub) = post(
        &b,
        "/bus/api/bus.submit",
        &user,
        json!({"capability": "remote", "text": "cross"}),
    )
    .await;
    assert_eq!(status, 200, "{sub}");
    let id = sub["taskId"].as_str().expect("id").to_string();

    let mut browser = b
        .connect("bus", Some("bo"), ALL_ROLES, Some(RELIABLE))
        .await;
    browser.until(|v| v["event"] == "connected").await;
    browser
        .send(json!({"type": "joinGroup", "group": format!("task.{id}"), "ackId": 1}))
        .await;
    browser.ack(1).await;

    let task = agent.push("bus.task").await;
    assert_eq!(task["task"]["id"], id.as_str());
    let ask = agent
        .start_invoke(
            "bus.task.ask",
            json!({"taskId": id, "question": "ok?", "timeoutMs": 20000}),
        )
        .await;
    let asked = browser
        .until(|v| task_state(v) == Some("TASK_STATE_INPUT_REQUIRED"))
        .await;
    assert_eq!(asked["data"]["envelope"]["source"], "agent://remote-1");

    let (status, _) = post(
        &b,
        "/bus/api/bus.task.reply",
        &user,
        json!({"taskId": id, "text": "yes"}),
    )
    .await;
    assert_eq!(status, 200);
    let answer = agent.response(&ask).await.expect("answered across hubs");
    assert_eq!(answer["text"], "yes");
    agent.complete(&id, "done").await;
    browser
        .until(|v| task_state(v) == Some("TASK_STATE_COMPLETED"))
        .await;
    let (_, chain) = post(
        &b,
        "/bus/api/bus.chain",
        &user,
        json!({"correlationId": id}),
    )
    .await;
    assert_eq!(chain["correlationId"], json!(id));
    assert_eq!(chain["roots"][0]["taskId"], json!(id));
    assert_eq!(chain["roots"][0]["state"], "TASK_STATE_COMPLETED");
    assert_eq!(chain["roots"][0]["agent"], "remote-1");
    let events = chain["roots"][0]["events"].as_array().expect("events");
    assert!(
        events
            .iter()
            .all(|e| e["eventType"].is_string() && e["atMs"].is_u64()),
        "{chain}"
    );
}
