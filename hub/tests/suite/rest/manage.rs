//! REST management operations end to end: existence checks, permissions, closes, paged member
//! listing and token generation, with what connected clients observe.

use std::time::Duration;

use axum::http::Method;
use serde_json::json;

use crate::harness::{Client, JSON, Rest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existence_checks_permissions_and_closes() {
    let n = super::hub();
    let rest = n.rest(0);
    let (mut a, a_id) = n.client("chat", Some("alice"), Some(JSON)).await;
    let (mut b, _) = n.client("chat", Some("bob"), Some(JSON)).await;
    let status = |m: Method, p: String| {
        let rest = &rest;
        async move { rest.call(m, &p, None).await.status }
    };
    assert_eq!(status(Method::HEAD, "/api/health".into()).await, 200);
    assert_eq!(
        status(Method::HEAD, format!("/api/hubs/chat/connections/{a_id}")).await,
        200
    );
    assert_eq!(
        status(Method::HEAD, "/api/hubs/chat/connections/nope".into()).await,
        404
    );
    assert_eq!(
        status(Method::HEAD, "/api/hubs/other/connections/nope".into()).await,
        404
    );
    assert_eq!(
        status(Method::HEAD, "/api/hubs/chat/users/alice".into()).await,
        200
    );
    assert_eq!(
        status(Method::HEAD, "/api/hubs/chat/users/zed".into()).await,
        404
    );

    // Permissions: grant on one group, check, revoke; the client feels the difference.
    let perm = format!("/api/hubs/chat/permissions/joinLeaveGroup/connections/{a_id}");
    assert_eq!(status(Method::HEAD, perm.clone()).await, 404);
    assert_eq!(
        status(Method::PUT, format!("{perm}?targetName=room")).await,
        200
    );
    assert_eq!(
        status(Method::HEAD, format!("{perm}?targetName=room")).await,
        200
    );
    assert_eq!(
        status(Method::HEAD, format!("{perm}?targetName=other")).await,
        404
    );
    assert_eq!(status(Method::HEAD, perm.clone()).await, 404);
    a.send(json!({"type": "joinGroup", "group": "room", "ackId": 1}))
        .await;
    assert_eq!(a.ack(1).await["success"], true);
    a.send(json!({"type": "joinGroup", "group": "other", "ackId": 2}))
        .await;
    assert_eq!(a.ack(2).await["error"]["name"], "Forbidden");
    assert_eq!(
        status(Method::DELETE, format!("{perm}?targetName=room")).await,
        204
    );
    assert_eq!(
        status(Method::HEAD, format!("{perm}?targetName=room")).await,
        404
    );
    assert_eq!(
        status(
            Method::PUT,
            "/api/hubs/chat/permissions/sendToGroup/connections/nope".into()
        )
        .await,
        404
    );
    assert_eq!(
        status(
            Method::DELETE,
            "/api/hubs/chat/permissions/sendToGroup/connections/nope".into()
        )
        .await,
        204
    );
    assert_eq!(
        status(
            Method::PUT,
            format!("/api/hubs/chat/permissions/fly/connections/{a_id}")
        )
        .await,
        400
    );
    assert_eq!(
        status(
            Method::PUT,
            "/api/hubs/chat/permissions/sendToGroup/connections/".into()
        )
        .await,
        404
    );

    // Close one connection with a reason: disconnected(reason), then 1008.
    assert_eq!(
        status(
            Method::DELETE,
            format!("/api/hubs/chat/connections/{a_id}?reason=bye%20now")
        )
        .await,
        204
    );
    let closed = a.closed().await;
    assert_eq!(closed.code, Some(1008));
    assert_eq!(
        closed.frames.last().expect("disconnected")["message"],
        "bye now"
    );
    assert_eq!(
        status(Method::DELETE, "/api/hubs/chat/connections/nope".into()).await,
        204
    );
    // Close by user, by group (with excluded), and all.
    assert_eq!(
        status(
            Method::POST,
            "/api/hubs/chat/users/bob/:closeConnections?reason=user".into()
        )
        .await,
        204
    );
    assert_eq!(
        b.closed().await.frames.last().expect("disconnected")["message"],
        "user"
    );
    let (mut c, c_id) = n.client("chat", None, Some(JSON)).await;
    let (mut d, _) = n.client("chat", None, Some(JSON)).await;
    assert_eq!(
        status(
            Method::PUT,
            format!("/api/hubs/chat/groups/g/connections/{c_id}")
        )
        .await,
        200
    );
    assert_eq!(
        status(
            Method::POST,
            format!("/api/hubs/chat/groups/g/:closeConnections?excluded={c_id}")
        )
        .await,
        204
    );
    assert_eq!(
        status(
            Method::POST,
            "/api/hubs/chat/:closeConnections?reason=all".into()
        )
        .await,
        204
    );
    assert_eq!(c.closed().await.code, Some(1008));
    assert_eq!(
        d.closed().await.frames.last().expect("disconnected")["message"],
        "all"
    );
    wait_until_gone(&rest, &c_id).await;
}

async fn wait_until_gone(rest: &Rest, id: &str) {
    let path = format!("/api/hubs/chat/connections/{id}");
    nerve_testkit::eventually(
        Duration::from_secs(10),
        "closed connection to disappear",
        || {
            let path = path.clone();
            async move { (rest.call(Method::HEAD, &path, None).await.status == 404).then_some(()) }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_members_are_listed_in_pages_with_next_links() {
    let n = super::hub();
    let rest = n.rest(0);
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for i in 0..5 {
        let user = format!("u{i}");
        let (c, id) = n.client("chat", Some(&user), Some(JSON)).await;
        assert_eq!(
            rest.call(
                Method::PUT,
                &format!("/api/hubs/chat/groups/big/connections/{id}"),
                None
            )
            .await
            .status,
            200
        );
        clients.push(c);
        ids.push(id);
    }
    ids.sort();
    let mut seen = Vec::new();
    let mut url = format!(
        "{}/api/hubs/chat/groups/big/connections?api-version=2024-12-01&maxpagesize=2",
        rest.base
    );
    let mut pages = 0;
    loop {
        let token = rest.token(&url);
        let page = rest
            .call_with_token(Method::GET, &url, None, Some(&token))
            .await;
        assert_eq!(page.status, 200, "{}", page.body);
        let v = page.json();
        let items = v["value"].as_array().expect("value");
        assert!(items.len() <= 2);
        seen.extend(
            items
                .iter()
                .map(|m| m["connectionId"].as_str().expect("id").to_string()),
        );
        pages += 1;
        match v["nextLink"].as_str() {
            Some(next) => url = next.to_string(),
            None => break,
        }
    }
    assert_eq!((pages, seen), (3, ids.clone()));
    // top bounds the total across pages.
    let v = rest
        .call(
            Method::GET,
            "/api/hubs/chat/groups/big/connections?maxpagesize=2&top=3",
            None,
        )
        .await
        .json();
    assert_eq!(v["value"].as_array().expect("value").len(), 2);
    let next = v["nextLink"].as_str().expect("next link").to_string();
    let last = rest
        .call_with_token(Method::GET, &next, None, Some(&rest.token(&next)))
        .await
        .json();
    assert_eq!(last["value"].as_array().expect("value").len(), 1);
    assert!(last.get("nextLink").is_none());
    let empty = rest
        .call(Method::GET, "/api/hubs/chat/groups/none/connections", None)
        .await;
    assert_eq!((empty.status, empty.json()), (200, json!({"value": []})));
    drop(clients);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_tokens_connect_with_user_roles_and_groups() {
    let n = super::hub();
    let rest = n.rest(0);
    let r = rest
        .call(Method::POST, "/api/hubs/chat/:generateToken?userId=zoe&role=webpubsub.sendToGroup&group=g1&group=g2&minutesToExpire=5", None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let token = r.json()["token"].as_str().expect("token").to_string();
    let url = format!(
        "ws://127.0.0.1:{}/client/hubs/chat?access_token={token}",
        n.port
    );
    let mut c = Client::connect(&url, Some(JSON)).await.expect("connect");
    assert_eq!(c.next_json().await["userId"], "zoe");
    c.send(json!({"type": "sendToGroup", "group": "g2", "data": "hi", "ackId": 1}))
        .await;
    assert_eq!(c.ack(1).await["success"], true);
    // The token's groups were joined and its role lets zoe publish: she hears her own message.
    let m = c.until(|v| v["type"] == "message").await;
    assert_eq!(
        (m["group"].clone(), m["fromUserId"].clone()),
        (json!("g2"), json!("zoe"))
    );
    for (q, want) in [
        ("clientType=MQTT", 200),
        ("clientType=socketio", 200),
        ("clientType=carrier-pigeon", 400),
        ("minutesToExpire=0", 400),
        ("group=%20", 400),
    ] {
        let r = rest
            .call(
                Method::POST,
                &format!("/api/hubs/chat/:generateToken?{q}"),
                None,
            )
            .await;
        assert_eq!(r.status, want, "{q}: {}", r.body);
    }
}
