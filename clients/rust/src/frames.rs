//! Frames of the JSON Web PubSub subprotocols, as plain data with no I/O: what the client
//! sends (`joinGroup`, `sendToGroup`, `event`, `sequenceAck`, `ping`, `invoke`) and how it reads
//! what the hub sends (`system`, `message`, `ack`, `invokeResponse`, `pong`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

/// Subprotocol with sequence ids and session recovery (the default).
pub const RELIABLE: &str = "json.reliable.webpubsub.azure.v1";
/// Subprotocol without recovery; also the bus socket's subprotocol.
pub const JSON: &str = "json.webpubsub.azure.v1";

/// How a message's `data` is encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Any JSON value (`dataType: json`).
    Json(Value),
    /// A string (`dataType: text`).
    Text(String),
    /// Bytes (`dataType: binary`, base64 on the wire).
    Binary(Vec<u8>),
}

impl Payload {
    /// The wire `dataType` and `data`.
    pub fn to_wire(&self) -> (&'static str, Value) {
        match self {
            Payload::Json(v) => ("json", v.clone()),
            Payload::Text(s) => ("text", Value::String(s.clone())),
            Payload::Binary(b) => ("binary", Value::String(STANDARD.encode(b))),
        }
    }

    /// Reads `dataType` + `data` from a frame; binary that is not base64 is an error.
    pub fn from_wire(data_type: Option<&str>, data: Option<&Value>) -> Result<Payload, String> {
        let data = data.cloned().unwrap_or(Value::Null);
        match data_type.unwrap_or("json") {
            "text" => match data {
                Value::String(s) => Ok(Payload::Text(s)),
                other => Ok(Payload::Text(other.to_string())),
            },
            "binary" | "protobuf" => {
                let s = data.as_str().ok_or("binary data is not a string")?;
                STANDARD
                    .decode(s)
                    .map(Payload::Binary)
                    .map_err(|e| format!("binary data is not base64: {e}"))
            }
            _ => Ok(Payload::Json(data)),
        }
    }
}

/// A group or server message delivered to this client.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// `Some(group)` for group messages, `None` for server messages.
    pub group: Option<String>,
    /// The sender's user id (group messages).
    pub from_user_id: Option<String>,
    /// The payload.
    pub payload: Payload,
    /// The sequence id on the reliable protocol.
    pub sequence_id: Option<u64>,
}

/// A frame from the hub, reduced to what the client acts on.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// `system/connected`.
    Connected {
        /// The connection id.
        connection_id: String,
        /// The user id from the token.
        user_id: Option<String>,
        /// Present on the reliable protocol.
        reconnection_token: Option<String>,
    },
    /// `system/disconnected` with its reason.
    Disconnected(String),
    /// A group or server message.
    Message(Message),
    /// An ack: `Ok` or the error object.
    Ack(u64, Result<(), Value>),
    /// An invokeResponse: the data or the error object.
    InvokeResponse(String, Result<Value, Value>),
    /// `pong`, the answer to `ping`.
    Pong,
    /// A frame type this client does not use.
    Other,
}

/// Parses one text frame; `Err` for invalid JSON or a malformed message.
pub fn parse(text: &str) -> Result<Incoming, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON frame: {e}"))?;
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    Ok(
        match v.get("type").and_then(Value::as_str).unwrap_or_default() {
            "system" => match v.get("event").and_then(Value::as_str) {
                Some("connected") => Incoming::Connected {
                    connection_id: s("connectionId").ok_or("connected without connectionId")?,
                    user_id: s("userId"),
                    reconnection_token: s("reconnectionToken"),
                },
                Some("disconnected") => Incoming::Disconnected(s("message").unwrap_or_default()),
                _ => Incoming::Other,
            },
            "message" => Incoming::Message(Message {
                group: (v.get("from").and_then(Value::as_str) == Some("group"))
                    .then(|| s("group"))
                    .flatten(),
                from_user_id: s("fromUserId"),
                payload: Payload::from_wire(
                    v.get("dataType").and_then(Value::as_str),
                    v.get("data"),
                )?,
                sequence_id: v.get("sequenceId").and_then(Value::as_u64),
            }),
            "ack" => {
                let id = v
                    .get("ackId")
                    .and_then(Value::as_u64)
                    .ok_or("ack without ackId")?;
                let ok = v.get("success").and_then(Value::as_bool) == Some(true);
                Incoming::Ack(
                    id,
                    if ok {
                        Ok(())
                    } else {
                        Err(v.get("error").cloned().unwrap_or(Value::Null))
                    },
                )
            }
            "pong" => Incoming::Pong,
            "invokeResponse" => {
                let id = match v.get("invocationId") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    _ => return Err("invokeResponse without invocationId".into()),
                };
                let ok = v.get("success").and_then(Value::as_bool) == Some(true);
                let r = if ok {
                    Ok(v.get("data").cloned().unwrap_or(Value::Null))
                } else {
                    Err(v.get("error").cloned().unwrap_or(Value::Null))
                };
                Incoming::InvokeResponse(id, r)
            }
            _ => Incoming::Other,
        },
    )
}

/// `joinGroup`.
pub fn join_group(group: &str, ack_id: u64) -> Value {
    json!({"type": "joinGroup", "group": group, "ackId": ack_id})
}

/// `leaveGroup`.
pub fn leave_group(group: &str, ack_id: u64) -> Value {
    json!({"type": "leaveGroup", "group": group, "ackId": ack_id})
}

/// `sendToGroup`.
pub fn send_to_group(group: &str, payload: &Payload, no_echo: bool, ack_id: Option<u64>) -> Value {
    let (data_type, data) = payload.to_wire();
    let mut f = json!({"type": "sendToGroup", "group": group, "dataType": data_type,
                       "data": data, "noEcho": no_echo});
    if let Some(id) = ack_id {
        f["ackId"] = id.into();
    }
    f
}

/// `event`.
pub fn event(name: &str, payload: &Payload, ack_id: Option<u64>) -> Value {
    let (data_type, data) = payload.to_wire();
    let mut f = json!({"type": "event", "event": name, "dataType": data_type, "data": data});
    if let Some(id) = ack_id {
        f["ackId"] = id.into();
    }
    f
}

/// `sequenceAck`.
pub fn sequence_ack(sequence_id: u64) -> Value {
    json!({"type": "sequenceAck", "sequenceId": sequence_id})
}

/// `ping`.
pub fn ping() -> Value {
    json!({"type": "ping"})
}

/// `invoke` of a bus operation.
pub fn invoke(invocation_id: &str, op: &str, data: Value) -> Value {
    json!({"type": "invoke", "invocationId": invocation_id, "event": op,
           "dataType": "json", "data": data})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_through_the_wire_form() {
        for p in [
            Payload::Json(json!({"a": [1, 2]})),
            Payload::Text("hi".into()),
            Payload::Binary(vec![0, 1, 255]),
        ] {
            let (t, d) = p.to_wire();
            assert_eq!(Payload::from_wire(Some(t), Some(&d)), Ok(p));
        }
        assert!(Payload::from_wire(Some("binary"), Some(&json!("***"))).is_err());
    }

    #[test]
    fn parses_hub_frames() {
        let m = parse(
            r#"{"type":"message","from":"group","group":"g","fromUserId":"u","dataType":"text","data":"x","sequenceId":7}"#,
        );
        assert_eq!(
            m,
            Ok(Incoming::Message(Message {
                group: Some("g".into()),
                from_user_id: Some("u".into()),
                payload: Payload::Text("x".into()),
                sequence_id: Some(7),
            }))
        );
        let a = parse(
            r#"{"type":"ack","ackId":3,"success":false,"error":{"name":"Forbidden","message":"no"}}"#,
        );
        assert!(matches!(a, Ok(Incoming::Ack(3, Err(e))) if e["name"] == "Forbidden"));
        let i =
            parse(r#"{"type":"invokeResponse","invocationId":4,"success":true,"data":{"x":1}}"#);
        assert_eq!(
            i,
            Ok(Incoming::InvokeResponse("4".into(), Ok(json!({"x": 1}))))
        );
        assert!(parse("not json").is_err());
        assert!(parse(r#"{"type":"ack"}"#).is_err());
        assert_eq!(parse(r#"{"type":"pong"}"#), Ok(Incoming::Pong));
        assert_eq!(parse(r#"{"type":"streamAck"}"#), Ok(Incoming::Other));
    }
}
