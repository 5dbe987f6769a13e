//! What a task handler sees and returns: the `TaskContext` (the task, its cancellation token,
//! and calls to report status, artifacts, ask for input and spawn sub-tasks) and `HandlerError`.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::a2a::{Artifact, Message, Role, TaskState};
use crate::bus::Bus;
use crate::envelope::Envelope;
use crate::error::BusError;
use crate::submit::{SubmitRequest, TaskHandle};
use crate::task::{TaskEvent, TaskRecord};

/// How a handler ends a task other than by completing it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// Transient failure: deliver again after an exponential backoff (dead-lettered with reason
    /// `MaxDeliveryCountExceeded` once the delivery limit is reached).
    #[error("retry: {0}")]
    Retry(String),
    /// Permanent failure: the task fails now.
    #[error("failed: {0}")]
    Fail(String),
    /// The agent will not do this task: it is rejected.
    #[error("rejected: {0}")]
    Reject(String),
}

/// What a task handler returns: an optional final agent message, or how it failed.
pub type TaskResult = Result<Option<Message>, HandlerError>;

/// The running task, as its handler sees it.
#[derive(Clone)]
pub struct TaskContext {
    pub(crate) bus: Bus,
    pub(crate) record: TaskRecord,
    pub(crate) envelope: Arc<Envelope>,
    pub(crate) source: String,
    pub(crate) token: CancellationToken,
    pub(crate) deliveries: u32,
}

impl TaskContext {
    /// The task id.
    pub fn task_id(&self) -> &str {
        &self.record.task.id
    }

    /// The conversation id.
    pub fn context_id(&self) -> &str {
        &self.record.task.context_id
    }

    /// The task as it was when the handler started.
    pub fn record(&self) -> &TaskRecord {
        &self.record
    }

    /// The request message that started the task.
    pub fn request(&self) -> Option<&Message> {
        self.record.task.history.first()
    }

    /// The request's text parts.
    pub fn text(&self) -> String {
        self.request().map(Message::text).unwrap_or_default()
    }

    /// The `bus.task.submitted` event being handled.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// Deliveries of this task so far, including this one (above 1 means a redelivery).
    pub fn deliveries(&self) -> u32 {
        self.deliveries
    }

    /// Fires when the task is canceled; long handlers should select on it.
    pub fn cancelled(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Whether the task was canceled.
    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// The bus, for anything else the handler needs.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// This agent's event source (`agent://<id>`).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Moves the task to `state` with an optional message.
    pub async fn status(
        &self,
        state: TaskState,
        message: Option<Message>,
    ) -> Result<TaskRecord, BusError> {
        let ev = TaskEvent::Status {
            state,
            message,
            metadata: Default::default(),
        };
        let (rec, _) = self
            .bus
            .update_task(self.task_id(), &ev, None, &self.source)
            .await?;
        Ok(rec)
    }

    /// Reports progress while working.
    pub async fn progress(&self, text: impl Into<String>) -> Result<TaskRecord, BusError> {
        self.status(TaskState::Working, Some(Message::agent_text(text)))
            .await
    }

    /// Adds (or replaces) an artifact.
    pub async fn artifact(&self, artifact: Artifact) -> Result<TaskRecord, BusError> {
        self.artifact_chunk(artifact, false, true).await
    }

    /// Adds a chunk of an artifact; `append` extends an existing one with the same id.
    pub async fn artifact_chunk(
        &self,
        artifact: Artifact,
        append: bool,
        last_chunk: bool,
    ) -> Result<TaskRecord, BusError> {
        let ev = TaskEvent::Artifact {
            artifact,
            append,
            last_chunk,
        };
        let (rec, _) = self
            .bus
            .update_task(self.task_id(), &ev, None, &self.source)
            .await?;
        Ok(rec)
    }

    /// Asks the requester a question (input-required) and waits for the answer.
    pub async fn ask(&self, question: Message, timeout: Duration) -> Result<Message, BusError> {
        let asked = self
            .status(TaskState::InputRequired, Some(question))
            .await?;
        let asked_version = asked.version;
        let wait = self.bus.wait_task(self.task_id(), timeout, |r| {
            r.version > asked_version && !r.state().is_interrupted()
        });
        let rec = tokio::select! {
            r = wait => r?,
            _ = self.token.cancelled() => return Err(BusError::Canceled(self.task_id().to_string())),
        };
        if rec.state().is_terminal() {
            return Err(BusError::Canceled(self.task_id().to_string()));
        }
        rec.task
            .history
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .cloned()
            .ok_or_else(|| BusError::TaskNotFound(self.task_id().to_string()))
    }

    /// Submits a sub-task in the same correlation chain, caused by this task.
    pub async fn submit(&self, req: SubmitRequest) -> Result<TaskHandle, BusError> {
        let mut req = req.caused_by(self.record.correlation_id.clone(), self.envelope.id.clone());
        if let Some(tp) = &self.envelope.traceparent {
            req = req.traceparent(tp.clone());
        }
        crate::submit::submit(&self.bus, req, &self.source).await
    }
}
