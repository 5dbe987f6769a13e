//! Presence events across two nodes sharing one Redis: a watcher of `$presence.room` on one node
//! hears clients on the other node join `room` and leave it, by a frame and by closing.

use nerve_e2e::{Client, HUB, Node, client_token};
use nerve_testkit::RedisServer;
use serde_json::{Value, json};

fn event(v: &Value) -> (String, String, String) {
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    (s("event"), s("group"), s("userId"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_hears_joins_and_leaves_on_another_node() {
    let redis = RedisServer::start();
    let toml = format!("[hubs.{HUB}]\npresence_events = true\n");
    let a = Node::start_with("ea", &[redis.url()], false, &toml);
    let b = Node::start_with("eb", &[redis.url()], false, &toml);
    a.wait_ready().await;
    b.wait_ready().await;

    let watcher = Client::connect(a.port, &client_token(Some("w")), false, &[]).await;
    watcher.join("$presence.room").await;
    let bob = Client::connect(b.port, &client_token(Some("bob")), false, &[]).await;
    bob.join("room").await;
    watcher.wait_count(1).await;
    let carol = Client::connect(b.port, &client_token(Some("carol")), false, &[]).await;
    carol.join("room").await;
    watcher.wait_count(2).await;
    carol
        .request(json!({"type": "leaveGroup", "group": "room"}))
        .await;
    watcher.wait_count(3).await;
    bob.close_socket(Some(1000)).await;
    watcher.wait_count(4).await;

    let got: Vec<_> = watcher.received().iter().map(event).collect();
    let e = |ev: &str, u: &str| (ev.to_string(), "room".to_string(), u.to_string());
    assert_eq!(
        got,
        vec![
            e("joined", "bob"),
            e("joined", "carol"),
            e("left", "carol"),
            e("left", "bob")
        ]
    );
    assert!(
        watcher
            .received()
            .iter()
            .all(|v| v["connectionId"].is_string()),
        "every event names its connection"
    );
}
