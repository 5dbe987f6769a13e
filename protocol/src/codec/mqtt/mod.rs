//! MQTT 3.1.1 and 5.0 over WebSocket, as Azure Web PubSub serves it on
//! `/clients/mqtt/hubs/{hub}` (subprotocol `mqtt`): the packet reader and writer (the
//! `mqttbytes` modules of `rumqttc`, wrapped so a session sees one packet type per version and
//! never a panic), the topic ↔ group mapping, the reason codes the service answers with, and the
//! [`Codec`] that lays a hub message out as a PUBLISH once for every MQTT recipient.
//!
//! MQTT is a byte stream, not a frame protocol: one WebSocket frame may carry several packets
//! and one packet may span frames. [`PacketReader`] buffers what arrived and hands out whole
//! packets, bounded by a maximum packet size.

use bytes::{Bytes, BytesMut};
/// QoS levels of 3.1.1 packets.
pub use rumqttc::mqttbytes::QoS as QoS4;
pub use rumqttc::mqttbytes::v4;
/// QoS levels of 5.0 packets.
pub use rumqttc::v5::mqttbytes::QoS as QoS5;
pub use rumqttc::v5::mqttbytes::v5;

pub mod packets;

use super::{Codec, DecodeError, Encoding, Frame, FrameRef, Request};
use crate::payload::{DataType, Payload};
use crate::server_frame::{Sender, ServerFrame};

/// The WebSocket subprotocol of MQTT connections.
pub const SUBPROTOCOL: &str = "mqtt";

/// The topic messages sent to a user, a connection or everyone arrive on.
pub const SERVER_MESSAGES_TOPIC: &str = "$webpubsub/server/messages";

/// Longest keep-alive Azure accepts from an MQTT 3.1.1 client, in seconds (1–180).
pub const MAX_KEEP_ALIVE_V311: u16 = 180;

/// Longest last-will topic, in bytes.
pub const MAX_WILL_TOPIC: usize = 1024;

/// Largest last-will message, in bytes.
pub const MAX_WILL_MESSAGE: usize = 2000;

/// Longest client id, in characters.
pub const MAX_CLIENT_ID: usize = 128;

/// MQTT 5 reason codes the hub sends (MQTT 5.0 §2.4). In 3.1.1 a refused subscription is
/// `0x80` in its SUBACK; other refusals close the connection.
pub mod reason {
    /// Success / normal disconnection / granted QoS 0.
    pub const SUCCESS: u8 = 0x00;
    /// Disconnect with will message (client to server).
    pub const DISCONNECT_WITH_WILL: u8 = 0x04;
    /// No subscription existed (UNSUBACK).
    pub const NO_SUBSCRIPTION_EXISTED: u8 = 0x11;
    /// Unspecified error (also the 3.1.1 SUBACK failure).
    pub const UNSPECIFIED: u8 = 0x80;
    /// Malformed packet.
    pub const MALFORMED_PACKET: u8 = 0x81;
    /// Protocol error.
    pub const PROTOCOL_ERROR: u8 = 0x82;
    /// Client identifier not valid.
    pub const CLIENT_ID_NOT_VALID: u8 = 0x85;
    /// Not authorized.
    pub const NOT_AUTHORIZED: u8 = 0x87;
    /// Server busy.
    pub const SERVER_BUSY: u8 = 0x89;
    /// Server shutting down.
    pub const SERVER_SHUTTING_DOWN: u8 = 0x8B;
    /// Keep alive timeout.
    pub const KEEP_ALIVE_TIMEOUT: u8 = 0x8D;
    /// Session taken over.
    pub const SESSION_TAKEN_OVER: u8 = 0x8E;
    /// Topic filter invalid.
    pub const TOPIC_FILTER_INVALID: u8 = 0x8F;
    /// Topic name invalid.
    pub const TOPIC_NAME_INVALID: u8 = 0x90;
    /// Receive maximum exceeded.
    pub const RECEIVE_MAXIMUM_EXCEEDED: u8 = 0x93;
    /// Topic alias invalid.
    pub const TOPIC_ALIAS_INVALID: u8 = 0x94;
    /// Packet too large.
    pub const PACKET_TOO_LARGE: u8 = 0x95;
    /// Quota exceeded.
    pub const QUOTA_EXCEEDED: u8 = 0x97;
    /// Administrative action.
    pub const ADMINISTRATIVE_ACTION: u8 = 0x98;
    /// Retain not supported.
    pub const RETAIN_NOT_SUPPORTED: u8 = 0x9A;
    /// Shared subscriptions not supported.
    pub const SHARED_SUBSCRIPTIONS_NOT_SUPPORTED: u8 = 0x9E;
    /// Wildcard subscriptions not supported.
    pub const WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED: u8 = 0xA2;
}

/// The MQTT version a connection speaks, from its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// MQTT 3.1.1 (protocol level 4).
    V311,
    /// MQTT 5.0 (protocol level 5).
    V5,
}

impl Version {
    /// The protocol level byte of the CONNECT (`protocolVersion` in upstream events).
    pub fn level(self) -> u8 {
        match self {
            Version::V311 => 4,
            Version::V5 => 5,
        }
    }
}

/// One packet, of either version (a value read, handled and dropped at once: the size of the
/// CONNECT variant is not kept anywhere).
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)]
pub enum Packet {
    /// An MQTT 3.1.1 packet.
    V4(v4::Packet),
    /// An MQTT 5.0 packet.
    V5(v5::Packet),
}

/// Why bytes from a client are no MQTT packet.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MqttError {
    /// The packet is larger than the hub takes.
    #[error("MQTT packet too large: the limit is {max} bytes")]
    TooLarge {
        /// The limit.
        max: usize,
    },
    /// The first packet is not a CONNECT.
    #[error("the first MQTT packet must be CONNECT")]
    NotConnect,
    /// A protocol level other than 4 (3.1.1) or 5 (5.0).
    #[error("unsupported MQTT protocol level {0}; this hub speaks 3.1.1 (4) and 5.0 (5)")]
    UnsupportedVersion(u8),
    /// The bytes do not form a valid packet.
    #[error("malformed MQTT packet: {0}")]
    Malformed(String),
}

impl From<rumqttc::mqttbytes::Error> for MqttError {
    fn from(e: rumqttc::mqttbytes::Error) -> Self {
        MqttError::Malformed(e.to_string())
    }
}

impl From<rumqttc::v5::mqttbytes::Error> for MqttError {
    fn from(e: rumqttc::v5::mqttbytes::Error) -> Self {
        MqttError::Malformed(e.to_string())
    }
}

/// Buffers the bytes of a connection's WebSocket frames and reads whole packets out of them.
#[derive(Debug)]
pub struct PacketReader {
    buf: BytesMut,
    max_packet: usize,
}

impl PacketReader {
    /// A reader that refuses packets larger than `max_packet` bytes (fixed header included).
    pub fn new(max_packet: usize) -> Self {
        PacketReader {
            buf: BytesMut::new(),
            max_packet,
        }
    }

    /// Appends the data of one WebSocket frame. The buffer never holds more than one packet's
    /// worth plus one frame: a packet larger than the limit fails before it is buffered whole.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Whether no partial packet waits for more bytes.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The version a CONNECT at the front of the buffer asks for; `Ok(None)` until enough
    /// bytes arrived to tell.
    pub fn connect_version(&self) -> Result<Option<Version>, MqttError> {
        let b = &self.buf[..];
        let Some(&first) = b.first() else {
            return Ok(None);
        };
        if first >> 4 != 1 {
            return Err(MqttError::NotConnect);
        }
        // Remaining length: 1 to 4 bytes of 7 bits each.
        let mut i = 1;
        loop {
            let Some(&byte) = b.get(i) else {
                return Ok(None);
            };
            i += 1;
            if byte & 0x80 == 0 {
                break;
            }
            if i > 4 {
                return Err(MqttError::Malformed("malformed remaining length".into()));
            }
        }
        // Protocol name ("MQTT", length-prefixed) then the level byte.
        let Some(name) = b.get(i..i + 6) else {
            return Ok(None);
        };
        if name != b"\x00\x04MQTT" {
            return Err(MqttError::Malformed("protocol name is not MQTT".into()));
        }
        match b.get(i + 6) {
            None => Ok(None),
            Some(4) => Ok(Some(Version::V311)),
            Some(5) => Ok(Some(Version::V5)),
            Some(&level) => Err(MqttError::UnsupportedVersion(level)),
        }
    }

    /// The next whole packet, or `Ok(None)` when more bytes are needed.
    pub fn next(&mut self, version: Version) -> Result<Option<Packet>, MqttError> {
        if self.buf.len() < 2 {
            return Ok(None);
        }
        // The fixed header's remaining length counts what follows it; the limit is on the
        // whole packet.
        let max = self.max_packet;
        match version {
            Version::V311 => match v4::Packet::read(&mut self.buf, max) {
                Ok(p) => Ok(Some(Packet::V4(p))),
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
                Err(rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(_)) => {
                    Err(MqttError::TooLarge { max })
                }
                Err(e) => Err(e.into()),
            },
            Version::V5 => {
                // A DISCONNECT may end after its fixed header (reason 0x00, no properties);
                // the reader wants a reason byte, so that form is read here.
                if self.buf[0] == 0xE0 && self.buf[1] == 0 {
                    let _ = self.buf.split_to(2);
                    return Ok(Some(Packet::V5(v5::Packet::Disconnect(
                        v5::Disconnect::new(v5::DisconnectReasonCode::NormalDisconnection),
                    ))));
                }
                let limit = u32::try_from(max).unwrap_or(u32::MAX);
                match v5::Packet::read(&mut self.buf, Some(limit)) {
                    Ok(p) => Ok(Some(Packet::V5(p))),
                    Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
                    Err(rumqttc::v5::mqttbytes::Error::PayloadSizeLimitExceeded { .. }) => {
                        Err(MqttError::TooLarge { max })
                    }
                    Err(e) => Err(e.into()),
                }
            }
        }
    }
}

/// Writes one packet.
pub fn write(packet: &Packet) -> Result<Bytes, MqttError> {
    let mut out = BytesMut::new();
    match packet {
        Packet::V4(p) => {
            p.write(&mut out, usize::MAX)?;
        }
        Packet::V5(p) => {
            p.write(&mut out, None)?;
        }
    }
    Ok(out.freeze())
}

/// Why a SUBSCRIBE topic filter is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterRefusal {
    /// `+` or `#` in the filter.
    Wildcard,
    /// A `$share/…` filter.
    Shared,
    /// Empty, too long, or a `$` topic other than the server's.
    Invalid,
}

impl FilterRefusal {
    /// The MQTT 5 SUBACK reason code.
    pub fn code(self) -> u8 {
        match self {
            FilterRefusal::Wildcard => reason::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
            FilterRefusal::Shared => reason::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED,
            FilterRefusal::Invalid => reason::TOPIC_FILTER_INVALID,
        }
    }

    /// The reason string, for people.
    pub fn message(self) -> &'static str {
        match self {
            FilterRefusal::Wildcard => "Wildcard subscriptions are not supported",
            FilterRefusal::Shared => "Shared subscriptions are not supported",
            FilterRefusal::Invalid => "The topic filter is not a valid group name",
        }
    }
}

/// What a SUBSCRIBE topic filter asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscription<'a> {
    /// The group of the same name.
    Group(&'a str),
    /// [`SERVER_MESSAGES_TOPIC`]: messages from the server arrive whether or not a client
    /// subscribes; a subscription sets their QoS.
    ServerMessages,
}

/// Maps a SUBSCRIBE topic filter to what it subscribes to: the topic is the group.
pub fn subscription(filter: &str) -> Result<Subscription<'_>, FilterRefusal> {
    if filter == SERVER_MESSAGES_TOPIC {
        return Ok(Subscription::ServerMessages);
    }
    if filter.starts_with("$share/") {
        return Err(FilterRefusal::Shared);
    }
    if filter.contains(['+', '#']) {
        return Err(FilterRefusal::Wildcard);
    }
    if filter.starts_with('$') || crate::client_frame::validate_group_name(filter).is_err() {
        return Err(FilterRefusal::Invalid);
    }
    Ok(Subscription::Group(filter))
}

/// Maps a PUBLISH topic name to its group; `Err` with the reason string when it names none
/// (wildcards, `$` topics, empty or too long).
pub fn publish_group(topic: &str) -> Result<&str, &'static str> {
    if topic.contains(['+', '#']) {
        return Err("A topic name must not contain wildcards");
    }
    if topic.starts_with('$') {
        return Err("Topics starting with '$' are reserved");
    }
    crate::client_frame::validate_group_name(topic)
        .map_err(|_| "The topic name is not a valid group name")?;
    Ok(topic)
}

/// Whether a client id is one the hub takes as a connection id: 1 to 128 letters, digits, `-`
/// or `_` (Azure allows letters and digits; `-` and `_` are the other characters of the
/// URL-safe ids the hub assigns).
pub fn valid_client_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_CLIENT_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The Web PubSub data type of an MQTT payload, from its MQTT 5 content type (absent, or any
/// 3.1.1 message: binary), as Azure converts them.
pub fn data_type_of(content_type: Option<&str>) -> DataType {
    match content_type.map(|c| c.split(';').next().unwrap_or("").trim()) {
        Some("application/json") => DataType::Json,
        Some("text/plain") => DataType::Text,
        Some("application/x-protobuf") => DataType::Protobuf,
        _ => DataType::Binary,
    }
}

/// The MQTT 5 content type a message of `data_type` carries.
pub fn content_type_of(data_type: DataType) -> &'static str {
    match data_type {
        DataType::Json => "application/json",
        DataType::Text => "text/plain",
        DataType::Protobuf => "application/x-protobuf",
        DataType::Binary => "application/octet-stream",
    }
}

/// The payload a client's PUBLISH carries into the hub. Text and JSON that are not valid in
/// their type arrive as binary.
pub fn payload_of(content_type: Option<&str>, body: Bytes) -> Payload {
    let data_type = data_type_of(content_type);
    Payload::from_body(data_type, body.clone()).unwrap_or_else(|_| Payload::binary(body))
}

/// The packet id a shared PUBLISH is written with; each connection's copy gets its own.
const SHARED_PACKET_ID: u16 = 1;

/// A hub message as the PUBLISH every MQTT connection of `version` gets, at QoS 1, before
/// [`stamp`] gives it a connection's QoS and packet id.
pub fn publish_message(version: Version, from: &Sender<'_>, payload: &Payload) -> Bytes {
    let topic = match from {
        Sender::Group { group, .. } => group.as_ref(),
        Sender::Server => SERVER_MESSAGES_TOPIC,
    };
    let packet = match version {
        Version::V311 => {
            let mut p = v4::Publish::from_bytes(
                topic,
                rumqttc::mqttbytes::QoS::AtLeastOnce,
                payload.raw.clone(),
            );
            p.pkid = SHARED_PACKET_ID;
            Packet::V4(v4::Packet::Publish(p))
        }
        Version::V5 => {
            let properties = v5::PublishProperties {
                content_type: Some(content_type_of(payload.data_type).to_string()),
                payload_format_indicator: matches!(
                    payload.data_type,
                    DataType::Json | DataType::Text
                )
                .then_some(1),
                ..Default::default()
            };
            let mut p = v5::Publish::new(
                topic,
                rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                payload.raw.clone(),
                Some(properties),
            );
            p.pkid = SHARED_PACKET_ID;
            Packet::V5(v5::Packet::Publish(p))
        }
    };
    write(&packet).unwrap_or_default()
}

/// One connection's copy of a shared PUBLISH: its topic, and the packet written at `qos` with
/// `pkid` (ignored at QoS 0) and, in MQTT 5, the message expiry left (`None`: none).
pub fn stamp(
    version: Version,
    shared: &Bytes,
    qos: u8,
    pkid: u16,
    expiry: Option<u32>,
) -> Result<Bytes, MqttError> {
    let mut buf = BytesMut::from(&shared[..]);
    let mut reader = PacketReader {
        buf: std::mem::take(&mut buf),
        max_packet: usize::MAX,
    };
    let packet = reader.next(version)?;
    let packet = match packet {
        Some(Packet::V4(v4::Packet::Publish(mut p))) => {
            p.qos =
                rumqttc::mqttbytes::qos(qos.min(2)).unwrap_or(rumqttc::mqttbytes::QoS::AtMostOnce);
            p.pkid = if qos == 0 { 0 } else { pkid };
            Packet::V4(v4::Packet::Publish(p))
        }
        Some(Packet::V5(v5::Packet::Publish(mut p))) => {
            p.qos = rumqttc::v5::mqttbytes::qos(qos.min(2))
                .unwrap_or(rumqttc::v5::mqttbytes::QoS::AtMostOnce);
            p.pkid = if qos == 0 { 0 } else { pkid };
            if let (Some(props), Some(left)) = (&mut p.properties, expiry) {
                props.message_expiry_interval = Some(left);
            }
            Packet::V5(v5::Packet::Publish(p))
        }
        _ => return Err(MqttError::Malformed("not a PUBLISH".into())),
    };
    write(&packet)
}

/// The topic of a shared PUBLISH (as [`publish_message`] wrote it).
pub fn topic_of(shared: &[u8]) -> Option<&str> {
    // Fixed header, then the topic as a length-prefixed string.
    let mut i = 1;
    while *shared.get(i)? & 0x80 != 0 {
        i += 1;
    }
    i += 1;
    let len = u16::from_be_bytes([*shared.get(i)?, *shared.get(i + 1)?]) as usize;
    std::str::from_utf8(shared.get(i + 2..i + 2 + len)?).ok()
}

/// The codec of MQTT connections, as fan-out sees it: it lays a message out as a PUBLISH once
/// per version. Packets from the client are read by [`PacketReader`], not frame by frame.
#[derive(Debug)]
pub struct MqttCodec(pub Version);

/// The MQTT 3.1.1 codec.
pub static MQTT311: MqttCodec = MqttCodec(Version::V311);
/// The MQTT 5.0 codec.
pub static MQTT5: MqttCodec = MqttCodec(Version::V5);

impl Codec for MqttCodec {
    fn subprotocol(&self) -> Option<&'static str> {
        Some(SUBPROTOCOL)
    }

    fn encoding(&self) -> Encoding {
        match self.0 {
            Version::V311 => Encoding::Mqtt311,
            Version::V5 => Encoding::Mqtt5,
        }
    }

    fn decode(&self, _frame: FrameRef<'_>) -> Result<Request, DecodeError> {
        Err(DecodeError::PacketStream)
    }

    fn encode(&self, frame: &ServerFrame<'_>) -> Option<Frame> {
        match frame {
            ServerFrame::Message(m) => {
                Some(Frame::Binary(publish_message(self.0, &m.from, &m.payload)))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect_v4(id: &str) -> Bytes {
        let c = v4::Connect::new(id);
        write(&Packet::V4(v4::Packet::Connect(c))).unwrap()
    }

    #[test]
    fn packets_split_across_frames_and_many_in_one() {
        let bytes = connect_v4("abc");
        let mut r = PacketReader::new(1024);
        r.push(&bytes[..3]);
        assert_eq!(r.connect_version().unwrap(), None);
        assert_eq!(r.next(Version::V311).unwrap(), None);
        r.push(&bytes[3..]);
        assert_eq!(r.connect_version().unwrap(), Some(Version::V311));
        let mut two = BytesMut::new();
        v4::Packet::PingReq.write(&mut two, 100).unwrap();
        v4::Packet::PingReq.write(&mut two, 100).unwrap();
        r.push(&two);
        assert!(matches!(
            r.next(Version::V311).unwrap(),
            Some(Packet::V4(v4::Packet::Connect(_)))
        ));
        assert_eq!(
            r.next(Version::V311).unwrap(),
            Some(Packet::V4(v4::Packet::PingReq))
        );
        assert_eq!(
            r.next(Version::V311).unwrap(),
            Some(Packet::V4(v4::Packet::PingReq))
        );
        assert_eq!(r.next(Version::V311).unwrap(), None);
        assert!(r.is_empty());
    }

    #[test]
    fn oversized_and_garbage_are_errors() {
        let mut r = PacketReader::new(16);
        r.push(&[0x30, 0xff, 0xff, 0x03]);
        assert_eq!(r.next(Version::V311), Err(MqttError::TooLarge { max: 16 }));
        let mut r = PacketReader::new(16);
        r.push(&[0x30, 0xff, 0xff, 0x03]);
        assert_eq!(r.next(Version::V5), Err(MqttError::TooLarge { max: 16 }));
        let mut r = PacketReader::new(16);
        r.push(&[0x20, 0x02, 0, 0]);
        assert_eq!(r.connect_version(), Err(MqttError::NotConnect));
        let mut r = PacketReader::new(64);
        r.push(&[0x10, 0x07, 0, 4, b'M', b'Q', b'T', b'T', 3]);
        assert_eq!(r.connect_version(), Err(MqttError::UnsupportedVersion(3)));
    }

    #[test]
    fn short_v5_disconnect_reads() {
        let mut r = PacketReader::new(64);
        r.push(&[0xE0, 0x00]);
        assert!(matches!(
            r.next(Version::V5).unwrap(),
            Some(Packet::V5(v5::Packet::Disconnect(_)))
        ));
    }

    #[test]
    fn topics_map_to_groups() {
        assert_eq!(subscription("chat"), Ok(Subscription::Group("chat")));
        assert_eq!(
            subscription(SERVER_MESSAGES_TOPIC),
            Ok(Subscription::ServerMessages)
        );
        assert_eq!(subscription("a/+"), Err(FilterRefusal::Wildcard));
        assert_eq!(subscription("#"), Err(FilterRefusal::Wildcard));
        assert_eq!(subscription("$share/g/t"), Err(FilterRefusal::Shared));
        assert_eq!(subscription("$SYS/x"), Err(FilterRefusal::Invalid));
        assert_eq!(subscription(" "), Err(FilterRefusal::Invalid));
        assert_eq!(FilterRefusal::Wildcard.code(), 0xA2);
        assert_eq!(FilterRefusal::Shared.code(), 0x9E);
        assert!(publish_group("a/b").is_ok());
        assert!(publish_group("a/#").is_err());
        assert!(publish_group(SERVER_MESSAGES_TOPIC).is_err());
    }

    #[test]
    fn client_ids() {
        assert!(valid_client_id("abc-DEF_123"));
        assert!(!valid_client_id(""));
        assert!(!valid_client_id("a b"));
        assert!(!valid_client_id(&"a".repeat(129)));
    }

    #[test]
    fn content_types_map_to_data_types() {
        assert_eq!(data_type_of(None), DataType::Binary);
        assert_eq!(data_type_of(Some("application/json")), DataType::Json);
        assert_eq!(
            data_type_of(Some("text/plain; charset=utf-8")),
            DataType::Text
        );
        let p = payload_of(Some("application/json"), Bytes::from_static(b"not json"));
        assert_eq!(p.data_type, DataType::Binary);
    }

    #[test]
    fn a_shared_publish_is_stamped_per_connection() {
        for version in [Version::V311, Version::V5] {
            let shared = publish_message(version, &Sender::group("g1", None), &Payload::text("hi"));
            assert_eq!(topic_of(&shared), Some("g1"));
            let mut r = PacketReader::new(1024);
            r.push(&stamp(version, &shared, 1, 77, Some(5)).unwrap());
            match r.next(version).unwrap().unwrap() {
                Packet::V4(v4::Packet::Publish(p)) => {
                    assert_eq!((p.pkid, p.topic.as_str()), (77, "g1"));
                    assert_eq!(&p.payload[..], b"hi");
                }
                Packet::V5(v5::Packet::Publish(p)) => {
                    assert_eq!((p.pkid, &p.topic[..]), (77, &b"g1"[..]));
                    let props = p.properties.unwrap();
                    assert_eq!(props.content_type.as_deref(), Some("text/plain"));
                    assert_eq!(props.message_expiry_interval, Some(5));
                }
                other => panic!("not a publish: {other:?}"),
            }
            let q0 = stamp(version, &shared, 0, 77, None).unwrap();
            assert_eq!(q0[0] & 0x06, 0);
            assert_eq!(q0.len(), shared.len() - 2);
        }
        let server = publish_message(Version::V311, &Sender::Server, &Payload::text("x"));
        assert_eq!(topic_of(&server), Some(SERVER_MESSAGES_TOPIC));
    }
}
