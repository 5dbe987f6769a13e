//! End-to-end tests of the JSON subprotocols against the real `nerve` binary: every frame type,
//! roles, acks, and what a client sees.

use axum::http::Method;
use serde_json::json;

use crate::harness::{ALL_ROLES, Client, Hub, JSON, RELIABLE, WAIT, metric};

#[tokio::test]
async fn connected_frame_and_subprotocol_echo() {
    let hub = Hub::start();
    let mut c = hub
        .connect("chat", Some("alice"), &[], Some(RELIABLE))
        .await;
    assert_eq!(c.protocol.as_deref(), Some(RELIABLE));
    let v = c.next_json().await;
    assert_eq!(v["type"], "system");
    assert_eq!(v["event"], "connected");
    assert_eq!(v["userId"], "alice");
    assert!(v["connectionId"].as_str().is_some_and(|s| s.len() >= 16));
    assert!(v["reconnectionToken"].as_str().is_some());

    let mut p = hub.connect("chat", None, &[], Some(JSON)).await;
    assert_eq!(p.protocol.as_deref(), Some(JSON));
    let v = p.next_json().await;
    assert_eq!(v["event"], "connected");
    assert!(
        v.get("reconnectionToken").is_none(),
        "plain protocol gets no token: {v}"
    );
    assert!(v.get("userId").is_none());
}

#[tokio::test]
async fn join_send_receive_with_every_data_type_and_no_echo() {
    let hub = Hub::start();
    let mut a = hub.connect("chat", Some("a"), ALL_ROLES, Some(JSON)).await;
    let mut b = hub
        .connect("chat", Some("b"), ALL_ROLES, Some(RELIABLE))
        .await;
    a.next_json().await;
    b.next_json().await;
    for (c, id) in [(&mut a, 1), (&mut b, 1)] {
        c.send(json!({"type":"joinGroup","group":"room","ackId":id}))
            .await;
        assert_eq!(c.ack(id).await["success"], true);
    }
    let cases = [
        (json!({"x":[1,2]}), "json"),
        (json!("plain text"), "text"),
        (json!("AAECAw=="), "binary"),
    ];
    for (i, (data, ty)) in cases.iter().enumerate() {
        let ack = 10 + i as u64;
        a.send(json!({"type":"sendToGroup","group":"room","ackId":ack,"dataType":ty,"data":data}))
            .await;
        assert_eq!(a.ack(ack).await["success"], true);
        for c in [&mut a, &mut b] {
            let m = c.until(|v| v["type"] == "message").await;
            assert_eq!(m["from"], "group");
            assert_eq!(m["group"], "room");
            assert_eq!(m["fromUserId"], "a");
            assert_eq!(m["dataType"], *ty);
            assert_eq!(m["data"], *data);
        }
    }
    // The reliable receiver numbers its messages from 1.
    // (b received three messages above; the next is 4.)
    a.send(json!({"type":"sendToGroup","group":"room","ackId":20,"noEcho":true,"data":"only b"}))
        .await;
    assert_eq!(a.ack(20).await["success"], true);
    let m = b.until(|v| v["type"] == "message").await;
    assert_eq!(m["data"], "only b");
    assert_eq!(m["sequenceId"], 4);
    // Barrier: a message with echo proves a got nothing in between.
    a.send(json!({"type":"sendToGroup","group":"room","ackId":21,"data":"barrier"}))
        .await;
    let next = a.until(|v| v["type"] == "message").await;
    assert_eq!(
        next["data"], "barrier",
        "noEcho message was echoed to its sender"
    );
    // b, still a member, gets the barrier too; take it before leaving, as an ack may
    // overtake a message queued before it.
    let m = b.until(|v| v["type"] == "message").await;
    assert_eq!(m["data"], "barrier");

    // After leaving, b no longer receives.
    b.send(json!({"type":"leaveGroup","group":"room","ackId":2}))
        .await;
    assert_eq!(b.ack(2).await["success"], true);
    a.send(json!({"type":"sendToGroup","group":"room","ackId":22,"data":"after leave"}))
        .await;
    a.until(|v| v["type"] == "message" && v["data"] == "after leave")
        .await;
    b.send(json!({"type":"ping"})).await;
    assert_eq!(
        b.next_json().await["type"],
        "pong",
        "b received a message after leaving"
    );
}

#[tokio::test]
async fn roles_are_checked_including_group_scoped_roles() {
    let hub = Hub::start();
    let mut none = hub.connect("chat", None, &[], Some(JSON)).await;
    none.next_json().await;
    none.send(json!({"type":"joinGroup","group":"g","ackId":1}))
        .await;
    let ack = none.ack(1).await;
    assert_eq!(ack["success"], false);
    assert_eq!(ack["error"]["name"], "Forbidden");
    none.send(json!({"type":"sendToGroup","group":"g","ackId":2,"data":1}))
        .await;
    assert_eq!(none.ack(2).await["error"]["name"], "Forbidden");

    let scoped = [
        "webpubsub.joinLeaveGroup.mine",
        "webpubsub.sendToGroup.mine",
    ];
    let mut s = hub.connect("chat", None, &scoped, Some(JSON)).await;
    s.next_json().await;
    s.send(json!({"type":"joinGroup","group":"mine","ackId":1}))
        .await;
    assert_eq!(s.ack(1).await["success"], true);
    s.send(json!({"type":"joinGroup","group":"other","ackId":2}))
        .await;
    assert_eq!(s.ack(2).await["error"]["name"], "Forbidden");
    s.send(json!({"type":"sendToGroup","group":"other","ackId":3,"data":1}))
        .await;
    assert_eq!(s.ack(3).await["error"]["name"], "Forbidden");
    s.send(json!({"type":"sendToGroup","group":"mine","ackId":4,"data":1}))
        .await;
    assert_eq!(s.ack(4).await["success"], true);
    assert_eq!(s.until(|v| v["type"] == "message").await["data"], 1);
}

/// Azure's wildcard group roles: `webpubsub.joinLeaveGroups.{pattern}` and
/// `webpubsub.sendToGroups.{pattern}` grant the groups the pattern matches, and only those.
#[tokio::test]
async fn pattern_roles_grant_the_groups_they_match() {
    let hub = Hub::start();
    let roles = [
        "webpubsub.joinLeaveGroups.team.*",
        "webpubsub.sendToGroups.team.**",
    ];
    let mut c = hub.connect("chat", None, &roles, Some(JSON)).await;
    let connection = c.next_json().await["connectionId"]
        .as_str()
        .expect("connectionId")
        .to_string();
    for (n, (frame, allowed)) in [
        (json!({"type":"joinGroup","group":"team.red"}), true),
        (json!({"type":"joinGroup","group":"team.red.sub"}), false),
        (json!({"type":"joinGroup","group":"teams.red"}), false),
        (json!({"type":"leaveGroup","group":"team.red"}), true),
        (
            json!({"type":"sendToGroup","group":"team.red.sub","data":1}),
            true,
        ),
        (
            json!({"type":"sendToGroup","group":"other","data":1}),
            false,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let mut frame = frame;
        frame["ackId"] = json!(n + 1);
        c.send(frame.clone()).await;
        let got = c.ack(n as u64 + 1).await;
        assert_eq!(got["success"], allowed, "{frame} answered {got}");
        if !allowed {
            assert_eq!(got["error"]["name"], "Forbidden");
        }
    }
    // The REST permission check sees the same grants.
    let rest = hub.rest(0);
    let check = |target: &str| {
        format!(
            "/api/hubs/chat/permissions/sendToGroup/connections/{connection}?targetName={target}"
        )
    };
    assert_eq!(
        rest.call(Method::HEAD, &check("team.a.b"), None)
            .await
            .status,
        200
    );
    assert_eq!(
        rest.call(Method::HEAD, &check("other"), None).await.status,
        404
    );
}

#[tokio::test]
async fn token_groups_are_joined_on_connect() {
    let hub = Hub::start();
    let t = hub.token("chat", Some("u"), &[], &["news"]);
    let mut c = Client::connect(&hub.url("chat", &t), Some(JSON))
        .await
        .unwrap();
    c.next_json().await;
    let mut p = hub.connect("chat", None, ALL_ROLES, Some(JSON)).await;
    p.next_json().await;
    p.send(json!({"type":"sendToGroup","group":"news","ackId":1,"data":"hello"}))
        .await;
    p.ack(1).await;
    assert_eq!(c.until(|v| v["type"] == "message").await["data"], "hello");
}

#[tokio::test]
async fn duplicate_ack_ids_are_not_run_twice() {
    let hub = Hub::start();
    let mut a = hub.connect("chat", None, ALL_ROLES, Some(JSON)).await;
    let mut b = hub.connect("chat", None, ALL_ROLES, Some(JSON)).await;
    a.next_json().await;
    b.next_json().await;
    b.send(json!({"type":"joinGroup","group":"g","ackId":1}))
        .await;
    b.ack(1).await;
    let frame = json!({"type":"sendToGroup","group":"g","ackId":7,"data":"once"});
    a.send(frame.clone()).await;
    assert_eq!(a.ack(7).await["success"], true);
    a.send(frame).await;
    let dup = a.ack(7).await;
    assert_eq!(dup["success"], false);
    assert_eq!(dup["error"]["name"], "Duplicate");
    a.send(json!({"type":"sendToGroup","group":"g","ackId":8,"data":"barrier"}))
        .await;
    a.ack(8).await;
    assert_eq!(b.next_json().await["data"], "once");
    assert_eq!(
        b.next_json().await["data"],
        "barrier",
        "a duplicate was delivered twice"
    );
}

#[tokio::test]
async fn ping_event_invoke_and_unsupported_frames_are_answered() {
    let hub = Hub::start();
    let mut c = hub.connect("chat", None, ALL_ROLES, Some(JSON)).await;
    c.next_json().await;
    c.send(json!({"type":"ping"})).await;
    assert_eq!(c.next_json().await, json!({"type":"pong"}));
    c.send(json!({"type":"event","event":"hello","ackId":1,"dataType":"text","data":"x"}))
        .await;
    let ack = c.ack(1).await;
    assert_eq!(ack["success"], false);
    assert_eq!(ack["error"]["name"], "NotFound");
    assert!(ack["error"]["message"].as_str().unwrap().contains("hello"));
    c.send(json!({"type":"invoke","invocationId":"1","target":"event","event":"q","data":1}))
        .await;
    let r = c.until(|v| v["type"] == "invokeResponse").await;
    assert_eq!(r["invocationId"], "1");
    assert_eq!(r["success"], false);
    c.send(json!({"type":"streamData","streamId":"s1","streamSequenceId":1,"data":"x"}))
        .await;
    let r = c.until(|v| v["type"] == "streamClosed").await;
    assert_eq!(r["streamId"], "s1");
    c.send(json!({"type":"sequenceAck","sequenceId":1})).await;
    c.send(json!({"type":"ping"})).await;
    assert_eq!(c.next_json().await["type"], "pong");
}

#[tokio::test]
async fn query_form_endpoint_and_bearer_header() {
    let hub = Hub::start();
    let t = hub.token("chat", Some("q"), &[], &[]);
    let url = format!(
        "ws://127.0.0.1:{}/client?hub=chat&access_token={t}",
        hub.port
    );
    let mut c = Client::connect(&url, Some(JSON)).await.unwrap();
    assert_eq!(c.next_json().await["userId"], "q");

    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://127.0.0.1:{}/client/hubs/chat", hub.port)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {t}").parse().unwrap());
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", JSON.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    use futures_util::StreamExt;
    let m = ws.next().await.unwrap().unwrap();
    assert!(m.to_text().unwrap().contains("\"userId\":\"q\""));
}

#[tokio::test]
async fn a_plain_client_close_is_echoed_and_ends_the_connection() {
    let hub = Hub::start();
    let mut c = hub.connect("chat", Some("a"), ALL_ROLES, Some(JSON)).await;
    c.next_json().await;
    // The echo carries the client's code, so the client sees a clean close (not 1006).
    assert_eq!(c.close_with(Some(1000)).await.code, Some(1000));
    nerve_testkit::eventually(WAIT, "the connection to be removed", || async {
        (metric(&hub.metrics().await, "nerve_connections") == 0.0).then_some(())
    })
    .await;
}
