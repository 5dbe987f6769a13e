//! The live trace: connects, disconnects, joins, leaves, messages and REST calls as they happen,
//! for the operator console. A bounded broadcast channel carries them; an event is only built
//! when someone watches (`emit` takes a closure), so the trace costs one atomic load otherwise.
//! Payloads are captured only while the configuration allows them and a watcher asked for
//! them; tokens and keys are never part of an event.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use nerve_protocol::Payload;
use serde::Serialize;
use tokio::sync::broadcast;

/// Events a slow watcher may fall behind by before it is told it missed some.
const CAPACITY: usize = 1024;
/// Longest payload preview an event carries, in bytes.
pub const MAX_PAYLOAD_PREVIEW: usize = 2048;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A connection opened (or resumed).
    Connect,
    /// A connection ended.
    Disconnect,
    /// A connection joined a group.
    Join,
    /// A connection left a group.
    Leave,
    /// A message was sent (by a client or through REST).
    Message,
    /// A REST call was answered.
    Rest,
}

/// One traced event. Every field but `kind`, `at` and `hub` is optional.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceEvent {
    /// Unix milliseconds.
    pub at: u64,
    /// What happened.
    pub kind: Kind,
    /// Hub name.
    pub hub: String,
    /// Connection id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    /// User id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Group name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// A short description: the target of a message, the REST operation and status, a reason.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// Payload size in bytes, for messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<usize>,
    /// The payload (cut to [`MAX_PAYLOAD_PREVIEW`]), only while payloads are watched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
}

impl TraceEvent {
    /// An event of `kind` in `hub`, now, with nothing else filled in.
    pub fn new(kind: Kind, hub: &str) -> Self {
        TraceEvent {
            at: now_ms(),
            kind,
            hub: hub.to_string(),
            connection: None,
            user: None,
            group: None,
            detail: String::new(),
            bytes: None,
            payload: None,
        }
    }

    /// The same event naming a connection and its user.
    pub fn of(mut self, connection: &str, user: Option<&str>) -> Self {
        self.connection = Some(connection.to_string());
        self.user = user.map(str::to_string);
        self
    }

    /// The same event naming a group.
    pub fn in_group(mut self, group: &str) -> Self {
        self.group = Some(group.to_string());
        self
    }

    /// The same event with a description.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }
}

/// The live trace of one node.
pub struct LiveTrace {
    tx: broadcast::Sender<Arc<TraceEvent>>,
    payloads_allowed: bool,
    payload_watchers: AtomicUsize,
}

impl LiveTrace {
    /// A trace whose events carry payloads only if `payloads_allowed`.
    pub fn new(payloads_allowed: bool) -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        LiveTrace {
            tx,
            payloads_allowed,
            payload_watchers: AtomicUsize::new(0),
        }
    }

    /// Whether anyone watches.
    pub fn is_watched(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Whether payloads may be shown at all (the configuration).
    pub fn payloads_allowed(&self) -> bool {
        self.payloads_allowed
    }

    /// Whether events should capture payloads now: allowed, and a watcher asked.
    pub fn wants_payloads(&self) -> bool {
        self.payloads_allowed && self.payload_watchers.load(Ordering::Relaxed) > 0
    }

    /// A message event in `hub` of `payload`: its size, and its content while payloads are
    /// watched (binary as the base64 of the JSON frame).
    pub fn message(&self, hub: &str, payload: &Payload) -> TraceEvent {
        let mut e = TraceEvent::new(Kind::Message, hub);
        e.bytes = Some(payload.size());
        if self.wants_payloads() {
            let shown = if payload.raw_is_binary() {
                &payload.json
            } else {
                &payload.raw
            };
            e.payload = Some(preview(shown));
        }
        e
    }

    /// Sends the event `build` makes, if anyone watches; otherwise `build` is not called.
    pub fn emit(&self, build: impl FnOnce() -> TraceEvent) {
        if self.is_watched() {
            let _ = self.tx.send(Arc::new(build()));
        }
    }

    /// A new watcher; `payloads` asks for payloads (granted only if allowed).
    pub fn watch(self: &Arc<Self>, payloads: bool) -> Watcher {
        let payloads = payloads && self.payloads_allowed;
        if payloads {
            self.payload_watchers.fetch_add(1, Ordering::Relaxed);
        }
        Watcher {
            rx: self.tx.subscribe(),
            trace: self.clone(),
            payloads,
        }
    }

    /// How many watch now.
    pub fn watchers(&self) -> usize {
        self.tx.receiver_count()
    }
}

/// One watcher of the trace; dropping it stops the watch.
pub struct Watcher {
    /// The events.
    pub rx: broadcast::Receiver<Arc<TraceEvent>>,
    trace: Arc<LiveTrace>,
    /// Whether this watcher sees payloads.
    pub payloads: bool,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if self.payloads {
            self.trace.payload_watchers.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A payload as the trace shows it: text as is, binary as base64, cut to the preview size at
/// a character boundary.
pub fn preview(text: &[u8]) -> String {
    let s = String::from_utf8_lossy(text);
    if s.len() <= MAX_PAYLOAD_PREVIEW {
        return s.into_owned();
    }
    let mut end = MAX_PAYLOAD_PREVIEW;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_built_without_a_watcher_and_payloads_need_both_sides() {
        let trace = Arc::new(LiveTrace::new(false));
        trace.emit(|| panic!("built an event nobody watches"));
        let w = trace.watch(true);
        assert!(!w.payloads, "the configuration forbids payloads");
        assert!(!trace.wants_payloads());
        let allowed = Arc::new(LiveTrace::new(true));
        let quiet = allowed.watch(false);
        assert!(!allowed.wants_payloads());
        let loud = allowed.watch(true);
        assert!(allowed.wants_payloads());
        drop(loud);
        assert!(!allowed.wants_payloads());
        drop(quiet);
        assert!(!allowed.is_watched());
    }

    #[test]
    fn previews_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_PAYLOAD_PREVIEW);
        let p = preview(long.as_bytes());
        assert!(p.len() <= MAX_PAYLOAD_PREVIEW + '…'.len_utf8());
        assert!(p.ends_with('…'));
        assert_eq!(preview(b"hi"), "hi");
    }

    #[tokio::test]
    async fn watchers_receive_what_is_emitted() {
        let trace = Arc::new(LiveTrace::new(true));
        let mut w = trace.watch(false);
        trace.emit(|| {
            TraceEvent::new(Kind::Join, "chat")
                .of("c1", Some("u"))
                .in_group("g")
        });
        let e = w.rx.recv().await.expect("event");
        assert_eq!(e.kind, Kind::Join);
        assert_eq!(e.group.as_deref(), Some("g"));
        let json = serde_json::to_value(&*e).expect("json");
        assert_eq!(json["kind"], "join");
        assert!(json.get("payload").is_none());
    }
}
