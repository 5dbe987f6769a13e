//! One task per connection: read frames, act on them, write the outbox, keep the connection
//! alive, and for reliable clients survive a dropped socket until the client comes back.

mod dedupe;
mod frames;
pub mod mqtt;
pub mod open;
mod rate;
mod reliable;
mod replay;
mod shared;

pub use dedupe::AckDedupe;
pub use reliable::{BufferFull, ReliableBuffer};
pub(crate) use shared::Shared;

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use nerve_protocol::{Codec, FrameRef, ServerFrame, close};
use tokio::time::{Instant, sleep_until};
use tracing::{Instrument, debug, info_span};

use crate::livetrace::{Kind, TraceEvent};
use crate::metrics;
use crate::node::Node;
use crate::registry::{Connection, ConnectionReceivers, Control, Delivery, Hub};
use crate::socket::{Message, Socket};

/// How a simple (no subprotocol) client's frames are handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimpleMode {
    /// Each frame is the `message` user event (needs an upstream handler).
    SendEvent,
    /// Each frame is published to this group.
    SendToGroup(String),
}

/// Most messages written per flush, so one busy connection yields to others.
const WRITE_BATCH: usize = 64;

/// Longest the echo of a client's close frame may take to leave: a client that closed and
/// stopped reading must not hold its session's task.
const CLOSE_ECHO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Why the attached loop stopped.
pub(crate) enum End {
    /// The session is over.
    Finished,
    /// The socket is gone (dropped, or closed by the client); a reliable session may wait for
    /// its client.
    Dropped,
    /// A reconnecting client brought a new socket.
    Reattached(Box<Socket>),
}

/// The state of one connection's session.
pub struct Session {
    pub(crate) app: Arc<Node>,
    pub(crate) hub: Arc<Hub>,
    pub(crate) conn: Arc<Connection>,
    rx: ConnectionReceivers,
    pub(crate) reliable: Option<ReliableBuffer>,
    pub(crate) dedupe: AckDedupe,
    pub(crate) simple_mode: SimpleMode,
    /// The lane to the upstream for blocking user events.
    pub(crate) events: crate::upstream::EventPipe,
    /// The reason the client was given when the session closed it (for `disconnected`).
    close_reason: std::sync::OnceLock<String>,
    /// Cluster state of a reliable session; `None` on a single node.
    pub(crate) shared: Option<Shared>,
    /// Whether the session continues one served before (another node's, or this one's).
    pub(crate) resumed: bool,
    /// The client's message and byte rate limits.
    pub(crate) rate: crate::limits::ConnectionRate,
    /// Where each group's replay by offset ended (`replay`), when the client asked for one.
    replayed: replay::Replayed,
}

impl Session {
    /// Creates the session of a registered connection.
    pub fn new(
        app: Arc<Node>,
        hub: Arc<Hub>,
        conn: Arc<Connection>,
        rx: ConnectionReceivers,
        simple_mode: SimpleMode,
    ) -> Self {
        let limits = &app.config.limits;
        let reliable = conn
            .protocol
            .is_reliable()
            .then(|| ReliableBuffer::new(limits.outbox_messages, limits.outbox_bytes));
        let dedupe = AckDedupe::new(limits.ack_dedupe_window);
        let rate = crate::limits::ConnectionRate::new(limits);
        Session {
            app,
            hub,
            conn,
            rx,
            reliable,
            dedupe,
            simple_mode,
            events: crate::upstream::EventPipe::new(),
            close_reason: std::sync::OnceLock::new(),
            shared: None,
            resumed: false,
            rate,
            replayed: None,
        }
    }

    /// Reads the client's frames and writes the hub's, in the connection's subprotocol (looked
    /// up, not stored, so an idle session holds nothing for it).
    pub(crate) fn codec(&self) -> &'static dyn Codec {
        self.conn.protocol.codec()
    }

    /// Runs the session until it ends, then removes the connection from the hub.
    pub fn run(self, socket: Socket) -> impl Future<Output = ()> + Send {
        let span = info_span!("conn", id = %self.conn.id, hub = %self.hub.name, user = self.conn.user_id.as_deref().unwrap_or(""));
        // The span wraps a plain async fn, so the task holding an idle connection keeps one
        // copy of the session and its socket, not the two an async block inside would hold.
        self.drive(socket).instrument(span)
    }

    async fn drive(mut self, mut socket: Socket) {
        let mut resumed = self.resumed;
        self.share().await;
        loop {
            if self.greet(&mut socket, resumed).await.is_err() {
                drop(socket);
                let Some(new) = self.wait_if_reliable().await else {
                    break;
                };
                socket = *new;
                resumed = true;
                continue;
            }
            match self.attached(&mut socket).await {
                End::Finished => break,
                End::Reattached(new) => {
                    socket = *new;
                }
                End::Dropped => {
                    // The old socket's TCP connection ends now: a client that sent a close
                    // frame waits for it before it reconnects.
                    drop(socket);
                    let Some(new) = self.wait_if_reliable().await else {
                        break;
                    };
                    socket = *new;
                }
            }
            resumed = true;
            metrics::global().reconnections.inc();
        }
        self.finish().await;
    }

    /// For a reliable session, waits for the client to come back with a new socket; `None`
    /// when the session is over.
    async fn wait_if_reliable(&mut self) -> Option<Box<Socket>> {
        self.reliable.as_ref()?;
        self.detached().await
    }

    /// Sends `connected` (if the protocol has it) and, after a reconnection, every unacked
    /// message.
    async fn greet(
        &mut self,
        socket: &mut Socket,
        resumed: bool,
    ) -> Result<(), crate::socket::Error> {
        let connected = ServerFrame::connected(
            &self.conn.id,
            self.conn.user_id.as_deref(),
            self.conn.reconnection_token.as_deref(),
        );
        let Some(connected) = self.codec().encode(&connected) else {
            return Ok(());
        };
        socket.feed(crate::socket::message(connected)).await?;
        if resumed && let Some(r) = &self.reliable {
            for frame in r.unacked() {
                socket.feed(frame.clone()).await?;
            }
        }
        socket.flush().await
    }

    /// The main loop while a socket is attached.
    async fn attached(&mut self, socket: &mut Socket) -> End {
        let keepalive = self.app.config.limits.keepalive();
        let mut last_heard = Instant::now();
        let mut next_ping = Instant::now() + keepalive;
        let shutdown = self.app.shutdown.clone();
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    // Hand the session to the cluster before the client can reconnect elsewhere.
                    self.release().await;
                    self.close(socket, "The hub is shutting down; reconnect", close::GOING_AWAY).await;
                    return End::Finished;
                }
                ctl = self.rx.control.recv_async() => match ctl {
                    Ok(Control::Close { reason, code }) => {
                        self.close(socket, &reason, code).await;
                        return End::Finished;
                    }
                    Ok(Control::Reattach(new)) => return End::Reattached(new),
                    Ok(Control::Reshare) => self.persist().await,
                    Err(_) => return End::Finished,
                },
                msg = socket.next() => {
                    last_heard = Instant::now();
                    if let Some(end) = self.enforce_rate(socket, &msg).await {
                        return end;
                    }
                    match msg {
                        None => return End::Dropped,
                        Some(Err(e)) => return self.on_read_error(socket, e).await,
                        Some(Ok(Message::Close(frame))) => {
                            return Self::on_client_close(socket, frame).await;
                        }
                        Some(Ok(Message::Text(text))) => {
                            if let Some(end) = self.on_data(socket, FrameRef::Text(text.as_str())).await {
                                return end;
                            }
                        }
                        Some(Ok(Message::Binary(bytes))) => {
                            if let Some(end) = self.on_data(socket, FrameRef::Binary(&bytes)).await {
                                return end;
                            }
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    }
                }
                d = self.rx.outbox.recv_async() => {
                    let Ok(d) = d else { return End::Finished };
                    if let Some(end) = self.write_batch(socket, d).await {
                        return end;
                    }
                }
                r = self.events.next() => {
                    if let Some(end) = self.on_upstream_reply(socket, r).await {
                        return end;
                    }
                }
                _ = sleep_until(next_ping) => {
                    if last_heard.elapsed() > keepalive * 3 {
                        debug!("closing idle connection");
                        self.close(socket, "Idle timeout: nothing received from the client", close::GOING_AWAY).await;
                        return End::Dropped;
                    }
                    next_ping = Instant::now() + keepalive;
                    if socket.send(Message::Ping(bytes::Bytes::new())).await.is_err() {
                        return End::Dropped;
                    }
                }
            }
        }
    }

    /// Writes `first` and whatever else is queued, then flushes once. A control request (a
    /// slow-consumer kick, a reattach) or shutdown interrupts a write that cannot progress, and
    /// a write stuck for three keep-alive intervals counts as a dropped socket.
    async fn write_batch(&mut self, socket: &mut Socket, first: Arc<Delivery>) -> Option<End> {
        let mut next = Some(first);
        let mut written = 0;
        let stuck_after = self.app.config.limits.keepalive() * 3;
        let mut batch = Vec::new();
        while let Some(d) = next.take() {
            self.conn.dequeued(&d);
            written += 1;
            if written < WRITE_BATCH {
                next = self.rx.outbox.try_recv().ok();
            }
            // A message whose TTL passed while it waited is not delivered.
            if d.expired() || self.already_seen(&d) || self.replayed_already(&d) {
                continue;
            }
            let msg = match self.frame_for(&d) {
                Ok(m) => m,
                Err(BufferFull) => {
                    self.close(
                        socket,
                        "Reliable buffer full: 1000 unacknowledged messages or 16 MB",
                        close::NO_RECOVERY,
                    )
                    .await;
                    return Some(End::Finished);
                }
            };
            let m = metrics::global();
            m.messages_out.inc();
            m.bytes_out.inc_by(d.size() as u64);
            batch.push(msg);
        }
        self.persist().await;
        // One deadline and one flush for the whole batch: with the socket's write buffer the
        // frames leave in as few writes as possible.
        let write = async move {
            for msg in batch {
                socket.feed(msg).await?;
            }
            socket.flush().await
        };
        let end = self.interruptible(stuck_after, write).await.err();
        // A request to write the whole session that came during the write.
        self.persist().await;
        end
    }

    /// Runs a socket write unless a control request, shutdown or the stuck timeout comes first.
    /// A request to write the session again waits for the write (its flag stays set).
    async fn interruptible(
        &self,
        stuck_after: std::time::Duration,
        write: impl std::future::Future<Output = Result<(), crate::socket::Error>>,
    ) -> Result<(), End> {
        let write = tokio::time::timeout(stuck_after, write);
        tokio::pin!(write);
        loop {
            tokio::select! {
                r = &mut write => return match r {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(_)) | Err(_) => Err(End::Dropped),
                },
                ctl = self.rx.control.recv_async() => match ctl {
                    Ok(Control::Reshare) => {}
                    Ok(Control::Reattach(ws)) => return Err(End::Reattached(ws)),
                    _ => return Err(End::Finished),
                },
                _ = self.app.shutdown.cancelled() => return Err(End::Finished),
            }
        }
    }

    /// The frame this connection gets for a delivery: the one encoded for every connection
    /// of its encoding, numbered for this connection on a reliable protocol.
    fn frame_for(&mut self, d: &Delivery) -> Result<Message, BufferFull> {
        let frame = d.frame(self.codec());
        let Some(r) = &mut self.reliable else {
            return Ok(frame);
        };
        let numbered = r.stamp(self.conn.protocol.codec(), &frame, d.expires_at)?;
        if let (Some(s), Message::Text(text)) = (&mut self.shared, &numbered) {
            s.stamped(r.last_id(), text.as_str(), d, &self.conn);
        }
        Ok(numbered)
    }

    /// While a reliable client is away: keep numbering and buffering its messages, and wait
    /// for it to come back within the reconnect window.
    async fn detached(&mut self) -> Option<Box<Socket>> {
        let deadline = Instant::now() + self.app.config.limits.reconnect_window();
        let shutdown = self.app.shutdown.clone();
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return None,
                _ = sleep_until(deadline) => return None,
                ctl = self.rx.control.recv_async() => match ctl {
                    Ok(Control::Reattach(ws)) => return Some(ws),
                    Ok(Control::Reshare) => self.persist().await,
                    _ => return None,
                },
                d = self.rx.outbox.recv_async() => {
                    let d = d.ok()?;
                    self.conn.dequeued(&d);
                    if !d.expired() && !self.already_seen(&d) && self.frame_for(&d).is_err() {
                        return None;
                    }
                    self.persist().await;
                }
            }
        }
    }

    /// The client's close frame. The echo tungstenite queued on reading it leaves now, so the
    /// client sees a clean close rather than a reset. Whatever the code, the socket is only
    /// gone: a reliable session waits for its client as after a drop, since the service keeps
    /// a reliable session after any close it did not send itself (hub/docs/operations.md,
    /// "Reliable sessions and close frames").
    async fn on_client_close(socket: &mut Socket, frame: Option<crate::socket::CloseFrame>) -> End {
        let code = frame.as_ref().map(|f| u16::from(f.code));
        debug!(?code, "the client closed its socket");
        let _ = tokio::time::timeout(CLOSE_ECHO_TIMEOUT, socket.flush()).await;
        End::Dropped
    }

    /// Sends `disconnected` (if the protocol has it) and a close frame.
    pub(crate) async fn close(&self, socket: &mut Socket, reason: &str, code: u16) {
        let _ = self.close_reason.set(reason.to_string());
        say_goodbye(socket, self.codec(), reason, code, reason).await;
    }

    async fn on_read_error(&self, socket: &mut Socket, e: crate::socket::Error) -> End {
        use tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
        match e {
            WsError::Capacity(CapacityError::MessageTooLong { max_size, .. }) => {
                metrics::global().protocol_error("frame_too_big");
                let reason = format!("Message too big: the limit is {max_size} bytes");
                self.close(socket, &reason, close::TOO_BIG).await;
                End::Finished
            }
            WsError::Utf8(_) => {
                metrics::global().protocol_error("invalid_utf8");
                self.close(
                    socket,
                    "Invalid UTF-8 in a text frame",
                    close::INVALID_PAYLOAD,
                )
                .await;
                End::Finished
            }
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => End::Dropped,
            WsError::Protocol(p) => {
                metrics::global().protocol_error("websocket_protocol");
                debug!(error = %p, "websocket protocol error");
                End::Dropped
            }
            _ => End::Dropped,
        }
    }

    /// Removes the connection from the hub once the session is over. A reliable session
    /// stays in the cluster's store when another node takes it over or this node drains.
    async fn finish(&mut self) {
        self.conn.close("", close::NO_RECOVERY);
        let app = self.app.clone();
        let store = app.broker.sessions().filter(|_| self.shared.is_some());
        let hand_over = self.conn.is_handed_over() || self.app.shutdown.is_cancelled();
        if store.is_some() && hand_over {
            // Released before the connection leaves presence: a node that no longer finds
            // the connection finds its session detached and keeps its messages there.
            self.release().await;
        }
        self.app.closing(&self.conn);
        self.hub.remove_connection(&self.conn);
        if let Some(store) = store
            && !hand_over
        {
            store.remove(&self.conn.id).await;
        }
        let reason = self
            .close_reason
            .get()
            .map(String::as_str)
            .unwrap_or_default();
        self.app
            .upstream
            .disconnected(self.conn.event_context(), reason);
        self.app.trace.emit(|| {
            TraceEvent::new(Kind::Disconnect, &self.hub.name)
                .of(&self.conn.id, self.conn.user_id.as_deref())
                .detail(reason)
        });
        metrics::global().connections.dec();
        debug!("connection closed");
    }
}

/// How long a closing socket keeps reading for the client's answering close frame.
const CLOSE_LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// Ends a socket as the service does: a `disconnected` message with `reason` (if the protocol has one), then a
/// close frame with `code` and `close_reason` (cut to the 123 bytes a close frame allows), then
/// what the client still sends is read and dropped until it answers the close (or for
/// [`CLOSE_LINGER`]). A socket dropped with unread input is reset by the kernel, and a client
/// still writing (one cut off for its rate) then fails a write, or its proxy passes the reset
/// on, before it reads the goodbye: it would see 1006 instead. Errors are ignored: the socket
/// is being dropped either way.
pub(crate) async fn say_goodbye(
    socket: &mut Socket,
    codec: &dyn Codec,
    reason: &str,
    code: u16,
    close_reason: &str,
) {
    if let Some(frame) = codec.encode(&ServerFrame::disconnected(reason)) {
        let _ = socket.feed(crate::socket::message(frame)).await;
    }
    if socket
        .send(crate::socket::close_frame(code, close_reason))
        .await
        .is_err()
    {
        return;
    }
    let drain = async { while let Some(Ok(_)) = socket.next().await {} };
    let _ = tokio::time::timeout(CLOSE_LINGER, drain).await;
}
