//! What the service sends to a client, as typed frames: messages (the one frame a hub fans out)
//! and the replies a single connection gets (`connected`, acks, `pong`, invoke responses, …).
//!
//! Text borrows where it can (`Cow`): the hub builds frames from the strings it already holds
//! and encodes them without copying, while clients parse into owned `ServerFrame<'static>`.

use std::borrow::Cow;

use crate::close::ErrorName;
use crate::payload::Payload;

/// A frame from the service to one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerFrame<'a> {
    /// `system/connected`: the connection is up.
    Connected {
        /// The connection id.
        connection_id: Cow<'a, str>,
        /// The user id, if the connection has one.
        user_id: Option<Cow<'a, str>>,
        /// The token that resumes the session (reliable protocols only).
        reconnection_token: Option<Cow<'a, str>>,
    },
    /// `system/disconnected`, sent just before the socket closes.
    Disconnected {
        /// Why the connection ends.
        message: Cow<'a, str>,
    },
    /// A group or server message.
    Message(MessageFrame<'a>),
    /// The answer to a request that carried an `ackId`.
    Ack {
        /// The request's ack id.
        ack_id: u64,
        /// Why it failed; `None` on success.
        error: Option<ErrorBody<'a>>,
    },
    /// The answer to `invoke`.
    InvokeResponse {
        /// The invocation it answers.
        invocation_id: Cow<'a, str>,
        /// The reply's data (if any), or why it failed.
        result: Result<Option<Cow<'a, Payload>>, ErrorBody<'a>>,
    },
    /// The answer to `ping`.
    Pong,
    /// A stream the service does not (or no longer) run.
    StreamClosed {
        /// The stream.
        stream_id: Cow<'a, str>,
        /// Why it closed.
        error: Option<ErrorBody<'a>>,
    },
    /// A frame type this crate does not model; only parsing makes these.
    Unknown {
        /// The frame's `type`.
        kind: Cow<'a, str>,
    },
}

/// A `type:"message"` frame: data from a group or from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageFrame<'a> {
    /// Who it comes from.
    pub from: Sender<'a>,
    /// The data.
    pub payload: Cow<'a, Payload>,
    /// Its sequence id on a reliable connection (the hub numbers per connection, at write time).
    pub sequence_id: Option<u64>,
    /// Its offset in the group's history, when the hub keeps one (a Nerve extension).
    pub offset: Option<crate::Offset>,
}

/// Who a message comes from, as its `from` field says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sender<'a> {
    /// A group message, with the sender's user id if any.
    Group {
        /// The group.
        group: Cow<'a, str>,
        /// The sending user, if it had one.
        from_user_id: Option<Cow<'a, str>>,
    },
    /// A message from the server (REST or upstream reply).
    Server,
}

impl<'a> Sender<'a> {
    /// A message published to `group`, by `from_user_id` if the sender has a user id.
    pub fn group(group: &'a str, from_user_id: Option<&'a str>) -> Self {
        Sender::Group {
            group: Cow::Borrowed(group),
            from_user_id: from_user_id.map(Cow::Borrowed),
        }
    }
}

/// The `error` object of a failed reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorBody<'a> {
    /// The error name (see [`ErrorName`]; other services may send names of their own).
    pub name: Cow<'a, str>,
    /// What went wrong, for people.
    pub message: Cow<'a, str>,
}

impl<'a> ErrorBody<'a> {
    /// An error with one of our names.
    pub fn new(name: ErrorName, message: impl Into<Cow<'a, str>>) -> Self {
        ErrorBody {
            name: Cow::Borrowed(name.as_str()),
            message: message.into(),
        }
    }

    /// The name, if it is one of ours.
    pub fn known_name(&self) -> Option<ErrorName> {
        ErrorName::parse(&self.name)
    }

    /// The same error, owning its text.
    pub fn into_owned(self) -> ErrorBody<'static> {
        ErrorBody {
            name: Cow::Owned(self.name.into_owned()),
            message: Cow::Owned(self.message.into_owned()),
        }
    }
}

impl<'a> ServerFrame<'a> {
    /// `system/connected` for a connection.
    pub fn connected(
        connection_id: &'a str,
        user_id: Option<&'a str>,
        reconnection_token: Option<&'a str>,
    ) -> Self {
        ServerFrame::Connected {
            connection_id: Cow::Borrowed(connection_id),
            user_id: user_id.map(Cow::Borrowed),
            reconnection_token: reconnection_token.map(Cow::Borrowed),
        }
    }

    /// `system/disconnected` with the reason.
    pub fn disconnected(message: &'a str) -> Self {
        ServerFrame::Disconnected {
            message: Cow::Borrowed(message),
        }
    }

    /// A message without a sequence id, as the hub encodes it once for every recipient.
    pub fn message(from: Sender<'a>, payload: &'a Payload) -> Self {
        ServerFrame::Message(MessageFrame {
            from,
            payload: Cow::Borrowed(payload),
            sequence_id: None,
            offset: None,
        })
    }

    /// The ack of request `ack_id`: success, or the error.
    pub fn ack(ack_id: u64, result: Result<(), ErrorBody<'a>>) -> Self {
        ServerFrame::Ack {
            ack_id,
            error: result.err(),
        }
    }

    /// A successful `invokeResponse`, with the reply's data if there is one.
    pub fn invoke_ok(invocation_id: impl Into<Cow<'a, str>>, data: Option<Payload>) -> Self {
        ServerFrame::InvokeResponse {
            invocation_id: invocation_id.into(),
            result: Ok(data.map(Cow::Owned)),
        }
    }

    /// A failed `invokeResponse`.
    pub fn invoke_err(invocation_id: impl Into<Cow<'a, str>>, error: ErrorBody<'a>) -> Self {
        ServerFrame::InvokeResponse {
            invocation_id: invocation_id.into(),
            result: Err(error),
        }
    }

    /// `streamClosed` for a stream the hub does not run.
    pub fn stream_closed(stream_id: &'a str, error: ErrorBody<'a>) -> Self {
        ServerFrame::StreamClosed {
            stream_id: Cow::Borrowed(stream_id),
            error: Some(error),
        }
    }
}
