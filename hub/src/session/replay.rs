//! A client coming back by offset: once it joins a group with `after`, the group's kept
//! messages after that offset are written to it first, page by page, and the live copies of
//! them that reached its outbox meanwhile are skipped. What it gets is then each message once,
//! in order, however long it was away (within the group's history).

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::SinkExt;
use nerve_protocol::{Offset, close};

use super::reliable::BufferFull;
use super::{End, Session};
use crate::metrics;
use crate::registry::Delivery;
use crate::socket::Socket;

/// History entries read and written at a time.
const REPLAY_PAGE: usize = 256;

/// The last offset replayed per group, for the few connections that asked for a replay.
pub(crate) type Replayed = Option<Box<HashMap<Arc<str>, Offset>>>;

impl Session {
    /// Writes the group's kept messages after `after` (at most the history's size).
    pub(super) async fn replay(
        &mut self,
        socket: &mut Socket,
        group: &str,
        after: Offset,
    ) -> Option<End> {
        let max = self
            .app
            .config
            .hubs
            .get(&*self.hub.name)
            .and_then(|h| h.history.as_ref())
            .map_or(0, |h| h.max_messages);
        let name: Arc<str> = Arc::from(group);
        let (mut from, mut read) = (after, 0);
        while read < max {
            let top = REPLAY_PAGE.min(max - read);
            let broker = self.app.broker.clone();
            let Some(page) = broker
                .history_page(&self.hub.name, group, Some(from), top)
                .await
            else {
                break;
            };
            read += page.entries.len();
            let mut batch = Vec::with_capacity(page.entries.len());
            for e in &page.entries {
                from = e.offset;
                if (e.scope.skipper())(&self.conn) {
                    continue;
                }
                match self.frame_for(&e.delivery) {
                    Ok(m) => batch.push(m),
                    Err(BufferFull) => {
                        let reason = "Reliable buffer full while replaying a group's history";
                        self.close(socket, reason, close::NO_RECOVERY).await;
                        return Some(End::Finished);
                    }
                }
            }
            self.replayed
                .get_or_insert_default()
                .insert(name.clone(), from);
            let m = metrics::global();
            m.messages_out.inc_by(batch.len() as u64);
            self.persist().await;
            let stuck_after = self.app.config.limits.keepalive() * 3;
            let write = async {
                for msg in batch {
                    socket.feed(msg).await?;
                }
                socket.flush().await
            };
            if let Err(end) = self.interruptible(stuck_after, write).await {
                return Some(end);
            }
            if !page.more {
                break;
            }
        }
        None
    }

    /// Whether a live group message was already written by a replay.
    pub(super) fn replayed_already(&self, d: &Delivery) -> bool {
        match (&self.replayed, &d.position) {
            (Some(r), Some(p)) => r
                .get(&p.group)
                .is_some_and(|last| Offset::from(p.id) <= *last),
            _ => false,
        }
    }

    /// Forgets a group's replay (the client left it).
    pub(super) fn forget_replay(&mut self, group: &str) {
        if let Some(r) = &mut self.replayed {
            r.remove(group);
        }
    }
}
