//! The operator console's API (`/console/api/…`), as an operator's script calls it: every call
//! needs a token signed with an access key (401 without), listings show this node's
//! connections, users and groups, the live trace streams what happens with payloads only on
//! request, the samples count real traffic, and no answer ever holds the access key.

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{ALL_ROLES, BusClient, Hub, JSON, WAIT, post};

const PATHS: &[&str] = &[
    "/console/api/overview",
    "/console/api/metrics",
    "/console/api/hubs",
    "/console/api/hubs/chat/connections",
    "/console/api/hubs/chat/users",
    "/console/api/hubs/chat/groups",
    "/console/api/trace",
];

#[tokio::test]
async fn every_console_call_needs_an_access_key_and_no_answer_shows_it() {
    let hub = Hub::start();
    let nobody = crate::harness::Rest::new(hub.endpoint().to_string(), "not-the-key");
    for path in PATHS {
        let url = format!("{}{path}", hub.endpoint());
        let bare = nobody.call_with_token(Method::GET, &url, None, None).await;
        assert_eq!(bare.status, 401, "{path}: {}", bare.body);
        assert_eq!(bare.json()["code"], "Unauthorized", "{path}");
        let forged = nobody.call(Method::GET, path, None).await;
        assert_eq!(forged.status, 401, "{path}: {}", forged.body);
        // A token for another URL is refused as well.
        let other = hub
            .rest(0)
            .token(&format!("{}/console/api/hubs", hub.endpoint()));
        if *path != "/console/api/hubs" {
            let wrong = nobody
                .call_with_token(Method::GET, &url, None, Some(&other))
                .await;
            assert_eq!(wrong.status, 401, "{path}: {}", wrong.body);
        }
    }
    let rest = hub.rest(0);
    for path in PATHS.iter().filter(|p| !p.ends_with("/trace")) {
        let ok = rest.call(Method::GET, path, None).await;
        assert_eq!(ok.status, 200, "{path}: {}", ok.body);
        assert!(!ok.body.contains(hub.key()), "{path} shows the key");
    }
    // The page shows the key only to a browser on this machine: asked for with another
    // host name, it holds none.
    let html = crate::harness::http_get_as(hub.port, "/console/", "console.example").await;
    assert!(html.contains("\"key\":null"), "{html}");
    assert!(!html.contains(hub.key()));
    let local = crate::harness::http_get(hub.port, "/console/").await;
    assert!(
        local.contains(hub.key()),
        "a local browser signs in by itself"
    );
}

#[tokio::test]
async fn listings_show_connections_with_their_groups_and_roles() {
    let hub = Hub::start();
    let (mut alice, alice_id) = hub.client("chat", Some("alice"), Some(JSON)).await;
    let mut bob = hub
        .connect("chat", Some("bob"), ALL_ROLES, Some(JSON))
        .await;
    let bob_id = bob.next_json().await["connectionId"]
        .as_str()
        .expect("id")
        .to_string();
    bob.send(json!({"type": "joinGroup", "group": "lobby", "ackId": 1}))
        .await;
    bob.until(|f| f["type"] == "ack").await;
    let rest = hub.rest(0);
    let listed = rest
        .call(Method::GET, "/console/api/hubs/chat/connections", None)
        .await
        .json();
    assert_eq!(listed["total"], 2, "{listed}");
    let rows = listed["rows"].as_array().expect("rows");
    let bob_row = rows
        .iter()
        .find(|r| r["connectionId"] == bob_id.as_str())
        .expect("bob");
    assert_eq!(bob_row["userId"], "bob");
    assert_eq!(bob_row["groups"], json!(["lobby"]));
    assert!(
        bob_row["roles"]
            .as_array()
            .expect("roles")
            .contains(&json!("webpubsub.sendToGroup"))
    );
    let searched = rest
        .call(
            Method::GET,
            "/console/api/hubs/chat/connections?search=ALI",
            None,
        )
        .await
        .json();
    assert_eq!(searched["total"], 1);
    assert_eq!(searched["rows"][0]["connectionId"], alice_id.as_str());
    let users = rest
        .call(Method::GET, "/console/api/hubs/chat/users", None)
        .await
        .json();
    assert_eq!(
        users["rows"][1],
        json!({"userId": "bob", "connections": 1, "groups": ["lobby"]})
    );
    let groups = rest
        .call(Method::GET, "/console/api/hubs/chat/groups", None)
        .await
        .json();
    assert_eq!(
        groups["rows"],
        json!([{"group": "lobby", "members": 1, "users": ["bob"]}])
    );
    let hubs = rest
        .call(Method::GET, "/console/api/hubs", None)
        .await
        .json();
    assert_eq!(hubs["hubs"][0]["hub"], "chat");
    assert_eq!(hubs["hubs"][0]["users"], 2);

    for (path, words) in [
        (
            "/console/api/hubs/chat/connections?limit=0",
            "'limit' must be 1 to 1000",
        ),
        (
            "/console/api/hubs/chat/users?limit=x",
            "'limit' must be a whole number",
        ),
        ("/console/api/hubs/9bad/groups", "invalid hub name"),
        (
            "/console/api/metrics?seconds=100000",
            "'seconds' must be 1 to 300",
        ),
    ] {
        let bad = rest.call(Method::GET, path, None).await;
        assert_eq!(bad.status, 400, "{path}: {}", bad.body);
        assert!(
            bad.json()["message"]
                .as_str()
                .expect("message")
                .contains(words),
            "{}",
            bad.body
        );
    }
    // The console's close goes through the REST API: the one home of closing.
    let closed = rest
        .call(
            Method::DELETE,
            &format!("/api/hubs/chat/connections/{alice_id}"),
            None,
        )
        .await;
    assert_eq!(closed.status, 204);
    alice.closed().await;
    nerve_testkit::eventually(WAIT, "alice to leave the listing", || async {
        let l = rest
            .call(Method::GET, "/console/api/hubs/chat/connections", None)
            .await
            .json();
        (l["total"] == 1).then_some(())
    })
    .await;
}

/// Reads server-sent events from `url` until `want` events match `keep`.
async fn trace_events(
    hub: &Hub,
    query: &str,
    ready: tokio::sync::oneshot::Sender<()>,
    want: usize,
    keep: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let url = format!("{}/console/api/trace", hub.endpoint());
    let token = hub.rest(0).token(&url);
    let resp = reqwest::Client::new()
        .get(format!("{url}{query}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("trace");
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/event-stream")
    );
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let mut out = Vec::new();
    let mut ready = Some(ready);
    while out.len() < want {
        let chunk = tokio::time::timeout(WAIT, body.next())
            .await
            .expect("an event in time")
            .expect("stream open")
            .expect("bytes");
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(cut) = buf.find("\n\n") {
            let block: String = buf.drain(..cut + 2).collect();
            for line in block.lines() {
                if let Some(data) = line.strip_prefix("data:") {
                    let v: Value = serde_json::from_str(data.trim()).expect("json event");
                    if v["kind"] == "watching" {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    } else if keep(&v) {
                        out.push(v);
                    }
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn the_live_trace_streams_events_filtered_with_payloads_only_on_request() {
    let hub = std::sync::Arc::new(Hub::start());
    let (ready_a, wait_a) = tokio::sync::oneshot::channel();
    let (ready_b, wait_b) = tokio::sync::oneshot::channel();
    let h = hub.clone();
    let plain = tokio::spawn(async move {
        trace_events(&h, "?hub=chat&user=carol", ready_a, 4, |_| true).await
    });
    let h = hub.clone();
    let with_payloads = tokio::spawn(async move {
        trace_events(&h, "?payloads=true&group=room", ready_b, 1, |v| {
            v["kind"] == "message"
        })
        .await
    });
    wait_a.await.expect("first watcher");
    wait_b.await.expect("second watcher");
    // Someone else's connection is filtered out of carol's watch.
    let (_dan, _) = hub.client("chat", Some("dan"), Some(JSON)).await;
    let mut carol = hub
        .connect("chat", Some("carol"), ALL_ROLES, Some(JSON))
        .await;
    carol.next_json().await;
    carol
        .send(json!({"type": "joinGroup", "group": "room", "ackId": 1}))
        .await;
    carol.until(|f| f["type"] == "ack").await;
    carol
        .send(json!({"type": "sendToGroup", "group": "room", "dataType": "text", "data": "the secret plan", "ackId": 2}))
        .await;
    carol.until(|f| f["type"] == "ack" && f["ackId"] == 2).await;
    drop(carol);
    let seen = tokio::time::timeout(WAIT, plain)
        .await
        .expect("in time")
        .expect("watcher");
    let kinds: Vec<&str> = seen
        .iter()
        .map(|e| e["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(
        kinds,
        vec!["connect", "join", "message", "disconnect"],
        "{seen:?}"
    );
    assert!(seen.iter().all(|e| e["user"] == "carol"));
    assert_eq!(seen[2]["group"], "room");
    assert_eq!(seen[2]["bytes"], 17);
    assert!(
        seen[2].get("payload").is_none(),
        "payloads were not asked for"
    );
    let loud = tokio::time::timeout(WAIT, with_payloads)
        .await
        .expect("in time")
        .expect("watcher");
    assert_eq!(loud[0]["payload"], "the secret plan");

    // A REST call is traced with its operation and status, never its token.
    let (ready, wait) = tokio::sync::oneshot::channel();
    let h = hub.clone();
    let rest_watch = tokio::spawn(async move {
        trace_events(&h, "", ready, 2, |v| {
            v["kind"] == "rest" || v["kind"] == "message"
        })
        .await
    });
    wait.await.expect("watcher");
    let sent = hub
        .rest(0)
        .call(
            Method::POST,
            "/api/hubs/chat/groups/room/:send",
            Some(("text/plain", b"hi".to_vec())),
        )
        .await;
    assert_eq!(sent.status, 202);
    let events = tokio::time::timeout(WAIT, rest_watch)
        .await
        .expect("in time")
        .expect("watcher");
    let rest_event = events
        .iter()
        .find(|e| e["kind"] == "rest")
        .expect("rest event");
    let detail = rest_event["detail"].as_str().expect("detail");
    assert!(
        detail.starts_with("POST /api/hubs/chat/groups/room/:send → 202"),
        "{detail}"
    );
    let text = serde_json::to_string(&events).expect("json");
    assert!(
        !text.contains(hub.key()) && !text.contains("Bearer"),
        "{text}"
    );
}

#[tokio::test]
async fn samples_count_traffic_each_second() {
    let hub = Hub::start();
    let mut c = hub
        .connect("chat", Some("erin"), ALL_ROLES, Some(JSON))
        .await;
    c.next_json().await;
    c.send(json!({"type": "joinGroup", "group": "g", "ackId": 1}))
        .await;
    c.until(|f| f["type"] == "ack").await;
    for i in 0..5 {
        c.send(json!({"type": "sendToGroup", "group": "g", "dataType": "text", "data": "x", "ackId": 10 + i}))
            .await;
    }
    let rest = hub.rest(0);
    let samples = nerve_testkit::eventually(WAIT, "the messages in the samples", || async {
        let m = rest
            .call(Method::GET, "/console/api/metrics?seconds=30", None)
            .await
            .json();
        let s = m["samples"].as_array().cloned().unwrap_or_default();
        let total: u64 = s
            .iter()
            .map(|x| x["messagesIn"].as_u64().unwrap_or(0))
            .sum();
        (total >= 5).then_some(s)
    })
    .await;
    let last = samples.last().expect("a sample");
    assert_eq!(last["connections"], 1);
    assert_eq!(last["groups"], 1);
    assert_eq!(last["users"], 1);
    assert_eq!(last["redisUp"], true);
    let out: u64 = samples
        .iter()
        .map(|x| x["messagesOut"].as_u64().unwrap_or(0))
        .sum();
    assert!(out >= 5, "{samples:?}");
}

#[tokio::test]
async fn the_bus_explorer_reads_queues_and_peeks_unfinished_tasks() {
    // The default bus: its first retry waits a second, long enough to be seen delayed.
    let hub = Hub::start();
    let mut agent = BusClient::connect(&hub, "packer", &["bus.serve.pack"]).await;
    agent.register("packer", &["pack"]).await;
    let submitter = hub.token("bus", Some("ops"), &["bus.submit.pack"], &[]);
    let (status, task) = post(
        &hub,
        "/bus/api/bus.submit",
        &submitter,
        json!({"capability": "pack", "text": "box 7"}),
    )
    .await;
    assert_eq!(status, 200, "{task}");
    agent.push("bus.task").await;
    let watcher = hub.token("bus", Some("console"), &["bus.watch"], &[]);
    let queues = nerve_testkit::eventually(WAIT, "the task in flight", || async {
        let (status, v) = post(&hub, "/bus/api/bus.queues", &watcher, json!({})).await;
        assert_eq!(status, 200, "{v}");
        (v["queues"][0]["inFlight"] == 1).then_some(v)
    })
    .await;
    assert_eq!(queues["queues"][0]["capability"], "pack");
    assert_eq!(queues["queues"][0]["agents"], json!(["packer"]));
    assert_eq!(queues["queues"][0]["deadLettered"], 0);
    let (status, peeked) = post(
        &hub,
        "/bus/api/bus.peek",
        &watcher,
        json!({"capability": "pack"}),
    )
    .await;
    assert_eq!(status, 200, "{peeked}");
    assert_eq!(peeked["tasks"][0]["task"]["id"], task["taskId"]);
    // A retry backs off: the message waits, delayed, then comes back.
    agent
        .ok(
            "bus.task.retry",
            json!({"taskId": task["taskId"], "reason": "not yet"}),
        )
        .await;
    nerve_testkit::eventually(WAIT, "the retry delayed", || async {
        let (_, v) = post(&hub, "/bus/api/bus.queues", &watcher, json!({})).await;
        (v["queues"][0]["delayed"] == 1 && v["queues"][0]["waiting"] == 1).then_some(())
    })
    .await;
    let again = agent.push("bus.task").await;
    assert_eq!(again["task"]["id"], task["taskId"]);
    let (status, refused) = post(&hub, "/bus/api/bus.peek", &watcher, json!({})).await;
    assert_eq!(status, 400, "{refused}");
    let admin = hub.token("bus", Some("ops"), &["bus.admin"], &[]);
    let (status, refused) = post(
        &hub,
        "/bus/api/bus.dlq.redrive",
        &admin,
        json!({"capability": "pack", "entryId": "1", "partition": "first"}),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .expect("message")
            .contains("'partition'")
    );
    let nobody = hub.token("bus", Some("eve"), &[], &[]);
    let (status, _) = post(&hub, "/bus/api/bus.queues", &nobody, json!({})).await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_the_overview_shows_every_node() {
    let redis = nerve_testkit::RedisServer::start();
    let node = |id: &str| {
        Hub::start_with(
            &["console-cluster-key"],
            "",
            &["--redis", &redis.url(), "--node-id", id],
        )
    };
    let a = node("console-a");
    let b = node("console-b");
    let (_bob, _) = b.client("chat", Some("bob"), Some(JSON)).await;
    let rest = a.rest(0);
    let nodes = nerve_testkit::eventually(WAIT, "both nodes in a's overview", || async {
        let o = rest
            .call(Method::GET, "/console/api/overview", None)
            .await
            .json();
        let nodes = o["nodes"].as_array().cloned().unwrap_or_default();
        let b_seen = nodes
            .iter()
            .any(|n| n["node"] == "console-b" && n["sample"]["connections"] == 1);
        (nodes.len() == 2 && b_seen).then_some(nodes)
    })
    .await;
    assert_eq!(nodes[0]["node"], "console-a");
    assert_eq!(nodes[0]["sample"]["connections"], 0);
    assert_eq!(nodes[0]["sample"]["redisUp"], true);
    // The listings stay this node's: bob is on b.
    let listed = rest
        .call(Method::GET, "/console/api/hubs/chat/connections", None)
        .await
        .json();
    assert_eq!(listed["node"], "console-a");
    assert_eq!(listed["total"], 0);
}
