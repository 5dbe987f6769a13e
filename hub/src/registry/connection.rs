//! The shared handle of one client connection, as the registry and publishers see it.
//!
//! Publishers push pre-encoded messages into the connection's bounded outbox and never wait: a
//! full outbox (in messages or bytes) marks the connection as a slow consumer and asks its
//! session to close it, so one slow reader cannot stall a publisher or grow memory.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use nerve_protocol::{Codec, Encoding, Payload, Sender, ServerFrame, Subprotocol, close};
use parking_lot::Mutex;

use super::roles::Roles;
use crate::filter::{Filter, Target};
use crate::socket::{Message, Socket, Utf8Bytes};
use crate::upstream::EventContext;

/// A new connection id: 128 random bits, URL-safe base64.
pub fn new_connection_id() -> String {
    use base64::Engine;
    let b: [u8; 16] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// One message on its way to many connections: encoded once per encoding, shared by all.
#[derive(Debug)]
pub struct Delivery {
    /// The JSON-protocol frame (without `sequenceId`): what JSON connections get, and the form
    /// the cluster stores and forwards.
    pub json_frame: Utf8Bytes,
    /// The frame simple WebSocket clients get: the payload alone.
    pub raw_frame: Message,
    /// The frame protobuf clients get, encoded when the first of them takes it.
    protobuf_frame: OnceLock<Message>,
    /// The PUBLISH MQTT 3.1.1 and 5.0 clients get (at QoS 1, before each connection's packet
    /// id and QoS), encoded when the first of them takes it.
    mqtt_frames: [OnceLock<Message>; 2],
    /// The payload.
    pub payload: Payload,
    /// Where the message sits in its group's history, when the cluster keeps one.
    pub position: Option<Position>,
    /// Which node published a group message, and its number there: set by a cluster that
    /// delivers a node's own group messages to its own members before they reach the history.
    pub published: OnceLock<Published>,
    /// When the message expires (Unix milliseconds), for a message sent with a TTL: after it,
    /// the message is no longer written to a connection nor resent from a reliable buffer.
    pub expires_at: Option<u64>,
}

/// A group message as its publishing node numbered it. Each node process numbers the group
/// messages it publishes, in the order it hands them to its members and to the group's
/// history, so "this node's messages up to number n" names a set that needs no history id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The group.
    pub group: Arc<str>,
    /// The publishing node process (unique in the cluster and over restarts).
    pub origin: u64,
    /// The message's number among the origin's group messages.
    pub seq: u64,
}

/// A message's place in a group's history: the group and the history entry id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The group.
    pub group: Arc<str>,
    /// The entry id (milliseconds, sequence), ordered as the history is.
    pub id: (u64, u64),
}

impl Delivery {
    /// Encodes a message once for every encoding.
    pub fn new(from: Sender<'_>, payload: Payload) -> Arc<Self> {
        Delivery::with_ttl(from, payload, 0)
    }

    /// Encodes a message that expires `ttl_secs` from now (0: never), as `messageTtlSeconds`
    /// and `ttlSeconds` ask.
    pub fn with_ttl(from: Sender<'_>, payload: Payload, ttl_secs: u64) -> Arc<Self> {
        let json_frame = ServerFrame::message(from, &payload).to_json();
        let expires_at = (ttl_secs > 0).then(|| now_ms().saturating_add(ttl_secs * 1000));
        Delivery::from_parts(json_frame, payload, None, None, expires_at)
    }

    /// Whether the message's TTL has passed.
    pub fn expired(&self) -> bool {
        self.expires_at.is_some_and(|at| now_ms() >= at)
    }

    /// Rebuilds a message encoded elsewhere (another node), keeping its frame as it is.
    pub fn from_parts(
        json_frame: String,
        payload: Payload,
        position: Option<Position>,
        published: Option<Published>,
        expires_at: Option<u64>,
    ) -> Arc<Self> {
        // The raw frame is the payload alone, whoever sent it.
        let raw = ServerFrame::message(Sender::Server, &payload);
        let raw_frame = Subprotocol::Simple
            .codec()
            .encode(&raw)
            .map_or(Message::Binary(payload.raw.clone()), crate::socket::message);
        Arc::new(Delivery {
            json_frame: Utf8Bytes::from(json_frame),
            raw_frame,
            protobuf_frame: OnceLock::new(),
            mqtt_frames: [OnceLock::new(), OnceLock::new()],
            payload,
            position,
            published: published.map_or_else(OnceLock::new, OnceLock::from),
            expires_at,
        })
    }

    /// The same group message with its history offset in the JSON frame and its position.
    pub fn at_offset(&self, group: Arc<str>, offset: nerve_protocol::Offset) -> Arc<Self> {
        let frame = nerve_protocol::codec::json::with_offset(&self.json_frame, offset);
        Delivery::from_parts(
            frame,
            self.payload.clone(),
            Some(Position {
                group,
                id: offset.into(),
            }),
            self.published.get().cloned(),
            self.expires_at,
        )
    }

    /// The shared frame for connections whose codec writes messages as `codec` does.
    pub fn frame(&self, codec: &dyn Codec) -> Message {
        match codec.encoding() {
            Encoding::Json => Message::Text(self.json_frame.clone()),
            Encoding::Raw => self.raw_frame.clone(),
            Encoding::Protobuf => self
                .protobuf_frame
                .get_or_init(|| self.transcode(codec))
                .clone(),
            Encoding::Mqtt311 => self.mqtt_frames[0]
                .get_or_init(|| self.transcode(codec))
                .clone(),
            Encoding::Mqtt5 => self.mqtt_frames[1]
                .get_or_init(|| self.transcode(codec))
                .clone(),
        }
    }

    /// Encodes the message for `codec` from its JSON frame, which says who sent it whether it
    /// was published here or on another node.
    fn transcode(&self, codec: &dyn Codec) -> Message {
        let from = match ServerFrame::from_json(&self.json_frame) {
            Ok(ServerFrame::Message(m)) => m.from,
            // The hub wrote this frame; should it not read back, the data still goes out.
            _ => Sender::Server,
        };
        codec
            .encode(&ServerFrame::message(from, &self.payload))
            .map_or(
                Message::Binary(self.payload.raw.clone()),
                crate::socket::message,
            )
    }

    /// Bytes counted against a connection's outbox.
    pub fn size(&self) -> usize {
        self.json_frame.len()
    }
}

/// The wall clock in Unix milliseconds: expiry times cross nodes, so they are wall-clock times.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What a session is asked to do by others.
pub enum Control {
    /// Send `disconnected` with the reason, close with the code, end the session.
    Close {
        /// Reason given to the client.
        reason: String,
        /// WebSocket close code.
        code: u16,
    },
    /// A reliable client came back: continue the session on this socket.
    Reattach(Box<Socket>),
    /// The cluster's store may have lost this session (Redis came back empty, or this node
    /// was cut off from it): write it there again, whole.
    Reshare,
}

/// Why a publisher could not queue a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The connection is closing.
    Closed,
    /// The outbox was full; the connection is being closed as a slow consumer.
    SlowConsumer,
}

/// The shared state of one connection.
pub struct Connection {
    /// Connection id.
    pub id: Arc<str>,
    /// Hub name.
    pub hub: Arc<str>,
    /// User id, if any.
    pub user_id: Option<Arc<str>>,
    /// Negotiated subprotocol.
    pub protocol: Subprotocol,
    /// Token proving a reliable client may resume this session.
    pub reconnection_token: Option<Box<str>>,
    /// Current permissions.
    pub roles: Mutex<Roles>,
    /// Groups this connection is in.
    pub groups: Mutex<Vec<Arc<str>>>,
    outbox: flume::Sender<Arc<Delivery>>,
    control: flume::Sender<Control>,
    queued_bytes: AtomicUsize,
    max_queued_bytes: usize,
    closing: AtomicBool,
    handed_over: AtomicBool,
    reshare: AtomicBool,
}

/// The session's ends of a connection's channels.
pub struct ConnectionReceivers {
    /// Messages to deliver.
    pub outbox: flume::Receiver<Arc<Delivery>>,
    /// Control requests.
    pub control: flume::Receiver<Control>,
}

/// What is needed to create a connection handle.
pub struct ConnectionSpec {
    /// Connection id.
    pub id: Arc<str>,
    /// Hub name.
    pub hub: Arc<str>,
    /// User id, if any.
    pub user_id: Option<Arc<str>>,
    /// Negotiated subprotocol.
    pub protocol: Subprotocol,
    /// Initial roles.
    pub roles: Roles,
    /// Reconnection token (reliable protocol).
    pub reconnection_token: Option<Box<str>>,
    /// Outbox capacity in messages.
    pub max_queued_messages: usize,
    /// Outbox capacity in bytes.
    pub max_queued_bytes: usize,
}

impl Connection {
    /// Creates a connection handle and the session's receiving ends.
    pub fn new(spec: ConnectionSpec) -> (Arc<Self>, ConnectionReceivers) {
        let (otx, orx) = flume::bounded(spec.max_queued_messages.max(1));
        let (ctx, crx) = flume::bounded(4);
        let conn = Arc::new(Connection {
            id: spec.id,
            hub: spec.hub,
            user_id: spec.user_id,
            protocol: spec.protocol,
            reconnection_token: spec.reconnection_token,
            roles: Mutex::new(spec.roles),
            groups: Mutex::new(Vec::new()),
            outbox: otx,
            control: ctx,
            queued_bytes: AtomicUsize::new(0),
            max_queued_bytes: spec.max_queued_bytes,
            closing: AtomicBool::new(false),
            handed_over: AtomicBool::new(false),
            reshare: AtomicBool::new(false),
        });
        (
            conn,
            ConnectionReceivers {
                outbox: orx,
                control: crx,
            },
        )
    }

    /// Queues a message without waiting. A full outbox closes the connection.
    pub fn push(&self, d: &Arc<Delivery>) -> Result<(), PushError> {
        if self.closing.load(Ordering::Relaxed) {
            return Err(PushError::Closed);
        }
        let size = d.size();
        let queued = self.queued_bytes.fetch_add(size, Ordering::Relaxed) + size;
        if queued > self.max_queued_bytes {
            self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            self.kick_slow_consumer();
            return Err(PushError::SlowConsumer);
        }
        match self.outbox.try_send(d.clone()) {
            Ok(()) => Ok(()),
            Err(flume::TrySendError::Full(_)) => {
                self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
                self.kick_slow_consumer();
                Err(PushError::SlowConsumer)
            }
            Err(flume::TrySendError::Disconnected(_)) => {
                self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
                Err(PushError::Closed)
            }
        }
    }

    /// Called by the session for each message taken from the outbox.
    pub fn dequeued(&self, d: &Delivery) {
        self.queued_bytes.fetch_sub(d.size(), Ordering::Relaxed);
    }

    fn kick_slow_consumer(&self) {
        if !self.closing.swap(true, Ordering::Relaxed) {
            crate::metrics::global().slow_consumer_kicks.inc();
            let _ = self.control.try_send(Control::Close {
                reason: "Slow consumer: the connection's outbox is full".into(),
                code: close::NO_RECOVERY,
            });
        }
    }

    /// Asks the session to close with a reason (REST close, shutdown). Returns false if it was
    /// already closing.
    pub fn close(&self, reason: &str, code: u16) -> bool {
        if self.closing.swap(true, Ordering::Relaxed) {
            return false;
        }
        let _ = self.control.try_send(Control::Close {
            reason: reason.to_string(),
            code,
        });
        true
    }

    /// Hands a new socket to a reliable session. Gives the socket back if the session is gone
    /// or closing.
    pub fn reattach(&self, ws: Box<Socket>) -> Result<(), Option<Box<Socket>>> {
        if self.closing.load(Ordering::Relaxed) {
            return Err(Some(ws));
        }
        self.control
            .try_send(Control::Reattach(ws))
            .map_err(|e| match e.into_inner() {
                Control::Reattach(ws) => Some(ws),
                Control::Close { .. } | Control::Reshare => None,
            })
    }

    /// Asks a reliable session to write itself to the cluster's store again, whole. The flag
    /// outlives a full control channel: the session checks it whenever it writes.
    pub fn reshare(&self) {
        if !self.reshare.swap(true, Ordering::Relaxed) {
            let _ = self.control.try_send(Control::Reshare);
        }
    }

    /// Whether the session was asked to write itself again (and clears the request).
    pub fn take_reshare(&self) -> bool {
        self.reshare.swap(false, Ordering::Relaxed)
    }

    /// Ends the session here because another node resumes it: its shared state stays.
    pub fn hand_over(&self) {
        self.handed_over.store(true, Ordering::Relaxed);
        self.close("The session moved to another node", close::GOING_AWAY);
    }

    /// Whether the session was handed over to another node.
    pub fn is_handed_over(&self) -> bool {
        self.handed_over.load(Ordering::Relaxed)
    }

    /// Whether the connection is closing.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    /// Records that this connection joined `group`; false if it already had.
    pub(crate) fn add_group(&self, group: &Arc<str>) -> bool {
        let mut g = self.groups.lock();
        if g.iter().any(|x| x == group) {
            return false;
        }
        g.push(group.clone());
        true
    }

    /// Records that this connection left `group`; false if it was not in it.
    pub(crate) fn remove_group(&self, group: &str) -> bool {
        let mut g = self.groups.lock();
        match g.iter().position(|x| &**x == group) {
            Some(i) => {
                g.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// Who this connection is, as upstream events name it (before a connect handler's choice
    /// of subprotocol, which the upstream client remembers).
    pub fn event_context(&self) -> EventContext {
        EventContext {
            hub: self.hub.clone(),
            connection_id: self.id.clone(),
            user_id: self.user_id.clone(),
            subprotocol: self.protocol.name().map(Arc::from),
        }
    }

    /// Whether an OData filter is true for this connection (reads its groups under their
    /// lock).
    pub fn matches(&self, filter: &Filter) -> bool {
        let groups = self.groups.lock();
        filter.matches(&Target {
            connection_id: &self.id,
            user_id: self.user_id.as_deref(),
            groups: &groups,
        })
    }

    /// Whether this connection is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.lock().iter().any(|x| &**x == group)
    }
}
