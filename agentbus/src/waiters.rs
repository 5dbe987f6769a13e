//! Wake-ups for callers waiting on one task, context or request. One dispatcher per bus reads
//! the live event feed and wakes only the waiters registered under the event's task, context or
//! causation id, so a thousand concurrent waits cost one wake-up per event rather than a
//! thousand. A waiter that only cares about a task finishing registers for `WakeOn::Finish` and
//! is not woken (and does not re-read the task) for the task's intermediate events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use crate::a2a::TaskState;
use crate::envelope::{Envelope, types};

/// Which events about its key wake a waiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WakeOn {
    /// Every event.
    Any,
    /// Only events that can end a task: a terminal status, a cancel request, or anything the
    /// dispatcher cannot classify.
    Finish,
}

type Entry = (Arc<Notify>, WakeOn);

/// Waiters by key.
#[derive(Default)]
pub(crate) struct Waiters {
    map: Mutex<HashMap<String, Vec<Entry>>>,
    started: Mutex<bool>,
}

/// Whether an event may end its task (errs on the side of yes for anything unexpected).
fn may_finish(e: &Envelope) -> bool {
    match e.event_type.as_str() {
        types::TASK_STATUS => {
            let state = e
                .data
                .as_ref()
                .and_then(|d| d.get("statusUpdate"))
                .and_then(|u| u.get("status"))
                .and_then(|s| s.get("state"))
                .cloned()
                .and_then(|v| serde_json::from_value::<TaskState>(v).ok());
            state.is_none_or(TaskState::is_terminal)
        }
        types::TASK_SUBMITTED | types::TASK_ARTIFACT | types::CONTEXT_UPDATED => false,
        _ => true,
    }
}

/// A registration; dropping it unregisters.
pub(crate) struct WaitGuard {
    waiters: Arc<Waiters>,
    key: String,
    notify: Arc<Notify>,
}

impl WaitGuard {
    /// Resolves after an event for the key (or a missed-events sweep) since the last call.
    pub async fn notified(&self) {
        self.notify.notified().await;
    }
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        let mut map = self.waiters.lock();
        if let Some(list) = map.get_mut(&self.key) {
            list.retain(|(n, _)| !Arc::ptr_eq(n, &self.notify));
            if list.is_empty() {
                map.remove(&self.key);
            }
        }
    }
}

impl Waiters {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<Entry>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers interest in `key` (events `on`); starts the dispatcher on first use.
    pub fn register(
        self: &Arc<Self>,
        key: &str,
        on: WakeOn,
        live: impl FnOnce() -> broadcast::Receiver<Arc<Envelope>>,
        stop: &CancellationToken,
    ) -> WaitGuard {
        let mut started = self.started.lock().unwrap_or_else(|e| e.into_inner());
        if !*started {
            *started = true;
            tokio::spawn(dispatch(live(), Arc::downgrade(self), stop.clone()));
        }
        drop(started);
        let notify = Arc::new(Notify::new());
        self.lock()
            .entry(key.to_string())
            .or_default()
            .push((notify.clone(), on));
        WaitGuard {
            waiters: self.clone(),
            key: key.to_string(),
            notify,
        }
    }

    fn wake(&self, key: Option<&str>, finish: bool) {
        let Some(key) = key else { return };
        if let Some(list) = self.lock().get(key) {
            for (n, on) in list {
                if finish || *on == WakeOn::Any {
                    // Stores a permit if the waiter is between checks, so no wake-up is lost.
                    n.notify_one();
                }
            }
        }
    }

    fn wake_all(&self) {
        for list in self.lock().values() {
            for (n, _) in list {
                n.notify_one();
            }
        }
    }
}

async fn dispatch(
    mut live: broadcast::Receiver<Arc<Envelope>>,
    waiters: std::sync::Weak<Waiters>,
    stop: CancellationToken,
) {
    loop {
        let ev = tokio::select! {
            _ = stop.cancelled() => return,
            ev = live.recv() => ev,
        };
        let Some(w) = waiters.upgrade() else { return };
        match ev {
            Ok(e) => {
                let finish = may_finish(&e);
                w.wake(e.taskid.as_deref(), finish);
                w.wake(e.causationid.as_deref(), finish);
                if e.contextid != e.taskid {
                    w.wake(e.contextid.as_deref(), finish);
                }
            }
            Err(RecvError::Lagged(_)) => w.wake_all(),
            Err(RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::a2a::{StreamResponse, TaskStatus, TaskStatusUpdateEvent};

    fn status(state: TaskState) -> Envelope {
        let data = StreamResponse::StatusUpdate(TaskStatusUpdateEvent {
            task_id: "t".into(),
            context_id: "c".into(),
            status: TaskStatus {
                state,
                message: None,
                timestamp: None,
            },
            metadata: Default::default(),
        });
        Envelope::new("agent://a", types::TASK_STATUS).with_data(data.to_value())
    }

    #[test]
    fn only_events_that_can_end_a_task_wake_finish_waiters() {
        for state in TaskState::ALL {
            assert_eq!(may_finish(&status(state)), state.is_terminal(), "{state:?}");
        }
        let cancel = Envelope::new("bus://client", types::TASK_CANCEL_REQUESTED);
        assert!(may_finish(&cancel));
        let submitted = Envelope::new("bus://client", types::TASK_SUBMITTED);
        assert!(!may_finish(&submitted));
        // Anything unexpected wakes: a missed wake-up costs a poll interval, a spurious one a read.
        let odd = Envelope::new("agent://a", types::TASK_STATUS).with_data(json!({"x": 1}));
        assert!(may_finish(&odd));
        let reply = Envelope::new("agent://a", types::RPC_REPLY);
        assert!(may_finish(&reply));
    }
}
