//! The `[limits]` section: sizes, queues, timers and abuse limits, with documented defaults
//! (every one is listed in the operations guide).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Limits on sizes, queues and timers.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest WebSocket frame/message accepted, in bytes (default 1 MiB).
    pub max_frame_bytes: usize,
    /// Outbox capacity per connection, in messages (default 1000).
    pub outbox_messages: usize,
    /// Outbox capacity per connection, in bytes (default 16 MiB).
    pub outbox_bytes: usize,
    /// How long a dropped reliable session waits for its client, in seconds (default 30).
    pub reconnect_window_secs: u64,
    /// WebSocket ping interval, in seconds (default 20); a connection silent for three
    /// intervals is closed.
    pub keepalive_secs: u64,
    /// Most ack ids remembered per connection for duplicate detection (default 1024).
    pub ack_dedupe_window: usize,
    /// Frames a client may send per second, sustained (default 50000; 0: unlimited); over it
    /// the connection is closed with code 1008.
    pub messages_per_sec: u64,
    /// Frames a client may send in a burst above the sustained rate (default 100000).
    pub message_burst: u64,
    /// Bytes a client may send per second, sustained (default 64 MiB; 0: unlimited).
    pub bytes_per_sec: u64,
    /// Bytes a client may send in a burst (default 64 MiB; at least `max_frame_bytes`).
    pub byte_burst: u64,
    /// REST requests per second from one caller IP address (default 0: unlimited); over it
    /// the answer is 429 with a JSON reason and `Retry-After`.
    pub rest_requests_per_sec: u64,
    /// REST requests one caller may make in a burst (default 2 × the rate).
    pub rest_burst: u64,
    /// Client connections on this node (default 100000; 0: unlimited); over it the
    /// handshake gets 503.
    pub max_connections: usize,
    /// Client connections of one user on this node (default 1000; 0: unlimited); over it
    /// the handshake gets 429.
    pub max_connections_per_user: usize,
    /// Groups one connection may be in (default 1000; 0: unlimited); a join over it gets a
    /// `Forbidden` ack.
    pub max_groups_per_connection: usize,
    /// Time a client has to send a complete HTTP request head, in milliseconds (default
    /// 10000); a connection that is slower (slowloris) is dropped.
    pub handshake_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: 1024 * 1024,
            outbox_messages: 1000,
            outbox_bytes: 16 * 1024 * 1024,
            reconnect_window_secs: 30,
            keepalive_secs: 20,
            ack_dedupe_window: 1024,
            messages_per_sec: 50_000,
            message_burst: 100_000,
            bytes_per_sec: 64 * 1024 * 1024,
            byte_burst: 64 * 1024 * 1024,
            rest_requests_per_sec: 0,
            rest_burst: 0,
            max_connections: 100_000,
            max_connections_per_user: 1000,
            max_groups_per_connection: 1000,
            handshake_timeout_ms: 10_000,
        }
    }
}

impl Limits {
    /// The reconnect window as a duration.
    pub fn reconnect_window(&self) -> Duration {
        Duration::from_secs(self.reconnect_window_secs)
    }

    /// The keep-alive interval as a duration.
    pub fn keepalive(&self) -> Duration {
        Duration::from_secs(self.keepalive_secs.max(1))
    }

    /// The handshake (request head) timeout as a duration.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms.max(1))
    }
}
