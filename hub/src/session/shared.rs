//! The cluster side of a reliable session: what it keeps in step with the shared session
//! store (stamped frames before they reach the socket, each group's history position), how a
//! new session registers, how a draining one lets go, and how another node's session resumes.

use std::collections::HashMap;
use std::sync::Arc;

use super::{BufferFull, Session};
use crate::registry::{Connection, Delivery};

/// What a reliable session keeps in step with the cluster's session store, so another node
/// can resume it.
#[derive(Default)]
pub(crate) struct Shared {
    /// The last history entry stamped, per group.
    positions: HashMap<Arc<str>, (u64, u64)>,
    /// Frames stamped since the last write to the store.
    frames: Vec<(u64, String)>,
    /// Positions changed since the last write to the store.
    moved: Vec<(Arc<str>, (u64, u64))>,
}

impl Shared {
    /// Records a frame just stamped for the client (and its group position).
    pub(super) fn stamped(&mut self, id: u64, frame: &str, d: &Delivery, conn: &Connection) {
        self.frames.push((id, frame.to_string()));
        if let Some(p) = &d.position {
            self.positions.insert(p.group.clone(), p.id);
            // A group left meanwhile must not come back into the record.
            if conn.in_group(&p.group) {
                self.moved.push((p.group.clone(), p.id));
            }
        }
    }
}

impl Session {
    /// Continues a reliable session another node served: its unacknowledged frames, then
    /// what each group published since (history entries, filtered by their scope).
    pub fn resume(
        &mut self,
        frames: Vec<(u64, String)>,
        last_sequence_id: u64,
        positions: Vec<(Arc<str>, (u64, u64))>,
        history: Vec<(Arc<Delivery>, crate::cluster::Scope)>,
    ) -> Result<(), BufferFull> {
        self.resumed = true;
        let shared = self.shared.get_or_insert_with(Shared::default);
        shared.positions.extend(positions);
        if let Some(r) = &mut self.reliable {
            r.restore(frames, last_sequence_id);
        }
        for (d, scope) in history {
            if !scope.skipper()(&self.conn) && !self.already_seen(&d) {
                self.frame_for(&d)?;
            }
        }
        Ok(())
    }

    /// Whether a group message was already stamped for this client (history replay and the
    /// live channel can both bring it).
    pub(super) fn already_seen(&self, d: &Delivery) -> bool {
        match (&self.shared, &d.position) {
            (Some(s), Some(p)) => s.positions.get(&p.group).is_some_and(|last| *last >= p.id),
            _ => false,
        }
    }

    /// Writes what was stamped to the cluster's session store before the
    /// frames reach the socket, so a node that dies mid-write loses nothing.
    pub(crate) async fn persist(&mut self) {
        let (Some(store), Some(shared)) = (self.app.broker.sessions(), &mut self.shared) else {
            return;
        };
        if shared.frames.is_empty() && shared.moved.is_empty() {
            return;
        }
        let frames = std::mem::take(&mut shared.frames);
        let moved = std::mem::take(&mut shared.moved);
        store.append(&self.conn.id, &frames, &moved).await;
    }

    /// Writes what is pending and lets another node claim the session.
    pub(super) async fn release(&mut self) {
        let app = self.app.clone();
        if self.shared.is_some()
            && let Some(store) = app.broker.sessions()
        {
            self.persist().await;
            store.release(&self.conn.id).await;
        }
    }

    /// Registers a new reliable session in the cluster's session store.
    pub(super) async fn share(&mut self) {
        let Some(store) = self.app.broker.sessions() else {
            return;
        };
        if self.reliable.is_none() {
            return;
        }
        if self.resumed {
            self.persist().await;
            return;
        }
        let Some(token) = self.conn.reconnection_token.as_deref() else {
            return;
        };
        let record = crate::cluster::SessionRecord {
            hub: self.hub.name.to_string(),
            user: self.conn.user_id.as_deref().map(str::to_string),
            roles: self.conn.roles.lock().to_claims(),
            token_hash: crate::cluster::token_hash(token),
            node: String::new(),
        };
        store.create(&self.conn.id, &record).await;
        self.shared = Some(Shared::default());
        self.persist().await;
    }
}
