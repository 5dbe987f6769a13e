//! The hub client's public face: connect with a client URL, join and leave groups, send to
//! groups and events with acks, and read messages from a bounded event stream. The socket
//! itself lives in `session.rs`, which keeps one logical connection across dropped sockets.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nerve_protocol::subprotocol::{JSON, JSON_RELIABLE};
use nerve_protocol::{MessageFrame, PayloadError, Sender};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::error::{ClientError, Result};
use crate::session::{Command, Driver, Request};

/// How a message's `data` is encoded: JSON, text or binary.
pub use nerve_protocol::Data as Payload;

/// A group or server message delivered to this client.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// `Some(group)` for group messages, `None` for server messages.
    pub group: Option<String>,
    /// The sender's user id (group messages).
    pub from_user_id: Option<String>,
    /// The payload.
    pub payload: Payload,
    /// The sequence id on the reliable protocol.
    pub sequence_id: Option<u64>,
    /// The message's offset in its group's history, when the hub keeps one.
    pub offset: Option<nerve_protocol::Offset>,
}

impl Message {
    /// The message a `message` frame carries, its data decoded.
    pub(crate) fn from_frame(frame: MessageFrame<'_>) -> Result<Message, PayloadError> {
        let (group, from_user_id) = match frame.from {
            Sender::Group {
                group,
                from_user_id,
            } => (
                Some(group.into_owned()),
                from_user_id.map(|u| u.into_owned()),
            ),
            Sender::Server => (None, None),
        };
        Ok(Message {
            group,
            from_user_id,
            payload: frame.payload.to_data()?,
            sequence_id: frame.sequence_id,
            offset: frame.offset,
        })
    }
}

/// Settings of a hub client; `Default` matches the Web PubSub JS client.
#[derive(Debug, Clone)]
pub struct HubOptions {
    /// `json.reliable.webpubsub.azure.v1` (default) or `json.webpubsub.azure.v1`.
    pub protocol: String,
    /// How long a request waits for its ack.
    pub ack_timeout: Duration,
    /// How often a `ping` frame keeps the connection alive.
    pub ping_interval: Duration,
    /// How often the highest sequence id is acknowledged (at once after 300 more).
    pub sequence_ack_interval: Duration,
    /// How long recovery of a dropped session is attempted before a new connection.
    pub recovery_window: Duration,
    /// Capacity of the command and event queues.
    pub queue_size: usize,
}

impl Default for HubOptions {
    fn default() -> Self {
        HubOptions {
            protocol: JSON_RELIABLE.to_string(),
            ack_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(20),
            sequence_ack_interval: Duration::from_secs(1),
            recovery_window: Duration::from_secs(30),
            queue_size: 1024,
        }
    }
}

/// What happens on a hub connection, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum HubEvent {
    /// A socket is connected: a new connection, or the same one `recovered`.
    Connected {
        /// The connection id.
        connection_id: String,
        /// True when a dropped session was resumed.
        recovered: bool,
    },
    /// The socket closed (the client reconnects unless stopped).
    Disconnected {
        /// The hub's reason or the close code.
        reason: String,
    },
    /// A group or server message, exactly once.
    Message(Message),
    /// A group could not be rejoined on a new connection.
    RejoinFailed {
        /// The group.
        group: String,
        /// Why.
        error: String,
    },
}

/// The receiving side of a hub client. Read it, or drop it: while it is full the client
/// stops reading its socket (and the hub may cut a slow consumer off); once dropped, events
/// are discarded.
pub struct HubEvents {
    rx: mpsc::Receiver<HubEvent>,
}

impl HubEvents {
    /// The next event; `None` once the client is stopped.
    pub async fn next(&mut self) -> Option<HubEvent> {
        self.rx.recv().await
    }

    /// The next message, skipping other events; `None` once the client is stopped.
    pub async fn next_message(&mut self) -> Option<Message> {
        while let Some(e) = self.rx.recv().await {
            if let HubEvent::Message(m) = e {
                return Some(m);
            }
        }
        None
    }
}

/// Counters of a client's connection history.
#[derive(Debug, Default)]
pub struct HubStats {
    /// Sessions resumed after a dropped socket.
    pub recoveries: AtomicU64,
    /// New connections after the first (recovery refused or impossible).
    pub reconnects: AtomicU64,
    /// Redelivered messages dropped because they had been delivered already.
    pub duplicates: AtomicU64,
    /// `pong` answers to keep-alive pings.
    pub pongs: AtomicU64,
}

/// State the session shares with the handle.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) connection_id: Mutex<Option<String>>,
    pub(crate) user_id: Mutex<Option<String>>,
    pub(crate) stats: HubStats,
}

/// A Web PubSub client connection (see the crate docs for an example).
pub struct HubClient {
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    stop: CancellationToken,
    ack_timeout: Duration,
}

impl HubClient {
    /// Connects with a client URL (token in `access_token`) and waits for `connected`.
    pub async fn connect(url: &str, options: HubOptions) -> Result<(HubClient, HubEvents)> {
        if options.protocol != JSON_RELIABLE && options.protocol != JSON {
            return Err(ClientError::Protocol(format!(
                "unsupported subprotocol {}",
                options.protocol
            )));
        }
        let (cmd_tx, cmd_rx) = mpsc::channel(options.queue_size);
        let (ev_tx, ev_rx) = mpsc::channel(options.queue_size);
        let (ready_tx, ready_rx) = oneshot::channel();
        let shared = Arc::new(Shared::default());
        let stop = CancellationToken::new();
        let ack_timeout = options.ack_timeout;
        let driver = Driver::new(url, options, shared.clone(), cmd_rx, ev_tx, stop.clone());
        tokio::spawn(driver.run(ready_tx));
        ready_rx.await.map_err(|_| ClientError::Closed)??;
        let client = HubClient {
            commands: cmd_tx,
            shared,
            stop,
            ack_timeout,
        };
        Ok((client, HubEvents { rx: ev_rx }))
    }

    /// The current connection id.
    pub fn connection_id(&self) -> Option<String> {
        self.shared.connection_id.lock().clone()
    }

    /// The user id the hub assigned.
    pub fn user_id(&self) -> Option<String> {
        self.shared.user_id.lock().clone()
    }

    /// Recovery, reconnect and duplicate counters.
    pub fn stats(&self) -> &HubStats {
        &self.shared.stats
    }

    /// Shorthand for a counter of `stats()`.
    pub fn recoveries(&self) -> u64 {
        self.shared.stats.recoveries.load(Ordering::Relaxed)
    }

    /// Joins a group; it is rejoined automatically on a new connection.
    pub async fn join_group(&self, group: &str) -> Result<()> {
        self.request(Request::Join(group.to_string())).await
    }

    /// Leaves a group.
    pub async fn leave_group(&self, group: &str) -> Result<()> {
        self.request(Request::Leave(group.to_string())).await
    }

    /// Publishes to a group and waits for the ack.
    pub async fn send_to_group(&self, group: &str, payload: Payload, no_echo: bool) -> Result<()> {
        self.request(Request::Send {
            group: group.to_string(),
            payload,
            no_echo,
        })
        .await
    }

    /// Publishes to a group without asking for an ack.
    pub async fn publish_to_group(
        &self,
        group: &str,
        payload: Payload,
        no_echo: bool,
    ) -> Result<()> {
        let req = Request::Send {
            group: group.to_string(),
            payload,
            no_echo,
        };
        self.commands
            .send(Command::Request {
                request: req,
                reply: None,
            })
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// Sends a user event to the hub's upstream handler and waits for the ack.
    pub async fn send_event(&self, event: &str, payload: Payload) -> Result<()> {
        self.request(Request::Event {
            name: event.to_string(),
            payload,
        })
        .await
    }

    /// Cuts the socket without a close handshake, as a network failure would (for tests and
    /// drills); the client then recovers the session.
    pub async fn drop_socket(&self) -> Result<()> {
        self.commands
            .send(Command::DropSocket)
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// Closes the connection for good.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    async fn request(&self, request: Request) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Request {
                request,
                reply: Some(tx),
            })
            .await
            .map_err(|_| ClientError::Closed)?;
        match tokio::time::timeout(self.ack_timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(ClientError::Closed),
            Err(_) => Err(ClientError::Timeout("no ack from the hub".into())),
        }
    }
}

impl Drop for HubClient {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
