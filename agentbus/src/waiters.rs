//! Wake-ups for callers waiting on one task, context or request. One dispatcher per bus reads
//! the live event feed and wakes only the waiters registered under the event's task, context or
//! causation id, so a thousand concurrent waits cost one wake-up per event rather than a
//! thousand.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use crate::envelope::Envelope;

/// Waiters by key.
#[derive(Default)]
pub(crate) struct Waiters {
    map: Mutex<HashMap<String, Vec<Arc<Notify>>>>,
    started: Mutex<bool>,
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
            list.retain(|n| !Arc::ptr_eq(n, &self.notify));
            if list.is_empty() {
                map.remove(&self.key);
            }
        }
    }
}

impl Waiters {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<Arc<Notify>>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers interest in `key`; starts the dispatcher on first use.
    pub fn register(
        self: &Arc<Self>,
        key: &str,
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
            .push(notify.clone());
        WaitGuard {
            waiters: self.clone(),
            key: key.to_string(),
            notify,
        }
    }

    fn wake(&self, key: Option<&str>) {
        let Some(key) = key else { return };
        if let Some(list) = self.lock().get(key) {
            for n in list {
                // Stores a permit if the waiter is between checks, so no wake-up is lost.
                n.notify_one();
            }
        }
    }

    fn wake_all(&self) {
        for list in self.lock().values() {
            for n in list {
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
                w.wake(e.taskid.as_deref());
                w.wake(e.causationid.as_deref());
                if e.contextid != e.taskid {
                    w.wake(e.contextid.as_deref());
                }
            }
            Err(RecvError::Lagged(_)) => w.wake_all(),
            Err(RecvError::Closed) => return,
        }
    }
}
