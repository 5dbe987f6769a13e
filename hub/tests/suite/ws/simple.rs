//! Simple WebSocket clients (no subprotocol): raw frames in sendToGroup mode, and the default
//! sendEvent mode without an event handler.

use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{ALL_ROLES, Client, Hub, JSON};

#[tokio::test]
async fn send_to_group_mode_publishes_raw_frames_and_receives_raw_frames() {
    let hub = Hub::start();
    // A simple client that is in group "g" (token claim) and publishes to "g".
    let t = hub.token("chat", Some("s"), &["webpubsub.sendToGroup.g"], &["g"]);
    let url = format!("{}&webpubsub_mode=sendToGroup&group=g", hub.url("chat", &t));
    let mut simple = Client::connect(&url, None).await.unwrap();
    assert_eq!(simple.protocol, None);
    let mut json_client = hub.connect("chat", None, ALL_ROLES, Some(JSON)).await;
    json_client.next_json().await;
    json_client
        .send(json!({"type":"joinGroup","group":"g","ackId":1}))
        .await;
    json_client.ack(1).await;

    simple
        .send_raw(Message::Text("hello from simple".into()))
        .await;
    let m = json_client.until(|v| v["type"] == "message").await;
    assert_eq!(
        (m["dataType"].clone(), m["data"].clone()),
        (json!("text"), json!("hello from simple"))
    );
    assert_eq!(m["fromUserId"], "s");
    // The simple client is in the group too and gets its own message raw.
    assert_eq!(
        simple.next_message().await,
        Some(Message::Text("hello from simple".into()))
    );

    simple
        .send_raw(Message::Binary(vec![0u8, 1, 255].into()))
        .await;
    let m = json_client.until(|v| v["type"] == "message").await;
    assert_eq!(
        (m["dataType"].clone(), m["data"].clone()),
        (json!("binary"), json!("AAH/"))
    );
    assert_eq!(
        simple.next_message().await,
        Some(Message::Binary(vec![0u8, 1, 255].into()))
    );

    // JSON and text published by others reach the simple client as raw text.
    let cases = [
        ("json", json!({"a":1}), r#"{"a":1}"#),
        ("json", json!("s"), r#""s""#),
        ("text", json!("t"), "t"),
    ];
    for (i, (ty, data, raw)) in cases.into_iter().enumerate() {
        json_client
            .send(json!({"type":"sendToGroup","group":"g","ackId":10 + i,"dataType":ty,"data":data,"noEcho":true}))
            .await;
        assert_eq!(simple.next_message().await, Some(Message::Text(raw.into())));
        json_client.send(json!({"type":"ping"})).await;
        json_client.until(|v| v["type"] == "pong").await;
    }
}

#[tokio::test]
async fn simple_client_without_permission_or_handler_is_closed_with_a_reason() {
    let hub = Hub::start();
    let t = hub.token("chat", None, &[], &[]);
    let url = format!("{}&webpubsub_mode=sendToGroup&group=g", hub.url("chat", &t));
    let mut c = Client::connect(&url, None).await.unwrap();
    c.send_raw(Message::Text("x".into())).await;
    let closed = c.closed().await;
    assert_eq!(closed.code, Some(1008));
    assert!(closed.reason.contains("Forbidden"), "{closed:?}");

    let mut c = Client::connect(&hub.url("chat", &t), None).await.unwrap();
    c.send_raw(Message::Text("x".into())).await;
    let closed = c.closed().await;
    assert_eq!(closed.code, Some(1008));
    assert!(closed.reason.contains("event handler"), "{closed:?}");
}
