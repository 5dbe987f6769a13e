//! The agent bus over the hub's `/bus/ws` socket: operations are `invoke` frames answered by
//! `invokeResponse`, fire-and-forget ones are `event` frames, and the hub pushes tasks,
//! cancellations and subscribed events as `message` frames. A task owns the socket; the
//! cloneable `BusClient` handle talks to it over a bounded queue.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use nerve_protocol::bus::{self, Push, Submitted, TaskRecord};
use nerve_protocol::subprotocol::JSON;
use nerve_protocol::{ClientFrame, ErrorName, ServerFrame};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;

use crate::error::{ClientError, Result};
use crate::task::Submit;
use crate::ws::{self, Socket};

/// Longest single wait the hub allows.
const MAX_WAIT: Duration = Duration::from_secs(300);
/// Queue between handles and the socket task, and for pushes.
const QUEUE: usize = 256;
/// How often the client pings.
const PING_EVERY: Duration = Duration::from_secs(20);

/// When `wait` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Completed, failed, canceled or rejected.
    Terminal,
    /// Terminal, or waiting for input/auth.
    Settled,
}

enum BusCommand {
    Invoke {
        op: String,
        data: Value,
        reply: oneshot::Sender<Result<Value>>,
    },
    Notify {
        op: String,
        data: Value,
    },
    Drop,
}

struct Inner {
    commands: mpsc::Sender<BusCommand>,
    closed: CancellationToken,
    stop: CancellationToken,
    connection_id: String,
    user_id: Option<String>,
    invoke_timeout: Duration,
}

/// A connection to the hub's agent bus; clone it freely.
#[derive(Clone)]
pub struct BusClient {
    inner: Arc<Inner>,
}

impl BusClient {
    /// Connects to `endpoint` (http(s) or ws(s) base URL of the hub) with a bus token; returns
    /// the client and the stream of pushes (drop it if you do not subscribe or serve).
    pub async fn connect(endpoint: &str, token: &str) -> Result<(BusClient, mpsc::Receiver<Push>)> {
        let mut socket = ws::open(&ws::bus_url(endpoint, token)?, JSON).await?;
        let hello = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .map_err(|_| ClientError::Timeout("no connected frame".into()))?;
        let (connection_id, user_id) = match hello {
            Some(Ok(WsMessage::Text(t))) => match ServerFrame::from_json(t.as_str()) {
                Ok(ServerFrame::Connected {
                    connection_id,
                    user_id,
                    ..
                }) => (connection_id.into_owned(), user_id.map(|u| u.into_owned())),
                other => {
                    return Err(ClientError::Protocol(format!(
                        "expected connected, got {other:?}"
                    )));
                }
            },
            other => {
                return Err(ClientError::Protocol(format!(
                    "expected connected, got {other:?}"
                )));
            }
        };
        let (cmd_tx, cmd_rx) = mpsc::channel(QUEUE);
        let (push_tx, push_rx) = mpsc::channel(QUEUE);
        let closed = CancellationToken::new();
        let stop = CancellationToken::new();
        tokio::spawn(drive(socket, cmd_rx, push_tx, closed.clone(), stop.clone()));
        let inner = Inner {
            commands: cmd_tx,
            closed,
            stop,
            connection_id,
            user_id,
            invoke_timeout: Duration::from_secs(30),
        };
        Ok((
            BusClient {
                inner: Arc::new(inner),
            },
            push_rx,
        ))
    }

    /// This socket's connection id.
    pub fn connection_id(&self) -> &str {
        &self.inner.connection_id
    }

    /// The caller's user id (the token's `sub`).
    pub fn user_id(&self) -> Option<&str> {
        self.inner.user_id.as_deref()
    }

    /// Resolves when the socket has closed.
    pub async fn closed(&self) {
        self.inner.closed.cancelled().await;
    }

    /// Closes the socket.
    pub fn close(&self) {
        self.inner.stop.cancel();
    }

    /// Cuts the socket without a close handshake, as a network failure would (for tests and
    /// drills).
    pub async fn drop_socket(&self) {
        let _ = self.inner.commands.send(BusCommand::Drop).await;
    }

    /// Runs an operation and returns its result.
    pub async fn invoke(&self, op: &str, data: Value) -> Result<Value> {
        self.invoke_for(op, data, self.inner.invoke_timeout).await
    }

    async fn invoke_for(&self, op: &str, data: Value, timeout: Duration) -> Result<Value> {
        let (tx, rx) = oneshot::channel();
        let cmd = BusCommand::Invoke {
            op: op.to_string(),
            data,
            reply: tx,
        };
        self.inner
            .commands
            .send(cmd)
            .await
            .map_err(|_| ClientError::ConnectionLost("bus socket closed".into()))?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(ClientError::ConnectionLost(format!(
                "socket closed during {op}"
            ))),
            Err(_) => Err(ClientError::Timeout(format!("no answer to {op}"))),
        }
    }

    /// Runs an operation without waiting for an answer.
    pub async fn notify(&self, op: &str, data: Value) -> Result<()> {
        let cmd = BusCommand::Notify {
            op: op.to_string(),
            data,
        };
        self.inner
            .commands
            .send(cmd)
            .await
            .map_err(|_| ClientError::ConnectionLost("bus socket closed".into()))
    }

    /// Submits a task.
    pub async fn submit(&self, submit: Submit) -> Result<Submitted> {
        let v = self.invoke("bus.submit", submit.into_data()).await?;
        serde_json::from_value(v).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// Waits until the task is terminal (or settled) and returns its record; `Timeout` after
    /// `timeout`. `after_version` waits for a change beyond a version already seen.
    pub async fn wait(
        &self,
        task_id: &str,
        until: Until,
        after_version: Option<u64>,
        timeout: Duration,
    ) -> Result<TaskRecord> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::Refused {
                    name: ErrorName::Timeout.to_string(),
                    message: format!("task {task_id} did not finish in {timeout:?}"),
                });
            }
            let until = if until == Until::Settled {
                "settled"
            } else {
                "terminal"
            };
            let step = left.min(MAX_WAIT);
            let mut data = json!({"taskId": task_id, "until": until,
                                  "timeoutMs": step.as_millis().max(1) as u64});
            if let Some(v) = after_version {
                data["afterVersion"] = v.into();
            }
            match self
                .invoke_for("bus.task.wait", data, step + Duration::from_secs(5))
                .await
            {
                Ok(v) => return record(&v["task"]),
                Err(e)
                    if e.name() == Some(ErrorName::Timeout.as_str())
                        && Instant::now() < deadline =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Submits a task and waits for its terminal record.
    pub async fn call(&self, submit: Submit, timeout: Duration) -> Result<TaskRecord> {
        let s = self.submit(submit).await?;
        self.wait(&s.task_id, Until::Terminal, None, timeout).await
    }

    /// A task's record.
    pub async fn get(&self, task_id: &str) -> Result<TaskRecord> {
        record(
            &self
                .invoke("bus.task.get", json!({"taskId": task_id}))
                .await?["task"],
        )
    }

    /// Cancels a task.
    pub async fn cancel(&self, task_id: &str) -> Result<Value> {
        self.invoke("bus.task.cancel", json!({"taskId": task_id}))
            .await
    }

    /// Answers an input-required task.
    pub async fn reply(&self, task_id: &str, text: &str) -> Result<Value> {
        self.invoke("bus.task.reply", json!({"taskId": task_id, "text": text}))
            .await
    }

    /// Publishes a shared context value; returns its version.
    pub async fn publish_context(&self, context_id: &str, value: Value) -> Result<u64> {
        let r = self
            .invoke(
                "bus.context.publish",
                json!({"contextId": context_id, "value": value}),
            )
            .await?;
        Ok(r["version"].as_u64().unwrap_or_default())
    }

    /// Reads a shared context: `{contextId, version, value, updatedMs}`, or `None`.
    pub async fn read_context(&self, context_id: &str) -> Result<Option<Value>> {
        let r = self
            .invoke("bus.context.get", json!({"contextId": context_id}))
            .await?;
        Ok(Some(r["context"].clone()).filter(|c| !c.is_null()))
    }

    /// Registered agent cards, optionally only those serving `capability`.
    pub async fn agents(&self, capability: Option<&str>) -> Result<Vec<Value>> {
        let data = capability.map_or_else(|| json!({}), |c| json!({"capability": c}));
        let r = self.invoke("bus.agents", data).await?;
        Ok(r["agents"].as_array().cloned().unwrap_or_default())
    }

    /// `bus.history`: `selector` is `{"taskId"|"correlationId"|"contextId": …, "after"?: …}`.
    pub async fn history(&self, selector: Value) -> Result<Value> {
        self.invoke("bus.history", selector).await
    }

    /// Receives a group's events as `Push::Event`.
    pub async fn subscribe(&self, group: &str) -> Result<()> {
        self.invoke("bus.subscribe", json!({"group": group}))
            .await
            .map(drop)
    }

    /// Stops receiving a group's events.
    pub async fn unsubscribe(&self, group: &str) -> Result<()> {
        self.invoke("bus.unsubscribe", json!({"group": group}))
            .await
            .map(drop)
    }
}

fn record(v: &Value) -> Result<TaskRecord> {
    serde_json::from_value(v.clone())
        .map_err(|e| ClientError::Protocol(format!("task record: {e}")))
}

async fn drive(
    socket: Socket,
    mut commands: mpsc::Receiver<BusCommand>,
    pushes: mpsc::Sender<Push>,
    closed: CancellationToken,
    stop: CancellationToken,
) {
    let (mut sink, mut stream) = socket.split();
    let mut pending: HashMap<String, oneshot::Sender<Result<Value>>> = HashMap::new();
    let mut next_id: u64 = 0;
    let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    loop {
        let outgoing = tokio::select! {
            _ = stop.cancelled() => {
                let _ = tokio::time::timeout(Duration::from_secs(2), sink.close()).await;
                break;
            }
            _ = ping.tick() => Some(ClientFrame::Ping.to_json()),
            cmd = commands.recv() => match cmd {
                None => {
                    let _ = sink.close().await;
                    break;
                }
                Some(BusCommand::Invoke { op, data, reply }) => {
                    next_id += 1;
                    let id = next_id.to_string();
                    pending.retain(|_, r| !r.is_closed());
                    pending.insert(id.clone(), reply);
                    Some(bus::invoke(&id, &op, &data).to_json())
                }
                Some(BusCommand::Drop) => break,
                Some(BusCommand::Notify { op, data }) => Some(bus::notify(&op, &data).to_json()),
            },
            frame = stream.next() => match frame {
                Some(Ok(WsMessage::Text(t))) => {
                    on_frame(t.as_str(), &mut pending, &pushes).await;
                    None
                }
                Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => None,
            }
        };
        if let Some(f) = outgoing
            && sink.send(WsMessage::text(f)).await.is_err()
        {
            break;
        }
    }
    for (_, r) in pending {
        let _ = r.send(Err(ClientError::ConnectionLost("bus socket closed".into())));
    }
    closed.cancel();
}

async fn on_frame(
    text: &str,
    pending: &mut HashMap<String, oneshot::Sender<Result<Value>>>,
    pushes: &mpsc::Sender<Push>,
) {
    match ServerFrame::from_json(text) {
        Ok(ServerFrame::Message(m)) => match m.payload.to_value() {
            Ok(data) => {
                let _ = pushes.send(Push::from_value(data)).await;
            }
            Err(e) => tracing::warn!(error = %e, "unreadable push on the bus socket"),
        },
        Ok(ServerFrame::InvokeResponse {
            invocation_id,
            result,
        }) => {
            if let Some(reply) = pending.remove(invocation_id.as_ref()) {
                let r = match result {
                    Ok(Some(data)) => data
                        .to_value()
                        .map_err(|e| ClientError::Protocol(e.to_string())),
                    Ok(None) => Ok(Value::Null),
                    Err(e) => Err(ClientError::refused(&e)),
                };
                let _ = reply.send(r);
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "unreadable frame on the bus socket"),
    }
}
