//! The registry: every hub's registry of connections, users and groups, and fan-out into
//! per-connection outboxes.

pub mod connection;
pub mod hub;
pub mod roles;

use std::sync::Arc;

use dashmap::DashMap;

pub use connection::{
    Connection, ConnectionReceivers, ConnectionSpec, Control, Delivery, Position, Published,
    new_connection_id, now_ms,
};
pub use hub::{FanOut, Hub};
pub use roles::{Permission, Roles};

use crate::names::normalize_hub;

/// Told about registry changes that other nodes must learn: the cluster keeps presence and
/// group subscriptions from these. Calls happen under no lock and must not block.
pub trait Membership: Send + Sync {
    /// A connection was registered.
    fn connection_added(&self, conn: &Connection);
    /// A connection was removed (after it left its groups).
    fn connection_removed(&self, conn: &Connection);
    /// A connection joined a group; `first` when it is the group's first member on this node.
    fn member_added(&self, hub: &str, conn: &Connection, group: &str, first: bool);
    /// A connection left a group; `last` when the group has no member left on this node.
    fn member_removed(&self, hub: &str, conn: &Connection, group: &str, last: bool);
    /// A connection's permissions changed (granted or revoked through the REST API).
    fn roles_changed(&self, _conn: &Connection) {}
}

/// All hubs of this node.
#[derive(Default)]
pub struct Registry {
    hubs: DashMap<Arc<str>, Arc<Hub>>,
    membership: Option<Arc<dyn Membership>>,
}

impl Registry {
    /// An empty router.
    #[cfg(test)]
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty router whose hubs report registry changes to `membership`.
    pub fn with_membership(membership: Arc<dyn Membership>) -> Self {
        Registry {
            hubs: DashMap::new(),
            membership: Some(membership),
        }
    }

    /// The hub, if it was ever used. Hub names are case-insensitive.
    pub fn hub(&self, name: &str) -> Option<Arc<Hub>> {
        self.hubs
            .get(normalize_hub(name).as_ref())
            .map(|h| h.clone())
    }

    /// The hub, created on first use.
    pub fn hub_or_create(&self, name: &str) -> Arc<Hub> {
        let name = normalize_hub(name);
        if let Some(h) = self.hubs.get(name.as_ref()) {
            return h.clone();
        }
        self.hubs
            .entry(Arc::from(name.as_ref()))
            .or_insert_with(|| Arc::new(Hub::with_membership(&name, self.membership.clone())))
            .clone()
    }

    /// Every hub.
    pub fn hubs(&self) -> Vec<Arc<Hub>> {
        self.hubs.iter().map(|h| h.value().clone()).collect()
    }

    /// Total connections on this node.
    pub fn connection_count(&self) -> usize {
        self.hubs.iter().map(|h| h.connection_count()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_names() {
        let r = Registry::new();
        let a = r.hub_or_create("Chat");
        assert!(Arc::ptr_eq(&a, &r.hub("chat").unwrap()));
    }
}
