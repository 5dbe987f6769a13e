//! The line-delimited JSON protocol between the runner and its load-generator processes.
//!
//! Each load generator is a child process (so each gets its own open-file limit); the runner
//! writes one [`Command`] per line to its stdin and reads one [`Event`] per line from its stdout.

use std::net::{Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::client::SendMode;
use crate::dialect::Dialect;

/// What the runner asks a load generator to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Open the clients; answered by [`Event::Connected`].
    Connect(ConnectJob),
    /// Change who sends and how; counters are not touched.
    Plan {
        /// Local indices of the clients that send.
        senders: Vec<usize>,
        /// How they send.
        mode: SendMode,
        /// Payload size in bytes.
        payload_bytes: usize,
    },
    /// Start a measurement window: zero counters and histograms.
    Reset,
    /// Report counters since the last reset; answered by [`Event::Stats`].
    Snapshot,
    /// Close every client and exit.
    Quit,
}

/// The clients one load generator opens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectJob {
    /// Wire dialect.
    pub dialect: Dialect,
    /// Server addresses; client `i` uses `endpoints[i % len]`.
    pub endpoints: Vec<SocketAddr>,
    /// Hub name (Nerve).
    pub hub: String,
    /// Access key for tokens (Nerve).
    pub key: Option<String>,
    /// One entry per client: the group it joins, if any.
    pub groups: Vec<Option<String>>,
    /// Global id of this process's first client.
    pub id_base: u64,
    /// Loopback source addresses; client `i` binds `sources[i % len]`.
    pub sources: Vec<Ipv4Addr>,
    /// Handshakes in progress at once.
    pub concurrency: usize,
}

/// What a load generator reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Event {
    /// The outcome of [`Command::Connect`].
    Connected {
        /// Clients connected and joined.
        ok: usize,
        /// Clients that failed.
        failed: usize,
        /// The first failure, if any.
        first_error: Option<String>,
        /// Seconds the whole connect took.
        secs: f64,
    },
    /// Counters since the last reset.
    Stats(Snapshot),
    /// A command could not be carried out.
    Failed {
        /// Why.
        message: String,
    },
}

/// Counters of one load generator over one measurement window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// Seconds since the last reset.
    pub elapsed_s: f64,
    /// Benchmark messages received.
    pub received: u64,
    /// Benchmark messages sent.
    pub sent: u64,
    /// Window senders that gave up waiting for their own message.
    pub stalls: u64,
    /// Clients closed by the server so far (not reset).
    pub closed: u64,
    /// Latency histogram (µs), serialized by `stats::encode`.
    pub hist: String,
}
