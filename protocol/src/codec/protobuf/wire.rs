//! The messages of the protobuf subprotocols, as `prost` reads and writes them. Names and field
//! numbers follow the service's published `webpubsub.v1.proto` (package `azure.webpubsub`), so
//! any client generated from that file interoperates; the frames the hub does not run (streams,
//! group state) are declared only as far as needed to recognize and answer them.

use std::collections::HashMap;

use prost::{Message, Oneof};
use prost_types::Any;

/// What a client sends: one per binary WebSocket frame.
#[derive(Clone, PartialEq, Message)]
pub struct UpstreamMessage {
    /// The request.
    #[prost(
        oneof = "Upstream",
        tags = "1, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17"
    )]
    pub message: Option<Upstream>,
}

/// The requests of [`UpstreamMessage`].
#[derive(Clone, PartialEq, Oneof)]
pub enum Upstream {
    /// Publish to a group.
    #[prost(message, tag = "1")]
    SendToGroup(SendToGroup),
    /// A user event for the upstream.
    #[prost(message, tag = "5")]
    Event(Event),
    /// Join a group.
    #[prost(message, tag = "6")]
    JoinGroup(GroupRequest),
    /// Leave a group.
    #[prost(message, tag = "7")]
    LeaveGroup(GroupRequest),
    /// Acknowledge messages up to a sequence id (reliable protocol).
    #[prost(message, tag = "8")]
    SequenceAck(SequenceAck),
    /// Keep-alive.
    #[prost(message, tag = "9")]
    Ping(Empty),
    /// A user event whose upstream reply comes back as an invoke response.
    #[prost(message, tag = "10")]
    InvokeEvent(InvokeEvent),
    /// Cancel an invocation.
    #[prost(message, tag = "11")]
    CancelInvocation(CancelInvocation),
    /// Stream data (not run by this hub).
    #[prost(message, tag = "13")]
    StreamData(StreamRef),
    /// Stream end (not run by this hub).
    #[prost(message, tag = "14")]
    StreamEnd(StreamRef),
    /// Set group state (not run by this hub).
    #[prost(message, tag = "15")]
    SetGroupState(GroupRequest),
    /// Subscribe to group state (not run by this hub).
    #[prost(message, tag = "16")]
    SubscribeGroupState(GroupRequest),
    /// Unsubscribe from group state (not run by this hub).
    #[prost(message, tag = "17")]
    UnsubscribeGroupState(GroupRequest),
}

/// `SendToGroupMessage`.
#[derive(Clone, PartialEq, Message)]
pub struct SendToGroup {
    /// Target group.
    #[prost(string, tag = "1")]
    pub group: String,
    /// Ack id, if the client wants an ack.
    #[prost(uint64, optional, tag = "2")]
    pub ack_id: Option<u64>,
    /// The data.
    #[prost(message, optional, tag = "3")]
    pub data: Option<MessageData>,
    /// Do not deliver back to the sender.
    #[prost(bool, optional, tag = "4")]
    pub no_echo: Option<bool>,
    /// Time to live in seconds.
    #[prost(uint32, optional, tag = "5")]
    pub ttl_seconds: Option<u32>,
    /// Message metadata.
    #[prost(map = "string, string", tag = "6")]
    pub metadata: HashMap<String, String>,
    /// Set when the message starts a stream (not run by this hub).
    #[prost(message, optional, tag = "7")]
    pub stream: Option<StreamStart>,
}

/// `EventMessage`.
#[derive(Clone, PartialEq, Message)]
pub struct Event {
    /// Event name.
    #[prost(string, tag = "1")]
    pub event: String,
    /// The data.
    #[prost(message, optional, tag = "2")]
    pub data: Option<MessageData>,
    /// Ack id, if the client wants an ack.
    #[prost(uint64, optional, tag = "3")]
    pub ack_id: Option<u64>,
}

/// `JoinGroupMessage`, `LeaveGroupMessage` and the group-state requests: a group and an ack id.
#[derive(Clone, PartialEq, Message)]
pub struct GroupRequest {
    /// The group.
    #[prost(string, tag = "1")]
    pub group: String,
    /// Ack id, if the client wants an ack.
    #[prost(uint64, optional, tag = "2")]
    pub ack_id: Option<u64>,
}

/// `SequenceAckMessage`.
#[derive(Clone, PartialEq, Message)]
pub struct SequenceAck {
    /// Everything up to this id is acknowledged.
    #[prost(uint64, tag = "1")]
    pub sequence_id: u64,
}

/// A message without fields (`PingMessage`, `PongMessage`).
#[derive(Clone, PartialEq, Message)]
pub struct Empty {}

/// `InvokeEventMessage`.
#[derive(Clone, PartialEq, Message)]
pub struct InvokeEvent {
    /// Event name.
    #[prost(string, tag = "1")]
    pub event: String,
    /// Client-chosen invocation id.
    #[prost(string, tag = "2")]
    pub invocation_id: String,
    /// The data.
    #[prost(message, optional, tag = "3")]
    pub data: Option<MessageData>,
}

/// `CancelInvocationMessage`.
#[derive(Clone, PartialEq, Message)]
pub struct CancelInvocation {
    /// The invocation to cancel.
    #[prost(string, tag = "1")]
    pub invocation_id: String,
}

/// `StreamStartInfo`.
#[derive(Clone, PartialEq, Message)]
pub struct StreamStart {
    /// The stream.
    #[prost(string, tag = "1")]
    pub stream_id: String,
}

/// The stream id of `StreamDataMessage` and `StreamEndMessage`.
#[derive(Clone, PartialEq, Message)]
pub struct StreamRef {
    /// The stream.
    #[prost(string, tag = "1")]
    pub stream_id: String,
}

/// `MessageData`: one of text, bytes, a packed protobuf message or JSON text.
#[derive(Clone, PartialEq, Message)]
pub struct MessageData {
    /// The data.
    #[prost(oneof = "Data", tags = "1, 2, 3, 4")]
    pub data: Option<Data>,
}

/// The forms of [`MessageData`].
#[derive(Clone, PartialEq, Oneof)]
pub enum Data {
    /// `dataType` text.
    #[prost(string, tag = "1")]
    Text(String),
    /// `dataType` binary.
    #[prost(bytes = "bytes", tag = "2")]
    Binary(bytes::Bytes),
    /// `dataType` protobuf.
    #[prost(message, tag = "3")]
    Protobuf(Any),
    /// `dataType` json, as JSON text.
    #[prost(string, tag = "4")]
    Json(String),
}

/// What the hub sends: one per binary WebSocket frame.
#[derive(Clone, PartialEq, Message)]
pub struct DownstreamMessage {
    /// The frame.
    #[prost(oneof = "Downstream", tags = "1, 2, 3, 4, 5, 8")]
    pub message: Option<Downstream>,
}

/// The frames of [`DownstreamMessage`].
#[derive(Clone, PartialEq, Oneof)]
pub enum Downstream {
    /// The answer to a request with an ack id.
    #[prost(message, tag = "1")]
    Ack(Ack),
    /// A group or server message.
    #[prost(message, tag = "2")]
    Data(DataMessage),
    /// `connected` or `disconnected`.
    #[prost(message, tag = "3")]
    System(System),
    /// The answer to a ping.
    #[prost(message, tag = "4")]
    Pong(Empty),
    /// The answer to an invoke.
    #[prost(message, tag = "5")]
    InvokeResponse(InvokeResponse),
    /// A stream the hub does not run.
    #[prost(message, tag = "8")]
    StreamClosed(StreamClosed),
}

/// `AckMessage`.
#[derive(Clone, PartialEq, Message)]
pub struct Ack {
    /// The request's ack id.
    #[prost(uint64, tag = "1")]
    pub ack_id: u64,
    /// Whether it succeeded.
    #[prost(bool, tag = "2")]
    pub success: bool,
    /// Why it failed.
    #[prost(message, optional, tag = "3")]
    pub error: Option<Error>,
}

/// `ErrorMessage` of acks, invoke responses and closed streams.
#[derive(Clone, PartialEq, Message)]
pub struct Error {
    /// The error name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// What went wrong.
    #[prost(string, tag = "2")]
    pub message: String,
}

/// `DataMessage`.
#[derive(Clone, PartialEq, Message)]
pub struct DataMessage {
    /// `group` or `server`.
    #[prost(string, tag = "1")]
    pub from: String,
    /// The group, for group messages.
    #[prost(string, optional, tag = "2")]
    pub group: Option<String>,
    /// The data.
    #[prost(message, optional, tag = "3")]
    pub data: Option<MessageData>,
    /// Its sequence id on a reliable connection.
    #[prost(uint64, optional, tag = "4")]
    pub sequence_id: Option<u64>,
}

/// `SystemMessage`.
#[derive(Clone, PartialEq, Message)]
pub struct System {
    /// Which one.
    #[prost(oneof = "SystemKind", tags = "1, 2")]
    pub message: Option<SystemKind>,
}

/// The system messages.
#[derive(Clone, PartialEq, Oneof)]
pub enum SystemKind {
    /// The connection is up.
    #[prost(message, tag = "1")]
    Connected(Connected),
    /// The connection ends.
    #[prost(message, tag = "2")]
    Disconnected(Disconnected),
}

/// `ConnectedMessage`.
#[derive(Clone, PartialEq, Message)]
pub struct Connected {
    /// The connection id.
    #[prost(string, tag = "1")]
    pub connection_id: String,
    /// The user id, empty without one.
    #[prost(string, tag = "2")]
    pub user_id: String,
    /// The token that resumes the session (reliable protocol).
    #[prost(string, optional, tag = "3")]
    pub reconnection_token: Option<String>,
}

/// `DisconnectedMessage`.
#[derive(Clone, PartialEq, Message)]
pub struct Disconnected {
    /// Why.
    #[prost(string, tag = "2")]
    pub reason: String,
}

/// `InvokeResponseMessage`.
#[derive(Clone, PartialEq, Message)]
pub struct InvokeResponse {
    /// The invocation it answers.
    #[prost(string, tag = "1")]
    pub invocation_id: String,
    /// Whether it succeeded.
    #[prost(bool, tag = "2")]
    pub success: bool,
    /// The reply's data.
    #[prost(message, optional, tag = "3")]
    pub data: Option<MessageData>,
    /// Why it failed.
    #[prost(message, optional, tag = "4")]
    pub error: Option<Error>,
}

/// `StreamClosedMessage`.
#[derive(Clone, PartialEq, Message)]
pub struct StreamClosed {
    /// The stream.
    #[prost(string, tag = "1")]
    pub stream_id: String,
    /// Why it closed.
    #[prost(message, optional, tag = "2")]
    pub error: Option<Error>,
}
