//! A WebSocket client that behaves like the official one: JSON subprotocols, acks by id,
//! and for the reliable protocol sequence acks, duplicate suppression and recovery through
//! any node of the cluster (the `awps_connection_id` + `awps_reconnection_token` handshake).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How a connection ended for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// Close code (1006 when the socket dropped without one).
    pub code: u16,
    /// Close reason.
    pub reason: String,
}

#[derive(Default)]
struct Seen {
    data: Vec<Value>,
    arrived: Vec<Instant>,
    sequence_ids: Vec<u64>,
    /// The `offset` of each message, when its group keeps a history.
    offsets: Vec<Option<String>>,
    acks: HashMap<u64, Value>,
    connection_id: Option<String>,
    token: Option<String>,
    closed: Option<Closed>,
    /// Every close frame the hub sent, in order (its echoes of the client's closes too).
    close_frames: Vec<Closed>,
}

/// A connected test client; its socket is served by a background task.
pub struct Client {
    seen: Arc<Mutex<Seen>>,
    out: mpsc::Sender<Message>,
    next_ack: AtomicU64,
    resumes: Arc<AtomicUsize>,
    hold: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

async fn open(url: &str, protocol: &str) -> Option<Ws> {
    let mut req = url.into_client_request().ok()?;
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_str(protocol).ok()?,
    );
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(req),
    )
    .await
    .ok()?
    .ok()?;
    Some(ws)
}

impl Client {
    /// Connects to the node at `port` with a token; `reliable` picks the reliable protocol.
    /// Resumptions try `resume_ports` in turn (starting after `port`).
    pub async fn connect(port: u16, token: &str, reliable: bool, resume_ports: &[u16]) -> Client {
        let protocol = if reliable {
            crate::RELIABLE
        } else {
            crate::JSON
        };
        let url = format!(
            "ws://127.0.0.1:{port}/client/hubs/{}?access_token={token}",
            crate::HUB
        );
        let ws = open(&url, protocol).await.expect("connect to nerve");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (out, rx) = mpsc::channel(256);
        let resumes = Arc::new(AtomicUsize::new(0));
        let (hold, held) = tokio::sync::watch::channel(false);
        let mut ports: Vec<u16> = resume_ports
            .iter()
            .copied()
            .filter(|p| *p != port)
            .collect();
        ports.push(port);
        let task = tokio::spawn(serve(
            ws,
            reliable,
            ports,
            seen.clone(),
            rx,
            resumes.clone(),
            held,
        ));
        let client = Client {
            seen,
            out,
            next_ack: AtomicU64::new(1),
            resumes,
            hold,
            task,
        };
        let s = client.seen.clone();
        nerve_testkit::eventually(crate::WAIT, "connected", || {
            let s = s.clone();
            async move { s.lock().connection_id.clone() }
        })
        .await;
        client
    }

    /// This connection's id.
    pub fn id(&self) -> String {
        self.seen.lock().connection_id.clone().unwrap_or_default()
    }

    /// The data of every message received (once each), in order.
    pub fn received(&self) -> Vec<Value> {
        self.seen.lock().data.clone()
    }

    /// The data of every message received (once each), in order, with when it arrived.
    pub fn arrivals(&self) -> Vec<(Value, Instant)> {
        let s = self.seen.lock();
        s.data
            .iter()
            .cloned()
            .zip(s.arrived.iter().copied())
            .collect()
    }

    /// Number of messages received.
    pub fn count(&self) -> usize {
        self.seen.lock().data.len()
    }

    /// How many times the session was resumed on a new socket.
    pub fn resumes(&self) -> usize {
        self.resumes.load(Ordering::Relaxed)
    }

    /// The sequence ids of the messages received (once each), in order.
    pub fn sequence_ids(&self) -> Vec<u64> {
        self.seen.lock().sequence_ids.clone()
    }

    /// Holds back resumption: after its socket drops, the client waits (as one that is
    /// offline for a while) until [`Client::allow_resumption`].
    pub fn hold_resumption(&self) {
        self.hold.send_replace(true);
    }

    /// Lets a held client resume.
    pub fn allow_resumption(&self) {
        self.hold.send_replace(false);
    }

    /// How the connection ended, if it did for good.
    pub fn closed(&self) -> Option<Closed> {
        self.seen.lock().closed.clone()
    }

    /// Every close frame the hub sent so far.
    pub fn close_frames(&self) -> Vec<Closed> {
        self.seen.lock().close_frames.clone()
    }

    /// Closes the socket with a close frame (`code`, or none) as an application closing it
    /// does; a reliable client then resumes, as the official ones do after any close but 1008.
    pub async fn close_socket(&self, code: Option<u16>) {
        let frame = code.map(|c| CloseFrame {
            code: c.into(),
            reason: "closed by the test".into(),
        });
        let _ = self.out.send(Message::Close(frame)).await;
    }

    /// Sends a frame with a fresh `ackId` and waits for its ack.
    pub async fn request(&self, mut frame: Value) -> Value {
        let id = self.next_ack.fetch_add(1, Ordering::Relaxed);
        frame["ackId"] = json!(id);
        let _ = self.out.send(Message::Text(frame.to_string().into())).await;
        let s = self.seen.clone();
        nerve_testkit::eventually(crate::WAIT, "ack", || {
            let s = s.clone();
            async move { s.lock().acks.get(&id).cloned() }
        })
        .await
    }

    /// The offset of each message received, in order (`None` for one without).
    pub fn offsets(&self) -> Vec<Option<String>> {
        self.seen.lock().offsets.clone()
    }

    /// Joins a group (acked).
    pub async fn join(&self, group: &str) {
        let ack = self
            .request(json!({"type": "joinGroup", "group": group}))
            .await;
        assert_eq!(ack["success"], json!(true), "join {group}: {ack}");
    }

    /// Publishes text to a group (acked).
    pub async fn send_to_group(&self, group: &str, data: &str, no_echo: bool) {
        let frame = json!({"type": "sendToGroup", "group": group, "dataType": "text", "data": data, "noEcho": no_echo});
        let ack = self.request(frame).await;
        assert_eq!(ack["success"], json!(true), "send to {group}: {ack}");
    }

    /// Waits until at least `n` messages arrived.
    pub async fn wait_count(&self, n: usize) {
        let s = self.seen.clone();
        let what = format!("{n} messages");
        nerve_testkit::eventually(crate::WAIT, &what, || {
            let s = s.clone();
            async move { (s.lock().data.len() >= n).then_some(()) }
        })
        .await;
    }

    /// Waits until the connection ended for good.
    pub async fn wait_closed(&self) -> Closed {
        let s = self.seen.clone();
        nerve_testkit::eventually(crate::WAIT, "connection closed", || {
            let s = s.clone();
            async move { s.lock().closed.clone() }
        })
        .await
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

enum Outcome {
    /// Closed for good.
    Closed(Closed),
    /// The socket went away; a reliable session may resume.
    Dropped,
}

async fn serve(
    mut ws: Ws,
    reliable: bool,
    ports: Vec<u16>,
    seen: Arc<Mutex<Seen>>,
    mut rx: mpsc::Receiver<Message>,
    resumes: Arc<AtomicUsize>,
    mut held: tokio::sync::watch::Receiver<bool>,
) {
    let mut last_seq = 0u64;
    let mut acked = 0u64;
    let mut next_port = 0usize;
    loop {
        let outcome = pump(&mut ws, reliable, &seen, &mut rx, &mut last_seq, &mut acked).await;
        let closed = match outcome {
            Outcome::Closed(c) if !reliable || c.code == 1008 => c,
            _ if !reliable => Closed {
                code: 1006,
                reason: String::new(),
            },
            _ => match resume(&ports, &mut next_port, &seen, &mut held).await {
                Some(new) => {
                    ws = new;
                    resumes.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                None => Closed {
                    code: 1008,
                    reason: "could not resume".into(),
                },
            },
        };
        seen.lock().closed = Some(closed);
        return;
    }
}

async fn resume(
    ports: &[u16],
    next: &mut usize,
    seen: &Mutex<Seen>,
    held: &mut tokio::sync::watch::Receiver<bool>,
) -> Option<Ws> {
    held.wait_for(|h| !*h).await.ok()?;
    let (id, token) = {
        let s = seen.lock();
        (s.connection_id.clone()?, s.token.clone()?)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        let port = ports[*next % ports.len()];
        *next += 1;
        let url = format!(
            "ws://127.0.0.1:{port}/client/hubs/{}?awps_connection_id={id}&awps_reconnection_token={token}",
            crate::HUB
        );
        if let Some(ws) = open(&url, crate::RELIABLE).await {
            return Some(ws);
        }
        // The official client waits a second between attempts; a tenth keeps tests quick.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

async fn pump(
    ws: &mut Ws,
    reliable: bool,
    seen: &Mutex<Seen>,
    rx: &mut mpsc::Receiver<Message>,
    last_seq: &mut u64,
    acked: &mut u64,
) -> Outcome {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    // After its own close frame the client only reads, until the hub's echo.
    let mut closing = false;
    loop {
        tokio::select! {
            out = rx.recv(), if !closing => {
                let Some(msg) = out else { return Outcome::Dropped };
                closing = matches!(msg, Message::Close(_));
                if ws.send(msg).await.is_err() {
                    return Outcome::Dropped;
                }
            }
            _ = tick.tick(), if reliable && !closing && *last_seq > *acked => {
                let ack = json!({"type": "sequenceAck", "sequenceId": *last_seq}).to_string();
                if ws.send(Message::Text(ack.into())).await.is_err() {
                    return Outcome::Dropped;
                }
                *acked = *last_seq;
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else { continue };
                    on_frame(v, seen, last_seq);
                }
                Some(Ok(Message::Close(f))) => {
                    let (code, reason) = f.map_or((1005, String::new()), |f| (u16::from(f.code), f.reason.to_string()));
                    let closed = Closed { code, reason };
                    seen.lock().close_frames.push(closed.clone());
                    return Outcome::Closed(closed);
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Outcome::Dropped,
            }
        }
    }
}

fn on_frame(v: Value, seen: &Mutex<Seen>, last_seq: &mut u64) {
    let mut s = seen.lock();
    match v["type"].as_str() {
        Some("message") => {
            if let Some(seq) = v["sequenceId"].as_u64() {
                if seq <= *last_seq {
                    return;
                }
                *last_seq = seq;
                s.sequence_ids.push(seq);
            }
            s.data.push(v["data"].clone());
            s.offsets.push(v["offset"].as_str().map(str::to_string));
            s.arrived.push(Instant::now());
        }
        Some("ack") => {
            if let Some(id) = v["ackId"].as_u64() {
                s.acks.insert(id, v);
            }
        }
        Some("system") if v["event"] == "connected" => {
            s.connection_id = v["connectionId"].as_str().map(str::to_string);
            if let Some(t) = v["reconnectionToken"].as_str() {
                s.token = Some(t.to_string());
            }
        }
        _ => {}
    }
}
