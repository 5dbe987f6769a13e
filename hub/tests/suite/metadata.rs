//! Message metadata end to end: from JSON clients (`sendToGroup` and `event`) and REST
//! `X-WebPubSub-Metadata-*` headers to JSON receivers, upstream handlers, and across two nodes
//! sharing one real Redis; and the bounds, answered with an error ack or a 400.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use nerve_testkit::RedisServer;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{ALL_ROLES, Client, Hub, JSON, RELIABLE, Seen, Upstream, handler_toml};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_metadata_reaches_json_receivers_and_not_simple_ones() {
    let hub = Hub::start();
    let mut a = hub.connect("chat", Some("a"), ALL_ROLES, Some(JSON)).await;
    let mut b = hub
        .connect("chat", Some("b"), ALL_ROLES, Some(RELIABLE))
        .await;
    a.next_json().await;
    b.next_json().await;
    for c in [&mut a, &mut b] {
        c.send(json!({"type":"joinGroup","group":"room","ackId":1}))
            .await;
        assert_eq!(c.ack(1).await["success"], true);
    }
    let mut raw = Client::connect(&hub.client_url("chat", Some("r"), &[]), None)
        .await
        .expect("simple client");
    // A simple client joins through REST.
    let r = hub
        .rest(0)
        .call(
            axum::http::Method::PUT,
            "/api/hubs/chat/users/r/groups/room",
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    a.send(
        json!({"type":"sendToGroup","group":"room","ackId":2,"dataType":"text",
        "data":"hello","metadata":{"Trace-Id":"t-1","tag":""}}),
    )
    .await;
    assert_eq!(a.ack(2).await["success"], true);
    for c in [&mut a, &mut b] {
        let m = c.until(|v| v["type"] == "message").await;
        assert_eq!(m["data"], "hello");
        assert_eq!(m["metadata"], json!({"Trace-Id":"t-1","tag":""}));
    }
    assert_eq!(
        raw.next_message().await.expect("raw"),
        Message::Text("hello".into()),
        "a simple client gets the data alone"
    );

    // A message without metadata has no metadata field.
    a.send(json!({"type":"sendToGroup","group":"room","ackId":3,"data":{"n":1}}))
        .await;
    let m = b.until(|v| v["type"] == "message").await;
    assert!(m.get("metadata").is_none(), "{m}");

    // Bad metadata is refused on the ack, and nothing is sent.
    for (ack, metadata, why) in [
        (
            10,
            json!({"bad key":"v"}),
            "metadata key 'bad key' is invalid",
        ),
        (11, json!({"k":1}), "'metadata' must be an object"),
        (12, json!({"k":"é"}), "metadata value of 'k' is invalid"),
        (13, json!({"k":"v".repeat(1025)}), "metadata value of 'k'"),
        (
            14,
            serde_json::Value::Object((0..65).map(|i| (format!("k{i}"), json!(""))).collect()),
            "more than 64 entries",
        ),
    ] {
        a.send(
            json!({"type":"sendToGroup","group":"room","ackId":ack,"data":"x","metadata":metadata}),
        )
        .await;
        let ackf = a.ack(ack).await;
        assert_eq!(ackf["success"], false, "{ackf}");
        assert_eq!(ackf["error"]["name"], "BadRequest", "{ackf}");
        let msg = ackf["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(why), "{why}: {msg}");
    }
    a.send(json!({"type":"sendToGroup","group":"room","ackId":20,"data":"barrier"}))
        .await;
    let m = b.until(|v| v["type"] == "message").await;
    assert_eq!(m["data"], "barrier", "a refused message was delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_metadata_headers_reach_receivers_with_bounds() {
    let hub = Hub::start();
    let mut c = hub.connect("chat", Some("u"), ALL_ROLES, Some(JSON)).await;
    c.next_json().await;
    let rest = hub.rest(0);
    let r = rest
        .post_with_headers(
            "/api/hubs/chat/users/u/:send",
            ("text/plain", b"hi".to_vec()),
            &[
                ("X-WebPubSub-Metadata-Trace-Id", "abc"),
                ("x-webpubsub-metadata-kind", "greeting"),
                ("x-other", "not metadata"),
            ],
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let m = c.until(|v| v["type"] == "message").await;
    assert_eq!(m["from"], "server");
    assert_eq!(m["data"], "hi");
    assert_eq!(
        m["metadata"],
        json!({"trace-id":"abc","kind":"greeting"}),
        "header names are case-insensitive: keys arrive lowercase"
    );

    let big = "v".repeat(1025);
    for (headers, why) in [
        (
            vec![("x-webpubsub-metadata-k", big.as_str())],
            "metadata value of 'k' is invalid",
        ),
        (
            vec![
                ("x-webpubsub-metadata-a", "1"),
                ("x-webpubsub-metadata-a", "2"),
            ],
            "given more than once",
        ),
    ] {
        let r = rest
            .post_with_headers(
                "/api/hubs/chat/:send",
                ("text/plain", b"x".to_vec()),
                &headers,
            )
            .await;
        assert_eq!(r.status, 400, "{}", r.body);
        let body = r.json();
        assert_eq!(body["code"], "BadRequest", "{body}");
        assert!(
            body["message"].as_str().unwrap_or_default().contains(why),
            "{why}: {body}"
        );
    }
    let many: Vec<(String, String)> = (0..65)
        .map(|i| (format!("x-webpubsub-metadata-k{i}"), "v".to_string()))
        .collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = rest
        .post_with_headers("/api/hubs/chat/:send", ("text/plain", b"x".to_vec()), &many)
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    // Nothing refused reached the client: the next message is the one sent after.
    let r = rest
        .post_with_headers(
            "/api/hubs/chat/:send",
            ("text/plain", b"after".to_vec()),
            &[],
        )
        .await;
    assert_eq!(r.status, 202);
    let m = c.until(|v| v["type"] == "message").await;
    assert_eq!(m["data"], "after");
    assert!(m.get("metadata").is_none(), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_metadata_becomes_upstream_headers() {
    let up = Upstream::start(Arc::new(|_: &Seen| {
        Some(StatusCode::NO_CONTENT.into_response())
    }))
    .await;
    let toml = handler_toml("chat", up.port, "*", &[], "");
    let hub = Hub::start_with(&["meta-key"], &toml, &[]);
    let mut c = hub.connect("chat", Some("e"), &[], Some(JSON)).await;
    c.next_json().await;
    c.send(
        json!({"type":"event","event":"note","ackId":1,"dataType":"json",
        "data":{"a":1},"metadata":{"Trace-Id":"t-9","empty":""}}),
    )
    .await;
    assert_eq!(c.ack(1).await["success"], true);
    let ev = up.wait_for("azure.webpubsub.user.note", |_| true).await;
    assert_eq!(ev.header("x-webpubsub-metadata-trace-id"), Some("t-9"));
    assert_eq!(ev.header("x-webpubsub-metadata-empty"), Some(""));
    assert_eq!(ev.json(), json!({"a":1}));
    c.send(json!({"type":"event","event":"note","ackId":2,"data":"x","metadata":{"a b":"c"}}))
        .await;
    let ack = c.ack(2).await;
    assert_eq!(ack["success"], false, "{ack}");
    assert_eq!(
        up.count("azure.webpubsub.user.note"),
        1,
        "a refused event reached upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_crosses_nodes_through_redis() {
    let redis = RedisServer::start();
    let node = |id: &str| {
        Hub::start_with(
            &["meta-cluster"],
            "",
            &["--redis", &redis.url(), "--node-id", id],
        )
    };
    let (a, b) = (node("meta-a"), node("meta-b"));
    let mut sender = a.connect("chat", Some("s"), ALL_ROLES, Some(JSON)).await;
    let mut far = b
        .connect("chat", Some("f"), ALL_ROLES, Some(RELIABLE))
        .await;
    sender.next_json().await;
    far.next_json().await;
    far.send(json!({"type":"joinGroup","group":"g","ackId":1}))
        .await;
    assert_eq!(far.ack(1).await["success"], true);
    // Node a learns of the member through Redis: retry until one message crosses.
    let mut n = 0;
    let m = loop {
        n += 1;
        sender
            .send(
                json!({"type":"sendToGroup","group":"g","ackId":n,"noEcho":true,
                "dataType":"binary","data":"AAE=","metadata":{"hop":n.to_string()}}),
            )
            .await;
        assert_eq!(sender.ack(n).await["success"], true);
        let got = tokio::time::timeout(
            std::time::Duration::from_millis(500),
            far.until(|v| v["type"] == "message"),
        )
        .await;
        if let Ok(m) = got {
            break m;
        }
        assert!(n < 20, "no group message crossed the nodes");
    };
    assert_eq!(m["dataType"], "binary");
    assert_eq!(m["data"], "AAE=");
    assert_eq!(m["metadata"]["hop"], n.to_string());

    let r = a
        .rest(0)
        .post_with_headers(
            "/api/hubs/chat/groups/g/:send",
            ("application/json", b"{\"x\":1}".to_vec()),
            &[("x-webpubsub-metadata-origin", "rest-on-a")],
        )
        .await;
    assert_eq!(r.status, 202);
    let m = far
        .until(|v| v["type"] == "message" && v["data"] == json!({"x":1}))
        .await;
    assert_eq!(m["metadata"], json!({"origin":"rest-on-a"}));
}
