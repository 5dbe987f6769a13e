//! Following one task as a stream of A2A `StreamResponse`s: the current task first (as A2A
//! `SubscribeToTask` does), then its status and artifact updates until it finishes.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::{self, error::RecvError};

use crate::a2a::StreamResponse;
use crate::bus::Bus;
use crate::envelope::{Envelope, types};
use crate::error::BusError;

/// Re-read the task this often if no event arrives, in case one was missed.
const RESYNC: Duration = Duration::from_millis(500);

/// A live stream of one task's updates.
pub struct TaskUpdates {
    bus: Bus,
    task_id: String,
    live: broadcast::Receiver<Arc<Envelope>>,
    started: bool,
    finished: bool,
    seen_version: u64,
}

impl TaskUpdates {
    pub(crate) fn new(bus: Bus, task_id: &str) -> Self {
        let live = bus.transport().live();
        TaskUpdates {
            bus,
            task_id: task_id.to_string(),
            live,
            started: false,
            finished: false,
            seen_version: 0,
        }
    }

    /// The next update; `None` after the update that finished the task.
    pub async fn next(&mut self) -> Result<Option<StreamResponse>, BusError> {
        if self.finished {
            return Ok(None);
        }
        if !self.started {
            self.started = true;
            return self.snapshot().await.map(Some);
        }
        loop {
            let r = tokio::time::timeout(RESYNC, self.live.recv()).await;
            match r {
                Ok(Ok(env)) => {
                    if env.taskid.as_deref() != Some(self.task_id.as_str()) {
                        continue;
                    }
                    if env.event_type != types::TASK_STATUS
                        && env.event_type != types::TASK_ARTIFACT
                    {
                        continue;
                    }
                    let version = env
                        .extensions
                        .get("taskversion")
                        .and_then(|v| v.as_u64())
                        .unwrap_or(0);
                    if version != 0 && version <= self.seen_version {
                        continue;
                    }
                    let Some(resp) = env.data.as_ref().and_then(StreamResponse::from_value) else {
                        continue;
                    };
                    self.seen_version = self.seen_version.max(version);
                    if let StreamResponse::StatusUpdate(s) = &resp {
                        self.finished = s.status.state.is_terminal();
                    }
                    return Ok(Some(resp));
                }
                // Missed events: the task snapshot carries everything they would have.
                Ok(Err(RecvError::Lagged(_))) => return self.snapshot().await.map(Some),
                Ok(Err(RecvError::Closed)) => return Ok(None),
                Err(_) => {
                    let rec = self.bus.task(&self.task_id).await?;
                    if rec.is_some_and(|r| r.version > self.seen_version) {
                        return self.snapshot().await.map(Some);
                    }
                }
            }
        }
    }

    async fn snapshot(&mut self) -> Result<StreamResponse, BusError> {
        let rec = self
            .bus
            .task(&self.task_id)
            .await?
            .ok_or_else(|| BusError::TaskNotFound(self.task_id.clone()))?;
        self.seen_version = rec.version;
        self.finished = rec.state().is_terminal();
        Ok(StreamResponse::Task(rec.task))
    }
}
