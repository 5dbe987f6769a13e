//! The three wire dialects the load generator speaks with one client implementation.
//!
//! Nerve speaks the Azure `json.webpubsub.azure.v1` subprotocol (its frames come from
//! `nerve-protocol`), the peer speaks Socket.IO v4 over a plain WebSocket (engine.io packet
//! types in the first character), and the raw-limit server takes and sends bare payload frames.
//! This module is the pure encoding and classification of frames; the connection loop in
//! `client` drives it.

use nerve_protocol::{ClientFrame, Payload, ServerFrame, subprotocol};
use serde::{Deserialize, Serialize};

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
}

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
        }
    }

    /// The subprotocol to offer on the upgrade, if any.
    pub fn subprotocol(self) -> Option<&'static str> {
        match self {
            Dialect::Azure => Some(subprotocol::JSON),
            Dialect::SocketIo | Dialect::Raw => None,
        }
    }

    /// The frame that joins `group`, or `None` when joining happens in the URL (raw).
    pub fn join_frame(self, group: &str) -> Option<String> {
        match self {
            Dialect::Azure => Some(
                ClientFrame::JoinGroup {
                    group: group.to_string(),
                    ack_id: Some(1),
                    after: None,
                }
                .to_json(),
            ),
            Dialect::SocketIo => Some(format!(r#"421["join",{}]"#, json_str(group))),
            Dialect::Raw => None,
        }
    }

    /// The frame that publishes `payload` to `group` (the sender is a member and gets it too).
    pub fn publish_frame(self, group: &str, payload: &str) -> String {
        match self {
            Dialect::Azure => ClientFrame::SendToGroup {
                group: group.to_string(),
                ack_id: None,
                no_echo: false,
                ttl_seconds: 0,
                payload: Payload::text(payload),
            }
            .to_json(),
            Dialect::SocketIo => {
                format!(r#"42["publish",{},{}]"#, json_str(group), json_str(payload))
            }
            Dialect::Raw => payload.to_string(),
        }
    }

    /// Classifies an incoming text frame.
    pub fn classify(self, text: &str) -> Incoming {
        if let Some(stamp) = payload::parse(text) {
            return Incoming::Payload(stamp);
        }
        match self {
            Dialect::Azure => classify_azure(text),
            Dialect::SocketIo => classify_socketio(text),
            Dialect::Raw if text == "joined" => Incoming::Joined,
            Dialect::Raw => Incoming::Other,
        }
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
            .and_then(|f| serde_json::from_str(&f).ok());
        assert_eq!(
            join,
            Some(serde_json::json!({"ackId": 1, "group": "g", "type": "joinGroup"}))
        );
        let p = payload::build(1, 2, 10);
        let v: serde_json::Value = serde_json::from_str(&d.publish_frame("g", &p)).unwrap();
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
        assert_eq!(d.join_frame("r1").as_deref(), Some(r#"421["join","r1"]"#));
        let p = payload::build(7, 8, 0);
        let frame = format!(r#"42["message","{p}"]"#);
        assert_eq!(
            d.classify(&frame),
            Incoming::Payload(Stamp {
                ts_nanos: 7,
                src: 8
            })
        );
        assert_eq!(d.publish_frame("r", "a"), r#"42["publish","r","a"]"#);
    }

    #[test]
    fn raw_frames_are_bare() {
        let d = Dialect::Raw;
        assert_eq!(d.path("h", Some("g7")), "/raw/g7");
        assert_eq!(d.join_frame("g"), None);
        assert_eq!(d.publish_frame("g", "abc"), "abc");
        assert_eq!(d.classify("joined"), Incoming::Joined);
    }
}
