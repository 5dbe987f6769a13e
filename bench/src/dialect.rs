//! The wire dialects the load generator speaks with one client implementation.
//!
//! Nerve speaks the Azure `json.webpubsub.azure.v1` subprotocol (its frames come from
//! `nerve-protocol`) and MQTT 3.1.1 over WebSocket (packets from the `rumqttc` codec), the peer
//! speaks Socket.IO v4 over a plain WebSocket (engine.io packet types in the first character),
//! and the raw-limit server takes and sends bare payload frames. This module is the pure
//! encoding and classification of frames; the connection loop in `client` drives it.

use std::time::Duration;

use bytes::BytesMut;
use nerve_protocol::{ClientFrame, Payload, ServerFrame, subprotocol};
use rumqttc::mqttbytes::{self, QoS, v4};
use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::Message;

use crate::payload::{self, Stamp};

/// Which server a client talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Dialect {
    /// Nerve: Azure Web PubSub JSON frames.
    Azure,
    /// The peer: Socket.IO v4 over a raw WebSocket.
    SocketIo,
    /// The raw-limit server: bare payload frames.
    Raw,
    /// Nerve's MQTT endpoint: MQTT 3.1.1 packets in binary frames, topic = group.
    Mqtt,
}

/// The keep-alive an MQTT client announces; it pings at half of it.
pub const MQTT_KEEP_ALIVE: Duration = Duration::from_secs(120);
/// Largest MQTT packet a client reads.
const MQTT_MAX_PACKET: usize = 1 << 20;

/// What an incoming text frame means to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A benchmark message.
    Payload(Stamp),
    /// A keep-alive the client must answer with this frame.
    Ping(&'static str),
    /// A join (or connect) was confirmed.
    Joined,
    /// The server refused something; the text says what.
    Refused(String),
    /// MQTT: the CONNACK accepted the connection.
    Accepted,
    /// The Socket.IO open packet; the client must answer with a namespace connect.
    Open,
    /// Anything else (system events, pongs).
    Other,
}

impl Dialect {
    /// The request path (with query, without token) a client in `group` connects to.
    pub fn path(self, hub: &str, group: Option<&str>) -> String {
        match self {
            Dialect::Azure => format!("/client/hubs/{hub}"),
            Dialect::SocketIo => "/socket.io/?EIO=4&transport=websocket".to_string(),
            Dialect::Raw => format!("/raw/{}", group.unwrap_or("_")),
            Dialect::Mqtt => format!("/clients/mqtt/hubs/{hub}"),
        }
    }

    /// The subprotocol to offer on the upgrade, if any.
    pub fn subprotocol(self) -> Option<&'static str> {
        match self {
            Dialect::Azure => Some(subprotocol::JSON),
            Dialect::Mqtt => Some("mqtt"),
            Dialect::SocketIo | Dialect::Raw => None,
        }
    }

    /// The frame a client sends right after the upgrade, if any: MQTT's CONNECT.
    pub fn hello_frame(self, client_id: &str) -> Option<Message> {
        match self {
            Dialect::Mqtt => {
                let mut connect = v4::Connect::new(client_id);
                connect.keep_alive = MQTT_KEEP_ALIVE.as_secs() as u16;
                Some(mqtt_frame(&v4::Packet::Connect(connect)))
            }
            Dialect::Azure | Dialect::SocketIo | Dialect::Raw => None,
        }
    }

    /// The frame that keeps an otherwise silent connection open, and how often to send it.
    pub fn keep_alive(self) -> Option<(Duration, Message)> {
        match self {
            Dialect::Mqtt => Some((MQTT_KEEP_ALIVE / 2, mqtt_frame(&v4::Packet::PingReq))),
            Dialect::Azure | Dialect::SocketIo | Dialect::Raw => None,
        }
    }

    /// The frame that joins `group`, or `None` when joining happens in the URL (raw).
    pub fn join_frame(self, group: &str) -> Option<Message> {
        match self {
            Dialect::Azure => Some(Message::text(
                ClientFrame::JoinGroup {
                    group: group.to_string(),
                    ack_id: Some(1),
                    after: None,
                }
                .to_json(),
            )),
            Dialect::SocketIo => Some(Message::text(format!(r#"421["join",{}]"#, json_str(group)))),
            Dialect::Raw => None,
            Dialect::Mqtt => {
                let mut subscribe = v4::Subscribe::new(group, QoS::AtMostOnce);
                subscribe.pkid = 1;
                Some(mqtt_frame(&v4::Packet::Subscribe(subscribe)))
            }
        }
    }

    /// The frame that publishes `payload` to `group` (the sender is a member and gets it too).
    pub fn publish_frame(self, group: &str, payload: &str) -> Message {
        match self {
            Dialect::Azure => Message::text(
                ClientFrame::SendToGroup {
                    group: group.to_string(),
                    ack_id: None,
                    no_echo: false,
                    ttl_seconds: 0,
                    payload: Payload::text(payload),
                }
                .to_json(),
            ),
            Dialect::SocketIo => Message::text(format!(
                r#"42["publish",{},{}]"#,
                json_str(group),
                json_str(payload)
            )),
            Dialect::Raw => Message::text(payload),
            Dialect::Mqtt => mqtt_frame(&v4::Packet::Publish(v4::Publish::new(
                group,
                QoS::AtMostOnce,
                payload.as_bytes(),
            ))),
        }
    }

    /// Classifies an incoming text frame of a text dialect.
    pub fn classify(self, text: &str) -> Incoming {
        if let Some(stamp) = payload::parse(text) {
            return Incoming::Payload(stamp);
        }
        match self {
            Dialect::Azure => classify_azure(text),
            Dialect::SocketIo => classify_socketio(text),
            Dialect::Raw if text == "joined" => Incoming::Joined,
            Dialect::Raw | Dialect::Mqtt => Incoming::Other,
        }
    }
}

fn mqtt_frame(packet: &v4::Packet) -> Message {
    let mut buf = BytesMut::with_capacity(packet.size() + 5);
    packet
        .write(&mut buf, MQTT_MAX_PACKET)
        .expect("the packets this module builds are valid and far below the limit");
    Message::binary(buf.freeze())
}

/// Turns one connection's incoming frames into [`Incoming`]s: a text frame is one, while MQTT
/// packets may share a frame or span several, so MQTT bytes are buffered until whole.
#[derive(Debug, Default)]
pub struct Decoder {
    pending: Option<Incoming>,
    mqtt: BytesMut,
}

impl Decoder {
    /// Takes one frame; then call [`Decoder::take`] until it answers `None`.
    pub fn push(&mut self, dialect: Dialect, frame: &Message) {
        match (dialect, frame) {
            (Dialect::Mqtt, Message::Binary(b)) => self.mqtt.extend_from_slice(b),
            (Dialect::Mqtt, _) => {}
            (d, Message::Text(t)) => self.pending = Some(d.classify(t.as_str())),
            _ => {}
        }
    }

    /// The next meaning of what was pushed, if any is whole yet.
    pub fn take(&mut self) -> Option<Incoming> {
        if let Some(i) = self.pending.take() {
            return Some(i);
        }
        if self.mqtt.is_empty() {
            return None;
        }
        match v4::Packet::read(&mut self.mqtt, MQTT_MAX_PACKET) {
            Ok(packet) => Some(classify_mqtt(packet)),
            Err(mqttbytes::Error::InsufficientBytes(_)) => None,
            Err(e) => {
                self.mqtt.clear();
                Some(Incoming::Refused(format!("bad MQTT packet: {e}")))
            }
        }
    }
}

fn classify_mqtt(packet: v4::Packet) -> Incoming {
    match packet {
        v4::Packet::Publish(p) => std::str::from_utf8(&p.payload)
            .ok()
            .and_then(payload::parse)
            .map_or(Incoming::Other, Incoming::Payload),
        v4::Packet::ConnAck(a) if a.code == v4::ConnectReturnCode::Success => Incoming::Accepted,
        v4::Packet::ConnAck(a) => Incoming::Refused(format!("CONNACK {:?}", a.code)),
        v4::Packet::SubAck(a)
            if a.return_codes
                .iter()
                .all(|c| matches!(c, v4::SubscribeReasonCode::Success(_))) =>
        {
            Incoming::Joined
        }
        v4::Packet::SubAck(a) => Incoming::Refused(format!("SUBACK {:?}", a.return_codes)),
        v4::Packet::Disconnect => Incoming::Refused("DISCONNECT".to_string()),
        _ => Incoming::Other,
    }
}

fn classify_azure(text: &str) -> Incoming {
    match ServerFrame::from_json(text) {
        Ok(ServerFrame::Ack { error: None, .. }) => Incoming::Joined,
        Ok(ServerFrame::Ack { error: Some(e), .. }) => {
            Incoming::Refused(format!("{}: {}", e.name, e.message))
        }
        _ => Incoming::Other,
    }
}

fn classify_socketio(text: &str) -> Incoming {
    match text.as_bytes() {
        [b'2', ..] if text.len() == 1 => Incoming::Ping("3"),
        [b'0', ..] => Incoming::Open,
        [b'4', b'0', ..] | [b'4', b'3', b'1', ..] => Incoming::Joined,
        [b'4', b'4', ..] => Incoming::Refused(text.to_string()),
        _ => Incoming::Other,
    }
}

fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_frames_follow_the_reference() {
        let d = Dialect::Azure;
        assert_eq!(d.path("bench", Some("g")), "/client/hubs/bench");
        let join: Option<serde_json::Value> = d
            .join_frame("g")
            .and_then(|f| serde_json::from_str(f.to_text().ok()?).ok());
        assert_eq!(
            join,
            Some(serde_json::json!({"ackId": 1, "group": "g", "type": "joinGroup"}))
        );
        let p = payload::build(1, 2, 10);
        let v: serde_json::Value =
            serde_json::from_str(d.publish_frame("g", &p).to_text().unwrap()).unwrap();
        assert_eq!(v["type"], "sendToGroup");
        assert_eq!(v["data"], p.as_str());
        assert_eq!(
            d.classify(r#"{"type":"ack","ackId":1,"success":true}"#),
            Incoming::Joined
        );
        assert!(matches!(
            d.classify(r#"{"type":"ack","ackId":1,"success":false,"error":{"name":"Forbidden"}}"#),
            Incoming::Refused(_)
        ));
        assert_eq!(
            d.classify(r#"{"type":"system","event":"connected","connectionId":"c"}"#),
            Incoming::Other
        );
    }

    #[test]
    fn socketio_packets_follow_engine_io_v4() {
        let d = Dialect::SocketIo;
        assert_eq!(
            d.classify("0{\"sid\":\"x\",\"pingInterval\":25000}"),
            Incoming::Open
        );
        assert_eq!(d.classify("40{\"sid\":\"y\"}"), Incoming::Joined);
        assert_eq!(d.classify("431[true]"), Incoming::Joined);
        assert_eq!(d.classify("2"), Incoming::Ping("3"));
        assert!(matches!(
            d.classify("44{\"message\":\"no\"}"),
            Incoming::Refused(_)
        ));
        assert_eq!(
            d.join_frame("r1"),
            Some(Message::text(r#"421["join","r1"]"#))
        );
        let p = payload::build(7, 8, 0);
        let frame = format!(r#"42["message","{p}"]"#);
        assert_eq!(
            d.classify(&frame),
            Incoming::Payload(Stamp {
                ts_nanos: 7,
                src: 8
            })
        );
        assert_eq!(
            d.publish_frame("r", "a"),
            Message::text(r#"42["publish","r","a"]"#)
        );
    }

    #[test]
    fn raw_frames_are_bare() {
        let d = Dialect::Raw;
        assert_eq!(d.path("h", Some("g7")), "/raw/g7");
        assert_eq!(d.join_frame("g"), None);
        assert_eq!(d.publish_frame("g", "abc"), Message::text("abc"));
        assert_eq!(d.classify("joined"), Incoming::Joined);
    }

    fn mqtt_packet(frame: Message) -> v4::Packet {
        let mut bytes = BytesMut::from(&frame.into_data()[..]);
        v4::Packet::read(&mut bytes, MQTT_MAX_PACKET).unwrap()
    }

    fn mqtt_bytes(packet: v4::Packet) -> Vec<u8> {
        mqtt_frame(&packet).into_data().to_vec()
    }

    #[test]
    fn mqtt_packets_are_whole_mqtt_3_1_1() {
        let d = Dialect::Mqtt;
        assert_eq!(d.path("bench", Some("g")), "/clients/mqtt/hubs/bench");
        assert_eq!(d.subprotocol(), Some("mqtt"));
        let v4::Packet::Connect(c) = mqtt_packet(d.hello_frame("b7").unwrap()) else {
            panic!("not a CONNECT")
        };
        assert_eq!((c.client_id.as_str(), c.keep_alive), ("b7", 120));
        let v4::Packet::Subscribe(s) = mqtt_packet(d.join_frame("g").unwrap()) else {
            panic!("not a SUBSCRIBE")
        };
        assert_eq!(s.filters[0].path, "g");
        let p = payload::build(5, 6, 20);
        let v4::Packet::Publish(publish) = mqtt_packet(d.publish_frame("g", &p)) else {
            panic!("not a PUBLISH")
        };
        assert_eq!(
            (publish.topic.as_str(), &publish.payload[..]),
            ("g", p.as_bytes())
        );
    }

    #[test]
    fn the_decoder_joins_split_packets_and_splits_joined_ones() {
        let d = Dialect::Mqtt;
        let mut wire = mqtt_bytes(v4::Packet::ConnAck(v4::ConnAck::new(
            v4::ConnectReturnCode::Success,
            false,
        )));
        wire.extend(mqtt_bytes(v4::Packet::SubAck(v4::SubAck::new(
            1,
            vec![v4::SubscribeReasonCode::Success(QoS::AtMostOnce)],
        ))));
        let p = payload::build(9, 3, 40);
        let mut publish = v4::Publish::new("g", QoS::AtLeastOnce, p.as_bytes());
        publish.pkid = 4;
        wire.extend(mqtt_bytes(v4::Packet::Publish(publish)));
        let mut decoder = Decoder::default();
        let mut got = Vec::new();
        // One byte per frame: every packet spans frames, and one frame ends two packets.
        for b in &wire {
            decoder.push(d, &Message::binary(vec![*b]));
            while let Some(i) = decoder.take() {
                got.push(i);
            }
        }
        assert_eq!(
            got,
            vec![
                Incoming::Accepted,
                Incoming::Joined,
                Incoming::Payload(Stamp {
                    ts_nanos: 9,
                    src: 3
                })
            ]
        );
        decoder.push(d, &Message::binary(wire));
        assert_eq!(decoder.take(), Some(Incoming::Accepted));
        assert_eq!(decoder.take(), Some(Incoming::Joined));
        assert!(matches!(decoder.take(), Some(Incoming::Payload(_))));
        assert_eq!(decoder.take(), None);
    }

    #[test]
    fn mqtt_refusals_are_refusals() {
        let mut decoder = Decoder::default();
        let refused = mqtt_bytes(v4::Packet::SubAck(v4::SubAck::new(
            1,
            vec![v4::SubscribeReasonCode::Failure],
        )));
        decoder.push(Dialect::Mqtt, &Message::binary(refused));
        assert!(matches!(decoder.take(), Some(Incoming::Refused(_))));
        decoder.push(Dialect::Mqtt, &Message::binary(vec![0xf0, 0x00]));
        assert!(matches!(decoder.take(), Some(Incoming::Refused(_))));
        assert_eq!(decoder.take(), None);
    }
}
