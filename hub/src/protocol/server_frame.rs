//! Encoding of hub → client frames of the JSON subprotocols.
//!
//! Message frames are built once per message and shared by every recipient; the reliable
//! protocol's per-connection `sequenceId` is spliced in front at write time, so fan-out never
//! re-encodes.

use serde::Serialize;

use super::payload::Payload;

/// Who a message comes from, as the `from` field says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum From<'a> {
    /// A group message, with the sender's user id if any.
    Group {
        /// The group.
        group: &'a str,
        /// The sending user, if it had one.
        from_user_id: Option<&'a str>,
    },
    /// A message from the server (REST or upstream reply).
    Server,
}

/// Encodes a `type:"message"` frame without its `sequenceId`.
pub fn message(from: From<'_>, payload: &Payload) -> String {
    let data = std::str::from_utf8(&payload.json).unwrap_or("null");
    let mut out = String::with_capacity(96 + data.len());
    out.push_str(r#"{"type":"message","from":"#);
    match from {
        From::Group {
            group,
            from_user_id,
        } => {
            out.push_str(r#""group","group":"#);
            push_json(&mut out, group);
            if let Some(u) = from_user_id {
                out.push_str(r#","fromUserId":"#);
                push_json(&mut out, u);
            }
        }
        From::Server => out.push_str(r#""server""#),
    }
    out.push_str(r#","dataType":""#);
    out.push_str(payload.data_type.as_str());
    out.push_str(r#"","data":"#);
    out.push_str(data);
    out.push('}');
    out
}

/// Splices `"sequenceId":N` into a frame produced by [`message`].
pub fn with_sequence_id(frame: &str, sequence_id: u64) -> String {
    use std::fmt::Write;
    let rest = frame.get(1..).unwrap_or_default();
    let mut out = String::with_capacity(frame.len() + 24);
    // Writing into a String cannot fail.
    let _ = write!(out, "{{\"sequenceId\":{sequence_id},{rest}");
    out
}

fn push_json(out: &mut String, s: &str) {
    // Serializing a &str cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Connected<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    event: &'static str,
    connection_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reconnection_token: Option<&'a str>,
}

/// `{"type":"system","event":"connected",…}`
pub fn connected(
    connection_id: &str,
    user_id: Option<&str>,
    reconnection_token: Option<&str>,
) -> String {
    to_string(&Connected {
        kind: "system",
        event: "connected",
        connection_id,
        user_id,
        reconnection_token,
    })
}

#[derive(Serialize)]
struct Disconnected<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    event: &'static str,
    message: &'a str,
}

/// `{"type":"system","event":"disconnected","message":…}`
pub fn disconnected(message: &str) -> String {
    to_string(&Disconnected {
        kind: "system",
        event: "disconnected",
        message,
    })
}

/// Error names used in acks and responses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ErrorName {
    /// The connection lacks the role.
    Forbidden,
    /// The ack id was used before.
    Duplicate,
    /// The frame is malformed or invalid.
    BadRequest,
    /// Nothing handles the request.
    NotFound,
    /// The upstream did not answer in time.
    Timeout,
    /// The hub failed.
    InternalServerError,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    name: ErrorName,
    message: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Ack<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    ack_id: u64,
    success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorBody<'a>>,
}

/// A successful ack.
pub fn ack_ok(ack_id: u64) -> String {
    to_string(&Ack {
        kind: "ack",
        ack_id,
        success: true,
        error: None,
    })
}

/// A failed ack with an error name and message.
pub fn ack_err(ack_id: u64, name: ErrorName, message: &str) -> String {
    to_string(&Ack {
        kind: "ack",
        ack_id,
        success: false,
        error: Some(ErrorBody { name, message }),
    })
}

/// `{"type":"pong"}`
pub fn pong() -> &'static str {
    r#"{"type":"pong"}"#
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InvokeResponse<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    invocation_id: &'a str,
    success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a serde_json::value::RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorBody<'a>>,
}

/// A failed `invokeResponse`.
pub fn invoke_err(invocation_id: &str, name: ErrorName, message: &str) -> String {
    to_string(&InvokeResponse {
        kind: "invokeResponse",
        invocation_id,
        success: false,
        data_type: None,
        data: None,
        error: Some(ErrorBody { name, message }),
    })
}

/// A successful `invokeResponse` carrying a payload.
pub fn invoke_ok(invocation_id: &str, payload: Option<&Payload>) -> String {
    let raw = payload.and_then(|p| {
        std::str::from_utf8(&p.json)
            .ok()
            .and_then(|s| serde_json::value::RawValue::from_string(s.to_string()).ok())
    });
    to_string(&InvokeResponse {
        kind: "invokeResponse",
        invocation_id,
        success: true,
        data_type: payload.map(|p| p.data_type.as_str()),
        data: raw.as_deref(),
        error: None,
    })
}

/// `{"type":"streamClosed","streamId":…,"error":{…}}` for stream frames the hub does not run.
pub fn stream_closed(stream_id: &str, name: &str, message: &str) -> String {
    serde_json::json!({
        "type": "streamClosed",
        "streamId": stream_id,
        "error": {"name": name, "message": message},
    })
    .to_string()
}

fn to_string<T: Serialize>(v: &T) -> String {
    // These structs hold only strings, numbers and bools; serialization cannot fail.
    serde_json::to_string(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::DataType;
    use bytes::Bytes;
    use serde_json::{Value, json};

    #[test]
    fn group_message_is_valid_json_and_sequence_id_splices_in() {
        let p = Payload::text("hi \"you\"");
        let f = message(
            From::Group {
                group: "g\"1",
                from_user_id: Some("u"),
            },
            &p,
        );
        let v: Value = serde_json::from_str(&f).unwrap();
        assert_eq!(
            v,
            json!({"type":"message","from":"group","group":"g\"1","fromUserId":"u","dataType":"text","data":"hi \"you\""})
        );
        let s = with_sequence_id(&f, 42);
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["sequenceId"], 42);
        assert_eq!(v["group"], "g\"1");
    }

    #[test]
    fn server_message_and_system_frames() {
        let p = Payload::from_body(DataType::Json, Bytes::from_static(b"{\"x\":1}")).unwrap();
        let v: Value = serde_json::from_str(&message(From::Server, &p)).unwrap();
        assert_eq!(
            v,
            json!({"type":"message","from":"server","dataType":"json","data":{"x":1}})
        );
        let v: Value = serde_json::from_str(&connected("c", None, Some("t"))).unwrap();
        assert_eq!(
            v,
            json!({"type":"system","event":"connected","connectionId":"c","reconnectionToken":"t"})
        );
        let v: Value = serde_json::from_str(&ack_err(3, ErrorName::Forbidden, "no")).unwrap();
        assert_eq!(
            v,
            json!({"type":"ack","ackId":3,"success":false,"error":{"name":"Forbidden","message":"no"}})
        );
        let v: Value = serde_json::from_str(&invoke_ok("1", Some(&p))).unwrap();
        assert_eq!(
            v,
            json!({"type":"invokeResponse","invocationId":"1","success":true,"dataType":"json","data":{"x":1}})
        );
    }
}
