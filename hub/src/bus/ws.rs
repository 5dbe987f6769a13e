//! `GET /bus/ws`: the agent WebSocket. It speaks the frames of the hub's JSON subprotocol
//! (`invoke` → `invokeResponse`, `event` → `ack`, `ping` → `pong`, server `message`s), with bus
//! operation names as event names; the protocol is in `docs/agent-protocol.md`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::grants::Grants;
use super::ops::{Caller, OpError, call};
use super::remote::Remote;
use super::{Bridge, BridgeCell};
use crate::socket::upgrade::WsUpgrade;
use crate::socket::{Message, Socket, WebSocketConfig};

/// The subprotocol agents offer.
pub const SUBPROTOCOL: &str = "json.webpubsub.azure.v1";
/// Frames queued for one agent socket before producers wait.
const OUTBOX: usize = 256;
/// Operations that wait, run beside the connection's in-order operations.
const BLOCKING: &[&str] = &["bus.task.ask", "bus.task.wait"];
/// Close code for frames that cannot be understood.
const CLOSE_INVALID: u16 = 1007;

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
    let hello = json!({"type": "system", "event": "connected", "connectionId": conn_id,
                       "userId": grants.principal});
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
                    let _ = sink.send(crate::socket::close_frame(CLOSE_INVALID, "Invalid frame")).await;
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
    if tx.send(hello.to_string()).await.is_ok() {
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
            let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
                invalid.cancel();
                break;
            };
            if !on_frame(&bridge, &caller, &tx, v).await {
                invalid.cancel();
                break;
            }
        }
    }
    remote.shutdown().await;
    drop(tx);
    let _ = writer.await;
}

/// Handles one client frame; false when the frame is invalid and the socket must close.
async fn on_frame(
    bridge: &Arc<Bridge>,
    caller: &Arc<Caller>,
    tx: &mpsc::Sender<String>,
    v: Value,
) -> bool {
    let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
    let op = v
        .get("event")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let data = v.get("data").cloned().unwrap_or_else(|| json!({}));
    match kind {
        "ping" => {
            let _ = tx.send(r#"{"type":"pong"}"#.to_string()).await;
        }
        "invoke" => {
            let id = match v.get("invocationId") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => return false,
            };
            let run = {
                let (bridge, caller, tx) = (bridge.clone(), caller.clone(), tx.clone());
                async move {
                    let span = super::ops::op_span(&op, &caller, &data);
                    let r = call(&bridge, &caller, &op, data).instrument(span).await;
                    let _ = tx.send(invoke_response(&id, r)).await;
                }
            };
            if BLOCKING.contains(&v["event"].as_str().unwrap_or_default()) {
                tokio::spawn(run);
            } else {
                run.await;
            }
        }
        "event" => {
            let ack = v.get("ackId").and_then(Value::as_u64);
            let run = {
                let (bridge, caller, tx) = (bridge.clone(), caller.clone(), tx.clone());
                async move {
                    let span = super::ops::op_span(&op, &caller, &data);
                    let r = call(&bridge, &caller, &op, data).instrument(span).await;
                    if let Err(e) = &r {
                        tracing::debug!(%op, error = %e, "bus event failed");
                    }
                    if let Some(id) = ack {
                        let _ = tx.send(ack_frame(id, r.err())).await;
                    }
                }
            };
            if BLOCKING.contains(&v["event"].as_str().unwrap_or_default()) {
                tokio::spawn(run);
            } else {
                run.await;
            }
        }
        other => {
            if let Some(id) = v.get("ackId").and_then(Value::as_u64) {
                let e = OpError::BadRequest(format!(
                    "'{other}' frames are not part of the bus protocol; use /client/hubs/<hub> for groups"
                ));
                let _ = tx.send(ack_frame(id, Some(e))).await;
            }
        }
    }
    true
}

/// The `invokeResponse` for an operation's result.
pub fn invoke_response(id: &str, r: Result<Value, OpError>) -> String {
    match r {
        Ok(data) => json!({"type": "invokeResponse", "invocationId": id, "success": true,
                           "dataType": "json", "data": data}),
        Err(e) => json!({"type": "invokeResponse", "invocationId": id, "success": false,
                         "error": e.to_json()}),
    }
    .to_string()
}

/// The `ack` for an event with an `ackId`.
pub fn ack_frame(id: u64, err: Option<OpError>) -> String {
    match err {
        None => json!({"type": "ack", "ackId": id, "success": true}),
        Some(e) => json!({"type": "ack", "ackId": id, "success": false, "error": e.to_json()}),
    }
    .to_string()
}
