//! The registry of one hub: its connections, groups and users.
//!
//! Every map is a `DashMap`, itself split into shards by key hash, so joins, leaves and lookups
//! on different connections or groups do not contend. A group's member set has its own lock,
//! held only while members are added, removed or iterated for fan-out (never across `.await`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use dashmap::DashMap;
use parking_lot::RwLock;

use super::Membership;
use super::connection::{Connection, Delivery, PushError};

type Members = HashMap<Arc<str>, Arc<Connection>>;

/// A group's members.
#[derive(Default)]
pub struct Group {
    members: RwLock<Members>,
}

impl Group {
    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.read().len()
    }

    /// Whether the group has no members.
    pub fn is_empty(&self) -> bool {
        self.members.read().is_empty()
    }

    /// A snapshot of the members.
    pub fn members(&self) -> Vec<Arc<Connection>> {
        self.members.read().values().cloned().collect()
    }
}

/// Counts of a fan-out.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FanOut {
    /// Messages queued.
    pub delivered: usize,
    /// Recipients cut off as slow consumers.
    pub dropped: usize,
}

impl FanOut {
    fn record(&mut self, r: Result<(), PushError>) {
        match r {
            Ok(()) => self.delivered += 1,
            Err(PushError::SlowConsumer) => self.dropped += 1,
            Err(PushError::Closed) => {}
        }
    }
}

/// One hub's registry.
pub struct Hub {
    /// Hub name.
    pub name: Arc<str>,
    connections: DashMap<Arc<str>, Arc<Connection>>,
    groups: DashMap<Arc<str>, Arc<Group>>,
    users: DashMap<Arc<str>, Members>,
    /// Groups a user belongs to, including for connections the user opens later.
    user_groups: DashMap<Arc<str>, HashSet<Arc<str>>>,
    /// Told about changes other nodes must learn (presence, group subscriptions).
    membership: Option<Arc<dyn Membership>>,
}

impl Hub {
    /// An empty hub.
    pub fn new(name: &str) -> Self {
        Self::with_membership(name, None)
    }

    /// An empty hub whose registry changes are reported to `membership`.
    pub fn with_membership(name: &str, membership: Option<Arc<dyn Membership>>) -> Self {
        Hub {
            name: Arc::from(name),
            connections: DashMap::new(),
            groups: DashMap::new(),
            users: DashMap::new(),
            user_groups: DashMap::new(),
            membership,
        }
    }

    /// Registers a connection, and joins the groups its user was added to.
    pub fn add_connection(&self, conn: &Arc<Connection>) {
        self.connections.insert(conn.id.clone(), conn.clone());
        if let Some(m) = &self.membership {
            m.connection_added(conn);
        }
        if let Some(user) = &conn.user_id {
            self.users
                .entry(user.clone())
                .or_default()
                .insert(conn.id.clone(), conn.clone());
        }
    }

    /// The groups a user was added to (which the user's new connections join).
    pub fn user_groups(&self, user: &str) -> Vec<Arc<str>> {
        self.user_groups
            .get(user)
            .map(|g| g.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Every user added to groups, with those groups (what the cluster keeps of them).
    pub fn all_user_groups(&self) -> Vec<(Arc<str>, Vec<Arc<str>>)> {
        self.user_groups
            .iter()
            .map(|e| (e.key().clone(), e.value().iter().cloned().collect()))
            .collect()
    }

    /// Removes a connection from the hub, its groups and its user.
    pub fn remove_connection(&self, conn: &Connection) {
        self.connections.remove(&conn.id);
        let groups = std::mem::take(&mut *conn.groups.lock());
        for g in groups {
            self.remove_member(&g, conn);
        }
        if let Some(user) = &conn.user_id {
            if let Some(mut m) = self.users.get_mut(user) {
                m.remove(&conn.id);
            }
            self.users.remove_if(user, |_, m| m.is_empty());
        }
        if let Some(m) = &self.membership {
            m.connection_removed(conn);
        }
    }

    /// Looks up a connection.
    pub fn connection(&self, id: &str) -> Option<Arc<Connection>> {
        self.connections.get(id).map(|c| c.clone())
    }

    /// Number of connections.
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// The names of the non-empty groups.
    pub fn group_names(&self) -> Vec<Arc<str>> {
        self.groups.iter().map(|g| g.key().clone()).collect()
    }

    /// Number of non-empty groups.
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Adds a connection to a group. Returns false if it was already a member.
    pub fn join(&self, conn: &Arc<Connection>, group: &str) -> bool {
        let key: Arc<str> = match self.groups.get(group) {
            Some(g) => g.key().clone(),
            None => Arc::from(group),
        };
        if !conn.add_group(&key) {
            return false;
        }
        // Insert while holding the map entry, so a concurrent removal of the emptied group
        // (which also takes the entry) cannot lose this member.
        let first = match self.groups.entry(key.clone()) {
            dashmap::Entry::Occupied(e) => {
                e.get()
                    .members
                    .write()
                    .insert(conn.id.clone(), conn.clone());
                false
            }
            dashmap::Entry::Vacant(e) => {
                let g = Group::default();
                g.members.write().insert(conn.id.clone(), conn.clone());
                e.insert(Arc::new(g));
                true
            }
        };
        if let Some(m) = &self.membership {
            m.member_added(&self.name, conn, &key, first);
        }
        true
    }

    /// Removes a connection from a group. Returns false if it was not a member.
    pub fn leave(&self, conn: &Connection, group: &str) -> bool {
        if !conn.remove_group(group) {
            return false;
        }
        self.remove_member(group, conn);
        true
    }

    fn remove_member(&self, group: &str, conn: &Connection) {
        if let Some(g) = self.groups.get(group) {
            g.members.write().remove(&conn.id);
        }
        let last = self.groups.remove_if(group, |_, g| g.is_empty()).is_some();
        if let Some(m) = &self.membership {
            m.member_removed(&self.name, conn, group, last);
        }
    }

    /// Removes a connection from every group.
    pub fn leave_all(&self, conn: &Connection) -> Vec<Arc<str>> {
        let groups = std::mem::take(&mut *conn.groups.lock());
        for g in &groups {
            self.remove_member(g, conn);
        }
        groups
    }

    /// The group, if it has members.
    pub fn group(&self, group: &str) -> Option<Arc<Group>> {
        self.groups.get(group).map(|g| g.clone())
    }

    /// Whether a user has at least one connection.
    pub fn has_user(&self, user: &str) -> bool {
        self.users.get(user).is_some_and(|m| !m.is_empty())
    }

    /// The connections of a user.
    pub fn user_connections(&self, user: &str) -> Vec<Arc<Connection>> {
        self.users
            .get(user)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Number of users with a connection on this node.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Every user with a connection on this node, and how many connections each has.
    pub fn users(&self) -> Vec<(Arc<str>, usize)> {
        self.users
            .iter()
            .filter(|e| !e.value().is_empty())
            .map(|e| (e.key().clone(), e.value().len()))
            .collect()
    }

    /// Every group with a member on this node, and how many members it has here.
    pub fn groups(&self) -> Vec<(Arc<str>, usize)> {
        self.groups
            .iter()
            .map(|e| (e.key().clone(), e.value().len()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Every connection.
    pub fn all_connections(&self) -> Vec<Arc<Connection>> {
        self.connections.iter().map(|c| c.value().clone()).collect()
    }

    /// Records that a user is in a group, so its later connections join it (the caller
    /// joins its current ones).
    pub fn bind_user_to_group(&self, user: &str, group: &str) {
        self.user_groups
            .entry(Arc::from(user))
            .or_default()
            .insert(Arc::from(group));
    }

    /// Forgets that a user is in a group (the caller takes its connections out).
    pub fn unbind_user_from_group(&self, user: &str, group: &str) {
        if let Some(mut gs) = self.user_groups.get_mut(user) {
            gs.remove(group);
        }
        self.user_groups.remove_if(user, |_, gs| gs.is_empty());
    }

    /// Forgets every group of a user.
    pub fn unbind_user_from_all_groups(&self, user: &str) {
        self.user_groups.remove(user);
    }

    /// Queues a message for every member of a group for which `skip` is false.
    pub fn send_to_group(
        &self,
        group: &str,
        d: &Arc<Delivery>,
        skip: impl Fn(&Connection) -> bool,
    ) -> FanOut {
        let mut out = FanOut::default();
        if let Some(g) = self.group(group) {
            for c in g.members.read().values() {
                if !skip(c) {
                    out.record(c.push(d));
                }
            }
        }
        out
    }

    /// Queues a message for every connection of the hub for which `skip` is false.
    pub fn send_to_all(&self, d: &Arc<Delivery>, skip: impl Fn(&Connection) -> bool) -> FanOut {
        let mut out = FanOut::default();
        for c in self.connections.iter() {
            if !skip(c.value()) {
                out.record(c.value().push(d));
            }
        }
        out
    }

    /// Queues a message for every connection of a user for which `skip` is false.
    pub fn send_to_user(
        &self,
        user: &str,
        d: &Arc<Delivery>,
        skip: impl Fn(&Connection) -> bool,
    ) -> FanOut {
        let mut out = FanOut::default();
        for c in self.user_connections(user) {
            if !skip(&c) {
                out.record(c.push(d));
            }
        }
        out
    }
}
