//! Presence across the cluster, written once for the REST API and anything else that lists
//! who is online: this node's registry merged with what the other nodes announce through the
//! broker. Answers are sorted maps, so callers page them by key.

use std::collections::{BTreeMap, BTreeSet};

use super::Node;

/// Most groups scanned to answer which groups a user is in.
pub const MAX_SCANNED_GROUPS: usize = 10_000;

impl Node {
    /// Every connection of a hub on every node: connection id → user.
    pub async fn online_connections(&self, hub: &str) -> BTreeMap<String, Option<String>> {
        let mut all: BTreeMap<String, Option<String>> = self
            .broker
            .remote_connections(hub)
            .await
            .into_iter()
            .map(|m| (m.connection_id, m.user_id))
            .collect();
        if let Some(h) = self.registry.hub(hub) {
            for c in h.all_connections() {
                all.insert(c.id.to_string(), c.user_id.as_deref().map(str::to_string));
            }
        }
        all
    }

    /// Every user with a connection on any node, with how many connections each has.
    pub async fn online_users(&self, hub: &str) -> BTreeMap<String, usize> {
        count_users(self.online_connections(hub).await.into_values())
    }

    /// Every group with a member on any node.
    pub async fn online_groups(&self, hub: &str) -> BTreeSet<String> {
        let mut all: BTreeSet<String> = self.broker.remote_groups(hub).await.into_iter().collect();
        if let Some(h) = self.registry.hub(hub) {
            all.extend(h.group_names().iter().map(|g| g.to_string()));
        }
        all
    }

    /// The members of a group on every node: connection id → user.
    pub async fn group_members(&self, hub: &str, group: &str) -> BTreeMap<String, Option<String>> {
        let mut all: BTreeMap<String, Option<String>> = self
            .broker
            .remote_members(hub, group)
            .await
            .into_iter()
            .map(|m| (m.connection_id, m.user_id))
            .collect();
        if let Some(g) = self.registry.hub(hub).and_then(|h| h.group(group)) {
            for c in g.members() {
                all.insert(c.id.to_string(), c.user_id.as_deref().map(str::to_string));
            }
        }
        all
    }

    /// The users in a group on every node, with how many of their connections are in it.
    pub async fn group_users(&self, hub: &str, group: &str) -> BTreeMap<String, usize> {
        count_users(self.group_members(hub, group).await.into_values())
    }

    /// The groups a user's connections are in, on every node (of the first
    /// [`MAX_SCANNED_GROUPS`] groups for those on other nodes).
    pub async fn user_online_groups(&self, hub: &str, user: &str) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        if let Some(h) = self.registry.hub(hub) {
            for c in h.user_connections(user) {
                found.extend(c.groups.lock().iter().map(|g| g.to_string()));
            }
        }
        if !self.broker.remote_user(hub, user).await {
            return found;
        }
        for g in self
            .broker
            .remote_groups(hub)
            .await
            .into_iter()
            .take(MAX_SCANNED_GROUPS)
        {
            if found.contains(&g) {
                continue;
            }
            let members = self.broker.remote_members(hub, &g).await;
            if members.iter().any(|m| m.user_id.as_deref() == Some(user)) {
                found.insert(g);
            }
        }
        found
    }
}

fn count_users(users: impl Iterator<Item = Option<String>>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for u in users.flatten() {
        *counts.entry(u).or_insert(0) += 1;
    }
    counts
}
