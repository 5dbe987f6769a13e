//! Client frames as JSON text: parsed by the hub, written by clients.
//!
//! Frames are parsed into one flat struct first, so a frame that fails validation can still be
//! answered on its `ackId`; then each `type` is checked for the fields it needs.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::Id;
use super::object::Object;
use crate::client_frame::{
    ClientFrame, FrameError, MAX_TTL_SECONDS, validate_event_name, validate_group_name,
};
use crate::metadata::Metadata;
use crate::payload::{DataType, Payload, PayloadError};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawFrame<'a> {
    #[serde(rename = "type")]
    kind: Option<String>,
    group: Option<String>,
    ack_id: Option<u64>,
    no_echo: Option<bool>,
    data_type: Option<String>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    event: Option<String>,
    sequence_id: Option<u64>,
    invocation_id: Option<Id>,
    stream_id: Option<String>,
    #[serde(borrow)]
    stream: Option<&'a RawValue>,
    after: Option<String>,
    #[serde(borrow)]
    metadata: Option<&'a RawValue>,
    #[serde(borrow)]
    ttl_seconds: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct AckIdOnly {
    #[serde(rename = "ackId")]
    ack_id: Option<u64>,
}

/// Parses one text frame of `json.webpubsub.azure.v1` / `json.reliable.webpubsub.azure.v1`.
pub fn parse_client_frame(text: &str) -> Result<ClientFrame, FrameError> {
    let raw: RawFrame<'_> = match serde_json::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let ack_id = serde_json::from_str::<AckIdOnly>(text)
                .ok()
                .and_then(|a| a.ack_id);
            return Err(FrameError {
                ack_id,
                reason: format!("invalid frame: {e}"),
            });
        }
    };
    let ack_id = raw.ack_id;
    let fail = |reason: String| FrameError { ack_id, reason };
    let data = || payload(raw.data_type.as_deref(), raw.data).map_err(|e| fail(e.to_string()));
    let metadata = || {
        raw.metadata
            .map(Metadata::from_json)
            .transpose()
            .map(Option::unwrap_or_default)
            .map_err(|e| fail(e.to_string()))
    };
    let kind = raw
        .kind
        .as_deref()
        .ok_or_else(|| fail("frame has no 'type'".into()))?;
    match kind {
        "joinGroup" | "leaveGroup" => {
            let group = valid_group(raw.group).map_err(fail)?;
            Ok(if kind == "joinGroup" {
                let after = raw
                    .after
                    .as_deref()
                    .map(crate::Offset::parse)
                    .transpose()
                    .map_err(|e| fail(e.to_string()))?;
                ClientFrame::JoinGroup {
                    group,
                    ack_id,
                    after,
                }
            } else {
                ClientFrame::LeaveGroup { group, ack_id }
            })
        }
        "sendToGroup" => {
            let group = valid_group(raw.group).map_err(fail)?;
            if let Some(stream) = raw.stream {
                #[derive(Deserialize)]
                struct StreamStart {
                    #[serde(rename = "streamId")]
                    stream_id: Option<String>,
                }
                let stream_id = serde_json::from_str::<StreamStart>(stream.get())
                    .ok()
                    .and_then(|s| s.stream_id);
                return Ok(ClientFrame::Unsupported {
                    kind: "sendToGroup stream".into(),
                    ack_id,
                    stream_id,
                });
            }
            let payload = data()?.with_metadata(metadata()?);
            let ttl_seconds = match raw.ttl_seconds {
                None => 0,
                Some(t) => match t.get().trim().parse::<u64>() {
                    Ok(n) if n <= MAX_TTL_SECONDS => n,
                    _ => {
                        return Err(fail(format!(
                            "'ttlSeconds' must be an integer from 0 to {MAX_TTL_SECONDS}, got {}",
                            t.get()
                        )));
                    }
                },
            };
            Ok(ClientFrame::SendToGroup {
                group,
                ack_id,
                no_echo: raw.no_echo.unwrap_or(false),
                ttl_seconds,
                payload,
            })
        }
        "event" => {
            let event = valid_event(raw.event).map_err(fail)?;
            let payload = data()?.with_metadata(metadata()?);
            Ok(ClientFrame::Event {
                event,
                ack_id,
                payload,
            })
        }
        "invoke" => {
            let invocation_id = raw
                .invocation_id
                .map(Id::into_string)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| fail("'invoke' requires a non-empty 'invocationId'".into()))?;
            let event = valid_event(raw.event).map_err(fail)?;
            let payload = data()?;
            Ok(ClientFrame::Invoke {
                invocation_id,
                event,
                payload,
            })
        }
        "cancelInvocation" => Ok(ClientFrame::CancelInvocation {
            invocation_id: raw
                .invocation_id
                .map(Id::into_string)
                .ok_or_else(|| fail("'cancelInvocation' requires 'invocationId'".into()))?,
        }),
        "sequenceAck" => Ok(ClientFrame::SequenceAck {
            sequence_id: raw
                .sequence_id
                .ok_or_else(|| fail("'sequenceAck' requires a numeric 'sequenceId'".into()))?,
        }),
        "ping" => Ok(ClientFrame::Ping),
        "streamData"
        | "streamEnd"
        | "setGroupState"
        | "subscribeGroupState"
        | "unsubscribeGroupState" => Ok(ClientFrame::Unsupported {
            kind: kind.to_string(),
            ack_id,
            stream_id: raw.stream_id,
        }),
        other => Err(fail(format!("unknown frame type '{other}'"))),
    }
}

fn valid_group(group: Option<String>) -> Result<String, String> {
    let group = group.ok_or_else(|| "frame requires a 'group'".to_string())?;
    validate_group_name(&group)?;
    Ok(group)
}

fn valid_event(event: Option<String>) -> Result<String, String> {
    let event = event.ok_or_else(|| "frame requires an 'event' name".to_string())?;
    validate_event_name(&event)?;
    Ok(event)
}

fn payload(data_type: Option<&str>, data: Option<&RawValue>) -> Result<Payload, PayloadError> {
    let data_type = match data_type {
        None => DataType::Json,
        Some(s) => match DataType::parse(s) {
            Some(DataType::Protobuf) => return Err(PayloadError::ProtobufOutsideProtobuf),
            Some(t) => t,
            None => return Err(PayloadError::UnknownDataType(s.into())),
        },
    };
    let null;
    let data = match data {
        Some(d) => d,
        None => {
            null = RawValue::from_string("null".into())
                .map_err(|e| PayloadError::InvalidJson(e.to_string()))?;
            &null
        }
    };
    Payload::from_frame(data_type, data)
}

impl ClientFrame {
    /// The frame as JSON text, as a client sends it.
    pub fn to_json(&self) -> String {
        match self {
            ClientFrame::JoinGroup {
                group,
                ack_id,
                after,
            } => Object::new(self.kind(), group.len() + 64)
                .str("group", group)
                .opt_u64("ackId", *ack_id)
                .opt_str("after", after.map(|a| a.to_string()).as_deref())
                .finish(),
            ClientFrame::LeaveGroup { group, ack_id } => Object::new(self.kind(), group.len() + 32)
                .str("group", group)
                .opt_u64("ackId", *ack_id)
                .finish(),
            ClientFrame::SendToGroup {
                group,
                ack_id,
                no_echo,
                ttl_seconds,
                payload,
            } => {
                let o = Object::new(self.kind(), group.len() + payload.json.len() + 64)
                    .str("group", group)
                    .opt_u64("ackId", *ack_id);
                let o = if *no_echo { o.bool("noEcho", true) } else { o };
                let o = o.opt_u64("ttlSeconds", Some(*ttl_seconds).filter(|t| *t > 0));
                with_data(o, payload).finish()
            }
            ClientFrame::Event {
                event,
                ack_id,
                payload,
            } => {
                let o = Object::new(self.kind(), event.len() + payload.json.len() + 64)
                    .str("event", event)
                    .opt_u64("ackId", *ack_id);
                with_data(o, payload).finish()
            }
            ClientFrame::Invoke {
                invocation_id,
                event,
                payload,
            } => {
                let o = Object::new(self.kind(), event.len() + payload.json.len() + 80)
                    .str("invocationId", invocation_id)
                    .str("target", "event")
                    .str("event", event);
                with_data(o, payload).finish()
            }
            ClientFrame::CancelInvocation { invocation_id } => Object::new(self.kind(), 32)
                .str("invocationId", invocation_id)
                .finish(),
            ClientFrame::SequenceAck { sequence_id } => Object::new(self.kind(), 32)
                .u64("sequenceId", *sequence_id)
                .finish(),
            ClientFrame::Ping => Object::new(self.kind(), 0).finish(),
            ClientFrame::Unsupported {
                kind,
                ack_id,
                stream_id,
            } => Object::new(kind, 32)
                .opt_u64("ackId", *ack_id)
                .opt_str("streamId", stream_id.as_deref())
                .finish(),
        }
    }
}

/// Adds `dataType` and `data` (a payload's JSON text, which is valid UTF-8 by construction),
/// and `metadata` when the payload has any.
pub(super) fn with_data(o: Object, payload: &Payload) -> Object {
    let data = std::str::from_utf8(&payload.json).unwrap_or("null");
    let o = o
        .str("dataType", payload.data_type.as_str())
        .raw("data", data);
    if payload.metadata.is_empty() {
        o
    } else {
        o.raw("metadata", &payload.metadata.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn parses_every_frame_type() {
        assert_eq!(
            parse_client_frame(r#"{"type":"joinGroup","group":"g","ackId":1}"#),
            Ok(ClientFrame::JoinGroup {
                group: "g".into(),
                ack_id: Some(1),
                after: None,
            })
        );
        assert_eq!(
            parse_client_frame(r#"{"type":"joinGroup","group":"g","after":"17-2"}"#),
            Ok(ClientFrame::JoinGroup {
                group: "g".into(),
                ack_id: None,
                after: Some(crate::Offset::new(17, 2)),
            })
        );
        let e = parse_client_frame(r#"{"type":"joinGroup","group":"g","ackId":2,"after":"x"}"#)
            .unwrap_err();
        assert_eq!(e.ack_id, Some(2));
        assert!(e.reason.contains("not an offset"), "{}", e.reason);
        assert_eq!(
            parse_client_frame(r#"{"type":"leaveGroup","group":"g"}"#),
            Ok(ClientFrame::LeaveGroup {
                group: "g".into(),
                ack_id: None
            })
        );
        match parse_client_frame(
            r#"{"type":"sendToGroup","group":"g","ackId":2,"noEcho":true,"dataType":"text","data":"hi"}"#,
        ) {
            Ok(ClientFrame::SendToGroup {
                group,
                ack_id,
                no_echo,
                payload,
                ..
            }) => {
                assert_eq!((group.as_str(), ack_id, no_echo), ("g", Some(2), true));
                assert_eq!(&payload.raw[..], b"hi");
            }
            other => panic!("unexpected {other:?}"),
        }
        match parse_client_frame(r#"{"type":"event","event":"e","data":{"a":[1,2]}}"#) {
            Ok(ClientFrame::Event { event, payload, .. }) => {
                assert_eq!(event, "e");
                assert_eq!(&payload.json[..], br#"{"a":[1,2]}"#);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            parse_client_frame(r#"{"type":"sequenceAck","sequenceId":7}"#),
            Ok(ClientFrame::SequenceAck { sequence_id: 7 })
        );
        assert_eq!(
            parse_client_frame(r#"{"type":"ping"}"#),
            Ok(ClientFrame::Ping)
        );
        assert!(matches!(
            parse_client_frame(
                r#"{"type":"invoke","invocationId":"1","target":"event","event":"x"}"#
            ),
            Ok(ClientFrame::Invoke { .. })
        ));
        assert!(matches!(
            parse_client_frame(r#"{"type":"invoke","invocationId":7,"event":"x"}"#),
            Ok(ClientFrame::Invoke { invocation_id, .. }) if invocation_id == "7"
        ));
        assert!(matches!(
            parse_client_frame(r#"{"type":"streamData","streamId":"s","streamSequenceId":1}"#),
            Ok(ClientFrame::Unsupported { .. })
        ));
        assert_eq!(
            parse_client_frame(r#"{"type":"sendToGroup","group":"g","stream":{"streamId":"s-1"}}"#),
            Ok(ClientFrame::Unsupported {
                kind: "sendToGroup stream".into(),
                ack_id: None,
                stream_id: Some("s-1".into()),
            })
        );
    }

    #[test]
    fn errors_keep_the_ack_id() {
        let e = parse_client_frame(r#"{"type":"nope","ackId":9}"#).unwrap_err();
        assert_eq!(e.ack_id, Some(9));
        assert!(e.reason.contains("unknown frame type"));
        let e = parse_client_frame(r#"{"type":"joinGroup","ackId":3,"group":7}"#).unwrap_err();
        assert_eq!(e.ack_id, Some(3));
        let e = parse_client_frame(r#"{"type":"joinGroup","ackId":4,"group":"  "}"#).unwrap_err();
        assert_eq!(e.ack_id, Some(4));
        let e = parse_client_frame(
            r#"{"type":"sendToGroup","group":"g","ackId":5,"dataType":"binary","data":"*"}"#,
        )
        .unwrap_err();
        assert_eq!(e.ack_id, Some(5));
        let e = parse_client_frame("{not json").unwrap_err();
        assert_eq!(e.ack_id, None);
        let e = parse_client_frame(&"[".repeat(10_000)).unwrap_err();
        assert_eq!(e.ack_id, None);
    }

    fn json_of(f: &ClientFrame) -> Value {
        serde_json::from_str(&f.to_json()).unwrap()
    }

    #[test]
    fn writes_what_clients_send() {
        assert_eq!(
            json_of(&ClientFrame::JoinGroup {
                group: "g".into(),
                ack_id: Some(1),
                after: None,
            }),
            json!({"type": "joinGroup", "group": "g", "ackId": 1})
        );
        assert_eq!(
            json_of(&ClientFrame::JoinGroup {
                group: "g".into(),
                ack_id: None,
                after: Some(crate::Offset::new(3, 4)),
            }),
            json!({"type": "joinGroup", "group": "g", "after": "3-4"})
        );
        assert_eq!(
            json_of(&ClientFrame::SendToGroup {
                group: "g".into(),
                ack_id: None,
                no_echo: true,
                ttl_seconds: 0,
                payload: Payload::text("hi"),
            }),
            json!({"type": "sendToGroup", "group": "g", "noEcho": true, "dataType": "text", "data": "hi"})
        );
        assert_eq!(
            parse_client_frame(r#"{"type":"sendToGroup","group":"g","ttlSeconds":300,"data":1}"#)
                .map(|f| json_of(&f)["ttlSeconds"].clone()),
            Ok(json!(300))
        );
        for bad in ["301", "-1", "1.5", "\"5\""] {
            let e = parse_client_frame(&format!(
                r#"{{"type":"sendToGroup","group":"g","ackId":4,"ttlSeconds":{bad},"data":1}}"#
            ))
            .unwrap_err();
            assert_eq!(e.ack_id, Some(4));
            assert!(
                e.reason
                    .contains("'ttlSeconds' must be an integer from 0 to 300"),
                "{}",
                e.reason
            );
        }
        assert_eq!(
            json_of(&ClientFrame::Invoke {
                invocation_id: "4".into(),
                event: "bus.submit".into(),
                payload: Payload::from_value(&json!({"a": 1})),
            }),
            json!({"type": "invoke", "invocationId": "4", "target": "event", "event": "bus.submit",
                   "dataType": "json", "data": {"a": 1}})
        );
        assert_eq!(
            json_of(&ClientFrame::SequenceAck { sequence_id: 9 }),
            json!({"type": "sequenceAck", "sequenceId": 9})
        );
    }

    #[test]
    fn what_clients_write_parses_back() {
        let frames = [
            ClientFrame::LeaveGroup {
                group: "g \"1\"".into(),
                ack_id: None,
            },
            ClientFrame::Event {
                event: "e".into(),
                ack_id: Some(3),
                payload: Payload::binary(bytes::Bytes::from_static(&[0, 1, 2])),
            },
            ClientFrame::CancelInvocation {
                invocation_id: "1".into(),
            },
            ClientFrame::Ping,
        ];
        for f in frames {
            assert_eq!(parse_client_frame(&f.to_json()), Ok(f));
        }
    }
}
