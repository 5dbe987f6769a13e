//! A2A push notifications on the real binary, received by a real HTTP webhook: the four
//! `*TaskPushNotificationConfig` methods, a setting sent with the message, the token and
//! authentication headers, retries after `503`, a dead letter for a webhook that keeps failing,
//! one that refuses at once, and the address checks.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::harness::{BusClient, Hub, Seen, Upstream, WAIT, post};

const PUSH_BUS: &str = "[bus]\nfast = true\npush_allow_private = true\n";

fn rpc(method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
}

async fn a2a(hub: &Hub, token: &str, method: &str, params: Value) -> Value {
    post(hub, "/a2a", token, rpc(method, params)).await.1
}

fn message(text: &str) -> Value {
    json!({"messageId": format!("m-{text}"), "role": "ROLE_USER", "parts": [{"text": text}],
           "metadata": {"capability": "hooked"}})
}

/// A webhook: `/flaky` answers 503 to its first POST, `/down` always 500, `/gone` 404, the
/// rest 200.
async fn webhook() -> Upstream {
    let flaky = Arc::new(AtomicUsize::new(0));
    Upstream::start(Arc::new(move |s: &Seen| {
        let status = match s.path.as_str() {
            "/flaky" if flaky.fetch_add(1, Ordering::SeqCst) == 0 => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            "/down" => StatusCode::INTERNAL_SERVER_ERROR,
            "/gone" => StatusCode::NOT_FOUND,
            _ => StatusCode::OK,
        };
        Some(status.into_response())
    }))
    .await
}

/// POSTs the webhook got on `path`, as (headers' token, body) in arrival order.
fn posts(hook: &Upstream, path: &str) -> Vec<Seen> {
    hook.seen()
        .into_iter()
        .filter(|s| s.method == "POST" && s.path == path)
        .collect()
}

fn state_of(body: &Value) -> Option<&str> {
    body["statusUpdate"]["status"]["state"].as_str()
}

async fn wait_completed(hook: &Upstream, path: &str) -> Vec<Seen> {
    nerve_testkit::eventually(WAIT, &format!("a completion pushed to {path}"), || {
        let got = posts(hook, path);
        let done = got
            .iter()
            .any(|s| state_of(&s.json()) == Some("TASK_STATE_COMPLETED"));
        async move { done.then_some(got) }
    })
    .await
}

#[tokio::test]
async fn push_notifications_reach_a_real_webhook_with_retries_and_dead_letters() {
    let hook = webhook().await;
    let base = format!("http://127.0.0.1:{}", hook.port);
    let hub = Hub::start_with_config(PUSH_BUS);
    let mut agent = BusClient::connect(&hub, "hooked-1", &["bus.serve.hooked"]).await;
    agent.register("hooked-1", &["hooked"]).await;
    let token = hub.token("bus", Some("a2a"), &["bus.submit.hooked"], &[]);

    let card = crate::harness::http_get(hub.port, "/.well-known/agent-card.json").await;
    let card: Value = serde_json::from_str(&card).expect("card");
    assert_eq!(card["capabilities"]["pushNotifications"], true);

    // A task that waits for the agent; settings are added while it is in flight.
    let r = a2a(
        &hub,
        &token,
        "SendMessage",
        json!({"message": message("first"), "configuration": {"returnImmediately": true}}),
    )
    .await;
    let task_id = r["result"]["task"]["id"]
        .as_str()
        .expect("task id")
        .to_string();
    // The agent has it (and the hub recorded its start) before any setting exists.
    let pushed = agent.push("bus.task").await;
    assert_eq!(pushed["task"]["id"], task_id.as_str());
    let config = |id: &str, path: &str| {
        json!({"taskId": task_id, "id": id, "url": format!("{base}{path}"), "token": format!("tok-{id}"),
               "authentication": {"scheme": "Bearer", "credentials": format!("secret-{id}")}})
    };
    for (id, path) in [
        ("ok", "/ok"),
        ("flaky", "/flaky"),
        ("down", "/down"),
        ("gone", "/gone"),
        ("extra", "/extra"),
    ] {
        let r = a2a(
            &hub,
            &token,
            "CreateTaskPushNotificationConfig",
            config(id, path),
        )
        .await;
        assert_eq!(r["result"]["id"], id, "{r}");
        assert_eq!(r["result"]["taskId"], task_id.as_str());
        assert_eq!(r["result"]["token"], format!("tok-{id}"));
        assert_eq!(
            r["result"]["authentication"],
            json!({"scheme": "Bearer"}),
            "no credential in answers"
        );
    }
    let r = a2a(
        &hub,
        &token,
        "ListTaskPushNotificationConfigs",
        json!({"taskId": task_id}),
    )
    .await;
    let ids: Vec<&str> = r["result"]["configs"]
        .as_array()
        .expect("configs")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(ids, ["down", "extra", "flaky", "gone", "ok"], "{r}");
    let r = a2a(
        &hub,
        &token,
        "GetTaskPushNotificationConfig",
        json!({"taskId": task_id, "id": "ok"}),
    )
    .await;
    assert_eq!(r["result"]["url"], format!("{base}/ok"));
    let r = a2a(
        &hub,
        &token,
        "DeleteTaskPushNotificationConfig",
        json!({"taskId": task_id, "id": "extra"}),
    )
    .await;
    assert!(r.get("error").is_none(), "{r}");
    let code = |r: &Value| r["error"]["code"].as_i64();
    let r = a2a(
        &hub,
        &token,
        "GetTaskPushNotificationConfig",
        json!({"taskId": task_id, "id": "extra"}),
    )
    .await;
    assert_eq!(code(&r), Some(-32602), "a deleted setting is gone: {r}");
    let r = a2a(
        &hub,
        &token,
        "DeleteTaskPushNotificationConfig",
        json!({"taskId": task_id, "id": "extra"}),
    )
    .await;
    assert_eq!(code(&r), Some(-32602));
    // Bad settings and unknown tasks get clear errors.
    let mut bad = config("bad", "/x");
    bad["url"] = json!("ftp://127.0.0.1/x");
    let r = a2a(&hub, &token, "CreateTaskPushNotificationConfig", bad).await;
    assert_eq!(code(&r), Some(-32602));
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("scheme"),
        "{r}"
    );
    let r = a2a(
        &hub,
        &token,
        "CreateTaskPushNotificationConfig",
        json!({"taskId": "no-such-task", "url": format!("{base}/ok")}),
    )
    .await;
    assert_eq!(code(&r), Some(-32001));
    let other = hub.token("bus", Some("x"), &["bus.submit.other"], &[]);
    let r = a2a(
        &hub,
        &other,
        "ListTaskPushNotificationConfigs",
        json!({"taskId": task_id}),
    )
    .await;
    assert_eq!(
        code(&r),
        Some(-32001),
        "a caller who may not read the task does not see it"
    );

    // The agent works: progress, an artifact, completion.
    agent
        .ok(
            "bus.task.status",
            json!({"taskId": task_id, "state": "TASK_STATE_WORKING", "text": "on it"}),
        )
        .await;
    agent
        .ok("bus.task.artifact", json!({"taskId": task_id, "artifact": {"artifactId": "out", "parts": [{"text": "FIRST"}]}}))
        .await;
    agent.complete(&task_id, "done").await;

    let ok = wait_completed(&hook, "/ok").await;
    let bodies: Vec<Value> = ok.iter().map(Seen::json).collect();
    assert_eq!(
        state_of(&bodies[0]),
        Some("TASK_STATE_WORKING"),
        "{bodies:?}"
    );
    assert_eq!(
        bodies[1]["artifactUpdate"]["artifact"]["parts"][0]["text"], "FIRST",
        "{bodies:?}"
    );
    assert_eq!(bodies.len(), 3, "one POST per event: {bodies:?}");
    for s in &ok {
        assert_eq!(s.header("x-a2a-notification-token"), Some("tok-ok"));
        assert_eq!(s.header("authorization"), Some("Bearer secret-ok"));
        assert_eq!(s.header("content-type"), Some("application/json"));
        assert_eq!(
            s.json()["statusUpdate"]["taskId"]
                .as_str()
                .or(s.json()["artifactUpdate"]["taskId"].as_str()),
            Some(task_id.as_str())
        );
    }
    // The flaky webhook's first answer was 503: that notification came again.
    let flaky = nerve_testkit::eventually(WAIT, "the 503 notification retried", || {
        let got = posts(&hook, "/flaky");
        async move { (got.len() >= 4).then_some(got) }
    })
    .await;
    assert_eq!(flaky.len(), 4, "three events, the first twice: {flaky:?}");
    assert!(
        flaky[1..].iter().any(|s| s.body == flaky[0].body),
        "the retried notification is the same"
    );
    assert_eq!(
        flaky[0].header("authorization"),
        Some("Bearer secret-flaky")
    );

    // The failing webhook's notifications end as dead letters; the 404 one at once.
    let watcher = hub.token("bus", Some("ops"), &["bus.watch"], &[]);
    let dead = nerve_testkit::eventually(WAIT, "push dead letters", || async {
        let (_, v) = post(
            &hub,
            "/bus/api/bus.dlq.list",
            &watcher,
            json!({"capability": "a2a.push"}),
        )
        .await;
        let letters = v["deadLetters"].as_array().cloned().unwrap_or_default();
        (letters.len() == 6).then_some(letters)
    })
    .await;
    let reasons = |config: &str| -> Vec<String> {
        dead.iter()
            .filter(|d| d["envelope"]["data"]["configId"] == config)
            .map(|d| d["reason"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(reasons("down"), ["MaxDeliveryCountExceeded"; 3]);
    assert_eq!(reasons("gone"), ["WebhookRejected"; 3]);
    for d in &dead {
        let text = d.to_string();
        assert!(
            !text.contains("secret-"),
            "no credential in a dead letter: {text}"
        );
        assert!(
            d["description"]
                .as_str()
                .unwrap_or_default()
                .contains(&base),
            "{d}"
        );
    }
    let down = posts(&hook, "/down").len();
    assert!(
        down >= 3 * 10,
        "every notification tried max_deliveries (10) times: {down}"
    );
    assert_eq!(posts(&hook, "/gone").len(), 3, "a 404 is not retried");
    assert!(
        posts(&hook, "/extra").is_empty(),
        "a deleted setting gets nothing"
    );
}

#[tokio::test]
async fn a_setting_sent_with_the_message_sees_every_update() {
    let hook = webhook().await;
    let hub = Hub::start_with_config(PUSH_BUS);
    let mut agent = BusClient::connect(&hub, "hooked-2", &["bus.serve.hooked"]).await;
    agent.register("hooked-2", &["hooked"]).await;
    let token = hub.token("bus", Some("a2a"), &["bus.submit.hooked"], &[]);
    let push =
        json!({"url": format!("http://127.0.0.1:{}/inline", hook.port), "token": "t-inline"});
    let r = a2a(
        &hub,
        &token,
        "SendMessage",
        json!({"message": message("inline"),
        "configuration": {"returnImmediately": true, "taskPushNotificationConfig": push}}),
    )
    .await;
    let task_id = r["result"]["task"]["id"]
        .as_str()
        .expect("task id")
        .to_string();
    let r = a2a(
        &hub,
        &token,
        "GetTaskPushNotificationConfig",
        json!({"taskId": task_id}),
    )
    .await;
    assert_eq!(
        r["result"]["id"],
        task_id.as_str(),
        "a setting without an id takes the task's: {r}"
    );
    agent.push("bus.task").await;
    agent.complete(&task_id, "done").await;
    let got = wait_completed(&hook, "/inline").await;
    let states: Vec<String> = got
        .iter()
        .filter_map(|s| state_of(&s.json()).map(str::to_string))
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        states,
        ["TASK_STATE_WORKING", "TASK_STATE_COMPLETED"],
        "the start and the end, nothing missed before the setting: {got:?}"
    );
    assert_eq!(got[0].header("x-a2a-notification-token"), Some("t-inline"));
    assert_eq!(got[0].header("authorization"), None);
    // The v0.3 method names work too.
    let r = a2a(
        &hub,
        &token,
        "tasks/pushNotificationConfig/list",
        json!({"id": task_id}),
    )
    .await;
    assert_eq!(
        r["result"]["configs"].as_array().map(Vec::len),
        Some(1),
        "{r}"
    );
}

#[tokio::test]
async fn webhooks_inside_the_network_are_refused_by_default() {
    let hook = webhook().await;
    let hub = Hub::start_with_config(crate::harness::FAST_BUS);
    let mut agent = BusClient::connect(&hub, "hooked-3", &["bus.serve.hooked"]).await;
    agent.register("hooked-3", &["hooked"]).await;
    let token = hub.token("bus", Some("a2a"), &["bus.submit.hooked"], &[]);
    let r = a2a(
        &hub,
        &token,
        "SendMessage",
        json!({"message": message("ssrf"), "configuration": {"returnImmediately": true}}),
    )
    .await;
    let task_id = r["result"]["task"]["id"]
        .as_str()
        .expect("task id")
        .to_string();
    let literal =
        json!({"taskId": task_id, "id": "ip", "url": format!("http://127.0.0.1:{}/in", hook.port)});
    let r = a2a(&hub, &token, "CreateTaskPushNotificationConfig", literal).await;
    assert_eq!(r["error"]["code"], -32602, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("push_allow_private"),
        "{r}"
    );
    // A host name is checked when connecting: `localhost` resolves to loopback only.
    let named = json!({"taskId": task_id, "id": "name", "url": format!("http://localhost:{}/in", hook.port)});
    let r = a2a(&hub, &token, "CreateTaskPushNotificationConfig", named).await;
    assert_eq!(r["result"]["id"], "name", "{r}");
    agent.push("bus.task").await;
    agent.complete(&task_id, "done").await;
    let watcher = hub.token("bus", Some("ops"), &["bus.watch"], &[]);
    let dead =
        nerve_testkit::eventually(WAIT, "the refused notification dead-lettered", || async {
            let (_, v) = post(
                &hub,
                "/bus/api/bus.dlq.list",
                &watcher,
                json!({"capability": "a2a.push"}),
            )
            .await;
            v["deadLetters"]
                .as_array()
                .filter(|l| !l.is_empty())
                .cloned()
        })
        .await;
    assert_eq!(dead[0]["reason"], "MaxDeliveryCountExceeded");
    assert!(
        dead[0]["description"]
            .as_str()
            .unwrap_or_default()
            .contains("could not connect"),
        "{:?}",
        dead[0]
    );
    assert!(
        hook.seen().is_empty(),
        "the webhook on loopback was never called"
    );
}
