//! What a session does with each frame a client sends, read through the connection's codec,
//! and how it answers, written through the same codec.

use futures_util::SinkExt;
use nerve_protocol::{
    ClientFrame, DecodeError, ErrorBody, ErrorName, FrameRef, Payload, Request, Sender,
    ServerFrame, close,
};
use tracing::debug;

use super::{End, Session, SimpleMode};
use crate::metrics;
use crate::node::Announce;
use crate::registry::Delivery;
use crate::socket::Socket;
use crate::upstream::{EventKind, Job, PipeReply};

/// The answer to a request that carries an `ackId`.
type AckResult = Result<(), (ErrorName, String)>;

impl Session {
    /// Handles a data frame (text or binary) from the client.
    pub(super) async fn on_data(
        &mut self,
        socket: &mut Socket,
        frame: FrameRef<'_>,
    ) -> Option<End> {
        let len = match frame {
            FrameRef::Text(text) => text.len(),
            FrameRef::Binary(bytes) => bytes.len(),
        };
        metrics::global().message_in("ws", len);
        match self.codec().decode(frame) {
            Ok(Request::Frame(frame)) => self.on_frame(socket, frame).await,
            Ok(Request::Raw(payload)) => self.on_simple(socket, payload).await,
            Err(DecodeError::Invalid(e)) => {
                metrics::global().protocol_error("bad_frame");
                match e.ack_id {
                    Some(id) => {
                        self.reply_ack(socket, id, Err((ErrorName::BadRequest, e.reason)))
                            .await
                    }
                    None => {
                        let reason = format!("Invalid frame: {}", e.reason);
                        self.close(socket, &reason, close::INVALID_PAYLOAD).await;
                        Some(End::Finished)
                    }
                }
            }
            Err(
                e @ (DecodeError::UnsupportedData
                | DecodeError::TextOnBinaryProtocol
                | DecodeError::PacketStream),
            ) => {
                let kind = match e {
                    DecodeError::TextOnBinaryProtocol => "text_on_protobuf",
                    DecodeError::PacketStream => "mqtt_frame",
                    _ => "binary_on_json",
                };
                metrics::global().protocol_error(kind);
                self.close(socket, &e.to_string(), e.close_code()).await;
                Some(End::Finished)
            }
        }
    }

    async fn on_frame(&mut self, socket: &mut Socket, frame: ClientFrame) -> Option<End> {
        match frame {
            ClientFrame::JoinGroup {
                group,
                ack_id,
                after,
            } => {
                let r = self.dedupe_then(ack_id, |s| s.join(&group));
                if r.is_ok() {
                    // Acknowledge once the group's messages from other nodes reach this one,
                    // and a resumed session would be in the group too.
                    let app = self.app.clone();
                    app.broker.group_ready(&self.hub.name, &group).await;
                    if self.shared.is_some()
                        && let Some(store) = app.broker.sessions()
                    {
                        store.joined(&self.hub.name, &self.conn.id, &group).await;
                    }
                    // A client coming back gets what it missed first: the ack says it is
                    // caught up.
                    if let Some(after) = after
                        && let Some(end) = self.replay(socket, &group, after).await
                    {
                        return Some(end);
                    }
                }
                self.maybe_ack(socket, ack_id, r).await
            }
            ClientFrame::LeaveGroup { group, ack_id } => {
                self.forget_replay(&group);
                let r = self.dedupe_then(ack_id, |s| s.leave(&group));
                self.maybe_ack(socket, ack_id, r).await
            }
            ClientFrame::SendToGroup {
                group,
                ack_id,
                no_echo,
                ttl_seconds,
                payload,
            } => {
                let r = self.dedupe_then(ack_id, |s| {
                    s.send_to_group(&group, no_echo, ttl_seconds, payload)
                });
                self.maybe_ack(socket, ack_id, r).await
            }
            ClientFrame::Event {
                event,
                ack_id,
                payload,
            } if self.has_handler(&event) => {
                if let Some(id) = ack_id
                    && !self.dedupe.first_time(id)
                {
                    let dup = (ErrorName::Duplicate, format!("ackId {id} was already used"));
                    return self.reply_ack(socket, id, Err(dup)).await;
                }
                let job = Job::Event {
                    event,
                    ack_id,
                    payload,
                };
                self.send_upstream(socket, job).await
            }
            ClientFrame::Invoke {
                invocation_id,
                event,
                payload,
            } if self.has_handler(&event) => {
                let job = Job::Invoke {
                    invocation_id,
                    event,
                    payload,
                };
                self.send_upstream(socket, job).await
            }
            ClientFrame::Event { event, ack_id, .. } => {
                let r = self.dedupe_then(ack_id, |s| Err(s.no_handler(&event)));
                if ack_id.is_none() {
                    metrics::global().protocol_error("event_without_handler");
                    debug!(%event, "user event dropped: no handler and no ackId to report it");
                }
                self.maybe_ack(socket, ack_id, r).await
            }
            ClientFrame::Invoke {
                invocation_id,
                event,
                ..
            } => {
                let (name, msg) = self.no_handler(&event);
                let frame = ServerFrame::invoke_err(invocation_id, ErrorBody::new(name, msg));
                self.reply(socket, &frame).await
            }
            ClientFrame::CancelInvocation { .. } => None,
            ClientFrame::SequenceAck { sequence_id } => {
                let acked = self.reliable.as_mut().map_or(0, |r| r.ack(sequence_id));
                if acked > 0 {
                    self.acked(acked).await;
                }
                None
            }
            ClientFrame::Ping => self.reply(socket, &ServerFrame::Pong).await,
            ClientFrame::Unsupported {
                kind,
                ack_id,
                stream_id,
            } => {
                metrics::global().protocol_error("unsupported_frame");
                let reason = format!("'{kind}' is not supported by this hub");
                if let Some(id) = ack_id {
                    return self
                        .reply_ack(socket, id, Err((ErrorName::BadRequest, reason)))
                        .await;
                }
                match stream_id {
                    Some(sid) => {
                        let error = ErrorBody::new(ErrorName::BadRequest, reason);
                        self.reply(socket, &ServerFrame::stream_closed(&sid, error))
                            .await
                    }
                    None => None,
                }
            }
        }
    }

    /// Runs `act` unless `ack_id` was seen before on this connection.
    fn dedupe_then(
        &mut self,
        ack_id: Option<u64>,
        act: impl FnOnce(&mut Self) -> AckResult,
    ) -> AckResult {
        if let Some(id) = ack_id
            && !self.dedupe.first_time(id)
        {
            return Err((ErrorName::Duplicate, format!("ackId {id} was already used")));
        }
        act(self)
    }

    fn join(&mut self, group: &str) -> AckResult {
        if !self.conn.roles.lock().can_join_leave(group) {
            return Err(forbidden("join or leave", group));
        }
        self.app
            .join(&self.hub, &self.conn, group, Announce::Yes)
            .map_err(|refused| (ErrorName::Forbidden, refused.to_string()))?;
        Ok(())
    }

    fn leave(&mut self, group: &str) -> AckResult {
        if !self.conn.roles.lock().can_join_leave(group) {
            return Err(forbidden("join or leave", group));
        }
        self.app.leave(&self.hub, &self.conn, group);
        Ok(())
    }

    fn send_to_group(
        &mut self,
        group: &str,
        no_echo: bool,
        ttl_seconds: u64,
        payload: Payload,
    ) -> AckResult {
        if !self.conn.roles.lock().can_send(group) {
            return Err(forbidden("send to", group));
        }
        self.app.trace.emit(|| {
            self.app
                .trace
                .message(&self.hub.name, &payload)
                .of(&self.conn.id, self.conn.user_id.as_deref())
                .in_group(group)
                .detail(format!("sendToGroup {group}"))
        });
        let from = Sender::group(group, self.conn.user_id.as_deref());
        let d = Delivery::with_ttl(from, payload, ttl_seconds);
        let scope = if no_echo {
            crate::cluster::Scope::without(&self.conn.id)
        } else {
            crate::cluster::Scope::default()
        };
        let target = crate::cluster::Target::Group(group.to_string());
        self.app
            .broker
            .publish(&self.hub.name, Some(&self.hub), target, scope, d);
        Ok(())
    }

    fn no_handler(&self, event: &str) -> (ErrorName, String) {
        (
            ErrorName::NotFound,
            format!(
                "No event handler is configured for event '{event}' in hub '{}'",
                self.hub.name
            ),
        )
    }

    async fn maybe_ack(
        &mut self,
        socket: &mut Socket,
        ack_id: Option<u64>,
        r: AckResult,
    ) -> Option<End> {
        match ack_id {
            Some(id) => self.reply_ack(socket, id, r).await,
            None => None,
        }
    }

    async fn reply_ack(&mut self, socket: &mut Socket, id: u64, r: AckResult) -> Option<End> {
        let label = r.as_ref().map_or_else(|(name, _)| name.as_str(), |()| "ok");
        metrics::global().ack(label);
        let frame = ServerFrame::ack(id, r.map_err(|(name, msg)| ErrorBody::new(name, msg)));
        self.reply(socket, &frame).await
    }

    /// Writes one reply frame, if the connection's protocol has it.
    async fn reply(&mut self, socket: &mut Socket, frame: &ServerFrame<'_>) -> Option<End> {
        let frame = self.codec().encode(frame)?;
        match socket.send(crate::socket::message(frame)).await {
            Ok(()) => None,
            Err(_) => Some(End::Dropped),
        }
    }

    /// A frame from a simple WebSocket client.
    async fn on_simple(&mut self, socket: &mut Socket, payload: Payload) -> Option<End> {
        match self.simple_mode.clone() {
            SimpleMode::SendToGroup(group) => match self.send_to_group(&group, false, 0, payload) {
                Ok(()) => None,
                Err((_, msg)) => {
                    self.close(socket, &format!("Forbidden: {msg}"), close::NO_RECOVERY)
                        .await;
                    Some(End::Finished)
                }
            },
            SimpleMode::SendEvent if self.has_handler("message") => {
                self.send_upstream(socket, Job::Message(payload)).await
            }
            SimpleMode::SendEvent => {
                let (_, msg) = self.no_handler("message");
                metrics::global().protocol_error("event_without_handler");
                self.close(socket, &msg, close::NO_RECOVERY).await;
                Some(End::Finished)
            }
        }
    }
}

impl Session {
    fn has_handler(&self, event: &str) -> bool {
        self.app
            .upstream
            .handles(&self.hub.name, EventKind::User(event))
    }

    /// Hands a user event to this connection's upstream lane without waiting for the call.
    async fn send_upstream(&mut self, socket: &mut Socket, job: Job) -> Option<End> {
        let up = self.app.upstream.clone();
        let Err(job) = self
            .events
            .submit(&up, up.context(self.conn.event_context()), job)
        else {
            return None;
        };
        metrics::global().protocol_error("upstream_lane_full");
        let msg = "Too many events are waiting for the event handler on this connection";
        match *job {
            Job::Event {
                ack_id: Some(id), ..
            } => {
                let err = (ErrorName::InternalServerError, msg.to_string());
                self.reply_ack(socket, id, Err(err)).await
            }
            Job::Event { .. } => None,
            Job::Invoke { invocation_id, .. } => {
                let error = ErrorBody::new(ErrorName::InternalServerError, msg);
                self.reply(socket, &ServerFrame::invoke_err(invocation_id, error))
                    .await
            }
            Job::Message(_) => {
                self.close(socket, msg, close::NO_RECOVERY).await;
                Some(End::Finished)
            }
        }
    }

    /// Writes the replies to one upstream event, flushing once.
    pub(super) async fn on_upstream_reply(
        &mut self,
        socket: &mut Socket,
        replies: Vec<PipeReply>,
    ) -> Option<End> {
        for reply in replies {
            let msg = match reply {
                PipeReply::Frame(frame) => match self.codec().encode(&frame) {
                    Some(frame) => crate::socket::message(frame),
                    None => continue,
                },
                PipeReply::Deliver(payload) => {
                    let d = Delivery::new(Sender::Server, payload);
                    let Ok(msg) = self.frame_for(&d) else {
                        let reason = "Reliable buffer full: 1000 unacknowledged messages or 16 MB";
                        self.close(socket, reason, close::NO_RECOVERY).await;
                        return Some(End::Finished);
                    };
                    metrics::global().messages_out.inc();
                    msg
                }
                PipeReply::Close(reason) => {
                    self.close(socket, &reason, close::NO_RECOVERY).await;
                    return Some(End::Finished);
                }
            };
            if socket.feed(msg).await.is_err() {
                return Some(End::Dropped);
            }
        }
        match socket.flush().await {
            Ok(()) => None,
            Err(_) => Some(End::Dropped),
        }
    }
}

fn forbidden(what: &str, group: &str) -> (ErrorName, String) {
    (
        ErrorName::Forbidden,
        format!("The connection has no permission to {what} group '{group}'"),
    )
}
