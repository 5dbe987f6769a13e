//! The one error type of the client: what went wrong on the socket, in the hub's answer, or
//! in a bus operation, so callers can tell a refused request from a lost connection.

/// Everything a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL could not be used.
    #[error("invalid url: {0}")]
    Url(String),
    /// The WebSocket handshake or socket failed.
    #[error("websocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    /// The hub answered a request with `success: false` (`Forbidden`, `NotFound`, ...).
    #[error("{name}: {message}")]
    Refused {
        /// The error name from the hub.
        name: String,
        /// The hub's explanation.
        message: String,
    },
    /// No answer arrived in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The connection went away before the answer; the request may or may not have run.
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// The client was stopped.
    #[error("the client is closed")]
    Closed,
    /// The hub sent something this client cannot read.
    #[error("protocol: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The hub's error name for a refused request (`Forbidden`, `Timeout`, ...), if any.
    pub fn name(&self) -> Option<&str> {
        match self {
            ClientError::Refused { name, .. } => Some(name),
            _ => None,
        }
    }

    /// The HTTP status of a refused WebSocket handshake (401 for a bad token), if that is
    /// what failed.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            ClientError::WebSocket(tokio_tungstenite::tungstenite::Error::Http(r)) => {
                Some(r.status().as_u16())
            }
            _ => None,
        }
    }

    pub(crate) fn refused(error: &nerve_protocol::ErrorBody<'_>) -> ClientError {
        ClientError::Refused {
            name: error.name.to_string(),
            message: error.message.to_string(),
        }
    }
}

/// Results of this crate.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;
