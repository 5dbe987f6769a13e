//! A raw WebSocket client for tests that speaks the JSON protocols frame by frame, reads every
//! frame with a deadline, and reports how a socket ended.

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::WAIT;

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

    /// Sends `frame` over and over, as fast as the socket takes it, until the server ends the
    /// connection, and returns how it ended. Like the official clients it reads and writes in
    /// one loop, so whichever comes first ends it: the close frame, or a write the server's
    /// side refused (reported as no close frame, code 1006 to the application).
    pub async fn flood(self, frame: Value) -> Closed {
        let (mut sink, mut stream) = self.ws.split();
        let text = frame.to_string();
        let mut frames = Vec::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        let ended = |code, reason, frames| Closed {
            code,
            reason,
            frames,
        };
        loop {
            let next = tokio::select! {
                m = stream.next() => m,
                sent = sink.send(Message::Text(text.clone().into())) => match sent {
                    Ok(()) => continue,
                    Err(_) => return ended(None, String::new(), frames),
                },
                _ = tokio::time::sleep_until(deadline) => panic!("the socket never closed"),
            };
            match next {
                Some(Ok(Message::Text(t))) => {
                    frames.push(serde_json::from_str(&t).unwrap_or(Value::String(t.to_string())))
                }
                Some(Ok(Message::Close(Some(CloseFrame { code, reason })))) => {
                    return ended(Some(code.into()), reason.to_string(), frames);
                }
                Some(Ok(Message::Close(None))) | None | Some(Err(_)) => {
                    return ended(None, String::new(), frames);
                }
                Some(Ok(_)) => {}
            }
        }
    }

    /// Closes the socket as an application does, with a close frame carrying `code` (or no
    /// code); returns the hub's answer, which must be a close frame (its echo), and checks that
    /// the hub then ends the TCP connection, as the side that answers a close does.
    pub async fn close_with(mut self, code: Option<u16>) -> Closed {
        let frame = code.map(|c| CloseFrame {
            code: c.into(),
            reason: "bye".into(),
        });
        self.ws
            .send(Message::Close(frame))
            .await
            .expect("send close");
        let mut frames = Vec::new();
        let mut answer = None;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let m = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("the hub neither answered the close nor ended the TCP connection");
            match m {
                Some(Ok(Message::Text(t))) => {
                    frames.push(serde_json::from_str(&t).unwrap_or(Value::String(t.to_string())))
                }
                Some(Ok(Message::Close(f))) => {
                    answer = Some(Closed {
                        code: f.as_ref().map(|f| f.code.into()),
                        reason: f.map(|f| f.reason.to_string()).unwrap_or_default(),
                        frames: std::mem::take(&mut frames),
                    });
                }
                Some(Ok(_)) => {}
                None | Some(Err(_)) => {
                    return answer.expect("the hub ended the connection without a close frame");
                }
            }
        }
    }

    /// Drops the TCP connection without a close handshake (a network failure).
    pub fn drop_socket(self) {
        drop(self.ws);
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
