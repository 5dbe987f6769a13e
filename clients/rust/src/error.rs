//! The one error type of the client: what went wrong on the socket, in the hub's answer, or
//! in a bus operation, so callers can tell a refused request from a lost connection.

/// Everything a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL could not be used.
    #[error("invalid url: {0}")]
    Url(String),
    /// The connection string is missing or malformed.
    #[error("connection string: {0}")]
    ConnectionString(String),
    /// The WebSocket handshake or socket failed.
    #[error("websocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    /// The hub answered the handshake with an HTTP error (401 for a bad token) and said why.
    #[error("the hub refused the connection (HTTP {status}): {reason}")]
    Handshake {
        /// The HTTP status.
        status: u16,
        /// The hub's reason, e.g. "the access token signature is invalid".
        reason: String,
    },
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
            ClientError::Handshake { status, .. } => Some(*status),
            ClientError::WebSocket(tokio_tungstenite::tungstenite::Error::Http(r)) => {
                Some(r.status().as_u16())
            }
            _ => None,
        }
    }

    /// A failed handshake as the hub explained it: its status and the `message` of its JSON
    /// body (or the body's text); any other socket error as it is.
    pub(crate) fn from_handshake(e: tokio_tungstenite::tungstenite::Error) -> ClientError {
        let tokio_tungstenite::tungstenite::Error::Http(response) = &e else {
            return ClientError::WebSocket(e);
        };
        let status = response.status();
        let body = response
            .body()
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        let reason = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("message")?.as_str().map(str::to_string))
            .unwrap_or_else(|| body.trim().to_string());
        let reason = if reason.is_empty() {
            status.canonical_reason().unwrap_or_default().to_string()
        } else {
            reason
        };
        ClientError::Handshake {
            status: status.as_u16(),
            reason,
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
