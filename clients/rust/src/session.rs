//! The task that owns a hub client's socket. It keeps one logical connection alive: after a
//! dropped socket it resumes the session with `awps_connection_id` + `awps_reconnection_token`
//! and resends unanswered requests (the hub answers a repeated ackId with `Duplicate`), drops
//! redelivered messages by sequence id, and when the session is gone (close 1008, or the
//! recovery window passed) opens a new connection and rejoins the groups, each after the last
//! offset seen in it (a hub keeping the group's history sends what was missed meanwhile;
//! messages at or before that offset are dropped as already seen).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use nerve_protocol::subprotocol::JSON_RELIABLE;
use nerve_protocol::{ClientFrame, ErrorName, Offset, ServerFrame, close};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;

use crate::error::{ClientError, Result};
use crate::hub::{HubEvent, HubOptions, Message, Payload, Shared};
use crate::ws::{self, Socket};

/// Sequence ids received beyond the last ack that trigger an ack at once.
const ACK_EAGERLY_AFTER: u64 = 300;

/// A request from the handle.
pub(crate) enum Request {
    Join(String),
    Leave(String),
    Send {
        group: String,
        payload: Payload,
        no_echo: bool,
    },
    Event {
        name: String,
        payload: Payload,
    },
}

/// What the handle asks the session to do.
pub(crate) enum Command {
    Request {
        request: Request,
        reply: Option<oneshot::Sender<Result<()>>>,
    },
    DropSocket,
}

struct Pending {
    frame: String,
    reply: Option<oneshot::Sender<Result<()>>>,
    joins: Option<String>,
}

enum End {
    Stopped,
    Closed(Option<u16>),
}

type Sink = SplitSink<Socket, WsMessage>;

/// The session task's state.
pub(crate) struct Driver {
    url: String,
    opts: HubOptions,
    shared: Arc<Shared>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<HubEvent>,
    stop: CancellationToken,
    session: Option<(String, String)>,
    next_ack: u64,
    pending: BTreeMap<u64, Pending>,
    groups: BTreeSet<String>,
    /// The last offset seen per group (groups whose history the hub keeps).
    offsets: BTreeMap<String, Offset>,
    last_seq: u64,
    acked_seq: u64,
    lost_at: Option<Instant>,
}

impl Driver {
    pub(crate) fn new(
        url: &str,
        opts: HubOptions,
        shared: Arc<Shared>,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<HubEvent>,
        stop: CancellationToken,
    ) -> Driver {
        Driver {
            url: url.to_string(),
            opts,
            shared,
            commands,
            events,
            stop,
            session: None,
            next_ack: 0,
            pending: BTreeMap::new(),
            groups: BTreeSet::new(),
            offsets: BTreeMap::new(),
            last_seq: 0,
            acked_seq: 0,
            lost_at: None,
        }
    }

    /// Connects, serves and reconnects until stopped; `ready` gets the first outcome.
    pub(crate) async fn run(mut self, ready: oneshot::Sender<Result<()>>) {
        let mut ready = Some(ready);
        let mut backoff = Duration::from_millis(200);
        while !self.stop.is_cancelled() {
            let recovering = self.session.is_some();
            let url = match &self.session {
                Some((id, token)) => ws::recovery_url(&self.url, id, token),
                None => Ok(self.url.clone()),
            };
            let opened = match url {
                Ok(url) => tokio::select! {
                    _ = self.stop.cancelled() => break,
                    r = ws::open(&url, &self.opts.protocol) => r,
                },
                Err(e) => Err(e),
            };
            let socket = match opened {
                Ok(s) => s,
                Err(e) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(Err(e));
                        return;
                    }
                    tracing::debug!(error = %e, recovering, "hub connect failed");
                    if self
                        .lost_at
                        .is_some_and(|t| t.elapsed() > self.opts.recovery_window)
                    {
                        self.forget("the session could not be recovered in time");
                    }
                    tokio::select! {
                        _ = self.stop.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            backoff = Duration::from_millis(200);
            match self.serve(socket, recovering, &mut ready).await {
                End::Stopped => break,
                End::Closed(code) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(Err(ClientError::ConnectionLost(format!(
                            "closed before connected (code {code:?})"
                        ))));
                        return;
                    }
                    self.lost_at.get_or_insert_with(Instant::now);
                    let reason = format!("socket closed (code {code:?})");
                    let _ = self.events.send(HubEvent::Disconnected { reason }).await;
                    if code == Some(close::NO_RECOVERY) || self.opts.protocol != JSON_RELIABLE {
                        self.forget("the connection was closed and cannot be recovered");
                    }
                }
            }
        }
        for (_, p) in std::mem::take(&mut self.pending) {
            if let Some(r) = p.reply {
                let _ = r.send(Err(ClientError::Closed));
            }
        }
    }

    /// Drops the session: the next socket is a new connection.
    fn forget(&mut self, why: &str) {
        self.session = None;
        self.last_seq = 0;
        self.acked_seq = 0;
        self.lost_at = None;
        for (_, p) in std::mem::take(&mut self.pending) {
            if let Some(r) = p.reply {
                let _ = r.send(Err(ClientError::ConnectionLost(why.to_string())));
            }
        }
    }

    async fn serve(
        &mut self,
        socket: Socket,
        recovering: bool,
        ready: &mut Option<oneshot::Sender<Result<()>>>,
    ) -> End {
        let (mut sink, mut stream) = socket.split();
        let mut connected = false;
        let mut tick = tokio::time::interval(self.opts.sequence_ack_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_ping = Instant::now() + self.opts.ping_interval;
        loop {
            let step = tokio::select! {
                _ = self.stop.cancelled() => {
                    let _ = tokio::time::timeout(Duration::from_secs(2), sink.close()).await;
                    return End::Stopped;
                }
                cmd = self.commands.recv(), if connected => match cmd {
                    None => {
                        let _ = sink.close().await;
                        return End::Stopped;
                    }
                    Some(Command::DropSocket) => return End::Closed(None),
                    Some(Command::Request { request, reply }) => {
                        let frame = self.prepare(request, reply);
                        send(&mut sink, &frame).await
                    }
                },
                _ = tick.tick(), if connected => {
                    self.pending.retain(|_, p| p.reply.as_ref().is_none_or(|r| !r.is_closed()));
                    let mut r = self.ack_sequence(&mut sink, false).await;
                    if r.is_ok() && Instant::now() >= next_ping {
                        next_ping = Instant::now() + self.opts.ping_interval;
                        r = send(&mut sink, &ClientFrame::Ping.to_json()).await;
                    }
                    r
                }
                frame = stream.next() => match frame {
                    Some(Ok(WsMessage::Text(t))) => match ServerFrame::from_json(t.as_str()) {
                        Ok(frame) => {
                            self.on_frame(frame, &mut sink, recovering, &mut connected, ready)
                                .await
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "unreadable frame from the hub");
                            Ok(())
                        }
                    },
                    Some(Ok(WsMessage::Close(f))) => return End::Closed(f.map(|f| u16::from(f.code))),
                    Some(Ok(_)) => Ok(()),
                    Some(Err(_)) | None => return End::Closed(None),
                }
            };
            if step.is_err() {
                return End::Closed(None);
            }
        }
    }

    fn prepare(&mut self, request: Request, reply: Option<oneshot::Sender<Result<()>>>) -> String {
        let ack_id = reply.is_some().then(|| {
            self.next_ack += 1;
            self.next_ack
        });
        let (frame, joins) = match request {
            Request::Join(group) => {
                let f = ClientFrame::JoinGroup {
                    group: group.clone(),
                    ack_id: Some(ack_id.unwrap_or(0)),
                    after: None,
                };
                (f, Some(group))
            }
            Request::Leave(group) => {
                self.groups.remove(&group);
                self.offsets.remove(&group);
                let ack_id = Some(ack_id.unwrap_or(0));
                (ClientFrame::LeaveGroup { group, ack_id }, None)
            }
            Request::Send {
                group,
                payload,
                no_echo,
            } => {
                let f = ClientFrame::SendToGroup {
                    group,
                    ack_id,
                    no_echo,
                    ttl_seconds: 0,
                    payload: payload.to_payload(),
                };
                (f, None)
            }
            Request::Event { name, payload } => {
                let f = ClientFrame::Event {
                    event: name,
                    ack_id,
                    payload: payload.to_payload(),
                };
                (f, None)
            }
        };
        let frame = frame.to_json();
        if let Some(id) = ack_id {
            let pending = Pending {
                frame: frame.clone(),
                reply,
                joins,
            };
            self.pending.insert(id, pending);
        }
        frame
    }

    async fn on_frame(
        &mut self,
        frame: ServerFrame<'static>,
        sink: &mut Sink,
        recovering: bool,
        connected: &mut bool,
        ready: &mut Option<oneshot::Sender<Result<()>>>,
    ) -> Result<()> {
        match frame {
            ServerFrame::Connected {
                connection_id,
                user_id,
                reconnection_token,
            } => {
                let connection_id = connection_id.into_owned();
                let user_id = user_id.map(|u| u.into_owned());
                let reconnection_token = reconnection_token.map(|t| t.into_owned());
                let resumed = recovering
                    && self
                        .session
                        .as_ref()
                        .is_some_and(|(id, _)| *id == connection_id);
                self.session = reconnection_token.map(|t| (connection_id.clone(), t));
                *self.shared.connection_id.lock() = Some(connection_id.clone());
                *self.shared.user_id.lock() = user_id;
                self.lost_at = None;
                *connected = true;
                let stats = &self.shared.stats;
                if resumed {
                    stats.recoveries.fetch_add(1, Ordering::Relaxed);
                    let frames: Vec<String> =
                        self.pending.values().map(|p| p.frame.clone()).collect();
                    for f in frames {
                        send(sink, &f).await?;
                    }
                } else if ready.is_none() {
                    stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    self.last_seq = 0;
                    self.acked_seq = 0;
                    for g in self.groups.clone() {
                        self.next_ack += 1;
                        let frame = ClientFrame::JoinGroup {
                            group: g.clone(),
                            ack_id: Some(self.next_ack),
                            after: self.offsets.get(&g).copied(),
                        }
                        .to_json();
                        let p = Pending {
                            frame: frame.clone(),
                            reply: None,
                            joins: Some(g),
                        };
                        self.pending.insert(self.next_ack, p);
                        send(sink, &frame).await?;
                    }
                }
                if let Some(r) = ready.take() {
                    let _ = r.send(Ok(()));
                }
                let ev = HubEvent::Connected {
                    connection_id,
                    recovered: resumed,
                };
                let _ = self.events.send(ev).await;
            }
            ServerFrame::Disconnected { message } => {
                let reason = message.into_owned();
                let _ = self.events.send(HubEvent::Disconnected { reason }).await;
            }
            ServerFrame::Message(frame) => {
                let m = match Message::from_frame(frame) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "unreadable message from the hub");
                        return Ok(());
                    }
                };
                if let Some(seq) = m.sequence_id {
                    if seq <= self.last_seq {
                        self.shared.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                        return Ok(());
                    }
                    self.last_seq = seq;
                    if seq - self.acked_seq >= ACK_EAGERLY_AFTER {
                        self.ack_sequence(sink, true).await?;
                    }
                }
                if let (Some(group), Some(offset)) = (&m.group, m.offset) {
                    match self.offsets.get_mut(group) {
                        Some(last) if offset <= *last => {
                            self.shared.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                            return Ok(());
                        }
                        Some(last) => *last = offset,
                        None => {
                            self.offsets.insert(group.clone(), offset);
                        }
                    }
                }
                let _ = self.events.send(HubEvent::Message(m)).await;
            }
            ServerFrame::Ack { ack_id, error } => {
                let Some(p) = self.pending.remove(&ack_id) else {
                    return Ok(());
                };
                let result = match error {
                    None => Ok(()),
                    Some(e) if e.known_name() == Some(ErrorName::Duplicate) => Ok(()),
                    Some(e) => Err(ClientError::refused(&e)),
                };
                if let (Some(g), true) = (&p.joins, result.is_ok()) {
                    self.groups.insert(g.clone());
                }
                match (p.reply, result) {
                    (Some(r), result) => {
                        let _ = r.send(result);
                    }
                    (None, Err(e)) => {
                        if let Some(group) = p.joins {
                            let ev = HubEvent::RejoinFailed {
                                group,
                                error: e.to_string(),
                            };
                            let _ = self.events.send(ev).await;
                        }
                    }
                    (None, Ok(())) => {}
                }
            }
            ServerFrame::Pong => {
                self.shared.stats.pongs.fetch_add(1, Ordering::Relaxed);
            }
            ServerFrame::InvokeResponse { .. }
            | ServerFrame::StreamClosed { .. }
            | ServerFrame::Unknown { .. } => {}
        }
        Ok(())
    }

    async fn ack_sequence(&mut self, sink: &mut Sink, now: bool) -> Result<()> {
        let reliable = self.opts.protocol == JSON_RELIABLE;
        if reliable && self.last_seq > self.acked_seq || now {
            let ack = ClientFrame::SequenceAck {
                sequence_id: self.last_seq,
            };
            send(sink, &ack.to_json()).await?;
            self.acked_seq = self.last_seq;
        }
        Ok(())
    }
}

async fn send(sink: &mut Sink, frame: &str) -> Result<()> {
    sink.send(WsMessage::text(frame))
        .await
        .map_err(ClientError::from)
}
