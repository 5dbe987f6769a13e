//! The packets of both MQTT versions in one shape: what a session reads ([`Inbound`],
//! [`Hello`]) and the replies it writes ([`Outbound`]), so the session's logic is written once
//! and the version shows only here, where a packet is read or written.

use bytes::Bytes;
use rumqttc::mqttbytes::QoS as QoS4;
use rumqttc::v5::mqttbytes::QoS as QoS5;

use super::{Packet, Version, reason, v4, v5};

/// A CONNECT, of either version.
#[derive(Clone, PartialEq, Eq)]
pub struct Hello {
    /// The version.
    pub version: Version,
    /// The client id (may be empty).
    pub client_id: String,
    /// Clean session (3.1.1) or clean start (5.0).
    pub clean: bool,
    /// Keep-alive in seconds (0: none asked).
    pub keep_alive: u16,
    /// The last will.
    pub will: Option<Will>,
    /// User name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// MQTT 5 user properties.
    pub user_properties: Vec<(String, String)>,
    /// MQTT 5 session expiry interval in seconds (3.1.1: 0 for a clean session, else forever).
    pub session_expiry: u32,
    /// How many QoS 1 and 2 messages the client takes unacknowledged (MQTT 5; else 65535).
    pub receive_maximum: u16,
    /// Largest packet the client takes (MQTT 5).
    pub max_packet_size: Option<u32>,
    /// MQTT 5 enhanced authentication method (not supported).
    pub authentication_method: Option<String>,
}

impl std::fmt::Debug for Hello {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("Hello")
            .field("version", &self.version)
            .field("client_id", &self.client_id)
            .field("clean", &self.clean)
            .field("keep_alive", &self.keep_alive)
            .field("session_expiry", &self.session_expiry)
            .finish_non_exhaustive()
    }
}

/// A last will.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: Bytes,
    /// Its QoS.
    pub qos: u8,
    /// Whether it asks to be retained (not supported).
    pub retain: bool,
    /// MQTT 5 content type.
    pub content_type: Option<String>,
}

/// A packet from a client after its CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A PUBLISH.
    Publish(Publish),
    /// PUBACK of a QoS 1 message the hub sent.
    PubAck(u16),
    /// PUBREC of a QoS 2 message the hub sent.
    PubRec(u16),
    /// PUBREL of a QoS 2 message the client sent.
    PubRel(u16),
    /// PUBCOMP of a QoS 2 message the hub sent.
    PubComp(u16),
    /// SUBSCRIBE: packet id and (filter, QoS) pairs.
    Subscribe {
        /// Packet id.
        pkid: u16,
        /// The topic filters with their maximum QoS.
        filters: Vec<(String, u8)>,
    },
    /// UNSUBSCRIBE: packet id and filters.
    Unsubscribe {
        /// Packet id.
        pkid: u16,
        /// The topic filters.
        filters: Vec<String>,
    },
    /// PINGREQ.
    PingReq,
    /// DISCONNECT.
    Disconnect {
        /// MQTT 5 reason 0x04: publish the will anyway.
        with_will: bool,
        /// MQTT 5: a new session expiry interval.
        session_expiry: Option<u32>,
    },
    /// A second CONNECT (a protocol error).
    Connect,
    /// A packet a client does not send (CONNACK, SUBACK, …) or AUTH.
    Unexpected(&'static str),
}

/// A PUBLISH from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// Topic name (empty with a topic alias).
    pub topic: String,
    /// QoS 0, 1 or 2.
    pub qos: u8,
    /// Packet id (QoS 1 and 2).
    pub pkid: u16,
    /// DUP flag.
    pub dup: bool,
    /// RETAIN flag (not supported).
    pub retain: bool,
    /// The payload.
    pub payload: Bytes,
    /// MQTT 5 content type.
    pub content_type: Option<String>,
    /// MQTT 5 topic alias (not supported).
    pub topic_alias: Option<u16>,
    /// MQTT 5 message expiry interval in seconds.
    pub message_expiry: Option<u32>,
}

fn qos4(q: QoS4) -> u8 {
    q as u8
}

fn qos5(q: QoS5) -> u8 {
    q as u8
}

/// Reads a CONNECT; `None` for any other packet.
pub fn hello(packet: Packet) -> Option<Hello> {
    match packet {
        Packet::V4(v4::Packet::Connect(c)) => Some(Hello {
            version: Version::V311,
            client_id: c.client_id,
            clean: c.clean_session,
            keep_alive: c.keep_alive,
            will: c.last_will.map(|w| Will {
                topic: w.topic,
                payload: w.message,
                qos: qos4(w.qos),
                retain: w.retain,
                content_type: None,
            }),
            username: c.login.as_ref().map(|l| l.username.clone()),
            password: c.login.map(|l| l.password),
            user_properties: Vec::new(),
            session_expiry: if c.clean_session { 0 } else { u32::MAX },
            receive_maximum: u16::MAX,
            max_packet_size: None,
            authentication_method: None,
        }),
        Packet::V5(v5::Packet::Connect(c, will, login)) => {
            let props = c.properties.unwrap_or_default();
            Some(Hello {
                version: Version::V5,
                client_id: c.client_id,
                clean: c.clean_start,
                keep_alive: c.keep_alive,
                will: will.map(|w| Will {
                    topic: String::from_utf8_lossy(&w.topic).into_owned(),
                    payload: w.message,
                    qos: qos5(w.qos),
                    retain: w.retain,
                    content_type: w.properties.and_then(|p| p.content_type),
                }),
                username: login
                    .as_ref()
                    .map(|l| l.username.clone())
                    .filter(|u| !u.is_empty()),
                password: login.map(|l| l.password).filter(|p| !p.is_empty()),
                user_properties: props.user_properties,
                session_expiry: props.session_expiry_interval.unwrap_or(0),
                receive_maximum: props.receive_maximum.unwrap_or(u16::MAX).max(1),
                max_packet_size: props.max_packet_size,
                authentication_method: props.authentication_method,
            })
        }
        _ => None,
    }
}

/// Reads a packet after the CONNECT.
pub fn inbound(packet: Packet) -> Inbound {
    match packet {
        Packet::V4(p) => match p {
            v4::Packet::Publish(p) => Inbound::Publish(Publish {
                topic: p.topic,
                qos: qos4(p.qos),
                pkid: p.pkid,
                dup: p.dup,
                retain: p.retain,
                payload: p.payload,
                content_type: None,
                topic_alias: None,
                message_expiry: None,
            }),
            v4::Packet::PubAck(a) => Inbound::PubAck(a.pkid),
            v4::Packet::PubRec(a) => Inbound::PubRec(a.pkid),
            v4::Packet::PubRel(a) => Inbound::PubRel(a.pkid),
            v4::Packet::PubComp(a) => Inbound::PubComp(a.pkid),
            v4::Packet::Subscribe(s) => Inbound::Subscribe {
                pkid: s.pkid,
                filters: s
                    .filters
                    .into_iter()
                    .map(|f| (f.path, qos4(f.qos)))
                    .collect(),
            },
            v4::Packet::Unsubscribe(u) => Inbound::Unsubscribe {
                pkid: u.pkid,
                filters: u.topics,
            },
            v4::Packet::PingReq => Inbound::PingReq,
            v4::Packet::Disconnect => Inbound::Disconnect {
                with_will: false,
                session_expiry: None,
            },
            v4::Packet::Connect(_) => Inbound::Connect,
            v4::Packet::ConnAck(_) => Inbound::Unexpected("CONNACK"),
            v4::Packet::SubAck(_) => Inbound::Unexpected("SUBACK"),
            v4::Packet::UnsubAck(_) => Inbound::Unexpected("UNSUBACK"),
            v4::Packet::PingResp => Inbound::Unexpected("PINGRESP"),
        },
        Packet::V5(p) => match p {
            v5::Packet::Publish(p) => {
                let props = p.properties.unwrap_or_default();
                Inbound::Publish(Publish {
                    topic: String::from_utf8_lossy(&p.topic).into_owned(),
                    qos: qos5(p.qos),
                    pkid: p.pkid,
                    dup: p.dup,
                    retain: p.retain,
                    payload: p.payload,
                    content_type: props.content_type,
                    topic_alias: props.topic_alias,
                    message_expiry: props.message_expiry_interval,
                })
            }
            v5::Packet::PubAck(a) => Inbound::PubAck(a.pkid),
            v5::Packet::PubRec(a) => Inbound::PubRec(a.pkid),
            v5::Packet::PubRel(a) => Inbound::PubRel(a.pkid),
            v5::Packet::PubComp(a) => Inbound::PubComp(a.pkid),
            v5::Packet::Subscribe(s) => Inbound::Subscribe {
                pkid: s.pkid,
                filters: s
                    .filters
                    .into_iter()
                    .map(|f| (f.path, qos5(f.qos)))
                    .collect(),
            },
            v5::Packet::Unsubscribe(u) => Inbound::Unsubscribe {
                pkid: u.pkid,
                filters: u.filters,
            },
            v5::Packet::PingReq(_) => Inbound::PingReq,
            v5::Packet::Disconnect(d) => Inbound::Disconnect {
                with_will: d.reason_code == v5::DisconnectReasonCode::DisconnectWithWillMessage,
                session_expiry: d.properties.and_then(|p| p.session_expiry_interval),
            },
            v5::Packet::Connect(..) => Inbound::Connect,
            v5::Packet::Auth(_) => Inbound::Unexpected("AUTH"),
            v5::Packet::ConnAck(_) => Inbound::Unexpected("CONNACK"),
            v5::Packet::SubAck(_) => Inbound::Unexpected("SUBACK"),
            v5::Packet::UnsubAck(_) => Inbound::Unexpected("UNSUBACK"),
            v5::Packet::PingResp(_) => Inbound::Unexpected("PINGRESP"),
        },
    }
}

/// What the hub tells a client in its CONNACK.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Welcome {
    /// Whether a session continues.
    pub session_present: bool,
    /// MQTT 5: the client id the hub assigned.
    pub assigned_client_id: Option<String>,
    /// MQTT 5: how many QoS 1 and 2 messages the hub takes unacknowledged.
    pub receive_maximum: u16,
    /// MQTT 5: largest packet the hub takes.
    pub max_packet_size: u32,
    /// MQTT 5: the keep-alive the hub uses instead of the client's.
    pub server_keep_alive: Option<u16>,
    /// MQTT 5: the session expiry the hub grants instead of the client's.
    pub session_expiry: Option<u32>,
}

/// A packet the hub writes (other than message PUBLISHes, which fan-out encodes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// A successful CONNACK.
    ConnAck(Welcome),
    /// A refusing CONNACK: the MQTT 5 reason code (mapped to the nearest 3.1.1 return code)
    /// and reason string.
    Refuse(u8, String),
    /// PUBACK with a reason code (3.1.1: the code is not sent).
    PubAck(u16, u8, Option<String>),
    /// PUBREC with a reason code.
    PubRec(u16, u8, Option<String>),
    /// PUBREL.
    PubRel(u16),
    /// PUBCOMP.
    PubComp(u16),
    /// SUBACK: per filter the granted QoS (0–2) or a reason code (≥ 0x80; 3.1.1: `0x80`).
    SubAck(u16, Vec<u8>, Option<String>),
    /// UNSUBACK: per filter a reason code (3.1.1: none).
    UnsubAck(u16, Vec<u8>),
    /// PINGRESP.
    PingResp,
    /// MQTT 5 server DISCONNECT with a reason code and string (3.1.1 has none: nothing is
    /// written).
    Disconnect(u8, String),
}

/// The nearest 3.1.1 CONNACK return code to an MQTT 5 reason code.
fn return_code_v4(code: u8) -> v4::ConnectReturnCode {
    match code {
        0x84 => v4::ConnectReturnCode::RefusedProtocolVersion,
        0x85 => v4::ConnectReturnCode::BadClientId,
        0x86 => v4::ConnectReturnCode::BadUserNamePassword,
        0x87 | 0x8C => v4::ConnectReturnCode::NotAuthorized,
        _ => v4::ConnectReturnCode::ServiceUnavailable,
    }
}

fn return_code_v5(code: u8) -> v5::ConnectReturnCode {
    use v5::ConnectReturnCode as C;
    match code {
        0x81 => C::MalformedPacket,
        0x82 => C::ProtocolError,
        0x84 => C::UnsupportedProtocolVersion,
        0x85 => C::ClientIdentifierNotValid,
        0x86 => C::BadUserNamePassword,
        0x87 => C::NotAuthorized,
        0x88 => C::ServerUnavailable,
        0x89 => C::ServerBusy,
        0x8C => C::BadAuthenticationMethod,
        0x90 => C::TopicNameInvalid,
        0x95 => C::PacketTooLarge,
        0x97 => C::QuotaExceeded,
        0x9A => C::RetainNotSupported,
        0x9B => C::QoSNotSupported,
        _ => C::UnspecifiedError,
    }
}

fn pub_ack_reason(code: u8) -> v5::PubAckReason {
    match code {
        reason::SUCCESS => v5::PubAckReason::Success,
        0x87 => v5::PubAckReason::NotAuthorized,
        0x90 => v5::PubAckReason::TopicNameInvalid,
        0x97 => v5::PubAckReason::QuotaExceeded,
        _ => v5::PubAckReason::UnspecifiedError,
    }
}

fn pub_rec_reason(code: u8) -> v5::PubRecReason {
    match code {
        reason::SUCCESS => v5::PubRecReason::Success,
        0x87 => v5::PubRecReason::NotAuthorized,
        0x90 => v5::PubRecReason::TopicNameInvalid,
        0x97 => v5::PubRecReason::QuotaExceeded,
        _ => v5::PubRecReason::UnspecifiedError,
    }
}

fn sub_ack_v5(code: u8) -> v5::SubscribeReasonCode {
    use v5::SubscribeReasonCode as S;
    match code {
        0 => S::Success(QoS5::AtMostOnce),
        1 => S::Success(QoS5::AtLeastOnce),
        2 => S::Success(QoS5::ExactlyOnce),
        0x87 => S::NotAuthorized,
        0x8F => S::TopicFilterInvalid,
        0x97 => S::QuotaExceeded,
        0x9E => S::SharedSubscriptionsNotSupported,
        0xA2 => S::WildcardSubscriptionsNotSupported,
        _ => S::Unspecified,
    }
}

fn sub_ack_v4(code: u8) -> v4::SubscribeReasonCode {
    match code {
        0 => v4::SubscribeReasonCode::Success(QoS4::AtMostOnce),
        1 => v4::SubscribeReasonCode::Success(QoS4::AtLeastOnce),
        2 => v4::SubscribeReasonCode::Success(QoS4::ExactlyOnce),
        _ => v4::SubscribeReasonCode::Failure,
    }
}

fn unsub_ack_v5(code: u8) -> v5::UnsubAckReason {
    match code {
        reason::SUCCESS => v5::UnsubAckReason::Success,
        0x11 => v5::UnsubAckReason::NoSubscriptionExisted,
        0x87 => v5::UnsubAckReason::NotAuthorized,
        0x8F => v5::UnsubAckReason::TopicFilterInvalid,
        _ => v5::UnsubAckReason::UnspecifiedError,
    }
}

/// CONNACK properties saying what the hub does not support (retain, wildcard, shared
/// subscriptions, subscription identifiers), with a reason string.
fn connack_properties(reason_string: Option<String>) -> v5::ConnAckProperties {
    v5::ConnAckProperties {
        session_expiry_interval: None,
        receive_max: None,
        max_qos: None,
        retain_available: Some(0),
        max_packet_size: None,
        assigned_client_identifier: None,
        topic_alias_max: None,
        reason_string,
        user_properties: Vec::new(),
        wildcard_subscription_available: Some(0),
        subscription_identifiers_available: Some(0),
        shared_subscription_available: Some(0),
        server_keep_alive: None,
        response_information: None,
        server_reference: None,
        authentication_method: None,
        authentication_data: None,
    }
}

impl Outbound {
    /// The packet in `version`; `None` when the version has no such packet (3.1.1 DISCONNECT
    /// from the server).
    pub fn packet(self, version: Version) -> Option<Packet> {
        Some(match version {
            Version::V311 => Packet::V4(match self {
                Outbound::ConnAck(w) => v4::Packet::ConnAck(v4::ConnAck::new(
                    v4::ConnectReturnCode::Success,
                    w.session_present,
                )),
                Outbound::Refuse(code, _) => {
                    v4::Packet::ConnAck(v4::ConnAck::new(return_code_v4(code), false))
                }
                Outbound::PubAck(pkid, ..) => v4::Packet::PubAck(v4::PubAck::new(pkid)),
                Outbound::PubRec(pkid, ..) => v4::Packet::PubRec(v4::PubRec::new(pkid)),
                Outbound::PubRel(pkid) => v4::Packet::PubRel(v4::PubRel::new(pkid)),
                Outbound::PubComp(pkid) => v4::Packet::PubComp(v4::PubComp::new(pkid)),
                Outbound::SubAck(pkid, codes, _) => v4::Packet::SubAck(v4::SubAck::new(
                    pkid,
                    codes.into_iter().map(sub_ack_v4).collect(),
                )),
                Outbound::UnsubAck(pkid, _) => v4::Packet::UnsubAck(v4::UnsubAck::new(pkid)),
                Outbound::PingResp => v4::Packet::PingResp,
                Outbound::Disconnect(..) => return None,
            }),
            Version::V5 => Packet::V5(match self {
                Outbound::ConnAck(w) => v5::Packet::ConnAck(v5::ConnAck {
                    session_present: w.session_present,
                    code: v5::ConnectReturnCode::Success,
                    properties: Some(v5::ConnAckProperties {
                        session_expiry_interval: w.session_expiry,
                        receive_max: Some(w.receive_maximum),
                        max_packet_size: Some(w.max_packet_size),
                        assigned_client_identifier: w.assigned_client_id,
                        server_keep_alive: w.server_keep_alive,
                        ..connack_properties(None)
                    }),
                }),
                Outbound::Refuse(code, why) => v5::Packet::ConnAck(v5::ConnAck {
                    session_present: false,
                    code: return_code_v5(code),
                    properties: Some(connack_properties(Some(why))),
                }),
                Outbound::PubAck(pkid, code, why) => v5::Packet::PubAck(v5::PubAck {
                    pkid,
                    reason: pub_ack_reason(code),
                    properties: why.map(|r| v5::PubAckProperties {
                        reason_string: Some(r),
                        user_properties: Vec::new(),
                    }),
                }),
                Outbound::PubRec(pkid, code, why) => v5::Packet::PubRec(v5::PubRec {
                    pkid,
                    reason: pub_rec_reason(code),
                    properties: why.map(|r| v5::PubRecProperties {
                        reason_string: Some(r),
                        user_properties: Vec::new(),
                    }),
                }),
                Outbound::PubRel(pkid) => v5::Packet::PubRel(v5::PubRel::new(pkid, None)),
                Outbound::PubComp(pkid) => v5::Packet::PubComp(v5::PubComp::new(pkid, None)),
                Outbound::SubAck(pkid, codes, why) => v5::Packet::SubAck(v5::SubAck {
                    pkid,
                    return_codes: codes.into_iter().map(sub_ack_v5).collect(),
                    properties: why.map(|r| v5::SubAckProperties {
                        reason_string: Some(r),
                        user_properties: Vec::new(),
                    }),
                }),
                Outbound::UnsubAck(pkid, codes) => v5::Packet::UnsubAck(v5::UnsubAck {
                    pkid,
                    reasons: codes.into_iter().map(unsub_ack_v5).collect(),
                    properties: None,
                }),
                Outbound::PingResp => v5::Packet::PingResp(v5::PingResp),
                Outbound::Disconnect(code, why) => v5::Packet::Disconnect(v5::Disconnect {
                    reason_code: v5::DisconnectReasonCode::try_from(code)
                        .unwrap_or(v5::DisconnectReasonCode::UnspecifiedError),
                    properties: Some(v5::DisconnectProperties {
                        session_expiry_interval: None,
                        reason_string: Some(why),
                        user_properties: Vec::new(),
                        server_reference: None,
                    }),
                }),
            }),
        })
    }
}
