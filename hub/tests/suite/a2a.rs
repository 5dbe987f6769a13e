//! The A2A v1.0 gateway on the real binary: the agent card lists bus skills; SendMessage blocks
//! until the bus agent finishes or asks for input, a follow-up message answers it;
//! SendStreamingMessage and SubscribeToTask stream over SSE; errors carry the A2A codes.

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::harness::{BusClient, FAST_BUS, Hub, WAIT, http_get, post};

fn rpc(method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
}

/// Calls JSON-RPC `method` on `/a2a`; returns the status and the answer.
async fn a2a(hub: &Hub, token: &str, method: &str, params: Value) -> (u16, Value) {
    post(hub, "/a2a", token, rpc(method, params)).await
}

fn user_message(text: &str) -> Value {
    json!({"messageId": format!("m-{text}"), "role": "ROLE_USER", "parts": [{"text": text}]})
}

/// Reads an SSE response to the end; returns each event's JSON-RPC `result`.
async fn sse(hub: &Hub, token: &str, body: Value) -> Vec<Value> {
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/a2a", hub.port))
        .bearer_auth(token)
        .json(&body)
        .timeout(WAIT)
        .send()
        .await
        .expect("POST /a2a");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/event-stream")
    );
    let text = r.text().await.expect("stream");
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .map(|v| v["result"].clone())
        .collect()
}

/// Serves `echo` tasks: progress, an artifact, and for "ask" texts a question first.
async fn echo_agent(mut agent: BusClient) {
    loop {
        let t = agent.push("bus.task").await;
        let id = t["task"]["id"].as_str().unwrap_or_default().to_string();
        let text = t["task"]["history"][0]["parts"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let _ = agent
            .invoke(
                "bus.task.status",
                json!({"taskId": id, "state": "TASK_STATE_WORKING", "text": "on it"}),
            )
            .await;
        let mut reply = text.to_uppercase();
        if text.starts_with("ask") {
            let a = agent
                .invoke(
                    "bus.task.ask",
                    json!({"taskId": id, "question": "sure?", "timeoutMs": 20000}),
                )
                .await;
            reply = format!(
                "answer was {}",
                a.map(|a| a["text"].clone()).unwrap_or_default()
            );
        }
        let _ = agent
            .invoke(
                "bus.task.artifact",
                json!({"taskId": id, "artifact": {"artifactId": "out", "parts": [{"text": reply}]}}),
            )
            .await;
        let _ = agent
            .invoke("bus.task.complete", json!({"taskId": id, "text": "done"}))
            .await;
    }
}

#[tokio::test]
async fn a2a_methods_map_onto_bus_tasks() {
    let hub = Hub::start_with_config(FAST_BUS);
    let mut agent = BusClient::connect(&hub, "echo-1", &["bus.serve.echo"]).await;
    agent.register("echo-1", &["echo"]).await;
    tokio::spawn(echo_agent(agent));
    let token = hub.token("bus", Some("a2a"), &["bus.submit.echo"], &[]);

    let card = http_get(hub.port, "/.well-known/agent-card.json").await;
    let card: Value = serde_json::from_str(&card).expect("card json");
    assert_eq!(card["skills"][0]["id"], "echo");
    assert_eq!(card["capabilities"]["streaming"], true);
    assert_eq!(
        card["supportedInterfaces"][0]["url"],
        format!("http://127.0.0.1:{}/a2a", hub.port)
    );

    // Blocking SendMessage: the only capability is chosen; the result is the finished task.
    let (status, r) = a2a(
        &hub,
        &token,
        "SendMessage",
        json!({"message": user_message("hi")}),
    )
    .await;
    assert_eq!(status, 200);
    let task = &r["result"]["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{r}");
    assert_eq!(task["artifacts"][0]["parts"][0]["text"], "HI");
    let task_id = task["id"].as_str().expect("id").to_string();

    // Interrupted: SendMessage returns at input-required; a message with the taskId answers it.
    let (_, r) = a2a(
        &hub,
        &token,
        "SendMessage",
        json!({"message": user_message("ask me")}),
    )
    .await;
    assert_eq!(
        r["result"]["task"]["status"]["state"], "TASK_STATE_INPUT_REQUIRED",
        "{r}"
    );
    let asked = r["result"]["task"]["id"].as_str().expect("id").to_string();
    let mut answer = user_message("yes");
    answer["taskId"] = json!(asked);
    let (_, r) = a2a(&hub, &token, "SendMessage", json!({"message": answer})).await;
    assert_eq!(
        r["result"]["task"]["status"]["state"], "TASK_STATE_COMPLETED",
        "{r}"
    );
    assert_eq!(
        r["result"]["task"]["artifacts"][0]["parts"][0]["text"],
        "answer was \"yes\""
    );

    // Streaming: the task first, then status and artifact updates to completion.
    let events = sse(
        &hub,
        &token,
        rpc(
            "SendStreamingMessage",
            json!({"message": user_message("stream")}),
        ),
    )
    .await;
    // The stream starts at the submitted task, so every step shows however fast the agent is.
    assert_eq!(
        events[0]["task"]["status"]["state"], "TASK_STATE_SUBMITTED",
        "{events:?}"
    );
    let states: Vec<&str> = events
        .iter()
        .filter_map(|e| e["statusUpdate"]["status"]["state"].as_str())
        .collect();
    assert_eq!(states[0], "TASK_STATE_WORKING", "{events:?}");
    let last = events.last().expect("events");
    assert_eq!(
        last["statusUpdate"]["status"]["state"], "TASK_STATE_COMPLETED",
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["artifactUpdate"]["artifact"]["parts"][0]["text"] == "STREAM")
    );

    // GetTask, ListTasks, and the error codes.
    let (_, r) = a2a(
        &hub,
        &token,
        "GetTask",
        json!({"id": task_id, "historyLength": 1}),
    )
    .await;
    assert_eq!(r["result"]["id"], task_id.as_str());
    assert_eq!(r["result"]["history"].as_array().map(Vec::len), Some(1));
    let (_, r) = a2a(&hub, &token, "ListTasks", json!({"pageSize": 2})).await;
    assert_eq!(r["result"]["tasks"].as_array().map(Vec::len), Some(2));
    assert_eq!(r["result"]["totalSize"], 3);
    assert_eq!(r["result"]["nextPageToken"], "2");
    let code = |r: &Value| r["error"]["code"].as_i64();
    let (_, r) = a2a(&hub, &token, "GetTask", json!({"id": "nope"})).await;
    assert_eq!(code(&r), Some(-32001));
    let (_, r) = a2a(&hub, &token, "CancelTask", json!({"id": task_id})).await;
    assert_eq!(code(&r), Some(-32002));
    let (_, r) = a2a(&hub, &token, "SubscribeToTask", json!({"id": task_id})).await;
    assert_eq!(code(&r), Some(-32004));
    let mut late = user_message("late");
    late["taskId"] = json!(task_id);
    let (_, r) = a2a(&hub, &token, "SendMessage", json!({"message": late})).await;
    assert_eq!(code(&r), Some(-32004));
    let (_, r) = a2a(&hub, &token, "CreateTaskPushNotificationConfig", json!({})).await;
    assert_eq!(code(&r), Some(-32602), "a setting needs its task: {r}");
    let (_, r) = a2a(&hub, &token, "GetExtendedAgentCard", json!({})).await;
    assert_eq!(code(&r), Some(-32007));
    let (_, r) = a2a(&hub, &token, "Nope", json!({})).await;
    assert_eq!(code(&r), Some(-32601));
    let (_, r) = post(&hub, "/a2a", &token, json!({"id": 1})).await;
    assert_eq!(code(&r), Some(-32600));
    let (_, r) = a2a(&hub, &token, "SendMessage", json!({"message": 5})).await;
    assert_eq!(code(&r), Some(-32602));
    // A capability the token may not submit to; no token at all.
    let other = hub.token("bus", Some("x"), &["bus.submit.other"], &[]);
    let (_, r) = a2a(
        &hub,
        &other,
        "SendMessage",
        json!({"message": user_message("x")}),
    )
    .await;
    assert_eq!(code(&r), Some(-32600));
    let (status, _) = post(&hub, "/a2a", "bad", rpc("GetTask", json!({"id": task_id}))).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn subscribe_to_task_streams_the_current_task_then_updates() {
    let hub = Hub::start_with_config(FAST_BUS);
    let mut agent = BusClient::connect(&hub, "slow-1", &["bus.serve.slow"]).await;
    agent.register("slow-1", &["slow"]).await;
    let token = hub.token("bus", Some("a2a"), &["bus.submit.slow", "bus.watch"], &[]);
    let mut msg = user_message("work");
    msg["metadata"] = json!({"capability": "slow"});
    let (_, r) = a2a(
        &hub,
        &token,
        "SendMessage",
        json!({"message": msg, "configuration": {"returnImmediately": true}}),
    )
    .await;
    let id = r["result"]["task"]["id"].as_str().expect("id").to_string();
    let pushed = agent.push("bus.task").await;
    assert_eq!(pushed["task"]["id"], id.as_str());
    let resp = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/a2a", hub.port))
        .bearer_auth(&token)
        .json(&rpc("SubscribeToTask", json!({"id": id})))
        .timeout(WAIT)
        .send()
        .await
        .expect("subscribe");
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    // The subscriber gets the current task first; only then does the agent finish.
    while !text.contains("\n\n") {
        let chunk = body.next().await.expect("first event").expect("chunk");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    agent
        .ok(
            "bus.task.status",
            json!({"taskId": id, "state": "TASK_STATE_WORKING", "text": "half"}),
        )
        .await;
    agent.complete(&id, "all done").await;
    while let Some(chunk) = body.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
    }
    let results: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .map(|v| v["result"].clone())
        .collect();
    assert!(results[0].get("task").is_some(), "{results:?}");
    let states: Vec<&str> = results
        .iter()
        .filter_map(|r| r["statusUpdate"]["status"]["state"].as_str())
        .collect();
    assert_eq!(
        states,
        ["TASK_STATE_WORKING", "TASK_STATE_COMPLETED"],
        "{results:?}"
    );
}
