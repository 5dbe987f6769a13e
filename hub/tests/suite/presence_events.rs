//! Presence events: on a hub with `presence_events`, every join and leave of a group `g`, by a
//! client frame, the token's groups, a REST call or a closing connection, reaches the members
//! of `$presence.g` as a group message, and nothing is published on hubs without the setting.

use axum::http::Method;
use serde_json::{Value, json};

use crate::harness::{ALL_ROLES, Client, Hub, JSON};

async fn watcher(hub: &Hub, group: &str) -> Client {
    let mut w = hub
        .connect("chat", Some("watcher"), ALL_ROLES, Some(JSON))
        .await;
    w.next_json().await;
    w.send(json!({"type":"joinGroup","group":format!("$presence.{group}"),"ackId":1}))
        .await;
    assert_eq!(w.ack(1).await["success"], true);
    w
}

/// The next presence event a watcher gets: (event, user, connection).
async fn event(w: &mut Client, group: &str) -> (String, Value, String) {
    let m = w.until(|v| v["type"] == "message").await;
    assert_eq!(m["group"], format!("$presence.{group}"), "{m}");
    assert_eq!(m["data"]["group"], group, "{m}");
    (
        m["data"]["event"].as_str().unwrap_or_default().to_string(),
        m["data"]["userId"].clone(),
        m["data"]["connectionId"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

#[tokio::test]
async fn joins_and_leaves_reach_the_presence_group() {
    let hub = Hub::start_with_config("[hubs.chat]\npresence_events = true\n");
    let mut w = watcher(&hub, "room").await;

    // A client frame joins and leaves.
    let (mut alice, _) = hub.client("chat", Some("alice"), Some(JSON)).await;
    let mut a = hub
        .connect("chat", Some("alice"), ALL_ROLES, Some(JSON))
        .await;
    let a_id = a.next_json().await["connectionId"]
        .as_str()
        .expect("connectionId")
        .to_string();
    a.send(json!({"type":"joinGroup","group":"room","ackId":1}))
        .await;
    a.ack(1).await;
    assert_eq!(
        event(&mut w, "room").await,
        ("joined".into(), json!("alice"), a_id.clone())
    );
    a.send(json!({"type":"leaveGroup","group":"room","ackId":2}))
        .await;
    a.ack(2).await;
    assert_eq!(
        event(&mut w, "room").await,
        ("left".into(), json!("alice"), a_id.clone())
    );

    // REST adds a connection; its close takes it out again.
    let rest = hub.rest(0);
    let put = rest
        .call(
            Method::PUT,
            &format!("/api/hubs/chat/groups/room/connections/{a_id}"),
            None,
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    assert_eq!(event(&mut w, "room").await.0, "joined");
    drop(a);
    assert_eq!(
        event(&mut w, "room").await,
        ("left".into(), json!("alice"), a_id)
    );

    // Groups from the token are joins too; an anonymous connection has a null user.
    let t = hub.token("chat", None, &[], &["room"]);
    let mut anon = Client::connect(&hub.url("chat", &t), Some(JSON))
        .await
        .unwrap();
    let anon_id = anon.next_json().await["connectionId"]
        .as_str()
        .expect("connectionId")
        .to_string();
    assert_eq!(
        event(&mut w, "room").await,
        ("joined".into(), Value::Null, anon_id)
    );
    // A presence group asks for the same roles as any group.
    alice
        .send(json!({"type":"joinGroup","group":"$presence.room","ackId":1}))
        .await;
    let refused = alice.ack(1).await;
    assert_eq!(
        refused["error"]["name"], "Forbidden",
        "the same roles as any group"
    );
    let roles = ["webpubsub.joinLeaveGroups.$presence.**"];
    let mut follower = hub.connect("chat", None, &roles, Some(JSON)).await;
    follower.next_json().await;
    follower
        .send(json!({"type":"joinGroup","group":"$presence.room.sub","ackId":1}))
        .await;
    assert_eq!(follower.ack(1).await["success"], true);
}

#[tokio::test]
async fn hubs_without_the_setting_publish_no_presence_events() {
    let hub = Hub::start();
    let mut w = watcher(&hub, "room").await;
    let mut a = hub.connect("chat", Some("a"), ALL_ROLES, Some(JSON)).await;
    a.next_json().await;
    a.send(json!({"type":"joinGroup","group":"room","ackId":1}))
        .await;
    a.ack(1).await;
    // A marker sent after the join arrives first: no event came before it.
    let mut p = hub.connect("chat", None, ALL_ROLES, Some(JSON)).await;
    p.next_json().await;
    p.send(json!({"type":"sendToGroup","group":"$presence.room","ackId":1,"data":"marker"}))
        .await;
    p.ack(1).await;
    let m = w.until(|v| v["type"] == "message").await;
    assert_eq!(m["data"], "marker", "{m}");
}
