//! What a client sends to the service, as typed frames: the requests of the Web PubSub client
//! protocols, whatever their encoding. A codec turns wire bytes into these (the hub) or these
//! into wire bytes (clients); the rules every encoding shares, such as how long a group name may
//! be, live here.

use crate::payload::Payload;

/// Longest group name the service accepts.
pub const MAX_GROUP_NAME: usize = 1024;
/// Largest `ttlSeconds` of a `sendToGroup` (and `messageTtlSeconds` of a REST send).
pub const MAX_TTL_SECONDS: u64 = 300;
/// Longest event name the service accepts.
pub const MAX_EVENT_NAME: usize = 128;

/// A validated frame from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    /// `joinGroup`
    JoinGroup {
        /// Group to join.
        group: String,
        /// Ack id, if the client wants an ack.
        ack_id: Option<u64>,
        /// Replay the group's kept messages after this offset first (a Nerve extension:
        /// a client coming back after an outage).
        after: Option<crate::Offset>,
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
        /// Seconds the message may wait for a receiver, 0 to [`MAX_TTL_SECONDS`]; 0 (or not
        /// given) is for ever.
        ttl_seconds: u64,
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

impl ClientFrame {
    /// The frame's `type`, as the protocol names it.
    pub fn kind(&self) -> &str {
        match self {
            ClientFrame::JoinGroup { .. } => "joinGroup",
            ClientFrame::LeaveGroup { .. } => "leaveGroup",
            ClientFrame::SendToGroup { .. } => "sendToGroup",
            ClientFrame::Event { .. } => "event",
            ClientFrame::Invoke { .. } => "invoke",
            ClientFrame::CancelInvocation { .. } => "cancelInvocation",
            ClientFrame::SequenceAck { .. } => "sequenceAck",
            ClientFrame::Ping => "ping",
            ClientFrame::Unsupported { kind, .. } => kind,
        }
    }

    /// The ack id the client asked to be answered on, if any.
    pub fn ack_id(&self) -> Option<u64> {
        match self {
            ClientFrame::JoinGroup { ack_id, .. }
            | ClientFrame::LeaveGroup { ack_id, .. }
            | ClientFrame::SendToGroup { ack_id, .. }
            | ClientFrame::Event { ack_id, .. }
            | ClientFrame::Unsupported { ack_id, .. } => *ack_id,
            ClientFrame::Invoke { .. }
            | ClientFrame::CancelInvocation { .. }
            | ClientFrame::SequenceAck { .. }
            | ClientFrame::Ping => None,
        }
    }
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

/// Validates an event name: 1–128 bytes.
pub fn validate_event_name(event: &str) -> Result<(), String> {
    if event.is_empty() || event.len() > MAX_EVENT_NAME {
        return Err(format!(
            "event name must be 1 to {MAX_EVENT_NAME} characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_are_bounded() {
        assert!(validate_group_name(&"a".repeat(1024)).is_ok());
        assert!(validate_group_name(&"a".repeat(1025)).is_err());
        assert!(validate_group_name("").is_err());
    }

    #[test]
    fn event_names_are_bounded() {
        assert!(validate_event_name("e").is_ok());
        assert!(validate_event_name(&"e".repeat(129)).is_err());
        assert!(validate_event_name("").is_err());
    }
}
