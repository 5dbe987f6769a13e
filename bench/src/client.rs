//! One benchmark WebSocket client: connect from a chosen loopback source address with small
//! buffers, join a group in the target's dialect, then receive (recording latency) and, when told,
//! publish at a fixed rate or with a window of messages in flight.
//!
//! A load-generator process runs thousands of these as tasks; they share one [`Tally`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

use crate::dialect::{Decoder, Dialect, Incoming};
use crate::payload::{self, now_nanos};
use crate::stats;
use crate::token;

/// How long a connect plus join may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// A window sender that has not seen its own message back for this long starts over.
const WINDOW_STALL: Duration = Duration::from_secs(5);
/// Histogram shards, so receivers on different threads rarely share a lock.
const SHARDS: usize = 16;

/// A client's WebSocket.
pub type Ws = WebSocketStream<TcpStream>;

/// Why a client could not connect.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// TCP connect or socket setup failed.
    #[error("tcp: {0}")]
    Io(#[from] std::io::Error),
    /// The WebSocket handshake or a frame failed.
    #[error("websocket: {0}")]
    Ws(#[from] tungstenite::Error),
    /// A token could not be signed.
    #[error(transparent)]
    Token(#[from] token::TokenError),
    /// The server refused the join.
    #[error("refused: {0}")]
    Refused(String),
    /// The server closed before the join completed.
    #[error("closed during handshake")]
    Closed,
    /// Connect and join took too long.
    #[error("timed out connecting")]
    Timeout,
}

/// Everything needed to open one client.
#[derive(Debug, Clone)]
pub struct ConnectSpec {
    /// Wire dialect.
    pub dialect: Dialect,
    /// Server address.
    pub addr: SocketAddr,
    /// Hub name (Nerve).
    pub hub: String,
    /// Access key to sign tokens with (Nerve).
    pub key: Option<String>,
    /// Group to join, if any.
    pub group: Option<String>,
    /// Loopback source address to bind before connecting.
    pub source: Ipv4Addr,
    /// Global client id, used as user id and payload sender id.
    pub id: u64,
}

/// Small buffers: the load generator holds tens of thousands of sockets.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(64 * 1024)
}

/// Connects, upgrades and joins the group; returns the open socket.
pub async fn connect(spec: &ConnectSpec) -> Result<Ws, ClientError> {
    timeout(CONNECT_TIMEOUT, connect_inner(spec))
        .await
        .map_err(|_| ClientError::Timeout)?
}

async fn connect_inner(spec: &ConnectSpec) -> Result<Ws, ClientError> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(spec.source), 0))?;
    let stream = socket.connect(spec.addr).await?;
    stream.set_nodelay(true)?;

    let path = spec.dialect.path(&spec.hub, spec.group.as_deref());
    let mut url = format!("ws://{}{}", spec.addr, path);
    if let Some(key) = &spec.key {
        let aud = format!("http://{}{}", spec.addr, path);
        let user = format!("u{}", spec.id);
        let jwt = token::sign(key, &aud, Some(&user), token::CLIENT_ROLES)?;
        url.push_str(if url.contains('?') { "&" } else { "?" });
        url.push_str("access_token=");
        url.push_str(&jwt);
    }
    let mut request = url.into_client_request()?;
    if let Some(proto) = spec.dialect.subprotocol() {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(proto));
    }
    let (mut ws, _) = client_async_with_config(request, stream, Some(ws_config())).await?;
    handshake(&mut ws, spec).await?;
    Ok(ws)
}

/// The dialect's steps after the upgrade: Socket.IO's namespace connect or MQTT's CONNECT,
/// then the join.
async fn handshake(ws: &mut Ws, spec: &ConnectSpec) -> Result<(), ClientError> {
    let d = spec.dialect;
    let mut decoder = Decoder::default();
    if d == Dialect::SocketIo {
        wait_for(ws, d, &mut decoder, |i| matches!(i, Incoming::Open)).await?;
        ws.send(Message::text("40")).await?;
        wait_for(ws, d, &mut decoder, |i| matches!(i, Incoming::Joined)).await?;
    }
    if let Some(hello) = d.hello_frame(&format!("b{}", spec.id)) {
        ws.send(hello).await?;
        wait_for(ws, d, &mut decoder, |i| matches!(i, Incoming::Accepted)).await?;
    }
    match (&spec.group, d) {
        (Some(_), Dialect::Raw) => {
            wait_for(ws, d, &mut decoder, |i| matches!(i, Incoming::Joined)).await
        }
        (Some(group), _) => {
            if let Some(frame) = d.join_frame(group) {
                ws.send(frame).await?;
            }
            wait_for(ws, d, &mut decoder, |i| matches!(i, Incoming::Joined)).await
        }
        (None, _) => Ok(()),
    }
}

async fn wait_for(
    ws: &mut Ws,
    d: Dialect,
    decoder: &mut Decoder,
    done: impl Fn(&Incoming) -> bool,
) -> Result<(), ClientError> {
    while let Some(msg) = ws.next().await {
        decoder.push(d, &msg?);
        while let Some(incoming) = decoder.take() {
            match incoming {
                Incoming::Refused(why) => return Err(ClientError::Refused(why)),
                Incoming::Ping(reply) => ws.send(Message::text(reply)).await?,
                ref i if done(i) => return Ok(()),
                _ => {}
            }
        }
    }
    Err(ClientError::Closed)
}

/// How senders publish.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendMode {
    /// Do not send.
    Idle,
    /// Keep up to this many own messages in flight (saturation).
    Window(u32),
    /// Send this many messages per second each (open loop).
    Rate(f64),
}

/// What senders do now; every client watches it and acts if its index is listed.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Local indices of the clients that send.
    pub senders: Arc<Vec<bool>>,
    /// How they send.
    pub mode: SendMode,
    /// Payload size in bytes.
    pub payload_bytes: usize,
}

impl Plan {
    /// Nobody sends.
    pub fn idle() -> Self {
        Plan {
            senders: Arc::new(Vec::new()),
            mode: SendMode::Idle,
            payload_bytes: 0,
        }
    }
}

/// Counters and latency histograms shared by all clients of one process.
pub struct Tally {
    /// Benchmark messages received.
    pub received: AtomicU64,
    /// Benchmark messages sent.
    pub sent: AtomicU64,
    /// Window senders that gave up waiting for their own message.
    pub stalls: AtomicU64,
    /// Connections the server closed (never reset).
    pub closed: AtomicU64,
    hists: Vec<Mutex<Histogram<u64>>>,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            stalls: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            hists: (0..SHARDS)
                .map(|_| Mutex::new(stats::new_histogram()))
                .collect(),
        }
    }
}

impl Tally {
    fn record(&self, shard: usize, micros: u64) {
        self.received.fetch_add(1, Ordering::Relaxed);
        stats::record(&mut self.hists[shard % SHARDS].lock(), micros);
    }

    /// Zeroes counters and histograms (the start of a measurement window).
    pub fn reset(&self) {
        self.received.store(0, Ordering::Relaxed);
        self.sent.store(0, Ordering::Relaxed);
        self.stalls.store(0, Ordering::Relaxed);
        for h in &self.hists {
            h.lock().reset();
        }
    }

    /// All shards merged into one histogram.
    pub fn histogram(&self) -> Histogram<u64> {
        let mut all = stats::new_histogram();
        for h in &self.hists {
            let _ = stats::merge(&mut all, &h.lock());
        }
        all
    }
}

/// Runs one connected client until the server closes it or `plan` is dropped.
pub async fn run(
    mut ws: Ws,
    dialect: Dialect,
    group: Option<String>,
    index: usize,
    id: u64,
    tally: Arc<Tally>,
    mut plan: watch::Receiver<Plan>,
) {
    let mut current = plan.borrow_and_update().clone();
    let mut in_flight: u32 = 0;
    let mut last_echo = Instant::now();
    let mut next_due = Instant::now();
    let mut decoder = Decoder::default();
    let keep_alive = dialect.keep_alive();
    let mut next_ping = keep_alive
        .as_ref()
        .map(|(every, _)| Instant::now() + *every);
    loop {
        let sending = group.is_some() && current.senders.get(index).copied().unwrap_or(false);
        let mode = if sending {
            current.mode
        } else {
            SendMode::Idle
        };
        if let SendMode::Window(w) = mode {
            while in_flight < w {
                if send_one(&mut ws, dialect, &group, id, &current, &tally)
                    .await
                    .is_err()
                {
                    return tally_closed(&tally);
                }
                in_flight += 1;
            }
        }
        let rate_due = match mode {
            SendMode::Rate(r) if r > 0.0 => Some(next_due),
            _ => None,
        };
        let stall_at = matches!(mode, SendMode::Window(_)).then(|| last_echo + WINDOW_STALL);
        tokio::select! {
            changed = plan.changed() => {
                if changed.is_err() {
                    let _ = ws.close(None).await;
                    return;
                }
                current = plan.borrow_and_update().clone();
                in_flight = 0;
                last_echo = Instant::now();
                next_due = Instant::now();
            }
            msg = ws.next() => {
                let Some(Ok(msg)) = msg else { return tally_closed(&tally) };
                decoder.push(dialect, &msg);
                while let Some(incoming) = decoder.take() {
                    match incoming {
                        Incoming::Payload(stamp) => {
                            let micros = now_nanos().saturating_sub(stamp.ts_nanos) / 1000;
                            tally.record(index, micros);
                            if stamp.src == id {
                                in_flight = in_flight.saturating_sub(1);
                                last_echo = Instant::now();
                            }
                        }
                        Incoming::Ping(reply) if ws.send(Message::text(reply)).await.is_err() => {
                            return tally_closed(&tally);
                        }
                        _ => {}
                    }
                }
            }
            _ = sleep_until(next_ping.unwrap_or_else(Instant::now)), if next_ping.is_some() => {
                if let Some((every, ping)) = &keep_alive {
                    if ws.send(ping.clone()).await.is_err() {
                        return tally_closed(&tally);
                    }
                    next_ping = Some(Instant::now() + *every);
                }
            }
            _ = sleep_until(rate_due.unwrap_or_else(Instant::now)), if rate_due.is_some() => {
                if send_one(&mut ws, dialect, &group, id, &current, &tally).await.is_err() {
                    return tally_closed(&tally);
                }
                if let SendMode::Rate(r) = mode {
                    next_due += Duration::from_secs_f64(1.0 / r);
                    // A sender that fell far behind does not burst to catch up.
                    let now = Instant::now();
                    if next_due + Duration::from_millis(100) < now {
                        next_due = now;
                    }
                }
            }
            _ = sleep_until(stall_at.unwrap_or_else(Instant::now)), if stall_at.is_some() => {
                tally.stalls.fetch_add(1, Ordering::Relaxed);
                in_flight = 0;
                last_echo = Instant::now();
            }
        }
    }
}

fn tally_closed(tally: &Tally) {
    tally.closed.fetch_add(1, Ordering::Relaxed);
}

async fn send_one(
    ws: &mut Ws,
    dialect: Dialect,
    group: &Option<String>,
    id: u64,
    plan: &Plan,
    tally: &Tally,
) -> Result<(), tungstenite::Error> {
    let group = group.as_deref().unwrap_or("_");
    let body = payload::build(now_nanos(), id, plan.payload_bytes);
    ws.send(dialect.publish_frame(group, &body)).await?;
    tally.sent.fetch_add(1, Ordering::Relaxed);
    Ok(())
}
