//! The protobuf subprotocols: `protobuf.webpubsub.azure.v1`, and
//! `protobuf.reliable.webpubsub.azure.v1`, which adds a `sequence_id` to every message and session
//! recovery. One `UpstreamMessage` per binary frame from the client, one `DownstreamMessage` per
//! binary frame to it ([`wire`] declares both).
//!
//! Data maps to and from the other protocols as the service maps it: `text_data` is `text`,
//! `binary_data` is `binary`, `json_data` is `json` (JSON clients get the value itself), and
//! `protobuf_data`, a packed `google.protobuf.Any`, is `protobuf`: JSON clients get the encoded
//! `Any` in base64 with `dataType: "protobuf"`, simple clients get its bytes.

pub mod wire;

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use prost::encoding::{decode_varint, encode_varint, encoded_len_varint};

use self::wire::{Downstream, DownstreamMessage, Upstream, UpstreamMessage};
use super::{Codec, DecodeError, Encoding, Frame, FrameRef, Request};
use crate::client_frame::{ClientFrame, FrameError, validate_event_name, validate_group_name};
use crate::payload::{DataType, Payload};
use crate::server_frame::{ErrorBody, MessageFrame, Sender, ServerFrame};
use crate::subprotocol::{PROTOBUF, PROTOBUF_RELIABLE};

/// `protobuf.webpubsub.azure.v1`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProtobufCodec;

/// `protobuf.reliable.webpubsub.azure.v1`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReliableProtobufCodec;

impl Codec for ProtobufCodec {
    fn subprotocol(&self) -> Option<&'static str> {
        Some(PROTOBUF)
    }

    fn encoding(&self) -> Encoding {
        Encoding::Protobuf
    }

    fn decode(&self, frame: FrameRef<'_>) -> Result<Request, DecodeError> {
        match frame {
            FrameRef::Binary(bytes) => Ok(Request::Frame(parse_upstream(bytes)?)),
            FrameRef::Text(_) => Err(DecodeError::TextOnBinaryProtocol),
        }
    }

    fn encode(&self, frame: &ServerFrame<'_>) -> Option<Frame> {
        let message = downstream(frame)?;
        Some(Frame::Binary(Bytes::from(
            DownstreamMessage {
                message: Some(message),
            }
            .encode_to_vec(),
        )))
    }
}

impl Codec for ReliableProtobufCodec {
    fn subprotocol(&self) -> Option<&'static str> {
        Some(PROTOBUF_RELIABLE)
    }

    fn encoding(&self) -> Encoding {
        Encoding::Protobuf
    }

    fn is_reliable(&self) -> bool {
        true
    }

    fn decode(&self, frame: FrameRef<'_>) -> Result<Request, DecodeError> {
        ProtobufCodec.decode(frame)
    }

    fn encode(&self, frame: &ServerFrame<'_>) -> Option<Frame> {
        ProtobufCodec.encode(frame)
    }

    fn sequence(&self, message: FrameRef<'_>, sequence_id: u64) -> Option<Frame> {
        match message {
            FrameRef::Binary(bytes) => Some(Frame::Binary(with_sequence_id(bytes, sequence_id)?)),
            FrameRef::Text(_) => None,
        }
    }
}

/// The key of `DownstreamMessage.data_message` (field 2, length-delimited).
const DATA_MESSAGE_KEY: u8 = 2 << 3 | 2;
/// The key of `DataMessage.sequence_id` (field 4, varint).
const SEQUENCE_ID_KEY: u8 = 4 << 3;

/// Numbers an encoded data message: the shared encoding is the outer key, the length and the
/// `DataMessage`; appending the `sequence_id` field to the inner message and growing its length
/// copies the bytes once, without decoding them. `None` if `message` is not a data message.
pub fn with_sequence_id(message: &Bytes, sequence_id: u64) -> Option<Bytes> {
    let (&key, mut rest) = message.split_first()?;
    if key != DATA_MESSAGE_KEY {
        return None;
    }
    let len = usize::try_from(decode_varint(&mut rest).ok()?).ok()?;
    if rest.len() != len {
        return None;
    }
    let field = 1 + encoded_len_varint(sequence_id);
    let inner = len + field;
    let mut out = BytesMut::with_capacity(1 + encoded_len_varint(inner as u64) + inner);
    out.put_u8(DATA_MESSAGE_KEY);
    encode_varint(inner as u64, &mut out);
    out.put_slice(rest);
    out.put_u8(SEQUENCE_ID_KEY);
    encode_varint(sequence_id, &mut out);
    Some(out.freeze())
}

/// Reads one client frame.
pub fn parse_upstream(bytes: &Bytes) -> Result<ClientFrame, FrameError> {
    let invalid = |ack_id: Option<u64>, reason: String| FrameError { ack_id, reason };
    let message = UpstreamMessage::decode(bytes.clone())
        .map_err(|e| invalid(None, format!("invalid protobuf frame: {e}")))?
        .message
        .ok_or_else(|| invalid(None, "the UpstreamMessage sets no known request".into()))?;
    let group = |group: String, ack_id| {
        validate_group_name(&group).map_err(|e| invalid(ack_id, e))?;
        Ok(group)
    };
    let event = |event: String, ack_id| {
        validate_event_name(&event).map_err(|e| invalid(ack_id, e))?;
        Ok(event)
    };
    let data = |data, ack_id| payload(data).map_err(|e| invalid(ack_id, e));
    let unsupported = |kind: &str, ack_id, stream_id| ClientFrame::Unsupported {
        kind: kind.into(),
        ack_id,
        stream_id,
    };
    Ok(match message {
        // The protobuf protocols have no field for a history offset: joins replay nothing.
        Upstream::JoinGroup(m) => ClientFrame::JoinGroup {
            group: group(m.group, m.ack_id)?,
            ack_id: m.ack_id,
            after: None,
        },
        Upstream::LeaveGroup(m) => ClientFrame::LeaveGroup {
            group: group(m.group, m.ack_id)?,
            ack_id: m.ack_id,
        },
        Upstream::SendToGroup(m) => {
            let group = group(m.group, m.ack_id)?;
            if let Some(stream) = m.stream {
                return Ok(unsupported(
                    "sendToGroup stream",
                    m.ack_id,
                    Some(stream.stream_id),
                ));
            }
            let ttl_seconds = u64::from(m.ttl_seconds.unwrap_or(0));
            if ttl_seconds > crate::client_frame::MAX_TTL_SECONDS {
                return Err(invalid(
                    m.ack_id,
                    format!(
                        "'ttl_seconds' must be from 0 to {}, got {ttl_seconds}",
                        crate::client_frame::MAX_TTL_SECONDS
                    ),
                ));
            }
            // A map arrives in no order: sorted, the message reads the same wherever it goes.
            let mut pairs: Vec<(String, String)> = m.metadata.into_iter().collect();
            pairs.sort();
            let metadata =
                crate::Metadata::new(pairs).map_err(|e| invalid(m.ack_id, e.to_string()))?;
            ClientFrame::SendToGroup {
                group,
                ack_id: m.ack_id,
                no_echo: m.no_echo.unwrap_or(false),
                ttl_seconds,
                payload: data(m.data, m.ack_id)?.with_metadata(metadata),
            }
        }
        Upstream::Event(m) => ClientFrame::Event {
            event: event(m.event, m.ack_id)?,
            ack_id: m.ack_id,
            payload: data(m.data, m.ack_id)?,
        },
        Upstream::InvokeEvent(m) => {
            if m.invocation_id.is_empty() {
                return Err(invalid(
                    None,
                    "'invoke' requires a non-empty 'invocation_id'".into(),
                ));
            }
            ClientFrame::Invoke {
                event: event(m.event, None)?,
                payload: data(m.data, None)?,
                invocation_id: m.invocation_id,
            }
        }
        Upstream::CancelInvocation(m) => ClientFrame::CancelInvocation {
            invocation_id: m.invocation_id,
        },
        Upstream::SequenceAck(m) => ClientFrame::SequenceAck {
            sequence_id: m.sequence_id,
        },
        Upstream::Ping(_) => ClientFrame::Ping,
        Upstream::StreamData(m) => unsupported("streamData", None, Some(m.stream_id)),
        Upstream::StreamEnd(m) => unsupported("streamEnd", None, Some(m.stream_id)),
        Upstream::SetGroupState(m) => unsupported("setGroupState", m.ack_id, None),
        Upstream::SubscribeGroupState(m) => unsupported("subscribeGroupState", m.ack_id, None),
        Upstream::UnsubscribeGroupState(m) => unsupported("unsubscribeGroupState", m.ack_id, None),
    })
}

/// A request's `MessageData` as a payload.
fn payload(data: Option<wire::MessageData>) -> Result<Payload, String> {
    match data.and_then(|d| d.data) {
        None => Err("the request needs 'data' (text, binary, json or protobuf)".into()),
        Some(wire::Data::Text(s)) => Ok(Payload::text(&s)),
        Some(wire::Data::Binary(b)) => Ok(Payload::binary(b)),
        Some(wire::Data::Protobuf(any)) => Ok(Payload::protobuf(Bytes::from(any.encode_to_vec()))),
        Some(wire::Data::Json(s)) => {
            Payload::from_body(DataType::Json, Bytes::from(s)).map_err(|e| e.to_string())
        }
    }
}

/// A payload as `MessageData`.
fn message_data(p: &Payload) -> wire::MessageData {
    let data = match p.data_type {
        DataType::Text => wire::Data::Text(String::from_utf8_lossy(&p.raw).into_owned()),
        DataType::Binary => wire::Data::Binary(p.raw.clone()),
        DataType::Json => wire::Data::Json(String::from_utf8_lossy(&p.json).into_owned()),
        // Built from an encoded Any, so it decodes; were it not, the bytes still arrive.
        DataType::Protobuf => prost_types::Any::decode(p.raw.clone())
            .map_or_else(|_| wire::Data::Binary(p.raw.clone()), wire::Data::Protobuf),
    };
    wire::MessageData { data: Some(data) }
}

fn error(e: &ErrorBody<'_>) -> wire::Error {
    wire::Error {
        name: e.name.to_string(),
        message: e.message.to_string(),
    }
}

/// A server frame as the downstream message that carries it; `None` for frames the protocol
/// has no message for.
fn downstream(frame: &ServerFrame<'_>) -> Option<Downstream> {
    use wire::{System, SystemKind};
    let system = |kind| {
        Downstream::System(System {
            message: Some(kind),
        })
    };
    Some(match frame {
        ServerFrame::Connected {
            connection_id,
            user_id,
            reconnection_token,
        } => system(SystemKind::Connected(wire::Connected {
            connection_id: connection_id.to_string(),
            user_id: user_id.as_deref().unwrap_or_default().to_string(),
            reconnection_token: reconnection_token.as_deref().map(str::to_string),
        })),
        ServerFrame::Disconnected { message } => {
            system(SystemKind::Disconnected(wire::Disconnected {
                reason: message.to_string(),
            }))
        }
        ServerFrame::Message(MessageFrame {
            from,
            payload,
            sequence_id,
            ..
        }) => {
            let (from, group) = match from {
                Sender::Group { group, .. } => ("group", Some(group.to_string())),
                Sender::Server => ("server", None),
            };
            Downstream::Data(wire::DataMessage {
                from: from.into(),
                group,
                data: Some(message_data(payload)),
                sequence_id: *sequence_id,
            })
        }
        ServerFrame::Ack { ack_id, error: e } => Downstream::Ack(wire::Ack {
            ack_id: *ack_id,
            success: e.is_none(),
            error: e.as_ref().map(error),
        }),
        ServerFrame::InvokeResponse {
            invocation_id,
            result,
        } => Downstream::InvokeResponse(wire::InvokeResponse {
            invocation_id: invocation_id.to_string(),
            success: result.is_ok(),
            data: result
                .as_ref()
                .ok()
                .and_then(|d| d.as_deref().map(message_data)),
            error: result.as_ref().err().map(error),
        }),
        ServerFrame::Pong => Downstream::Pong(wire::Empty {}),
        ServerFrame::StreamClosed {
            stream_id,
            error: e,
        } => Downstream::StreamClosed(wire::StreamClosed {
            stream_id: stream_id.to_string(),
            error: e.as_ref().map(error),
        }),
        ServerFrame::Unknown { .. } => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::close::ErrorName;

    fn up(message: Upstream) -> Bytes {
        Bytes::from(
            UpstreamMessage {
                message: Some(message),
            }
            .encode_to_vec(),
        )
    }

    fn down(frame: &ServerFrame<'_>, codec: &dyn Codec) -> Downstream {
        let Some(Frame::Binary(b)) = codec.encode(frame) else {
            panic!("a binary frame")
        };
        DownstreamMessage::decode(b).unwrap().message.unwrap()
    }

    fn data(d: wire::Data) -> Option<wire::MessageData> {
        Some(wire::MessageData { data: Some(d) })
    }

    #[test]
    fn requests_decode_into_client_frames() {
        let send = up(Upstream::SendToGroup(wire::SendToGroup {
            group: "g".into(),
            ack_id: Some(3),
            data: data(wire::Data::Json("{\"a\":1}".into())),
            no_echo: Some(true),
            ..Default::default()
        }));
        let Request::Frame(frame) = ProtobufCodec.decode(FrameRef::Binary(&send)).unwrap() else {
            panic!("a frame")
        };
        assert_eq!(
            frame,
            ClientFrame::SendToGroup {
                group: "g".into(),
                ack_id: Some(3),
                no_echo: true,
                ttl_seconds: 0,
                payload: Payload::from_body(DataType::Json, Bytes::from_static(b"{\"a\":1}"))
                    .unwrap(),
            }
        );
        let any = prost_types::Any {
            type_url: "type.googleapis.com/x.Y".into(),
            value: vec![8, 1],
        };
        let event = up(Upstream::Event(wire::Event {
            event: "e".into(),
            data: data(wire::Data::Protobuf(any.clone())),
            ack_id: None,
        }));
        let Ok(ClientFrame::Event { payload, .. }) = parse_upstream(&event) else {
            panic!("an event")
        };
        assert_eq!(payload.data_type, DataType::Protobuf);
        assert_eq!(payload.raw, any.encode_to_vec());
        assert_eq!(
            parse_upstream(&up(Upstream::Ping(wire::Empty {}))),
            Ok(ClientFrame::Ping)
        );
    }

    #[test]
    fn streams_and_group_state_are_recognized_and_not_run() {
        let stream = up(Upstream::StreamData(wire::StreamRef {
            stream_id: "s1".into(),
        }));
        assert_eq!(
            parse_upstream(&stream),
            Ok(ClientFrame::Unsupported {
                kind: "streamData".into(),
                ack_id: None,
                stream_id: Some("s1".into()),
            })
        );
        let state = up(Upstream::SetGroupState(wire::GroupRequest {
            group: "g".into(),
            ack_id: Some(6),
        }));
        assert_eq!(parse_upstream(&state).unwrap().ack_id(), Some(6));
        let started = up(Upstream::SendToGroup(wire::SendToGroup {
            group: "g".into(),
            ack_id: Some(7),
            data: data(wire::Data::Text("x".into())),
            stream: Some(wire::StreamStart {
                stream_id: "s2".into(),
            }),
            ..Default::default()
        }));
        assert_eq!(
            parse_upstream(&started).unwrap().kind(),
            "sendToGroup stream"
        );
    }

    #[test]
    fn bad_requests_are_refused_on_their_ack_id() {
        let no_data = up(Upstream::SendToGroup(wire::SendToGroup {
            group: "g".into(),
            ack_id: Some(9),
            ..Default::default()
        }));
        assert_eq!(parse_upstream(&no_data).unwrap_err().ack_id, Some(9));
        let bad_json = up(Upstream::Event(wire::Event {
            event: "e".into(),
            data: data(wire::Data::Json("{nope".into())),
            ack_id: Some(2),
        }));
        assert_eq!(parse_upstream(&bad_json).unwrap_err().ack_id, Some(2));
        let empty_group = up(Upstream::JoinGroup(wire::GroupRequest {
            group: " ".into(),
            ack_id: Some(4),
        }));
        assert_eq!(parse_upstream(&empty_group).unwrap_err().ack_id, Some(4));
        assert!(parse_upstream(&Bytes::from_static(&[0xff, 0xff, 0xff])).is_err());
        assert!(parse_upstream(&Bytes::new()).is_err(), "no request at all");
        assert_eq!(
            ProtobufCodec.decode(FrameRef::Text("{}")),
            Err(DecodeError::TextOnBinaryProtocol)
        );
    }

    #[test]
    fn frames_encode_as_downstream_messages() {
        let p = Payload::text("hi");
        let msg = ServerFrame::message(Sender::group("g", Some("u")), &p);
        assert_eq!(
            down(&msg, &ProtobufCodec),
            Downstream::Data(wire::DataMessage {
                from: "group".into(),
                group: Some("g".into()),
                data: data(wire::Data::Text("hi".into())),
                sequence_id: None,
            })
        );
        let ack = ServerFrame::ack(5, Err(ErrorBody::new(ErrorName::Forbidden, "no")));
        let Downstream::Ack(a) = down(&ack, &ProtobufCodec) else {
            panic!("an ack")
        };
        assert_eq!((a.ack_id, a.success), (5, false));
        assert_eq!(a.error.unwrap().name, "Forbidden");
        let connected = ServerFrame::connected("c1", None, Some("tok"));
        let Downstream::System(s) = down(&connected, &ReliableProtobufCodec) else {
            panic!("a system message")
        };
        assert_eq!(
            s.message,
            Some(wire::SystemKind::Connected(wire::Connected {
                connection_id: "c1".into(),
                user_id: String::new(),
                reconnection_token: Some("tok".into()),
            }))
        );
        assert!(
            ProtobufCodec
                .encode(&ServerFrame::Unknown { kind: "x".into() })
                .is_none()
        );
    }

    #[test]
    fn a_shared_message_is_numbered_per_connection() {
        let p = Payload::binary(Bytes::from_static(&[1, 2, 3]));
        let Some(Frame::Binary(shared)) =
            ReliableProtobufCodec.encode(&ServerFrame::message(Sender::Server, &p))
        else {
            panic!("a binary frame")
        };
        for seq in [1, 127, 128, 300, u64::MAX] {
            let Some(Frame::Binary(numbered)) =
                ReliableProtobufCodec.sequence(FrameRef::Binary(&shared), seq)
            else {
                panic!("numbered")
            };
            let Some(Downstream::Data(d)) = DownstreamMessage::decode(numbered).unwrap().message
            else {
                panic!("a data message")
            };
            assert_eq!(d.sequence_id, Some(seq));
            assert_eq!(d.from, "server");
            assert_eq!(d.data, data(wire::Data::Binary(p.raw.clone())));
        }
        let ack = Bytes::from(
            DownstreamMessage {
                message: Some(Downstream::Pong(wire::Empty {})),
            }
            .encode_to_vec(),
        );
        assert_eq!(with_sequence_id(&ack, 1), None, "only data messages");
    }

    #[test]
    fn json_and_protobuf_data_cross_protocols_as_the_service_maps_them() {
        // JSON data reaches protobuf clients as json_data; protobuf data reaches JSON clients
        // as base64 with dataType protobuf, and round-trips.
        let j = Payload::from_body(DataType::Json, Bytes::from_static(b"[1,2]")).unwrap();
        assert_eq!(
            message_data(&j),
            data(wire::Data::Json("[1,2]".into())).unwrap()
        );
        let any = prost_types::Any {
            type_url: "type.googleapis.com/t.M".into(),
            value: vec![8, 1],
        };
        let p = Payload::protobuf(Bytes::from(any.encode_to_vec()));
        let json = ServerFrame::message(Sender::Server, &p).to_json();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["dataType"], "protobuf");
        let back = ServerFrame::from_json(&json).unwrap();
        let Downstream::Data(d) = down(&back, &ProtobufCodec) else {
            panic!("data")
        };
        assert_eq!(d.data, data(wire::Data::Protobuf(any)));
    }
}
