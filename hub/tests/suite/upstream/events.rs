//! Upstream event handlers end to end: the real binary calls a real HTTP upstream (an axum
//! server in the test) with CloudEvents requests; the test checks headers and signatures, the
//! validation handshake, connect rejection and overrides, user event and invoke round trips
//! for JSON and simple clients, connection state, and notifications.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{Client, Hub, JSON, Seen, Upstream, handler_toml, refused};

const PRIMARY: &str = "upstream-primary-key";
const SECONDARY: &str = "upstream-secondary-key";

fn sign(key: &str, connection_id: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("hmac key");
    mac.update(connection_id.as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// Checks the CloudEvents headers every event carries, and the signature of both keys.
fn assert_cloudevent(s: &Seen, ce_type: &str, connection_id: &str) {
    assert_eq!(s.header("ce-type"), Some(ce_type));
    assert_eq!(s.header("ce-awpsversion"), Some("1.0"));
    assert_eq!(s.header("ce-specversion"), Some("1.0"));
    assert_eq!(s.header("ce-hub"), Some("chat"));
    assert_eq!(s.header("ce-connectionid"), Some(connection_id));
    assert_eq!(
        s.header("ce-source").map(str::to_string),
        Some(format!("/hubs/chat/client/{connection_id}"))
    );
    assert_eq!(s.header("webhook-request-origin"), Some("127.0.0.1"));
    assert!(s.header("ce-id").is_some_and(|v| !v.is_empty()));
    assert!(s.header("ce-time").is_some_and(|v| v.contains('T')));
    let sigs: Vec<String> = s
        .header("ce-signature")
        .expect("ce-signature")
        .split(',')
        .map(str::to_string)
        .collect();
    assert_eq!(
        sigs,
        vec![sign(PRIMARY, connection_id), sign(SECONDARY, connection_id)]
    );
}

fn state_of(v: serde_json::Value) -> String {
    base64::engine::general_purpose::STANDARD.encode(v.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_rejects_or_overrides_and_user_events_round_trip() {
    let state = state_of(json!({"n": 1}));
    let state2 = state_of(json!({"n": 2}));
    let (s1, s2) = (state.clone(), state2.clone());
    let up = Upstream::start(Arc::new(move |s: &Seen| {
        let t = s.header("ce-type").unwrap_or_default();
        Some(match t {
            "azure.webpubsub.sys.connect" => {
                let sub = s.json()["claims"]["sub"][0].as_str().unwrap_or_default().to_string();
                match sub.as_str() {
                    "blocked" => (StatusCode::UNAUTHORIZED, "not you").into_response(),
                    "alice" => (
                        StatusCode::OK,
                        [("ce-connectionState", s1.as_str())],
                        axum::Json(json!({"userId": "alice-2", "groups": ["vip"], "roles": ["webpubsub.sendToGroup.vip"]})),
                    )
                        .into_response(),
                    _ => StatusCode::NO_CONTENT.into_response(),
                }
            }
            "azure.webpubsub.user.echo" => (
                StatusCode::OK,
                [("ce-connectionState", s2.as_str())],
                axum::Json(json!({"echo": String::from_utf8_lossy(&s.body), "ct": s.header("content-type")})),
            )
                .into_response(),
            "azure.webpubsub.user.quiet" => StatusCode::NO_CONTENT.into_response(),
            _ => StatusCode::OK.into_response(),
        })
    }))
    .await;
    let toml = handler_toml(
        "chat",
        up.port,
        "*",
        &["connect", "connected", "disconnected"],
        "",
    );
    let n = Hub::start_with(&[PRIMARY, SECONDARY], &toml, &[]);

    // Rejection: the upstream's status fails the upgrade.
    let (status, _) = refused(&n.client_url("chat", Some("blocked"), &[]), Some(JSON)).await;
    assert_eq!(status, 401);
    // The validation handshake came first, with the same headers express needs.
    let options = up
        .seen()
        .into_iter()
        .find(|s| s.method == "OPTIONS")
        .expect("OPTIONS");
    assert_eq!(options.path, "/api/chat/validate");
    assert_eq!(options.header("ce-awpsversion"), Some("1.0"));
    assert_eq!(options.header("webhook-request-origin"), Some("127.0.0.1"));

    // Override: user id, groups and roles come from the reply.
    let mut c = Client::connect(&n.client_url("chat", Some("alice"), &[]), Some(JSON))
        .await
        .expect("connect");
    let hello = c.next_json().await;
    assert_eq!(hello["userId"], "alice-2");
    let id = hello["connectionId"].as_str().expect("id").to_string();
    let connect = up
        .wait_for("azure.webpubsub.sys.connect", |s| {
            s.header("ce-connectionid") == Some(id.as_str())
        })
        .await;
    assert_cloudevent(&connect, "azure.webpubsub.sys.connect", &id);
    assert_eq!(connect.header("ce-eventname"), Some("connect"));
    assert_eq!(connect.header("ce-userid"), Some("alice"));
    let body = connect.json();
    assert_eq!(body["subprotocols"], json!([JSON]));
    assert_eq!(body["claims"]["sub"], json!(["alice"]));
    assert!(body["query"].get("access_token").is_none());
    assert!(body["headers"]["host"].is_array());
    c.send(json!({"type": "sendToGroup", "group": "vip", "data": "in", "ackId": 1}))
        .await;
    assert_eq!(c.ack(1).await["success"], true);
    assert_eq!(c.until(|v| v["type"] == "message").await["data"], "in");
    // connected is a notification with an empty JSON body and the new user id.
    let connected = up
        .wait_for("azure.webpubsub.sys.connected", |s| {
            s.header("ce-connectionid") == Some(id.as_str())
        })
        .await;
    assert_eq!(
        (connected.json(), connected.header("ce-userid")),
        (json!({}), Some("alice-2"))
    );

    // A user event: the upstream's JSON reply comes back as a server message, then the ack.
    c.send(
        json!({"type": "event", "event": "echo", "dataType": "text", "data": "hello", "ackId": 2}),
    )
    .await;
    let m = c.next_json().await;
    assert_eq!(
        (m["from"].clone(), m["dataType"].clone()),
        (json!("server"), json!("json"))
    );
    assert_eq!(m["data"]["echo"], "hello");
    assert!(
        m["data"]["ct"]
            .as_str()
            .expect("ct")
            .starts_with("text/plain")
    );
    assert_eq!(
        c.next_json().await,
        json!({"type": "ack", "ackId": 2, "success": true})
    );
    let ev = up.wait_for("azure.webpubsub.user.echo", |_| true).await;
    assert_cloudevent(&ev, "azure.webpubsub.user.echo", &id);
    assert_eq!(ev.header("ce-eventname"), Some("echo"));
    assert_eq!(ev.header("ce-connectionstate"), Some(state.as_str()));
    // JSON and binary data go up with their content types; the state set by the last reply
    // travels with the next event.
    c.send(json!({"type": "event", "event": "echo", "data": {"k": [1, 2]}}))
        .await;
    assert_eq!(c.next_json().await["data"]["echo"], r#"{"k":[1,2]}"#);
    c.send(json!({"type": "event", "event": "quiet", "dataType": "binary", "data": "AAEC", "ackId": 3})).await;
    assert_eq!(
        c.next_json().await,
        json!({"type": "ack", "ackId": 3, "success": true})
    );
    let quiet = up.wait_for("azure.webpubsub.user.quiet", |_| true).await;
    assert_eq!(
        (quiet.header("content-type"), &quiet.body[..]),
        (Some("application/octet-stream"), &[0u8, 1, 2][..])
    );
    assert_eq!(quiet.header("ce-connectionstate"), Some(state2.as_str()));
    // A repeated ackId is not sent upstream again.
    c.send(json!({"type": "event", "event": "quiet", "data": 1, "ackId": 3}))
        .await;
    assert_eq!(c.next_json().await["error"]["name"], "Duplicate");
    assert_eq!(up.count("azure.webpubsub.user.quiet"), 1);

    // invoke: the reply is the invokeResponse's data.
    c.send(json!({"type": "invoke", "invocationId": "7", "target": "event", "event": "echo", "dataType": "text", "data": "q"})).await;
    let r = c.next_json().await;
    assert_eq!(
        (
            r["type"].clone(),
            r["invocationId"].clone(),
            r["success"].clone()
        ),
        (json!("invokeResponse"), json!("7"), json!(true))
    );
    assert_eq!(r["data"]["echo"], "q");

    // disconnected carries the reason the client was given.
    let rest = n.rest(1);
    let del = rest
        .call(
            Method::DELETE,
            &format!("/api/hubs/chat/connections/{id}?reason=done"),
            None,
        )
        .await;
    assert_eq!(del.status, 204);
    assert_eq!(c.closed().await.code, Some(1008));
    let d = up
        .wait_for("azure.webpubsub.sys.disconnected", |s| {
            s.header("ce-connectionid") == Some(id.as_str())
        })
        .await;
    assert_eq!(d.json(), json!({"reason": "done"}));
    assert_cloudevent(&d, "azure.webpubsub.sys.disconnected", &id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_clients_send_message_events_and_get_raw_replies() {
    let up = Upstream::start(Arc::new(|s: &Seen| {
        Some(match s.header("ce-type").unwrap_or_default() {
            "azure.webpubsub.sys.connect" => {
                let offered = s.json()["subprotocols"].clone();
                if offered == json!(["custom.v1"]) {
                    axum::Json(json!({"subprotocol": "custom.v1"})).into_response()
                } else {
                    StatusCode::NO_CONTENT.into_response()
                }
            }
            "azure.webpubsub.user.message" => {
                let ct = s.header("content-type").unwrap_or_default().to_string();
                if ct.starts_with("text/plain") {
                    let text = String::from_utf8_lossy(&s.body).to_string();
                    if text == "drop me" {
                        return Some(StatusCode::BAD_REQUEST.into_response());
                    }
                    (
                        [("content-type", "text/plain; charset=utf-8")],
                        format!("got:{text}"),
                    )
                        .into_response()
                } else if s.body.is_empty() {
                    StatusCode::NO_CONTENT.into_response()
                } else {
                    (
                        [("content-type", "application/octet-stream")],
                        s.body.to_vec(),
                    )
                        .into_response()
                }
            }
            _ => StatusCode::OK.into_response(),
        })
    }))
    .await;
    let toml = handler_toml("chat", up.port, "message", &["connect"], "");
    let n = Hub::start_with(&[PRIMARY, SECONDARY], &toml, &[]);

    // An unknown subprotocol is offered to connect, which chooses it; the handshake echoes it.
    let mut c = Client::connect(&n.client_url("chat", Some("sam"), &[]), Some("custom.v1"))
        .await
        .expect("connect");
    assert_eq!(c.protocol.as_deref(), Some("custom.v1"));
    c.send_raw(Message::Text("ping".into())).await;
    assert_eq!(
        c.next_message().await.expect("reply"),
        Message::Text("got:ping".into())
    );
    c.send_raw(Message::Binary(vec![9u8, 8, 7].into())).await;
    assert_eq!(
        c.next_message().await.expect("reply"),
        Message::Binary(vec![9u8, 8, 7].into())
    );
    let ev = up
        .wait_for("azure.webpubsub.user.message", |s| {
            s.header("content-type") == Some("application/octet-stream")
        })
        .await;
    assert_eq!(ev.header("ce-subprotocol"), Some("custom.v1"));
    assert_eq!(ev.header("ce-userid"), Some("sam"));
    // REST sends reach the simple client as raw frames, too.
    let r = n
        .rest(0)
        .call(
            Method::POST,
            "/api/hubs/chat/users/sam/:send",
            Some(("application/json", b"\"s\"".to_vec())),
        )
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(
        c.next_message().await.expect("rest"),
        Message::Text("\"s\"".into())
    );
    // A non-2xx reply drops the connection.
    c.send_raw(Message::Text("drop me".into())).await;
    assert!(c.closed().await.code.is_some());

    // A plain simple client (no subprotocol) works the same way.
    let mut plain = Client::connect(&n.client_url("chat", None, &[]), None)
        .await
        .expect("connect");
    assert_eq!(plain.protocol, None);
    plain.send_raw(Message::Text("hi".into())).await;
    assert_eq!(
        plain.next_message().await.expect("reply"),
        Message::Text("got:hi".into())
    );
}
