//! A task as a stream of A2A `StreamResponse`s: the current task first (as `SubscribeToTask`
//! does), then status and artifact updates from the bus's live feed, until the task finishes or
//! pauses for input. A lagging feed falls back to a fresh snapshot, so nothing is lost.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use nerve_agentbus::a2a::Task;
use nerve_agentbus::envelope::types;
use nerve_agentbus::{Bus, Envelope, StreamResponse};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use crate::bus::Bridge;

/// Re-read the task this often when no event arrives (a missed live event).
const RESYNC: Duration = Duration::from_millis(500);
/// Events buffered per stream.
const BUFFER: usize = 64;

/// Where a stream starts when the caller already listened: the live feed it opened, and the
/// task to send first with its version.
pub struct Start {
    /// The live feed, opened before the task changed.
    pub live: broadcast::Receiver<Arc<Envelope>>,
    /// The first event's task and version (none: read the current task).
    pub first: Option<(Task, u64)>,
}

/// Streams task `task_id` as JSON-RPC responses to request `id` over SSE.
pub fn sse(
    bridge: Arc<Bridge>,
    id: Value,
    task_id: String,
    start: Option<Start>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (tx, rx) = mpsc::channel::<Value>(BUFFER);
    tokio::spawn(async move {
        let shutdown = bridge.app.shutdown.clone();
        let start = start.unwrap_or_else(|| Start {
            live: bridge.bus.transport().live(),
            first: None,
        });
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = follow(&bridge.bus, &task_id, &tx, start) => {}
        }
    });
    let events = futures_util::stream::unfold(rx, move |mut rx| {
        let id = id.clone();
        async move {
            let result = rx.recv().await?;
            let body = json!({"jsonrpc": "2.0", "id": id, "result": result});
            Some((Ok(Event::default().data(body.to_string())), rx))
        }
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}

/// Sends the task, then its updates, until it is terminal or interrupted.
async fn follow(bus: &Bus, task_id: &str, tx: &mpsc::Sender<Value>, start: Start) {
    let mut live = start.live;
    let mut seen = 0u64;
    let mut send_snapshot = true;
    if let Some((task, version)) = start.first {
        let done = task.status.state.is_terminal() || task.status.state.is_interrupted();
        if tx
            .send(StreamResponse::Task(task).to_value())
            .await
            .is_err()
            || done
        {
            return;
        }
        seen = version;
        send_snapshot = false;
    }
    loop {
        if send_snapshot {
            send_snapshot = false;
            let Ok(Some(rec)) = bus.task(task_id).await else {
                return;
            };
            if rec.version > seen {
                seen = rec.version;
                let done = rec.state().is_terminal() || rec.state().is_interrupted();
                if tx
                    .send(StreamResponse::Task(rec.task).to_value())
                    .await
                    .is_err()
                    || done
                {
                    return;
                }
            }
        }
        match tokio::time::timeout(RESYNC, live.recv()).await {
            Ok(Ok(env)) => {
                if env.taskid.as_deref() != Some(task_id)
                    || (env.event_type != types::TASK_STATUS
                        && env.event_type != types::TASK_ARTIFACT)
                {
                    continue;
                }
                let version = env
                    .extensions
                    .get("taskversion")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                if version != 0 && version <= seen {
                    continue;
                }
                if version > seen + 1 && seen != 0 {
                    // A change between what we sent and this one was missed: resend the task.
                    send_snapshot = true;
                    continue;
                }
                let Some(resp) = env.data.as_ref().and_then(StreamResponse::from_value) else {
                    continue;
                };
                seen = seen.max(version);
                let done = matches!(&resp, StreamResponse::StatusUpdate(s)
                    if s.status.state.is_terminal() || s.status.state.is_interrupted());
                if tx.send(resp.to_value()).await.is_err() || done {
                    return;
                }
            }
            Ok(Err(RecvError::Lagged(_))) | Err(_) => send_snapshot = true,
            Ok(Err(RecvError::Closed)) => return,
        }
    }
}
