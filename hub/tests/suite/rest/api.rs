//! The data-plane REST API end to end: the real binary, real WebSocket clients, and REST calls
//! signed as the server SDKs sign them; every route's status code and what clients observe.

use axum::http::Method;
use serde_json::{Value, json};

use crate::harness::{Client, JSON, RELIABLE, Rest, WAIT};

/// The next server message, skipping nothing: REST sends arrive in order.
async fn server_message(c: &mut Client) -> Value {
    let v = c.next_json().await;
    assert_eq!(v["type"], "message", "{v}");
    assert_eq!(v["from"], "server", "{v}");
    v
}

/// The next message, a REST send to `group`: a group message without a sender, as the service
/// sends it.
async fn group_message(c: &mut Client, group: &str) -> Value {
    let v = c.next_json().await;
    assert_eq!(
        (&v["type"], &v["from"], &v["group"]),
        (&json!("message"), &json!("group"), &json!(group)),
        "{v}"
    );
    assert!(v.get("fromUserId").is_none(), "{v}");
    v
}

async fn send(rest: &Rest, path: &str, ct: &str, body: &[u8]) -> u16 {
    rest.call(Method::POST, path, Some((ct, body.to_vec())))
        .await
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_reach_the_right_connections_with_each_data_type() {
    let n = super::hub();
    let rest = n.rest(0);
    let (mut a, a_id) = n.client("chat", Some("alice"), Some(JSON)).await;
    let (mut b, b_id) = n.client("chat", Some("bob"), Some(RELIABLE)).await;
    let (mut raw, _) = n.client("chat", Some("carol"), None).await;
    // A simple client gets no `connected` frame: wait until the hub has registered it.
    nerve_testkit::eventually(WAIT, "carol to be registered", || {
        let rest = &rest;
        async move {
            let r = rest
                .call(Method::HEAD, "/api/hubs/chat/users/carol", None)
                .await;
            (r.status == 200).then_some(())
        }
    })
    .await;

    // To all, JSON (a JSON string keeps its quotes for raw clients).
    assert_eq!(
        send(
            &rest,
            "/api/hubs/chat/:send?api-version=2024-12-01",
            "application/json",
            br#"{"x":1}"#
        )
        .await,
        202
    );
    assert_eq!(server_message(&mut a).await["data"], json!({"x": 1}));
    let m = server_message(&mut b).await;
    assert_eq!(
        (m["dataType"].clone(), m["sequenceId"].clone()),
        (json!("json"), json!(1))
    );
    assert_eq!(
        raw.next_message()
            .await
            .expect("raw")
            .into_text()
            .expect("text")
            .as_str(),
        r#"{"x":1}"#
    );

    // Text with a charset, excluding alice: bob and carol get it; alice gets only the next one.
    let path = format!("/api/hubs/chat/:send?excluded={a_id}&excluded=nobody");
    assert_eq!(
        send(&rest, &path, "text/plain; charset=utf-8", b"hello").await,
        202
    );
    assert_eq!(server_message(&mut b).await["data"], "hello");
    assert_eq!(
        raw.next_message()
            .await
            .expect("raw")
            .into_text()
            .expect("text")
            .as_str(),
        "hello"
    );
    // Binary to one user: base64 in JSON frames.
    assert_eq!(
        send(
            &rest,
            "/api/hubs/Chat/users/alice/:send",
            "application/octet-stream",
            &[0, 1, 2]
        )
        .await,
        202
    );
    let m = server_message(&mut a).await;
    assert_eq!(
        (m["dataType"].clone(), m["data"].clone()),
        (json!("binary"), json!("AAEC"))
    );

    // To one connection, and to all with a filter.
    assert_eq!(
        send(
            &rest,
            &format!("/api/hubs/chat/connections/{b_id}/:send"),
            "text/plain",
            b"just-bob"
        )
        .await,
        202
    );
    assert_eq!(server_message(&mut b).await["data"], "just-bob");
    let filter = "/api/hubs/chat/:send?filter=userId%20in%20(%27alice%27%2C%27carol%27)";
    assert_eq!(send(&rest, filter, "text/plain", b"filtered").await, 202);
    assert_eq!(server_message(&mut a).await["data"], "filtered");
    assert_eq!(
        raw.next_message()
            .await
            .expect("raw")
            .into_text()
            .expect("text")
            .as_str(),
        "filtered"
    );
    // Bob saw neither the filtered nor the binary message: his next one is this.
    assert_eq!(
        send(
            &rest,
            "/api/hubs/chat/users/bob/:send?messageTtlSeconds=300",
            "text/plain",
            b"last"
        )
        .await,
        202
    );
    assert_eq!(server_message(&mut b).await["data"], "last");
    // Unknown hub, user, connection: still 202 (nothing to deliver).
    assert_eq!(
        send(&rest, "/api/hubs/empty/:send", "text/plain", b"x").await,
        202
    );
    assert_eq!(
        send(
            &rest,
            "/api/hubs/chat/connections/nope/:send",
            "text/plain",
            b"x"
        )
        .await,
        202
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_membership_routes_and_group_sends() {
    let n = super::hub();
    let rest = n.rest(0);
    let (mut a, a_id) = n.client("chat", Some("alice"), Some(JSON)).await;
    let (mut b, b_id) = n.client("chat", Some("bob"), Some(RELIABLE)).await;
    let head = |p: String| {
        let rest = &rest;
        async move { rest.call(Method::HEAD, &p, None).await.status }
    };

    assert_eq!(head("/api/hubs/chat/groups/g1".into()).await, 404);
    let put = rest
        .call(
            Method::PUT,
            &format!("/api/hubs/chat/groups/g1/connections/{a_id}"),
            None,
        )
        .await;
    assert_eq!(put.status, 200);
    assert_eq!(
        rest.call(
            Method::PUT,
            "/api/hubs/chat/groups/g1/connections/unknown",
            None
        )
        .await
        .status,
        404
    );
    assert_eq!(head("/api/hubs/chat/groups/g1".into()).await, 200);
    // User membership applies now and to connections opened later.
    assert_eq!(
        rest.call(Method::PUT, "/api/hubs/chat/users/bob/groups/g1", None)
            .await
            .status,
        200
    );
    assert_eq!(
        rest.call(Method::PUT, "/api/hubs/chat/users/dave/groups/g1", None)
            .await
            .status,
        200
    );
    let (mut d, _) = n.client("chat", Some("dave"), Some(JSON)).await;
    // A simple client in the group too, through its user.
    assert_eq!(
        rest.call(Method::PUT, "/api/hubs/chat/users/erin/groups/g1", None)
            .await
            .status,
        200
    );
    let (mut raw, _) = n.client("chat", Some("erin"), None).await;
    nerve_testkit::eventually(WAIT, "erin to be registered", || {
        let rest = &rest;
        async move {
            let r = rest
                .call(Method::HEAD, "/api/hubs/chat/users/erin", None)
                .await;
            (r.status == 200).then_some(())
        }
    })
    .await;

    // Group sends reach PubSub clients as group messages, simple clients as the payload.
    let path = format!("/api/hubs/chat/groups/g1/:send?excluded={b_id}");
    assert_eq!(send(&rest, &path, "text/plain", b"to-g1").await, 202);
    assert_eq!(group_message(&mut a, "g1").await["data"], "to-g1");
    assert_eq!(group_message(&mut d, "g1").await["data"], "to-g1");
    assert_eq!(
        raw.next_message()
            .await
            .expect("raw")
            .into_text()
            .expect("text")
            .as_str(),
        "to-g1"
    );
    assert_eq!(
        send(
            &rest,
            "/api/hubs/chat/groups/g1/:send?filter=userId%20eq%20%27bob%27",
            "application/octet-stream",
            &[1, 2, 3, 4]
        )
        .await,
        202
    );
    let m = group_message(&mut b, "g1").await;
    assert_eq!(
        (&m["dataType"], &m["data"], &m["sequenceId"]),
        (&json!("binary"), &json!("AQIDBA=="), &json!(1)),
        "a reliable client's group message is numbered"
    );
    // Erin leaves, so the membership checks below are about the PubSub clients alone.
    drop(raw);
    assert_eq!(
        rest.call(Method::DELETE, "/api/hubs/chat/users/erin/groups", None)
            .await
            .status,
        204
    );
    nerve_testkit::eventually(WAIT, "erin to be gone", || {
        let rest = &rest;
        async move {
            let r = rest
                .call(Method::HEAD, "/api/hubs/chat/users/erin", None)
                .await;
            (r.status == 404).then_some(())
        }
    })
    .await;

    // Removing: connection from group, user from group, connection from all groups.
    assert_eq!(
        rest.call(
            Method::DELETE,
            &format!("/api/hubs/chat/groups/g1/connections/{a_id}"),
            None
        )
        .await
        .status,
        204
    );
    assert_eq!(
        rest.call(
            Method::DELETE,
            "/api/hubs/chat/groups/g1/connections/unknown",
            None
        )
        .await
        .status,
        204
    );
    assert_eq!(
        rest.call(Method::DELETE, "/api/hubs/chat/users/dave/groups/g1", None)
            .await
            .status,
        204
    );
    assert_eq!(
        rest.call(
            Method::DELETE,
            &format!("/api/hubs/chat/connections/{b_id}/groups"),
            None
        )
        .await
        .status,
        204
    );
    assert_eq!(
        rest.call(Method::DELETE, "/api/hubs/chat/users/nobody/groups", None)
            .await
            .status,
        204
    );
    assert_eq!(head("/api/hubs/chat/groups/g1".into()).await, 404);

    // Filtered bulk changes.
    let add = json!({"groups": ["g2", "g3"], "filter": "userId ne 'dave'"});
    assert_eq!(
        rest.post_json("/api/hubs/chat/:addToGroups", add)
            .await
            .status,
        200
    );
    let list = rest
        .call(Method::GET, "/api/hubs/chat/groups/g3/connections", None)
        .await;
    assert_eq!(list.status, 200);
    let mut ids: Vec<String> = list.json()["value"]
        .as_array()
        .expect("value")
        .iter()
        .map(|m| m["connectionId"].as_str().expect("id").to_string())
        .collect();
    ids.sort();
    let mut want = vec![a_id.clone(), b_id.clone()];
    want.sort();
    assert_eq!(ids, want);
    let remove = json!({"groups": ["g3"], "filter": "'g2' in groups and userId eq 'alice'"});
    assert_eq!(
        rest.post_json("/api/hubs/chat/:removeFromGroups", remove)
            .await
            .status,
        200
    );
    let list = rest
        .call(Method::GET, "/api/hubs/chat/groups/g3/connections", None)
        .await
        .json();
    assert_eq!(
        list["value"],
        json!([{"connectionId": b_id, "userId": "bob"}])
    );
    assert_eq!(
        rest.post_json(
            "/api/hubs/chat/:addToGroups",
            json!({"groups": ["g"], "filter": "userId eq"})
        )
        .await
        .status,
        400
    );
    assert_eq!(
        rest.post_json("/api/hubs/chat/:addToGroups", json!({"groups": []}))
            .await
            .status,
        400
    );
}
