//! Parsing of client → hub frames of the JSON subprotocols.
//!
//! Frames are parsed into one flat struct first, so a frame that fails validation can still be
//! answered on its `ackId`; then each `type` is checked for the fields it needs.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::payload::{DataType, Payload, PayloadError};

/// Longest group name the service accepts.
pub const MAX_GROUP_NAME: usize = 1024;

/// A validated frame from a client.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientFrame {
    /// `joinGroup`
    JoinGroup {
        /// Group to join.
        group: String,
        /// Ack id, if the client wants an ack.
        ack_id: Option<u64>,
    },
    /// `leaveGroup`
    LeaveGroup {
        /// Group to leave.
        group: String,
        /// Ack id, if the client wants an ack.
        ack_id: Option<u64>,
    },
    /// `sendToGroup`
    SendToGroup {
        /// Target group.
        group: String,
        /// Ack id, if the client wants an ack.
        ack_id: Option<u64>,
        /// Do not deliver back to the sender.
        no_echo: bool,
        /// The message.
        payload: Payload,
    },
    /// `event`: a user event for the upstream.
    Event {
        /// Event name.
        event: String,
        /// Ack id, if the client wants an ack.
        ack_id: Option<u64>,
        /// The data.
        payload: Payload,
    },
    /// `invoke`: a user event whose upstream reply comes back as `invokeResponse`.
    Invoke {
        /// Client-chosen invocation id.
        invocation_id: String,
        /// Event name.
        event: String,
        /// The data.
        payload: Payload,
    },
    /// `cancelInvocation`
    CancelInvocation {
        /// The invocation to cancel.
        invocation_id: String,
    },
    /// `sequenceAck` (reliable protocol).
    SequenceAck {
        /// Everything up to this id is acknowledged.
        sequence_id: u64,
    },
    /// `ping`
    Ping,
    /// A known frame type the hub does not support (streams, group state).
    Unsupported {
        /// The frame type.
        kind: String,
        /// Ack id, if any.
        ack_id: Option<u64>,
        /// Stream id, for stream frames.
        stream_id: Option<String>,
    },
}

/// Why a frame was refused; carries the ack id when it could be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{reason}")]
pub struct FrameError {
    /// The frame's `ackId`, if it had a readable one.
    pub ack_id: Option<u64>,
    /// What was wrong, for the client.
    pub reason: String,
}

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
    invocation_id: Option<String>,
    stream_id: Option<String>,
    #[serde(borrow)]
    stream: Option<&'a RawValue>,
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
    let kind = raw
        .kind
        .as_deref()
        .ok_or_else(|| fail("frame has no 'type'".into()))?;
    match kind {
        "joinGroup" | "leaveGroup" => {
            let group = valid_group(raw.group).map_err(fail)?;
            Ok(if kind == "joinGroup" {
                ClientFrame::JoinGroup { group, ack_id }
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
            let payload =
                payload(raw.data_type.as_deref(), raw.data).map_err(|e| fail(e.to_string()))?;
            Ok(ClientFrame::SendToGroup {
                group,
                ack_id,
                no_echo: raw.no_echo.unwrap_or(false),
                payload,
            })
        }
        "event" => {
            let event = valid_event(raw.event).map_err(fail)?;
            let payload =
                payload(raw.data_type.as_deref(), raw.data).map_err(|e| fail(e.to_string()))?;
            Ok(ClientFrame::Event {
                event,
                ack_id,
                payload,
            })
        }
        "invoke" => {
            let invocation_id = raw
                .invocation_id
                .filter(|s| !s.is_empty())
                .ok_or_else(|| fail("'invoke' requires a non-empty 'invocationId'".into()))?;
            let event = valid_event(raw.event).map_err(fail)?;
            let payload =
                payload(raw.data_type.as_deref(), raw.data).map_err(|e| fail(e.to_string()))?;
            Ok(ClientFrame::Invoke {
                invocation_id,
                event,
                payload,
            })
        }
        "cancelInvocation" => Ok(ClientFrame::CancelInvocation {
            invocation_id: raw
                .invocation_id
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

/// Validates a group name: 1–1024 characters and not only whitespace.
pub fn validate_group_name(group: &str) -> Result<(), String> {
    if group.trim().is_empty() {
        return Err("group name must not be empty or only whitespace".into());
    }
    if group.chars().count() > MAX_GROUP_NAME {
        return Err(format!(
            "group name is longer than {MAX_GROUP_NAME} characters"
        ));
    }
    Ok(())
}

fn valid_group(group: Option<String>) -> Result<String, String> {
    let group = group.ok_or_else(|| "frame requires a 'group'".to_string())?;
    validate_group_name(&group)?;
    Ok(group)
}

fn valid_event(event: Option<String>) -> Result<String, String> {
    let event = event.ok_or_else(|| "frame requires an 'event' name".to_string())?;
    if event.is_empty() || event.len() > 128 {
        return Err("event name must be 1 to 128 characters".into());
    }
    Ok(event)
}

fn payload(data_type: Option<&str>, data: Option<&RawValue>) -> Result<Payload, PayloadError> {
    let data_type = match data_type {
        None => DataType::Json,
        Some(s) => DataType::parse(s).ok_or_else(|| PayloadError::UnknownDataType(s.into()))?,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_frame_type() {
        assert_eq!(
            parse_client_frame(r#"{"type":"joinGroup","group":"g","ackId":1}"#),
            Ok(ClientFrame::JoinGroup {
                group: "g".into(),
                ack_id: Some(1)
            })
        );
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

    #[test]
    fn group_names_are_bounded() {
        assert!(validate_group_name(&"a".repeat(1024)).is_ok());
        assert!(validate_group_name(&"a".repeat(1025)).is_err());
        assert!(validate_group_name("").is_err());
    }
}
