//! Shared end-to-end harness: the real `nerve` binary on a free port, and a raw WebSocket
//! client that speaks the JSON protocols frame by frame.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use nerve_hub::auth::AccessKeys;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The reliable JSON subprotocol.
pub const RELIABLE: &str = "json.reliable.webpubsub.azure.v1";
/// The plain JSON subprotocol.
pub const JSON: &str = "json.webpubsub.azure.v1";
/// Roles that allow joining and publishing anywhere.
pub const ALL_ROLES: &[&str] = &["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"];
/// How long a test waits for any single expected frame.
pub const WAIT: Duration = Duration::from_secs(10);

/// A running `nerve` process, killed on drop.
pub struct HubProcess {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its access key.
    pub key: String,
    _config: Option<tempfile_path::TempFile>,
}

pub mod tempfile_path {
    /// A file removed on drop.
    pub struct TempFile(pub std::path::PathBuf);
    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

impl HubProcess {
    /// Starts the hub with default settings.
    pub fn start() -> Self {
        Self::start_with_config("")
    }

    /// Starts the hub with a TOML configuration file holding `toml`.
    pub fn start_with_config(toml: &str) -> Self {
        let key = format!("test-key-{}", rand_suffix());
        let (child, port, config) = spawn_nerve(&[&key], toml, &[]);
        HubProcess {
            child,
            port,
            key,
            _config: config,
        }
    }

    /// Sends SIGTERM and waits for the process to exit; returns whether it exited cleanly.
    pub fn terminate(&mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        nerve_testkit::eventually_blocking(Duration::from_secs(10), "nerve to exit", || {
            self.child.try_wait().ok().flatten()
        })
        .success()
    }

    /// A client token for `hub`.
    pub fn token(&self, hub: &str, user: Option<&str>, roles: &[&str], groups: &[&str]) -> String {
        let keys = AccessKeys::new(vec![self.key.clone()]);
        let aud = format!("http://127.0.0.1:{}/client/hubs/{hub}", self.port);
        let roles: Vec<String> = roles.iter().map(|s| s.to_string()).collect();
        let groups: Vec<String> = groups.iter().map(|s| s.to_string()).collect();
        keys.client_token(&aud, user, &roles, &groups, 600)
    }

    /// `ws://127.0.0.1:PORT/client/hubs/{hub}?access_token=…`
    pub fn url(&self, hub: &str, token: &str) -> String {
        format!(
            "ws://127.0.0.1:{}/client/hubs/{hub}?access_token={token}",
            self.port
        )
    }

    /// Connects a client with a token of the given user and roles.
    pub async fn connect(
        &self,
        hub: &str,
        user: Option<&str>,
        roles: &[&str],
        protocol: Option<&str>,
    ) -> Client {
        let url = self.url(hub, &self.token(hub, user, roles, &[]));
        Client::connect(&url, protocol).await.expect("connect")
    }

    /// Scrapes `/metrics`.
    pub async fn metrics(&self) -> String {
        http_get(self.port, "/metrics").await
    }
}

/// Starts `nerve` on a free port with `keys`, an optional TOML file and extra flags; returns the
/// process, its port (read from the printed connection string) and the config file.
pub fn spawn_nerve(
    keys: &[&str],
    toml: &str,
    extra: &[&str],
) -> (Child, u16, Option<tempfile_path::TempFile>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nerve"));
    cmd.args(["--listen", "127.0.0.1:0", "--log-level", "warn"]);
    for k in keys {
        cmd.args(["--access-key", k]);
    }
    cmd.args(extra);
    let config = config_file(&mut cmd, toml);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start nerve");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let port = loop {
        let line = lines
            .next()
            .expect("nerve exited before printing its endpoint")
            .expect("read stdout");
        if let Some(rest) = line.strip_prefix("Endpoint=http://127.0.0.1:") {
            break rest
                .split(';')
                .next()
                .and_then(|p| p.parse::<u16>().ok())
                .expect("port in connection string");
        }
    };
    // Keep draining stdout so the process never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, port, config)
}

/// Writes `toml` (unless empty) to a temporary file and passes it with `--config`.
fn config_file(cmd: &mut Command, toml: &str) -> Option<tempfile_path::TempFile> {
    (!toml.is_empty()).then(|| {
        let path = std::env::temp_dir().join(format!("nerve-test-{}.toml", rand_suffix()));
        std::fs::write(&path, toml).expect("write config");
        cmd.arg("--config").arg(&path);
        tempfile_path::TempFile(path)
    })
}

/// Everything a hub started with [`HubProcess::start_logged`] printed, stdout and stderr.
pub type Output = std::sync::Arc<std::sync::Mutex<String>>;

impl HubProcess {
    /// Starts the hub with a TOML file, extra flags and environment variables (the
    /// `OTEL_*`/`NERVE_OTLP_*` variables of the test's own environment are removed first);
    /// returns it with everything it prints.
    pub fn start_logged(toml: &str, extra: &[&str], env: &[(&str, &str)]) -> (Self, Output) {
        let key = format!("test-key-{}", rand_suffix());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nerve"));
        cmd.args(["--listen", "127.0.0.1:0", "--access-key", &key]);
        if !extra.contains(&"--log-level") {
            cmd.args(["--log-level", "warn"]);
        }
        cmd.args(extra);
        for (k, _) in std::env::vars() {
            if k.starts_with("OTEL_") || k.starts_with("NERVE_OTLP") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env.iter().copied());
        let config = config_file(&mut cmd, toml);
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nerve");
        let output = Output::default();
        let stderr = child.stderr.take().expect("stderr");
        let out = output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                let mut o = out.lock().expect("output");
                o.push_str(&line);
                o.push('\n');
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
        let mut port = None;
        for line in lines.by_ref() {
            let mut o = output.lock().expect("output");
            o.push_str(&line);
            o.push('\n');
            if let Some(rest) = line.strip_prefix("Endpoint=http://127.0.0.1:") {
                port = rest.split(';').next().and_then(|p| p.parse::<u16>().ok());
                break;
            }
        }
        let port = port.expect("nerve exited before printing its endpoint");
        let out = output.clone();
        std::thread::spawn(move || {
            for line in lines {
                let mut o = out.lock().expect("output");
                o.push_str(&line);
                o.push('\n');
            }
        });
        let hub = HubProcess {
            child,
            port,
            key,
            _config: config,
        };
        (hub, output)
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> String {
    nerve_hub::transport::new_connection_id()
}

/// A minimal HTTP GET returning the body.
pub async fn http_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// Reads a counter or gauge value (summing all label sets) from a metrics scrape.
pub fn metric(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A WebSocket client for tests.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The subprotocol the server echoed.
    pub protocol: Option<String>,
}

/// How a socket ended.
#[derive(Debug, PartialEq)]
pub struct Closed {
    /// The close code, if a close frame came.
    pub code: Option<u16>,
    /// The close reason.
    pub reason: String,
    /// Text frames received just before (e.g. `disconnected`).
    pub frames: Vec<Value>,
}

impl Client {
    /// Connects to `url` offering `protocol`.
    pub async fn connect(url: &str, protocol: Option<&str>) -> Result<Self, WsError> {
        let mut req = url.into_client_request()?;
        if let Some(p) = protocol {
            req.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                HeaderValue::from_str(p).expect("header"),
            );
        }
        let (ws, resp) = tokio_tungstenite::connect_async(req).await?;
        let protocol = resp
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok(Client { ws, protocol })
    }

    /// Sends a JSON frame.
    pub async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .expect("send");
    }

    /// Sends a raw message.
    pub async fn send_raw(&mut self, m: Message) {
        self.ws.send(m).await.expect("send");
    }

    /// The next data frame (text parsed as JSON), skipping pings; panics on timeout or close.
    pub async fn next_json(&mut self) -> Value {
        match self.next_message().await {
            Some(Message::Text(t)) => serde_json::from_str(&t).expect("json frame"),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next text or binary message; `None` if the socket closed.
    pub async fn next_message(&mut self) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let m = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("timed out waiting for a frame");
            match m {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(m)) => return Some(m),
            }
        }
    }

    /// Skips frames until one satisfies `pred`.
    pub async fn until(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            let v = self.next_json().await;
            if pred(&v) {
                return v;
            }
        }
    }

    /// The ack for `ack_id`, skipping other frames.
    pub async fn ack(&mut self, ack_id: u64) -> Value {
        self.until(|v| v["type"] == "ack" && v["ackId"] == ack_id)
            .await
    }

    /// Reads until the socket closes; returns the close frame and text frames seen before it.
    pub async fn closed(&mut self) -> Closed {
        let mut frames = Vec::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let m = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("timed out waiting for the socket to close");
            match m {
                Some(Ok(Message::Text(t))) => {
                    frames.push(serde_json::from_str(&t).unwrap_or(Value::String(t.to_string())))
                }
                Some(Ok(Message::Close(Some(CloseFrame { code, reason })))) => {
                    return Closed {
                        code: Some(code.into()),
                        reason: reason.to_string(),
                        frames,
                    };
                }
                Some(Ok(Message::Close(None))) | None | Some(Err(_)) => {
                    return Closed {
                        code: None,
                        reason: String::new(),
                        frames,
                    };
                }
                Some(Ok(_)) => {}
            }
        }
    }

    /// Drops the TCP connection without a close handshake (a network failure).
    pub fn drop_socket(self) {
        drop(self.ws);
    }

    /// Whether nothing arrives within `d` (used only to check for absence after a barrier).
    pub async fn nothing_within(&mut self, d: Duration) -> bool {
        loop {
            match tokio::time::timeout(d, self.ws.next()).await {
                Err(_) => return true,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(_) => return false,
            }
        }
    }
}

/// Performs a WebSocket handshake expected to fail; returns the HTTP status and body.
pub async fn refused(url: &str, protocol: Option<&str>) -> (u16, String) {
    match Client::connect(url, protocol).await {
        Ok(_) => panic!("handshake unexpectedly succeeded for {url}"),
        Err(WsError::Http(resp)) => {
            let status = resp.status().as_u16();
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).to_string())
                .unwrap_or_default();
            (status, body)
        }
        Err(e) => panic!("unexpected handshake error: {e}"),
    }
}
