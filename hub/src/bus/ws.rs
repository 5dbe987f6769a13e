//! `GET /bus/ws`: the agent WebSocket. It speaks the frames of the hub's JSON subprotocol
//! (`invoke` → `invokeResponse`, `event` → `ack`, `ping` → `pong`, server `message`s), with bus
//! operation names as event names; the protocol is in `docs/agent-protocol.md`. The frames
//! are `nerve-protocol`'s, read and written as JSON text.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use nerve_protocol::subprotocol::JSON as SUBPROTOCOL;
use nerve_protocol::{ClientFrame, Payload, ServerFrame, close, parse_client_frame};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::grants::Grants;
use super::ops::{Caller, OpError, call};
use super::remote::Remote;
use super::{Bridge, BridgeCell};
use crate::socket::upgrade::WsUpgrade;
use crate::socket::{Message, Socket, WebSocketConfig};

/// Frames queued for one agent socket before producers wait.
const OUTBOX: usize = 256;
/// Operations that wait, run beside the connection's in-order operations.
const BLOCKING: &[&str] = &["bus.task.ask", "bus.task.wait"];

/// Upgrades an agent connection after checking its token.
pub async fn upgrade(
    State(cell): State<BridgeCell>,
    headers: HeaderMap,
    uri: Uri,
    mut ws: WsUpgrade,
) -> Response {
    let bridge = match cell.get() {
        Ok(b) => b,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    let grants = match super::grants::verify(&cell.app, &headers, &uri) {
        Ok(g) => g,
        Err(e) => return (StatusCode::UNAUTHORIZED, e.to_string()).into_response(),
    };
    let max = cell.app.config.limits.max_frame_bytes;
    let keepalive = cell.app.config.limits.keepalive();
    if ws.offered().iter().any(|p| p == SUBPROTOCOL) {
        ws.select_protocol(axum::http::HeaderValue::from_static(SUBPROTOCOL));
    }
    let config = WebSocketConfig::default().max_message_size(Some(max));
    ws.config(config)
        .on_upgrade(move |socket| run(bridge, grants, socket, keepalive))
}

async fn run(bridge: Arc<Bridge>, grants: Grants, socket: Socket, keepalive: Duration) {
    let (mut sink, mut stream) = socket.split();
    // Fired on an invalid client frame: the writer sends a 1007 close and stops.
    let invalid = CancellationToken::new();
    let (tx, mut rx) = mpsc::channel::<String>(OUTBOX);
    let remote = Remote::new(tx.clone());
    let conn_id = crate::registry::new_connection_id();
    let hello = ServerFrame::connected(&conn_id, grants.principal.as_deref(), None).to_json();
    let closed = remote.closed.clone();
    let close_invalid = invalid.clone();
    let writer = tokio::spawn(async move {
        let mut ping = tokio::time::interval(keepalive);
        ping.tick().await;
        loop {
            // Biased: an invalid frame's 1007 close must win over the shutdown it also causes.
            let msg = tokio::select! {
                biased;
                _ = close_invalid.cancelled() => {
                    let _ = sink.send(crate::socket::close_frame(close::INVALID_PAYLOAD, "Invalid frame")).await;
                    break;
                }
                f = rx.recv() => match f {
                    Some(f) => Message::Text(f.into()),
                    None => break,
                },
                _ = ping.tick() => Message::Ping(bytes::Bytes::new()),
                _ = closed.cancelled() => break,
            };
            if sink.send(msg).await.is_err() {
                break;
            }
        }
    });
    let caller = Arc::new(Caller {
        grants,
        remote: Some(remote.clone()),
        traceparent: None,
    });
    if tx.send(hello).await.is_ok() {
        let shutdown = bridge.app.shutdown.clone();
        loop {
            let frame = tokio::select! {
                _ = shutdown.cancelled() => break,
                f = tokio::time::timeout(keepalive * 3, stream.next()) => f,
            };
            let text = match frame {
                Ok(Some(Ok(Message::Text(t)))) => t,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)))) => continue,
                Ok(Some(Ok(Message::Binary(_)))) => {
                    invalid.cancel();
                    break;
                }
                _ => break,
            };
            match parse_client_frame(text.as_str()) {
                Ok(frame) => on_frame(&bridge, &caller, &tx, frame).await,
                Err(e) => match e.ack_id {
                    Some(id) => {
                        let _ = tx
                            .send(ack_frame(id, Err(OpError::BadRequest(e.reason))))
                            .await;
                    }
                    None => {
                        invalid.cancel();
                        break;
                    }
                },
            }
        }
    }
    remote.shutdown().await;
    drop(tx);
    let _ = writer.await;
}

/// Handles one client frame: bus operations, pings, and a refusal for the hub's own frames.
async fn on_frame(
    bridge: &Arc<Bridge>,
    caller: &Arc<Caller>,
    tx: &mpsc::Sender<String>,
    frame: ClientFrame,
) {
    let (op, payload, reply) = match frame {
        ClientFrame::Ping => {
            let _ = tx.send(ServerFrame::Pong.to_json()).await;
            return;
        }
        ClientFrame::Invoke {
            invocation_id,
            event,
            payload,
        } => (event, payload, Reply::Invoke(invocation_id)),
        ClientFrame::Event {
            event,
            ack_id,
            payload,
        } => (event, payload, Reply::Ack(ack_id)),
        other => {
            if let Some(id) = other.ack_id() {
                let e = OpError::BadRequest(format!(
                    "'{}' frames are not part of the bus protocol; use /client/hubs/<hub> for groups",
                    other.kind()
                ));
                let _ = tx.send(ack_frame(id, Err(e))).await;
            }
            return;
        }
    };
    let blocking = BLOCKING.contains(&op.as_str());
    let run = {
        let (bridge, caller, tx) = (bridge.clone(), caller.clone(), tx.clone());
        async move {
            let r = match op_data(&payload) {
                Ok(data) => {
                    let span = super::ops::op_span(&op, &caller, &data);
                    call(&bridge, &caller, &op, data).instrument(span).await
                }
                Err(e) => Err(e),
            };
            let answer = match reply {
                Reply::Invoke(id) => Some(invoke_response(&id, r)),
                Reply::Ack(ack_id) => {
                    if let Err(e) = &r {
                        tracing::debug!(%op, error = %e, "bus event failed");
                    }
                    ack_id.map(|id| ack_frame(id, r.map(drop)))
                }
            };
            if let Some(frame) = answer {
                let _ = tx.send(frame).await;
            }
        }
    };
    if blocking {
        tokio::spawn(run);
    } else {
        run.await;
    }
}

/// How an operation is answered: `invoke` with an `invokeResponse`, `event` with an ack if it
/// asked for one.
enum Reply {
    Invoke(String),
    Ack(Option<u64>),
}

/// An operation's data: the frame's JSON data, `{}` when it has none.
fn op_data(payload: &Payload) -> Result<Value, OpError> {
    match payload.to_value() {
        Ok(Value::Null) => Ok(Value::Object(serde_json::Map::new())),
        Ok(data) => Ok(data),
        Err(e) => Err(OpError::BadRequest(e.to_string())),
    }
}

/// The `invokeResponse` for an operation's result.
fn invoke_response(id: &str, r: Result<Value, OpError>) -> String {
    match r {
        Ok(data) => ServerFrame::invoke_ok(id, Some(Payload::from_value(&data))),
        Err(e) => ServerFrame::invoke_err(id, e.body()),
    }
    .to_json()
}

/// The `ack` for an event with an `ackId`.
fn ack_frame(id: u64, r: Result<(), OpError>) -> String {
    ServerFrame::ack(id, r.map_err(|e| e.body())).to_json()
}
