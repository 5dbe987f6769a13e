//! One MQTT connection after its CONNACK: packets in (buffered across WebSocket frames), group
//! joins, leaves and sends, QoS 1 and 2 handshakes both ways, messages out from the outbox
//! within the client's receive maximum, keep-alive, and the last will when the connection ends
//! without a DISCONNECT.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use nerve_protocol::codec::mqtt::packets::{self, Hello, Inbound, Outbound, Publish, Will};
use nerve_protocol::codec::mqtt::{
    self, MqttError, PacketReader, SERVER_MESSAGES_TOPIC, Subscription, Version, reason,
};
use nerve_protocol::{Codec, Sender, Subprotocol, close};
use tokio::time::{Instant, sleep_until};
use tracing::{Instrument, debug, info_span};

use super::{MAX_IN_FLIGHT, RECEIVE_MAXIMUM};
use crate::livetrace::{Kind, TraceEvent};
use crate::metrics;
use crate::node::{Announce, Node};
use crate::registry::{Connection, ConnectionReceivers, Control, Delivery, Hub};
use crate::socket::{Message, Socket};

/// The reason a connection is closed with when a new one takes its client id.
pub(super) const TAKEN_OVER: &str = "Another connection took over this client id";

/// Most messages written per flush.
const WRITE_BATCH: usize = 64;

/// How the session ended.
enum End {
    /// The client sent DISCONNECT (with reason 0x04 in MQTT 5: the will goes out anyway).
    Disconnected { with_will: bool },
    /// The hub ended it (a protocol error, keep-alive, a REST close, …) or the socket went:
    /// the will goes out.
    Abrupt,
    /// The hub is shutting down.
    Shutdown,
}

/// The hub ends the connection: the MQTT 5 reason code and why.
struct Stop(u8, String);

impl Stop {
    fn new(code: u8, why: impl Into<String>) -> Self {
        Stop(code, why.into())
    }
}

/// The state of one MQTT connection.
pub(crate) struct MqttSession {
    app: Arc<Node>,
    hub: Arc<Hub>,
    conn: Arc<Connection>,
    rx: ConnectionReceivers,
    version: Version,
    reader: PacketReader,
    /// Longest silence from the client: 1.5 × its keep-alive.
    idle_limit: Duration,
    will: Option<Will>,
    /// Group → the QoS its subscription granted.
    subscriptions: HashMap<Arc<str>, u8>,
    /// The QoS server messages arrive at (1, or 0 after a QoS 0 subscription to their topic).
    server_qos: u8,
    /// QoS 1 messages sent and not yet acknowledged, by packet id.
    in_flight: BTreeMap<u16, Bytes>,
    /// How many may be in flight: the client's receive maximum, within the hub's bound.
    send_quota: usize,
    next_pkid: u16,
    /// QoS 2 messages received (and published) whose PUBREL has not come yet.
    incoming_qos2: HashSet<u16>,
    /// Largest packet the client takes (MQTT 5).
    max_out_packet: Option<usize>,
    /// What the client was told when the hub closed it (for `disconnected`).
    close_reason: String,
}

impl MqttSession {
    /// The session of a registered MQTT connection.
    pub(super) fn new(
        app: Arc<Node>,
        hub: Arc<Hub>,
        conn: Arc<Connection>,
        rx: ConnectionReceivers,
        hello: Hello,
        keep_alive: u16,
        reader: PacketReader,
    ) -> Self {
        MqttSession {
            app,
            hub,
            conn,
            rx,
            version: hello.version,
            reader,
            idle_limit: Duration::from_millis(u64::from(keep_alive) * 1500),
            will: hello.will,
            subscriptions: HashMap::new(),
            server_qos: 1,
            in_flight: BTreeMap::new(),
            send_quota: usize::from(hello.receive_maximum.min(MAX_IN_FLIGHT)),
            next_pkid: 0,
            incoming_qos2: HashSet::new(),
            max_out_packet: hello.max_packet_size.map(|m| m as usize),
            close_reason: String::new(),
        }
    }

    fn codec(&self) -> &'static dyn Codec {
        Subprotocol::mqtt(self.version).codec()
    }

    /// Runs the session until it ends, then removes the connection from the hub.
    pub(super) fn run(self, socket: Socket) -> impl Future<Output = ()> + Send {
        let span = info_span!("mqtt", id = %self.conn.id, hub = %self.hub.name, user = self.conn.user_id.as_deref().unwrap_or(""));
        self.drive(socket).instrument(span)
    }

    async fn drive(mut self, mut socket: Socket) {
        let end = self.attached(&mut socket).await;
        drop(socket);
        match end {
            End::Abrupt | End::Disconnected { with_will: true } => self.publish_will(),
            End::Disconnected { with_will: false } | End::Shutdown => {}
        }
        self.finish();
    }

    async fn attached(&mut self, socket: &mut Socket) -> End {
        let shutdown = self.app.shutdown.clone();
        let mut deadline = Instant::now() + self.idle_limit;
        // Packets that came with the CONNECT.
        if let Some(end) = self.read_packets(socket).await {
            return end;
        }
        loop {
            let room = self.in_flight.len() < self.send_quota;
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    self.stop(socket, Stop::new(reason::SERVER_SHUTTING_DOWN, "The hub is shutting down; reconnect"), close::GOING_AWAY).await;
                    return End::Shutdown;
                }
                ctl = self.rx.control.recv_async() => match ctl {
                    Ok(Control::Close { reason: why, code }) => {
                        let rc = if why == TAKEN_OVER {
                            reason::SESSION_TAKEN_OVER
                        } else if why.starts_with("Slow consumer") {
                            reason::QUOTA_EXCEEDED
                        } else {
                            reason::ADMINISTRATIVE_ACTION
                        };
                        self.stop(socket, Stop(rc, why), code).await;
                        return End::Abrupt;
                    }
                    Ok(Control::Reattach(_) | Control::Reshare) => {}
                    Err(_) => return End::Abrupt,
                },
                msg = socket.next() => {
                    deadline = Instant::now() + self.idle_limit;
                    match msg {
                        Some(Ok(Message::Binary(bytes))) => {
                            // Bounded: the reader refuses a packet whose header says it is
                            // larger than the limit, and a frame is at most that limit.
                            self.reader.push(&bytes);
                            if let Some(end) = self.read_packets(socket).await {
                                return end;
                            }
                        }
                        Some(Ok(Message::Text(_))) => {
                            let stop = Stop::new(reason::PROTOCOL_ERROR, "MQTT packets travel in binary WebSocket frames");
                            self.stop(socket, stop, close::UNSUPPORTED_DATA).await;
                            return End::Abrupt;
                        }
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return End::Abrupt,
                        Some(Ok(_)) => {}
                    }
                }
                d = self.rx.outbox.recv_async(), if room => {
                    let Ok(d) = d else { return End::Abrupt };
                    if self.write_batch(socket, d).await.is_err() {
                        return End::Abrupt;
                    }
                }
                _ = sleep_until(deadline) => {
                    debug!("MQTT keep-alive expired");
                    let stop = Stop::new(reason::KEEP_ALIVE_TIMEOUT, "Keep alive timeout: no packet within 1.5 times the keep-alive");
                    self.stop(socket, stop, close::GOING_AWAY).await;
                    return End::Abrupt;
                }
            }
        }
    }

    /// Handles every whole packet buffered.
    async fn read_packets(&mut self, socket: &mut Socket) -> Option<End> {
        loop {
            let packet = match self.reader.next(self.version) {
                Ok(Some(p)) => p,
                Ok(None) => return None,
                Err(e) => {
                    metrics::global().protocol_error("mqtt_packet");
                    let (rc, ws) = match e {
                        MqttError::TooLarge { .. } => (reason::PACKET_TOO_LARGE, close::TOO_BIG),
                        _ => (reason::MALFORMED_PACKET, close::INVALID_PAYLOAD),
                    };
                    self.stop(socket, Stop(rc, e.to_string()), ws).await;
                    return Some(End::Abrupt);
                }
            };
            match self.on_packet(packets::inbound(packet)).await {
                Ok(replies) => {
                    for r in replies {
                        if self.send(socket, r).await.is_err() {
                            return Some(End::Abrupt);
                        }
                    }
                }
                Err(Ok(end)) => return Some(end),
                Err(Err(stop)) => {
                    metrics::global().protocol_error("mqtt_refused");
                    self.stop(socket, stop, close::NO_RECOVERY).await;
                    return Some(End::Abrupt);
                }
            }
        }
    }

    /// Acts on one packet: the replies to write, or how the session ends.
    async fn on_packet(&mut self, packet: Inbound) -> Result<Vec<Outbound>, Result<End, Stop>> {
        match packet {
            Inbound::Publish(p) => self.on_publish(p).map_err(Err),
            Inbound::PubAck(pkid) | Inbound::PubComp(pkid) => {
                self.in_flight.remove(&pkid);
                Ok(Vec::new())
            }
            Inbound::PubRec(pkid) => {
                // The hub sends at QoS 1 at most; a PUBREC still gets its PUBREL.
                self.in_flight.remove(&pkid);
                Ok(vec![Outbound::PubRel(pkid)])
            }
            Inbound::PubRel(pkid) => {
                self.incoming_qos2.remove(&pkid);
                Ok(vec![Outbound::PubComp(pkid)])
            }
            Inbound::Subscribe { pkid, filters } => Ok(vec![self.subscribe(pkid, filters).await]),
            Inbound::Unsubscribe { pkid, filters } => Ok(vec![self.unsubscribe(pkid, filters)]),
            Inbound::PingReq => Ok(vec![Outbound::PingResp]),
            Inbound::Disconnect { with_will, .. } => Err(Ok(End::Disconnected { with_will })),
            Inbound::Connect => Err(Err(Stop::new(
                reason::PROTOCOL_ERROR,
                "A second CONNECT is a protocol error",
            ))),
            Inbound::Unexpected(name) => Err(Err(Stop::new(
                reason::PROTOCOL_ERROR,
                format!("{name} is not a packet a client sends here"),
            ))),
        }
    }

    /// A client's PUBLISH: sent to the group its topic names, acknowledged per its QoS.
    fn on_publish(&mut self, p: Publish) -> Result<Vec<Outbound>, Stop> {
        if p.retain {
            return Err(Stop::new(
                reason::RETAIN_NOT_SUPPORTED,
                "Retained messages are not supported",
            ));
        }
        if p.topic_alias.is_some() {
            return Err(Stop::new(
                reason::TOPIC_ALIAS_INVALID,
                "Topic aliases are not supported (Topic Alias Maximum is 0)",
            ));
        }
        if p.qos == 2 && self.incoming_qos2.contains(&p.pkid) {
            // A resent QoS 2 message was published already.
            return Ok(vec![Outbound::PubRec(p.pkid, reason::SUCCESS, None)]);
        }
        if p.qos == 2 && self.incoming_qos2.len() >= usize::from(RECEIVE_MAXIMUM) {
            return Err(Stop::new(
                reason::RECEIVE_MAXIMUM_EXCEEDED,
                "More QoS 2 messages unreleased than the receive maximum",
            ));
        }
        let refused = match mqtt::publish_group(&p.topic) {
            Err(why) => Some((reason::TOPIC_NAME_INVALID, why.to_string())),
            Ok(group) if !self.conn.roles.lock().can_send(group) => Some((
                reason::NOT_AUTHORIZED,
                format!("No permission to send to group '{group}'"),
            )),
            Ok(_) => None,
        };
        if let Some((code, why)) = refused {
            // 3.1.1 has no way to refuse a PUBLISH but closing; nor has QoS 0.
            return match (self.version, p.qos) {
                (Version::V5, 1) => Ok(vec![Outbound::PubAck(p.pkid, code, Some(why))]),
                (Version::V5, 2) => Ok(vec![Outbound::PubRec(p.pkid, code, Some(why))]),
                _ => Err(Stop(code, why)),
            };
        }
        self.send_to_group(&p);
        Ok(match p.qos {
            0 => Vec::new(),
            1 => vec![Outbound::PubAck(p.pkid, reason::SUCCESS, None)],
            _ => {
                self.incoming_qos2.insert(p.pkid);
                vec![Outbound::PubRec(p.pkid, reason::SUCCESS, None)]
            }
        })
    }

    fn send_to_group(&self, p: &Publish) {
        let payload = mqtt::payload_of(p.content_type.as_deref(), p.payload.clone());
        self.app.trace.emit(|| {
            self.app
                .trace
                .message(&self.hub.name, &payload)
                .of(&self.conn.id, self.conn.user_id.as_deref())
                .in_group(&p.topic)
                .detail(format!("mqtt publish {}", p.topic))
        });
        metrics::global().message_in("mqtt", p.payload.len());
        let d = Delivery::new(
            Sender::group(&p.topic, self.conn.user_id.as_deref()),
            payload,
        );
        self.app.broker.publish(
            &self.hub.name,
            Some(&self.hub),
            crate::cluster::Target::Group(p.topic.clone()),
            crate::cluster::Scope::default(),
            d,
        );
    }

    /// SUBSCRIBE: each filter joins its group (with the joinLeaveGroup role for it).
    async fn subscribe(&mut self, pkid: u16, filters: Vec<(String, u8)>) -> Outbound {
        let mut codes = Vec::with_capacity(filters.len());
        let mut why = None;
        for (filter, qos) in filters {
            let qos = qos.min(2);
            let code = match mqtt::subscription(&filter) {
                Err(refusal) => {
                    why.get_or_insert_with(|| refusal.message().to_string());
                    refusal.code()
                }
                Ok(Subscription::ServerMessages) => {
                    self.server_qos = qos.min(1);
                    qos
                }
                Ok(Subscription::Group(group)) => {
                    if !self.conn.roles.lock().can_join_leave(group) {
                        why.get_or_insert_with(|| format!("No permission to join group '{group}'"));
                        reason::NOT_AUTHORIZED
                    } else {
                        match self.app.join(&self.hub, &self.conn, group, Announce::Yes) {
                            Ok(_) => {
                                self.app.broker.group_ready(&self.hub.name, group).await;
                                self.subscriptions.insert(Arc::from(group), qos);
                                qos
                            }
                            Err(refused) => {
                                why.get_or_insert_with(|| refused.to_string());
                                reason::QUOTA_EXCEEDED
                            }
                        }
                    }
                }
            };
            codes.push(code);
        }
        Outbound::SubAck(pkid, codes, why)
    }

    /// UNSUBSCRIBE: each filter leaves its group.
    fn unsubscribe(&mut self, pkid: u16, filters: Vec<String>) -> Outbound {
        let codes = filters
            .iter()
            .map(|filter| match mqtt::subscription(filter) {
                Err(_) => reason::TOPIC_FILTER_INVALID,
                Ok(Subscription::ServerMessages) => {
                    self.server_qos = 1;
                    reason::SUCCESS
                }
                Ok(Subscription::Group(group)) => {
                    if !self.conn.roles.lock().can_join_leave(group) {
                        return reason::NOT_AUTHORIZED;
                    }
                    self.subscriptions.remove(group);
                    if self.app.leave(&self.hub, &self.conn, group) {
                        reason::SUCCESS
                    } else {
                        reason::NO_SUBSCRIPTION_EXISTED
                    }
                }
            })
            .collect();
        Outbound::UnsubAck(pkid, codes)
    }

    /// Writes `first` and whatever else is queued (while the in-flight window has room), then
    /// flushes once.
    async fn write_batch(
        &mut self,
        socket: &mut Socket,
        first: Arc<Delivery>,
    ) -> Result<(), crate::socket::Error> {
        let mut next = Some(first);
        let mut written = 0;
        while let Some(d) = next.take() {
            self.conn.dequeued(&d);
            written += 1;
            if let Some(bytes) = self.frame_for(&d) {
                let m = metrics::global();
                m.messages_out.inc();
                m.bytes_out.inc_by(bytes.len() as u64);
                socket.feed(Message::Binary(bytes)).await?;
            }
            if written < WRITE_BATCH && self.in_flight.len() < self.send_quota {
                next = self.rx.outbox.try_recv().ok();
            }
        }
        socket.flush().await
    }

    /// This connection's copy of a message: the PUBLISH fan-out encoded once for its version,
    /// at the QoS of its subscription (at most 1, as Azure publishes) with its own packet id.
    fn frame_for(&mut self, d: &Delivery) -> Option<Bytes> {
        let Message::Binary(shared) = d.frame(self.codec()) else {
            return None;
        };
        let topic = mqtt::topic_of(&shared)?;
        let qos = if topic == SERVER_MESSAGES_TOPIC {
            self.server_qos
        } else {
            // Groups joined through the token or REST count as QoS 1 subscriptions.
            self.subscriptions.get(topic).copied().unwrap_or(1)
        }
        .min(1);
        let pkid = if qos > 0 { self.next_packet_id() } else { 0 };
        let bytes = mqtt::stamp(self.version, &shared, qos, pkid, None).ok()?;
        if self.max_out_packet.is_some_and(|max| bytes.len() > max) {
            // MQTT 5: a packet larger than the client takes is dropped, not sent.
            return None;
        }
        if qos > 0 {
            self.in_flight.insert(pkid, bytes.clone());
        }
        Some(bytes)
    }

    /// The next packet id not in flight (1–65535).
    fn next_packet_id(&mut self) -> u16 {
        loop {
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
            if !self.in_flight.contains_key(&self.next_pkid) {
                return self.next_pkid;
            }
        }
    }

    async fn send(&self, socket: &mut Socket, out: Outbound) -> Result<(), crate::socket::Error> {
        let Some(bytes) = out.packet(self.version).and_then(|p| mqtt::write(&p).ok()) else {
            return Ok(());
        };
        socket.send(Message::Binary(bytes)).await
    }

    /// Ends the connection from the hub's side: MQTT 5 DISCONNECT with the reason code and
    /// string, then the WebSocket close.
    async fn stop(&mut self, socket: &mut Socket, stop: Stop, ws_code: u16) {
        let Stop(code, why) = stop;
        debug!(code, reason = %why, "closing an MQTT connection");
        self.close_reason.clone_from(&why);
        let _ = self
            .send(socket, Outbound::Disconnect(code, why.clone()))
            .await;
        super::goodbye(socket, ws_code, &why).await;
    }

    /// Publishes the last will to its group, if the connection may send there.
    fn publish_will(&mut self) {
        let Some(will) = self.will.take() else {
            return;
        };
        if !self.conn.roles.lock().can_send(&will.topic) {
            debug!(topic = %will.topic, "the will's group is not one this connection may send to");
            return;
        }
        let p = Publish {
            topic: will.topic,
            qos: will.qos,
            pkid: 0,
            dup: false,
            retain: false,
            payload: will.payload,
            content_type: will.content_type,
            topic_alias: None,
            message_expiry: None,
        };
        self.send_to_group(&p);
    }

    /// Removes the connection from the hub.
    fn finish(&mut self) {
        self.conn.close("", close::NO_RECOVERY);
        self.app.closing(&self.conn);
        self.hub.remove_connection(&self.conn);
        self.app
            .upstream
            .disconnected(self.conn.event_context(), &self.close_reason);
        self.app.trace.emit(|| {
            TraceEvent::new(Kind::Disconnect, &self.hub.name)
                .of(&self.conn.id, self.conn.user_id.as_deref())
                .detail(&self.close_reason)
        });
        metrics::global().connections.dec();
        debug!("MQTT connection closed");
    }
}
