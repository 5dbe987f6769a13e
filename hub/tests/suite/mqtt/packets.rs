//! Packet-level behaviour of the MQTT endpoint.

use bytes::{Bytes, BytesMut};
use nerve_protocol::codec::mqtt::{self, Packet, QoS4, QoS5, Version, v4, v5};
use serde_json::json;

use super::client::{Mqtt, connect_v4, connect_v5, open};
use crate::harness::{ALL_ROLES, Hub, JSON, refused};

const HUB: &str = "mq";

fn subscribe_v4(pkid: u16, topic: &str, qos: QoS4) -> Packet {
    let mut s = v4::Subscribe::new(topic, qos);
    s.pkid = pkid;
    Packet::V4(v4::Packet::Subscribe(s))
}

fn subscribe_v5(pkid: u16, topic: &str) -> Packet {
    let mut s = v5::Subscribe::new(v5::Filter::new(topic, QoS5::AtLeastOnce), None);
    s.pkid = pkid;
    Packet::V5(v5::Packet::Subscribe(s))
}

fn publish_v4(topic: &str, qos: QoS4, pkid: u16, body: &'static [u8]) -> Packet {
    let mut p = v4::Publish::from_bytes(topic, qos, Bytes::from_static(body));
    p.pkid = pkid;
    Packet::V4(v4::Packet::Publish(p))
}

fn publish_v5(topic: &str, pkid: u16, props: Option<v5::PublishProperties>) -> Packet {
    let mut p = v5::Publish::new(topic, QoS5::AtLeastOnce, "x", props);
    p.pkid = pkid;
    Packet::V5(v5::Packet::Publish(p))
}

async fn v4_client(hub: &Hub, id: &str, roles: &[&str]) -> Mqtt {
    let url = hub.mqtt_url(HUB, &hub.mqtt_token(HUB, Some("u1"), roles));
    let (m, ack) = Mqtt::connect(&url, connect_v4(id, 30, None)).await;
    assert!(
        matches!(ack, Packet::V4(v4::Packet::ConnAck(ref a)) if a.code == v4::ConnectReturnCode::Success),
        "{ack:?}"
    );
    m
}

async fn v5_client(hub: &Hub, id: &str, roles: &[&str]) -> (Mqtt, v5::ConnAck) {
    let url = hub.mqtt_url(HUB, &hub.mqtt_token(HUB, Some("u5"), roles));
    let (m, ack) = Mqtt::connect(&url, connect_v5(id, 30)).await;
    let Packet::V5(v5::Packet::ConnAck(ack)) = ack else {
        panic!("expected CONNACK, got {ack:?}")
    };
    assert_eq!(ack.code, v5::ConnectReturnCode::Success);
    (m, ack)
}

#[tokio::test]
async fn topics_are_groups_across_protocols_and_rest_arrives_on_the_server_topic() {
    let hub = Hub::start();
    let mut m = v4_client(&hub, "dev1", ALL_ROLES).await;
    m.send(subscribe_v4(1, "g1", QoS4::AtLeastOnce)).await;
    let suback = m.next().await.expect("SUBACK");
    assert_eq!(
        suback,
        Packet::V4(v4::Packet::SubAck(v4::SubAck::new(
            1,
            vec![v4::SubscribeReasonCode::Success(QoS4::AtLeastOnce)]
        )))
    );

    // A JSON client in the same group: its text reaches MQTT as bytes, MQTT reaches it as binary.
    let mut j = hub.connect(HUB, Some("j"), ALL_ROLES, Some(JSON)).await;
    j.next_json().await;
    j.send(json!({"type": "joinGroup", "group": "g1", "ackId": 1}))
        .await;
    j.until(|f| f["type"] == "ack").await;
    j.send(json!({"type": "sendToGroup", "group": "g1", "dataType": "text", "data": "hello", "noEcho": true}))
        .await;
    let (topic, body, qos) = m.publish_received().await;
    assert_eq!((topic.as_str(), &body[..], qos), ("g1", &b"hello"[..], 1));

    m.send(publish_v4("g1", QoS4::AtLeastOnce, 7, b"\x00\x01mqtt"))
        .await;
    assert_eq!(
        m.next().await.expect("PUBACK"),
        Packet::V4(v4::Packet::PubAck(v4::PubAck::new(7)))
    );
    let echoed = m.publish_received().await;
    assert_eq!(echoed.0, "g1");
    let got = j.until(|f| f["type"] == "message").await;
    assert_eq!(got["dataType"], "binary");
    assert_eq!(got["group"], "g1");
    assert_eq!(got["data"], "AAFtcXR0");

    // REST to everyone, to the user and to the connection (client id = connection id).
    let rest = hub.rest(0);
    for path in [
        "/api/hubs/mq/:send",
        "/api/hubs/mq/users/u1/:send",
        "/api/hubs/mq/connections/dev1/:send",
    ] {
        let a = rest
            .call(
                reqwest::Method::POST,
                path,
                Some(("text/plain", b"from server".to_vec())),
            )
            .await;
        assert!(a.status < 300, "{path}: {}", a.status);
        let (topic, body, qos) = m.publish_received().await;
        assert_eq!(topic, mqtt::SERVER_MESSAGES_TOPIC);
        assert_eq!((&body[..], qos), (&b"from server"[..], 1));
    }
    // REST to the group: the group topic.
    let a = rest
        .call(
            reqwest::Method::POST,
            "/api/hubs/mq/groups/g1/:send",
            Some(("application/json", br#"{"k":1}"#.to_vec())),
        )
        .await;
    assert!(a.status < 300);
    let (topic, body, _) = m.publish_received().await;
    assert_eq!((topic.as_str(), &body[..]), ("g1", &br#"{"k":1}"#[..]));

    // UNSUBSCRIBE leaves the group.
    m.send(Packet::V4(v4::Packet::Unsubscribe(v4::Unsubscribe {
        pkid: 2,
        topics: vec!["g1".into()],
    })))
    .await;
    assert_eq!(
        m.next().await,
        Some(Packet::V4(v4::Packet::UnsubAck(v4::UnsubAck::new(2))))
    );
    // A group message after it does not arrive; the server message sent next does, first.
    for path in ["/api/hubs/mq/groups/g1/:send", "/api/hubs/mq/:send"] {
        let a = rest
            .call(
                reqwest::Method::POST,
                path,
                Some(("text/plain", path.as_bytes().to_vec())),
            )
            .await;
        assert!(a.status < 300);
    }
    let (topic, _, _) = m.publish_received().await;
    assert_eq!(topic, mqtt::SERVER_MESSAGES_TOPIC);
}

#[tokio::test]
async fn unsupported_features_are_refused_with_azure_reason_codes() {
    let hub = Hub::start();
    let (mut m, ack) = v5_client(&hub, "five", ALL_ROLES).await;
    let props = ack.properties.expect("CONNACK properties");
    assert_eq!(props.retain_available, Some(0));
    assert_eq!(props.wildcard_subscription_available, Some(0));
    assert_eq!(props.shared_subscription_available, Some(0));
    let mut s = v5::Subscribe::new_many(
        [
            v5::Filter::new("a/+", QoS5::AtLeastOnce),
            v5::Filter::new("$share/x/a", QoS5::AtLeastOnce),
            v5::Filter::new("ok", QoS5::AtMostOnce),
        ],
        None,
    );
    s.pkid = 3;
    m.send(Packet::V5(v5::Packet::Subscribe(s))).await;
    let Some(Packet::V5(v5::Packet::SubAck(sa))) = m.next().await else {
        panic!("SUBACK")
    };
    assert_eq!(
        sa.return_codes,
        vec![
            v5::SubscribeReasonCode::WildcardSubscriptionsNotSupported,
            v5::SubscribeReasonCode::SharedSubscriptionsNotSupported,
            v5::SubscribeReasonCode::Success(QoS5::AtMostOnce),
        ]
    );
    assert!(sa.properties.and_then(|p| p.reason_string).is_some());

    // Retain: DISCONNECT 0x9A.
    let mut p = v5::Publish::new("ok", QoS5::AtMostOnce, "x", None);
    p.retain = true;
    m.send(Packet::V5(v5::Packet::Publish(p))).await;
    let (packets, _) = m.closed().await;
    assert!(
        packets.iter().any(|p| matches!(p, Packet::V5(v5::Packet::Disconnect(d)) if d.reason_code == v5::DisconnectReasonCode::RetainNotSupported)),
        "{packets:?}"
    );

    // Topic alias: DISCONNECT 0x94.
    let (mut m, _) = v5_client(&hub, "five", ALL_ROLES).await;
    let props = v5::PublishProperties {
        topic_alias: Some(1),
        ..Default::default()
    };
    m.send(publish_v5("ok", 1, Some(props))).await;
    let (packets, _) = m.closed().await;
    assert!(
        packets.iter().any(|p| matches!(p, Packet::V5(v5::Packet::Disconnect(d)) if d.reason_code == v5::DisconnectReasonCode::TopicAliasInvalid)),
        "{packets:?}"
    );

    // Without roles: SUBACK 0x87 and PUBACK 0x87.
    let (mut m, _) = v5_client(&hub, "norole", &[]).await;
    m.send(subscribe_v5(4, "g")).await;
    let Some(Packet::V5(v5::Packet::SubAck(sa))) = m.next().await else {
        panic!("SUBACK")
    };
    assert_eq!(
        sa.return_codes,
        vec![v5::SubscribeReasonCode::NotAuthorized]
    );
    m.send(publish_v5("g", 9, None)).await;
    let Some(Packet::V5(v5::Packet::PubAck(pa))) = m.next().await else {
        panic!("PUBACK")
    };
    assert_eq!((pa.pkid, pa.reason), (9, v5::PubAckReason::NotAuthorized));

    // 3.1.1: a refused subscription is 0x80.
    let mut m = v4_client(&hub, "old", ALL_ROLES).await;
    m.send(subscribe_v4(5, "a/#", QoS4::AtMostOnce)).await;
    assert_eq!(
        m.next().await,
        Some(Packet::V4(v4::Packet::SubAck(v4::SubAck::new(
            5,
            vec![v4::SubscribeReasonCode::Failure]
        ))))
    );
}

#[tokio::test]
async fn bad_tokens_are_refused_on_the_upgrade() {
    let hub = Hub::start();
    let base = hub.endpoint().replacen("http", "ws", 1);
    let (status, _) = refused(&format!("{base}/clients/mqtt/hubs/{HUB}"), Some("mqtt")).await;
    assert_eq!(status, 401);
    let (status, _) = refused(&hub.mqtt_url(HUB, "not-a-token"), Some("mqtt")).await;
    assert_eq!(status, 401);
    // A token for the Web PubSub endpoint is not one for MQTT.
    let wrong = hub.token(HUB, Some("u"), &[], &[]);
    let (status, _) = refused(&hub.mqtt_url(HUB, &wrong), Some("mqtt")).await;
    assert_eq!(status, 401);
    // No `mqtt` subprotocol: 400.
    let good = hub.mqtt_token(HUB, Some("u"), &[]);
    let (status, _) = refused(&hub.mqtt_url(HUB, &good), Some(JSON)).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn connect_rules_assigned_ids_and_protocol_errors() {
    let hub = Hub::start();
    // MQTT 5: an empty client id is assigned, and is the connection id.
    let (mut m, ack) = v5_client(&hub, "", ALL_ROLES).await;
    let id = ack
        .properties
        .and_then(|p| p.assigned_client_identifier)
        .expect("assigned client id");
    assert!(mqtt::valid_client_id(&id));
    let a = hub
        .rest(0)
        .call(
            reqwest::Method::HEAD,
            &format!("/api/hubs/mq/connections/{id}"),
            None,
        )
        .await;
    assert_eq!(a.status, 200);
    // A second CONNECT: DISCONNECT 0x82.
    m.send(connect_v5("again", 30)).await;
    let (packets, _) = m.closed().await;
    assert!(
        packets.iter().any(|p| matches!(p, Packet::V5(v5::Packet::Disconnect(d)) if d.reason_code == v5::DisconnectReasonCode::ProtocolError)),
        "{packets:?}"
    );

    // 3.1.1: keep-alive beyond 180 s and bad client ids are refused in the CONNACK.
    let url = hub.mqtt_url(HUB, &hub.mqtt_token(HUB, None, &[]));
    let (_, ack) = Mqtt::connect(&url, connect_v4("k", 600, None)).await;
    assert!(
        matches!(ack, Packet::V4(v4::Packet::ConnAck(a)) if a.code != v4::ConnectReturnCode::Success)
    );
    let (_, ack) = Mqtt::connect(&url, connect_v4("bad id!", 30, None)).await;
    assert!(
        matches!(ack, Packet::V4(v4::Packet::ConnAck(a)) if a.code == v4::ConnectReturnCode::BadClientId)
    );

    // The first packet must be a CONNECT.
    let mut m = open(&url, Version::V311).await.expect("upgrade");
    m.send(Packet::V4(v4::Packet::PingReq)).await;
    let (packets, code) = m.closed().await;
    assert!(packets.is_empty());
    assert!(code.is_some());
}

#[tokio::test]
async fn packets_span_frames_and_share_them() {
    let hub = Hub::start();
    let url = hub.mqtt_url(HUB, &hub.mqtt_token(HUB, Some("u"), ALL_ROLES));
    let mut m = open(&url, Version::V311).await.expect("upgrade");
    let mut all = BytesMut::new();
    for p in [
        connect_v4("split", 30, None),
        subscribe_v4(1, "s", QoS4::AtMostOnce),
        publish_v4("s", QoS4::AtMostOnce, 0, b"one"),
    ] {
        all.extend_from_slice(&mqtt::write(&p).unwrap());
    }
    let all = all.freeze();
    // Three packets in two frames, split inside the first.
    m.send_bytes(all.slice(..5)).await;
    m.send_bytes(all.slice(5..)).await;
    assert!(matches!(
        m.next().await,
        Some(Packet::V4(v4::Packet::ConnAck(_)))
    ));
    assert!(matches!(
        m.next().await,
        Some(Packet::V4(v4::Packet::SubAck(_)))
    ));
    let (topic, body, qos) = m.publish_received().await;
    assert_eq!((topic.as_str(), &body[..], qos), ("s", &b"one"[..], 0));

    // A packet larger than the hub's frame limit closes the connection.
    let mut header = BytesMut::from(&[0x30u8, 0xff, 0xff, 0xff, 0x7f][..]);
    header.extend_from_slice(&[0; 16]);
    m.send_bytes(header.freeze()).await;
    let (_, code) = m.closed().await;
    assert_eq!(code, Some(1009));
}

#[tokio::test]
async fn qos2_from_a_client_is_published_once() {
    let hub = Hub::start();
    let mut m = v4_client(&hub, "q2", ALL_ROLES).await;
    m.send(subscribe_v4(1, "t", QoS4::ExactlyOnce)).await;
    m.next().await;
    let p = publish_v4("t", QoS4::ExactlyOnce, 11, b"once");
    m.send(p.clone()).await;
    assert_eq!(
        m.next().await,
        Some(Packet::V4(v4::Packet::PubRec(v4::PubRec::new(11))))
    );
    // Sent again before PUBREL (as after a lost PUBREC): acknowledged, not published again.
    let (topic, body, qos) = m.publish_received().await;
    assert_eq!((topic.as_str(), &body[..], qos), ("t", &b"once"[..], 1));
    m.send(p).await;
    assert_eq!(
        m.next().await,
        Some(Packet::V4(v4::Packet::PubRec(v4::PubRec::new(11))))
    );
    m.send(Packet::V4(v4::Packet::PubRel(v4::PubRel::new(11))))
        .await;
    assert_eq!(
        m.next().await,
        Some(Packet::V4(v4::Packet::PubComp(v4::PubComp::new(11))))
    );
    m.send(Packet::V4(v4::Packet::PingReq)).await;
    assert_eq!(m.next().await, Some(Packet::V4(v4::Packet::PingResp)));
}

#[tokio::test]
async fn last_will_on_an_abrupt_close_only_and_keep_alive() {
    let hub = Hub::start();
    let mut watcher = v4_client(&hub, "watcher", ALL_ROLES).await;
    watcher
        .send(subscribe_v4(1, "wills", QoS4::AtMostOnce))
        .await;
    watcher.next().await;

    let url = hub.mqtt_url(HUB, &hub.mqtt_token(HUB, Some("w"), ALL_ROLES));
    // A DISCONNECT: no will.
    let (mut polite, _) = Mqtt::connect(
        &url,
        connect_v4("polite", 30, Some(("wills", "polite-will"))),
    )
    .await;
    polite.send(Packet::V4(v4::Packet::Disconnect)).await;
    polite.closed().await;
    // An abrupt close: the will.
    let (rude, _) = Mqtt::connect(&url, connect_v4("rude", 30, Some(("wills", "rude-will")))).await;
    rude.drop_socket();
    let (topic, body, _) = watcher.publish_received().await;
    assert_eq!((topic.as_str(), &body[..]), ("wills", &b"rude-will"[..]));

    // Keep-alive 1 s: closed after 1.5 s of silence, with the will.
    let (mut quiet, _) =
        Mqtt::connect(&url, connect_v4("quiet", 1, Some(("wills", "quiet-will")))).await;
    let started = std::time::Instant::now();
    quiet.closed().await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(1400));
    let (_, body, _) = watcher.publish_received().await;
    assert_eq!(&body[..], b"quiet-will");

    // MQTT 5 hears why.
    let url5 = hub.mqtt_url(HUB, &hub.mqtt_token(HUB, None, &[]));
    let (mut five, _) = Mqtt::connect(&url5, connect_v5("quiet5", 1)).await;
    let (packets, _) = five.closed().await;
    assert!(
        packets.iter().any(|p| matches!(p, Packet::V5(v5::Packet::Disconnect(d)) if d.reason_code == v5::DisconnectReasonCode::KeepAliveTimeout)),
        "{packets:?}"
    );
}
