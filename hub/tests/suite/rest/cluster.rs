//! The REST API over two nodes sharing one real Redis: a call made on one node reaches,
//! checks and changes connections held by the other, as one Azure Web PubSub hub would.

use axum::http::Method;
use nerve_testkit::{RedisServer, eventually};
use serde_json::json;

use crate::harness::{Hub, JSON, WAIT};

const KEY: &str = "rest-cluster-key";

fn node(redis: &RedisServer, id: &str) -> Hub {
    Hub::start_with(&[KEY], "", &["--redis", &redis.url(), "--node-id", id])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_on_one_node_reaches_connections_on_another() {
    let redis = RedisServer::start();
    let a = node(&redis, "rest-a");
    let b = node(&redis, "rest-b");
    let rest = a.rest(0);

    let (mut bob, id) = b.client("chat", Some("bob"), Some(JSON)).await;

    // Existence checks on node a see node b's connection and user.
    for path in [
        format!("/api/hubs/chat/connections/{id}"),
        "/api/hubs/chat/users/bob".to_string(),
    ] {
        eventually(WAIT, &format!("HEAD {path} on the other node"), || {
            let (rest, path) = (&rest, path.clone());
            async move { (rest.call(Method::HEAD, &path, None).await.status == 200).then_some(()) }
        })
        .await;
    }
    assert_eq!(
        rest.call(Method::HEAD, "/api/hubs/chat/connections/nobody", None)
            .await
            .status,
        404
    );

    // A send to the user, made on a, arrives on b.
    let r = rest
        .call(
            Method::POST,
            "/api/hubs/chat/users/bob/:send",
            Some(("text/plain", b"hi bob".to_vec())),
        )
        .await;
    assert_eq!(r.status, 202);
    let m = bob.until(|v| v["type"] == "message").await;
    assert_eq!(
        (m["from"].clone(), m["data"].clone()),
        (json!("server"), json!("hi bob"))
    );

    // Group membership changed on a applies on b; listing on a shows the member.
    let put = rest
        .call(
            Method::PUT,
            &format!("/api/hubs/chat/groups/g/connections/{id}"),
            None,
        )
        .await;
    assert_eq!(put.status, 200);
    eventually(WAIT, "the member to be listed on the other node", || {
        let rest = &rest;
        let id = id.clone();
        async move {
            let v = rest
                .call(Method::GET, "/api/hubs/chat/groups/g/connections", None)
                .await
                .json();
            (v["value"] == json!([{"connectionId": id, "userId": "bob"}])).then_some(())
        }
    })
    .await;
    let r = rest
        .call(
            Method::POST,
            "/api/hubs/chat/groups/g/:send",
            Some(("text/plain", b"to g".to_vec())),
        )
        .await;
    assert_eq!(r.status, 202);
    // Made on a, it reaches b as the group's message.
    let m = bob.until(|v| v["type"] == "message").await;
    assert_eq!(
        (&m["from"], &m["group"], &m["data"]),
        (&json!("group"), &json!("g"), &json!("to g")),
        "{m}"
    );

    // A close made on a: disconnected with the reason, then 1008.
    let r = rest
        .call(
            Method::DELETE,
            &format!("/api/hubs/chat/connections/{id}?reason=moved"),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    let closed = bob.closed().await;
    assert_eq!(closed.code, Some(1008));
    assert_eq!(
        closed.frames.last().expect("disconnected")["message"],
        "moved"
    );
}
