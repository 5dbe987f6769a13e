//! Errors of the bus API, one enum for callers to match on.

use std::time::Duration;

use crate::a2a::TaskState;
use crate::envelope::Envelope;
use crate::task::TransitionError;
use crate::transport::TransportError;

/// Why a bus call failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The transport failed (e.g. Redis unreachable); the call may be retried.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// No task with this id.
    #[error("task {0} not found")]
    TaskNotFound(String),
    /// The update is not allowed in the task's current state.
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// Cancel on a finished task (A2A `TaskNotCancelableError`).
    #[error("task {id} is {state} and cannot be canceled")]
    NotCancelable {
        /// Task id.
        id: String,
        /// Its terminal state.
        state: TaskState,
    },
    /// A deadline passed.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
    /// A capability or id is not usable as a name.
    #[error("invalid name `{0}`: use 1-128 characters from A-Z a-z 0-9 . _ - :")]
    InvalidName(String),
    /// The task was canceled while the handler waited.
    #[error("task {0} was canceled")]
    Canceled(String),
    /// Too many concurrent writers kept changing the task.
    #[error("gave up updating task {0} after repeated concurrent changes")]
    Contention(String),
    /// An envelope that breaks the CloudEvents rules or the bus's limits.
    #[error(transparent)]
    Envelope(#[from] crate::envelope::EnvelopeError),
}

/// Why a request got no successful reply.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// No reply before the deadline; `reply` is the error reply recorded in the chain.
    #[error("request timed out; error reply {} recorded", reply.id)]
    Timeout {
        /// The `bus.rpc.reply` event with an error that stands in for the missing reply.
        reply: Box<Envelope>,
    },
    /// The responder replied with an error.
    #[error("responder error {code}: {message}")]
    Remote {
        /// Error code.
        code: String,
        /// Error message.
        message: String,
    },
    /// The bus failed.
    #[error(transparent)]
    Bus(#[from] BusError),
}

impl From<TransportError> for RpcError {
    fn from(e: TransportError) -> Self {
        RpcError::Bus(BusError::Transport(e))
    }
}

/// Checks that a capability or id is safe to use in keys and hash tags.
pub fn check_name(name: &str) -> Result<(), BusError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
    if ok {
        Ok(())
    } else {
        Err(BusError::InvalidName(name.to_string()))
    }
}
