//! Server frames as JSON text: written by the hub, parsed by clients.
//!
//! A message frame is written once and shared by every recipient; the reliable protocol's
//! per-connection `sequenceId` is spliced in front at write time ([`with_sequence_id`]), so
//! fan-out never re-encodes.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::Id;
use super::client::with_data;
use super::object::Object;
use crate::payload::{DataType, Payload};
use crate::server_frame::{ErrorBody, MessageFrame, Sender, ServerFrame};

/// Why a client could not read a frame from the service.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ServerFrameError(pub String);

impl ServerFrame<'_> {
    /// The frame as JSON text, as the service sends it.
    pub fn to_json(&self) -> String {
        match self {
            ServerFrame::Connected {
                connection_id,
                user_id,
                reconnection_token,
            } => Object::new("system", 96)
                .str("event", "connected")
                .str("connectionId", connection_id)
                .opt_str("userId", user_id.as_deref())
                .opt_str("reconnectionToken", reconnection_token.as_deref())
                .finish(),
            ServerFrame::Disconnected { message } => Object::new("system", message.len() + 48)
                .str("event", "disconnected")
                .str("message", message)
                .finish(),
            ServerFrame::Message(m) => message(m),
            ServerFrame::Ack { ack_id, error } => {
                let o = Object::new("ack", 48)
                    .u64("ackId", *ack_id)
                    .bool("success", error.is_none());
                with_error(o, error.as_ref()).finish()
            }
            ServerFrame::InvokeResponse {
                invocation_id,
                result,
            } => {
                let o = Object::new("invokeResponse", 64).str("invocationId", invocation_id);
                match result {
                    Ok(data) => {
                        let o = o.bool("success", true);
                        match data {
                            Some(p) => with_data(o, p),
                            None => o,
                        }
                    }
                    Err(e) => with_error(o.bool("success", false), Some(e)),
                }
                .finish()
            }
            ServerFrame::Pong => Object::new("pong", 0).finish(),
            ServerFrame::StreamClosed { stream_id, error } => {
                let o = Object::new("streamClosed", 64).str("streamId", stream_id);
                with_error(o, error.as_ref()).finish()
            }
            ServerFrame::Unknown { kind } => Object::new(kind, 0).finish(),
        }
    }

    /// Parses one text frame from the service; `Err` for invalid JSON or a malformed frame.
    pub fn from_json(text: &str) -> Result<ServerFrame<'static>, ServerFrameError> {
        let raw: RawFrame<'_> = serde_json::from_str(text)
            .map_err(|e| ServerFrameError(format!("invalid JSON frame: {e}")))?;
        let fail = |why: &str| ServerFrameError(why.to_string());
        let kind = raw.kind.unwrap_or_default();
        Ok(match kind.as_str() {
            "system" => match raw.event.as_deref() {
                Some("connected") => ServerFrame::Connected {
                    connection_id: Cow::Owned(
                        raw.connection_id
                            .ok_or_else(|| fail("connected without connectionId"))?,
                    ),
                    user_id: raw.user_id.map(Cow::Owned),
                    reconnection_token: raw.reconnection_token.map(Cow::Owned),
                },
                Some("disconnected") => ServerFrame::Disconnected {
                    message: Cow::Owned(raw.message.unwrap_or_default()),
                },
                _ => ServerFrame::Unknown {
                    kind: Cow::Owned(kind),
                },
            },
            "message" => {
                let from = match raw.from.as_deref() {
                    Some("group") => Sender::Group {
                        group: Cow::Owned(raw.group.unwrap_or_default()),
                        from_user_id: raw.from_user_id.map(Cow::Owned),
                    },
                    _ => Sender::Server,
                };
                let metadata = raw
                    .metadata
                    .map(crate::Metadata::from_json)
                    .transpose()
                    .map_err(|e| fail(&e.to_string()))?
                    .unwrap_or_default();
                let payload = data(raw.data_type.as_deref(), raw.data)?
                    .ok_or_else(|| fail("message without data"))?
                    .with_metadata(metadata);
                ServerFrame::Message(MessageFrame {
                    from,
                    payload: Cow::Owned(payload),
                    sequence_id: raw.sequence_id,
                    // An offset that does not parse is not ours: ignore it, as others do.
                    offset: raw
                        .offset
                        .as_deref()
                        .and_then(|o| crate::Offset::parse(o).ok()),
                })
            }
            "ack" => ServerFrame::Ack {
                ack_id: raw.ack_id.ok_or_else(|| fail("ack without ackId"))?,
                error: (raw.success != Some(true)).then(|| error(raw.error)),
            },
            "invokeResponse" => ServerFrame::InvokeResponse {
                invocation_id: Cow::Owned(
                    raw.invocation_id
                        .map(Id::into_string)
                        .ok_or_else(|| fail("invokeResponse without invocationId"))?,
                ),
                result: if raw.success == Some(true) {
                    Ok(data(raw.data_type.as_deref(), raw.data)?.map(Cow::Owned))
                } else {
                    Err(error(raw.error))
                },
            },
            "pong" => ServerFrame::Pong,
            "streamClosed" => ServerFrame::StreamClosed {
                stream_id: Cow::Owned(raw.stream_id.unwrap_or_default()),
                error: raw.error.map(|e| error(Some(e))),
            },
            _ => ServerFrame::Unknown {
                kind: Cow::Owned(kind),
            },
        })
    }
}

/// Encodes a `type:"message"` frame.
fn message(m: &MessageFrame<'_>) -> String {
    let o = Object::new("message", 96 + m.payload.json.len());
    let o = match &m.from {
        Sender::Group {
            group,
            from_user_id,
        } => o
            .str("from", "group")
            .str("group", group)
            .opt_str("fromUserId", from_user_id.as_deref()),
        Sender::Server => o.str("from", "server"),
    };
    let frame = with_data(o, &m.payload).finish();
    let frame = match m.offset {
        Some(offset) => with_offset(&frame, offset),
        None => frame,
    };
    match m.sequence_id {
        Some(id) => with_sequence_id(&frame, id),
        None => frame,
    }
}

/// Splices `"sequenceId":N` into a message frame written without one.
pub fn with_sequence_id(frame: &str, sequence_id: u64) -> String {
    use std::fmt::Write;
    let rest = frame.get(1..).unwrap_or_default();
    let mut out = String::with_capacity(frame.len() + 24);
    // Writing into a String cannot fail.
    let _ = write!(out, "{{\"sequenceId\":{sequence_id},{rest}");
    out
}

/// Splices `"offset":"<ms>-<seq>"` into a message frame written without one.
pub fn with_offset(frame: &str, offset: crate::Offset) -> String {
    use std::fmt::Write;
    let rest = frame.get(1..).unwrap_or_default();
    let mut out = String::with_capacity(frame.len() + 40);
    // Writing into a String cannot fail.
    let _ = write!(out, "{{\"offset\":\"{offset}\",{rest}");
    out
}

fn with_error(o: Object, error: Option<&ErrorBody<'_>>) -> Object {
    let Some(e) = error else { return o };
    let body = Object::untyped(e.message.len() + 32)
        .str("name", &e.name)
        .str("message", &e.message)
        .finish();
    o.raw("error", &body)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawFrame<'a> {
    #[serde(rename = "type")]
    kind: Option<String>,
    event: Option<String>,
    connection_id: Option<String>,
    user_id: Option<String>,
    reconnection_token: Option<String>,
    message: Option<String>,
    from: Option<String>,
    group: Option<String>,
    from_user_id: Option<String>,
    data_type: Option<String>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    sequence_id: Option<u64>,
    offset: Option<String>,
    ack_id: Option<u64>,
    success: Option<bool>,
    error: Option<RawError>,
    invocation_id: Option<Id>,
    stream_id: Option<String>,
    #[serde(borrow)]
    metadata: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawError {
    name: Option<String>,
    message: Option<String>,
}

fn error(e: Option<RawError>) -> ErrorBody<'static> {
    let e = e.unwrap_or(RawError {
        name: None,
        message: None,
    });
    ErrorBody {
        name: Cow::Owned(e.name.unwrap_or_default()),
        message: Cow::Owned(e.message.unwrap_or_default()),
    }
}

fn data(
    data_type: Option<&str>,
    data: Option<&RawValue>,
) -> Result<Option<Payload>, ServerFrameError> {
    let Some(data) = data else { return Ok(None) };
    let data_type = match data_type {
        None => DataType::Json,
        Some(s) => DataType::parse(s)
            .ok_or_else(|| ServerFrameError(format!("unsupported dataType '{s}'")))?,
    };
    Payload::from_frame(data_type, data)
        .map(Some)
        .map_err(|e| ServerFrameError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::close::ErrorName;
    use bytes::Bytes;
    use serde_json::{Value, json};

    fn json_of(f: &ServerFrame<'_>) -> Value {
        serde_json::from_str(&f.to_json()).unwrap()
    }

    #[test]
    fn group_message_is_valid_json_and_sequence_id_splices_in() {
        let p = Payload::text("hi \"you\"");
        let f = ServerFrame::message(Sender::group("g\"1", Some("u")), &p).to_json();
        let v: Value = serde_json::from_str(&f).unwrap();
        assert_eq!(
            v,
            json!({"type":"message","from":"group","group":"g\"1","fromUserId":"u","dataType":"text","data":"hi \"you\""})
        );
        let s = with_sequence_id(&f, 42);
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["sequenceId"], 42);
        assert_eq!(v["group"], "g\"1");
        let o = with_sequence_id(&with_offset(&f, crate::Offset::new(9, 1)), 3);
        match ServerFrame::from_json(&o) {
            Ok(ServerFrame::Message(m)) => {
                assert_eq!(m.offset, Some(crate::Offset::new(9, 1)));
                assert_eq!(m.sequence_id, Some(3));
            }
            other => panic!("not a message: {other:?}"),
        }
    }

    #[test]
    fn server_message_and_system_frames() {
        let p = Payload::from_body(DataType::Json, Bytes::from_static(b"{\"x\":1}")).unwrap();
        assert_eq!(
            json_of(&ServerFrame::message(Sender::Server, &p)),
            json!({"type":"message","from":"server","dataType":"json","data":{"x":1}})
        );
        assert_eq!(
            json_of(&ServerFrame::connected("c", None, Some("t"))),
            json!({"type":"system","event":"connected","connectionId":"c","reconnectionToken":"t"})
        );
        assert_eq!(
            json_of(&ServerFrame::ack(
                3,
                Err(ErrorBody::new(ErrorName::Forbidden, "no"))
            )),
            json!({"type":"ack","ackId":3,"success":false,"error":{"name":"Forbidden","message":"no"}})
        );
        assert_eq!(
            json_of(&ServerFrame::ack(4, Ok(()))),
            json!({"type":"ack","ackId":4,"success":true})
        );
        assert_eq!(
            json_of(&ServerFrame::invoke_ok("1", Some(p.clone()))),
            json!({"type":"invokeResponse","invocationId":"1","success":true,"dataType":"json","data":{"x":1}})
        );
        assert_eq!(
            json_of(&ServerFrame::invoke_err(
                "2",
                ErrorBody::new(ErrorName::NotFound, "none")
            )),
            json!({"type":"invokeResponse","invocationId":"2","success":false,"error":{"name":"NotFound","message":"none"}})
        );
        assert_eq!(
            json_of(&ServerFrame::stream_closed(
                "s",
                ErrorBody::new(ErrorName::BadRequest, "no streams")
            )),
            json!({"type":"streamClosed","streamId":"s","error":{"name":"BadRequest","message":"no streams"}})
        );
        assert_eq!(json_of(&ServerFrame::Pong), json!({"type": "pong"}));
    }

    #[test]
    fn parses_hub_frames() {
        let m = ServerFrame::from_json(
            r#"{"type":"message","from":"group","group":"g","fromUserId":"u","dataType":"text","data":"x","sequenceId":7}"#,
        );
        assert_eq!(
            m,
            Ok(ServerFrame::Message(MessageFrame {
                from: Sender::group("g", Some("u")),
                payload: Cow::Owned(Payload::text("x")),
                sequence_id: Some(7),
                offset: None,
            }))
        );
        let a = ServerFrame::from_json(
            r#"{"type":"ack","ackId":3,"success":false,"error":{"name":"Forbidden","message":"no"}}"#,
        );
        assert!(
            matches!(a, Ok(ServerFrame::Ack { ack_id: 3, error: Some(e) })
            if e.known_name() == Some(ErrorName::Forbidden))
        );
        let i = ServerFrame::from_json(
            r#"{"type":"invokeResponse","invocationId":4,"success":true,"data":{"x":1}}"#,
        );
        let Ok(ServerFrame::InvokeResponse {
            invocation_id,
            result: Ok(Some(data)),
        }) = i
        else {
            panic!("unexpected {i:?}");
        };
        assert_eq!(invocation_id, "4");
        assert_eq!(data.to_value(), Ok(json!({"x": 1})));
        assert!(ServerFrame::from_json("not json").is_err());
        assert!(ServerFrame::from_json(r#"{"type":"ack"}"#).is_err());
        assert_eq!(
            ServerFrame::from_json(r#"{"type":"pong"}"#),
            Ok(ServerFrame::Pong)
        );
        assert!(matches!(
            ServerFrame::from_json(r#"{"type":"streamAck"}"#),
            Ok(ServerFrame::Unknown { kind }) if kind == "streamAck"
        ));
    }

    #[test]
    fn what_the_hub_writes_parses_back() {
        let p = Payload::binary(Bytes::from_static(&[1, 2, 3]));
        let frames = [
            ServerFrame::connected("c", Some("u"), None),
            ServerFrame::disconnected("bye"),
            ServerFrame::message(Sender::Server, &p),
            ServerFrame::ack(1, Ok(())),
            ServerFrame::invoke_ok("9", None),
            ServerFrame::Pong,
        ];
        for f in frames {
            assert_eq!(ServerFrame::from_json(&f.to_json()).as_ref(), Ok(&f));
        }
    }
}
