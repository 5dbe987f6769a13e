//! Bad input from one client gets a clear error (an error ack, an HTTP status with a JSON body,
//! or a close code with a reason) and harms nobody else.

use nerve_hub::auth::{AccessKeys, Audience, Claims, now_secs};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{ALL_ROLES, Client, Hub, JSON, RELIABLE, metric, refused};

/// A bystander pair: `sub` listens on group "g", `publish` proves the hub still serves it.
struct Bystander {
    sub: Client,
    publisher: Client,
    next: u64,
}

impl Bystander {
    async fn new(hub: &Hub) -> Self {
        let mut sub = hub.connect("chat", None, ALL_ROLES, Some(RELIABLE)).await;
        let mut publisher = hub.connect("chat", None, ALL_ROLES, Some(JSON)).await;
        sub.next_json().await;
        publisher.next_json().await;
        sub.send(json!({"type":"joinGroup","group":"g","ackId":1}))
            .await;
        sub.ack(1).await;
        Bystander {
            sub,
            publisher,
            next: 1,
        }
    }

    async fn still_served(&mut self) {
        self.next += 1;
        let n = self.next;
        self.publisher
            .send(json!({"type":"sendToGroup","group":"g","ackId":n,"data":n}))
            .await;
        assert_eq!(self.publisher.ack(n).await["success"], true);
        let m = self.sub.until(|v| v["type"] == "message").await;
        assert_eq!(m["data"], n, "bystander lost a message");
    }
}

#[tokio::test]
async fn bad_frames_get_clear_errors_and_others_keep_working() {
    let hub = Hub::start();
    let mut by = Bystander::new(&hub).await;

    // Frames that are JSON but invalid, with an ackId: error ack, connection stays.
    let mut c = hub.connect("chat", None, ALL_ROLES, Some(JSON)).await;
    c.next_json().await;
    let invalid = [
        json!({"type":"nope","ackId":1}),
        json!({"ackId":2}),
        json!({"type":"joinGroup","ackId":3}),
        json!({"type":"joinGroup","ackId":4,"group":""}),
        json!({"type":"joinGroup","ackId":5,"group":"x".repeat(1025)}),
        json!({"type":"sendToGroup","ackId":6,"group":"g","dataType":"text","data":5}),
        json!({"type":"sendToGroup","ackId":7,"group":"g","dataType":"binary","data":"%%%"}),
        json!({"type":"sendToGroup","ackId":8,"group":"g","dataType":"xml","data":"<a/>"}),
        json!({"type":"event","ackId":9}),
        json!({"type":"sendToGroup","ackId":10,"group":"g","data":"x","stream":{"streamId":"s"}}),
    ];
    for f in invalid {
        let id = f["ackId"].as_u64().unwrap();
        c.send(f).await;
        let ack = c.ack(id).await;
        assert_eq!(ack["success"], false, "{ack}");
        assert_eq!(ack["error"]["name"], "BadRequest", "{ack}");
        assert!(!ack["error"]["message"].as_str().unwrap().is_empty());
    }
    c.send(json!({"type":"ping"})).await;
    assert_eq!(c.next_json().await["type"], "pong");
    by.still_served().await;

    // Frames that cannot be answered on an ackId close the connection with a reason.
    let cases: Vec<(Message, u16)> = vec![
        (Message::Text("{not json".into()), 1007),
        (Message::Text("[1,2]".into()), 1007),
        (
            Message::Text(format!("{}1{}", "[".repeat(5000), "]".repeat(5000)).into()),
            1007,
        ),
        (Message::Text(r#"{"type":"bogus"}"#.into()), 1007),
        (Message::Binary(vec![1, 2, 3].into()), 1003),
        (Message::Text("x".repeat(1024 * 1024 + 1).into()), 1009),
    ];
    for (frame, code) in cases {
        let mut c = hub.connect("chat", None, ALL_ROLES, Some(RELIABLE)).await;
        c.next_json().await;
        c.send_raw(frame).await;
        let closed = c.closed().await;
        if code == 1009 {
            // The client is still writing the rest of its huge frame when the hub closes, so
            // the close frame itself may be lost to a TCP reset; the reason always arrives.
            assert!(
                closed.code.is_none() || closed.code == Some(code),
                "{closed:?}"
            );
        } else {
            assert_eq!(closed.code, Some(code), "{closed:?}");
            assert!(!closed.reason.is_empty());
        }
        let disconnected = closed.frames.iter().find(|f| f["event"] == "disconnected");
        assert!(
            disconnected.is_some(),
            "no disconnected message before close: {closed:?}"
        );
        by.still_served().await;
    }
}

fn forge(claims: &Claims, key: &str, alg: jsonwebtoken::Algorithm) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(alg),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
    )
    .expect("sign a token")
}

#[tokio::test]
async fn bad_handshakes_are_refused_with_401_or_400_and_a_reason() {
    let hub = Hub::start();
    let mut by = Bystander::new(&hub).await;
    let aud = format!("http://127.0.0.1:{}/client/hubs/chat", hub.port);
    let good = Claims {
        aud: Some(Audience::One(aud.clone())),
        exp: now_secs() + 600,
        ..Default::default()
    };
    let keys = AccessKeys::new(vec![hub.key().to_string()]);
    let none_token = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(serde_json::to_vec(&good).unwrap())
        )
    };
    let expired = Claims {
        exp: now_secs() - 3600,
        ..good.clone()
    };
    let future = Claims {
        nbf: Some(now_secs() + 3600),
        ..good.clone()
    };
    let wrong_aud = Claims {
        aud: Some(Audience::One(format!(
            "http://127.0.0.1:{}/client/hubs/other",
            hub.port
        ))),
        ..good.clone()
    };
    let cases = [
        ("missing", None, "no access token"),
        (
            "bad signature",
            Some(forge(&good, "wrong-key", jsonwebtoken::Algorithm::HS256)),
            "signature",
        ),
        ("alg none", Some(none_token), ""),
        (
            "hs512",
            Some(forge(&good, hub.key(), jsonwebtoken::Algorithm::HS512)),
            "HS256",
        ),
        ("expired", Some(keys.sign(&expired)), "expired"),
        ("future nbf", Some(keys.sign(&future)), "not valid yet"),
        ("wrong audience", Some(keys.sign(&wrong_aud)), "audience"),
        ("garbage", Some("a.b.c".to_string()), "malformed"),
    ];
    for (name, token, reason) in cases {
        let url = match token {
            Some(t) => hub.url("chat", &t),
            None => format!("ws://127.0.0.1:{}/client/hubs/chat", hub.port),
        };
        let (status, body) = refused(&url, Some(RELIABLE)).await;
        assert_eq!(status, 401, "{name}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        assert_eq!(v["code"], "Unauthorized", "{name}: {body}");
        assert!(
            v["message"].as_str().unwrap_or_default().contains(reason),
            "{name}: {body}"
        );
        by.still_served().await;
    }

    let t = hub.token("chat", None, &[], &[]);
    let (status, body) = refused(&hub.url("chat", &t), Some("mqtt.v3")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("subprotocol"), "{body}");
    let (status, body) = refused(&hub.url("9bad", &t), Some(JSON)).await;
    assert_eq!(status, 400, "{body}");
    let url = format!("{}&webpubsub_mode=sideways", hub.url("chat", &t));
    let (status, body) = refused(&url, None).await;
    assert_eq!(status, 400, "{body}");
    by.still_served().await;

    let scrape = hub.metrics().await;
    assert!(
        metric(&scrape, "nerve_auth_failures_total") >= 8.0,
        "{scrape}"
    );
}
