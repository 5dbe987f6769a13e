//! The cluster side of a reliable session: what it keeps in step with the shared session
//! store (stamped frames before they reach the socket, each group's history position), how a
//! new session registers, how a draining one lets go, how another node's session resumes, and
//! how a session writes itself again, whole, when the store may have lost it.

use std::collections::HashMap;
use std::sync::Arc;

use super::{BufferFull, Session};
use crate::cluster::{Progress, Resumable, Scope, SessionRecord, token_hash};
use crate::registry::{Connection, Delivery};

/// What a reliable session keeps in step with the cluster's session store, so another node
/// can resume it.
#[derive(Default)]
pub(crate) struct Shared {
    /// The last history entry stamped, per group.
    positions: HashMap<Arc<str>, (u64, u64)>,
    /// Per group, the latest message of this node stamped before it reached the group's
    /// history (origin and number): a node delivers its own group messages to its own members
    /// at once, so only the number tells a resumed session's replay that they were sent.
    published: HashMap<Arc<str>, (u64, u64)>,
    /// Per publishing node, the last number a resumption replayed from the histories: this
    /// node's own messages up to it may also wait in the outbox, and go out once.
    replayed: HashMap<u64, u64>,
    /// What changed since the last write to the store.
    pending: Progress,
}

impl Shared {
    /// Records a frame just stamped for the client (and its group position).
    pub(super) fn stamped(&mut self, id: u64, frame: &str, d: &Delivery, conn: &Connection) {
        self.pending.frames.push((id, frame.to_string()));
        if let Some(p) = &d.position {
            self.positions.insert(p.group.clone(), p.id);
            // A group left meanwhile must not come back into the record.
            if conn.in_group(&p.group) {
                self.pending.positions.push((p.group.clone(), p.id));
            }
        } else if let Some(p) = d.published.get() {
            let number = (p.origin, p.seq);
            let newer = self
                .published
                .get(&p.group)
                .is_none_or(|(origin, seq)| *origin != p.origin || *seq < p.seq);
            if newer {
                self.published.insert(p.group.clone(), number);
                if conn.in_group(&p.group) {
                    self.pending.published.push((p.group.clone(), number));
                }
            }
        }
    }

    /// Whether a history entry is a message this session's node gave it before the entry
    /// reached the history.
    fn sent_before_history(&self, d: &Delivery) -> bool {
        d.published.get().is_some_and(|p| {
            self.published
                .get(&p.group)
                .is_some_and(|(origin, seq)| *origin == p.origin && p.seq <= *seq)
        })
    }

    /// Moves a group's position past a history entry that is not sent again.
    fn passed(&mut self, d: &Delivery, conn: &Connection) {
        let Some(p) = &d.position else { return };
        if self.positions.get(&p.group).is_none_or(|last| *last < p.id) {
            self.positions.insert(p.group.clone(), p.id);
            if conn.in_group(&p.group) {
                self.pending.positions.push((p.group.clone(), p.id));
            }
        }
    }
}

impl Session {
    /// Continues a reliable session another node served: its unacknowledged frames, then
    /// what each group published since (history entries, filtered by their scope, without
    /// what its node had given it before the history had it).
    pub fn resume(
        &mut self,
        saved: Resumable,
        history: Vec<(Arc<Delivery>, Scope)>,
    ) -> Result<(), BufferFull> {
        self.resumed = true;
        let shared = self.shared.get_or_insert_with(Shared::default);
        shared.positions.extend(
            saved
                .groups
                .iter()
                .filter_map(|(g, pos)| pos.map(|p| (Arc::<str>::from(g.as_str()), p))),
        );
        shared.published.extend(
            saved
                .published
                .into_iter()
                .map(|(g, n)| (Arc::<str>::from(g.as_str()), n)),
        );
        if let Some(r) = &mut self.reliable {
            r.restore(saved.frames, saved.last_sequence_id);
        }
        for (d, scope) in history {
            if let (Some(s), Some(p)) = (&mut self.shared, d.published.get()) {
                let last = s.replayed.entry(p.origin).or_default();
                *last = (*last).max(p.seq);
            }
            let sent = self.already_seen(&d)
                || scope.skipper()(&self.conn)
                || self
                    .shared
                    .as_ref()
                    .is_some_and(|s| s.sent_before_history(&d));
            if !sent {
                self.frame_for(&d)?;
            } else if let Some(s) = &mut self.shared {
                s.passed(&d, &self.conn);
            }
        }
        Ok(())
    }

    /// Whether a group message was already stamped for this client: history replay and the
    /// live channel can both bring one, and a resumption's replay and the outbox one of this
    /// node's own (which reach its members in number order, so a replay that went past one's
    /// number had it).
    pub(super) fn already_seen(&self, d: &Delivery) -> bool {
        match (&self.shared, &d.position, d.published.get()) {
            (Some(s), Some(p), _) => s.positions.get(&p.group).is_some_and(|last| *last >= p.id),
            (Some(s), None, Some(p)) => s.replayed.get(&p.origin).is_some_and(|n| p.seq <= *n),
            _ => false,
        }
    }

    /// Records that the client acknowledged the `count` oldest frames (written with the next
    /// write, which is at once).
    pub(super) async fn acked(&mut self, count: usize) {
        if let Some(s) = &mut self.shared {
            s.pending.acked += count;
            self.persist().await;
        }
    }

    /// Writes what was stamped to the cluster's session store before the frames reach the
    /// socket, so a node that dies mid-write loses nothing. Asked to (`Control::Reshare`),
    /// writes the whole session instead.
    pub(crate) async fn persist(&mut self) {
        let (Some(store), Some(shared)) = (self.app.broker.sessions(), &mut self.shared) else {
            return;
        };
        if self.conn.take_reshare() {
            shared.pending = Progress::default();
            let whole = self.whole();
            store.rewrite(&self.conn.id, &whole).await;
            return;
        }
        if shared.pending.is_empty() {
            return;
        }
        let progress = std::mem::take(&mut shared.pending);
        store.append(&self.conn.id, &progress).await;
    }

    /// The session as the store keeps it.
    fn whole(&self) -> Resumable {
        let shared = self.shared.as_ref();
        let groups: Vec<Arc<str>> = self.conn.groups.lock().clone();
        let of = |map: Option<&HashMap<Arc<str>, (u64, u64)>>, g: &Arc<str>| {
            map.and_then(|m| m.get(g)).copied()
        };
        Resumable {
            record: self.record(),
            groups: groups
                .iter()
                .map(|g| (g.to_string(), of(shared.map(|s| &s.positions), g)))
                .collect(),
            frames: self.reliable.as_ref().map_or_else(Vec::new, |r| {
                r.unacked_with_ids()
                    .filter_map(|(id, f)| Some((id, f.to_text().ok()?.to_string())))
                    .collect()
            }),
            last_sequence_id: self.reliable.as_ref().map_or(0, |r| r.last_id()),
            published: groups
                .iter()
                .filter_map(|g| Some((g.to_string(), of(shared.map(|s| &s.published), g)?)))
                .collect(),
        }
    }

    /// The session's identity and permissions as the store keeps them.
    fn record(&self) -> SessionRecord {
        SessionRecord {
            hub: self.hub.name.to_string(),
            user: self.conn.user_id.as_deref().map(str::to_string),
            roles: self.conn.roles.lock().to_claims(),
            token_hash: self
                .conn
                .reconnection_token
                .as_deref()
                .map(token_hash)
                .unwrap_or_default(),
            node: String::new(),
        }
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
        // The store keeps JSON frames: only JSON sessions move between nodes.
        if self.reliable.is_none() || self.codec().encoding() != nerve_protocol::Encoding::Json {
            return;
        }
        if self.resumed {
            self.persist().await;
            return;
        }
        if self.conn.reconnection_token.is_none() {
            return;
        }
        store.create(&self.conn.id, &self.record()).await;
        self.shared = Some(Shared::default());
        self.persist().await;
    }
}
