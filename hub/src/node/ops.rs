//! Registry operations, each written once: joining and leaving groups, adding users to groups,
//! closing connections, granting and revoking permissions. Client frames, REST calls, the
//! groups a connection opens with and commands from other nodes all come through here, so
//! each operation has one limit, one metric and one upstream notice.
//!
//! Callers authorize first (a client's roles, a REST caller's key); these functions only act.

use std::fmt;
use std::sync::Arc;

use nerve_protocol::{Payload, Sender, close};
use serde_json::json;

use crate::cluster::{Command, Scope, Selector, Target};
use crate::filter::Filter;
use crate::limits::LimitKind;
use crate::livetrace::{Kind, TraceEvent};
use crate::metrics;
use crate::registry::{Connection, Delivery, Hub, Permission};
use crate::upstream::Notice;

use super::Node;

/// A join refused because the connection is in as many groups as allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinRefused {
    /// The limit.
    pub max: usize,
}

impl fmt::Display for JoinRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a connection may be in at most {} groups; leave one first",
            self.max
        )
    }
}

/// Whether the application's event handlers hear of a membership change. Groups a
/// connection opens with (from its token or connect handler) and the groups of a resumed
/// session are not news to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announce {
    /// Send the `joined` / `left` notice.
    Yes,
    /// Change membership silently.
    No,
}

/// Groups named `$presence.<group>` carry the joins and leaves of `<group>` on hubs with
/// `presence_events`: subscribing is joining them, with the roles any group needs.
pub const PRESENCE_PREFIX: &str = "$presence.";

impl Node {
    /// Puts `conn` in `group` within the per-connection group limit. Returns whether the
    /// connection was not in the group before.
    pub fn join(
        &self,
        hub: &Hub,
        conn: &Arc<Connection>,
        group: &str,
        announce: Announce,
    ) -> Result<bool, JoinRefused> {
        let max = self.config.limits.max_groups_per_connection;
        if max > 0 && !conn.in_group(group) && conn.groups.lock().len() >= max {
            LimitKind::Groups.count();
            return Err(JoinRefused { max });
        }
        let joined = hub.join(conn, group);
        if joined {
            metrics::global().joins.inc();
            self.trace.emit(|| {
                TraceEvent::new(Kind::Join, &hub.name)
                    .of(&conn.id, conn.user_id.as_deref())
                    .in_group(group)
            });
            if announce == Announce::Yes {
                self.announce(
                    conn,
                    Notice::Joined {
                        group: group.to_string(),
                    },
                );
            }
            self.presence_event(conn, group, "joined");
        }
        Ok(joined)
    }

    /// A connection is about to leave the registry: its groups hear it left them.
    pub fn closing(&self, conn: &Connection) {
        if !self.presence_events(&conn.hub) {
            return;
        }
        let groups: Vec<Arc<str>> = conn.groups.lock().iter().cloned().collect();
        for g in groups {
            self.presence_event(conn, &g, "left");
        }
    }

    /// Publishes a join or leave of `group` to `$presence.<group>`, on every node, when the hub
    /// asks for presence events (never for the presence groups themselves).
    fn presence_event(&self, conn: &Connection, group: &str, event: &str) {
        if !self.presence_events(&conn.hub) || group.starts_with(PRESENCE_PREFIX) {
            return;
        }
        let channel = format!("{PRESENCE_PREFIX}{group}");
        let data = json!({
            "event": event,
            "group": group,
            "connectionId": &*conn.id,
            "userId": conn.user_id.as_deref(),
        });
        let d = Delivery::new(Sender::group(&channel, None), Payload::from_value(&data));
        let local = self.registry.hub(&conn.hub);
        self.broker.publish(
            &conn.hub,
            local.as_ref(),
            Target::Group(channel),
            Scope::default(),
            d,
        );
    }

    /// Whether `hub` publishes presence events.
    fn presence_events(&self, hub: &str) -> bool {
        self.config.hubs.get(hub).is_some_and(|h| h.presence_events)
    }

    /// Takes `conn` out of `group`. Returns whether it was in the group.
    pub fn leave(&self, hub: &Hub, conn: &Connection, group: &str) -> bool {
        let left = hub.leave(conn, group);
        if left {
            self.left(conn, group);
        }
        left
    }

    /// Takes `conn` out of every group.
    pub fn leave_all(&self, hub: &Hub, conn: &Connection) {
        for g in hub.leave_all(conn) {
            self.left(conn, &g);
        }
    }

    fn left(&self, conn: &Connection, group: &str) {
        metrics::global().leaves.inc();
        self.presence_event(conn, group, "left");
        self.trace.emit(|| {
            TraceEvent::new(Kind::Leave, &conn.hub)
                .of(&conn.id, conn.user_id.as_deref())
                .in_group(group)
        });
        self.announce(
            conn,
            Notice::Left {
                group: group.to_string(),
            },
        );
    }

    /// Grants (or revokes) a permission, and tells the cluster the connection's roles changed.
    pub fn set_permission(
        &self,
        conn: &Connection,
        p: Permission,
        target: Option<&str>,
        grant: bool,
    ) {
        {
            let mut roles = conn.roles.lock();
            if grant {
                roles.grant(p, target);
            } else {
                roles.revoke(p, target);
            }
        }
        self.broker.roles_changed(conn);
    }

    /// Runs a command on this node and, through the broker, on every node that may hold
    /// its connections (a REST call).
    pub fn run_everywhere(&self, hub: &str, cmd: Command) {
        self.run_local(hub, &cmd);
        self.broker.command(hub, cmd);
    }

    /// Runs a command on the connections of `hub` held by this node.
    pub fn run_local(&self, hub: &str, cmd: &Command) {
        let h = match cmd {
            // A user's groups also bind connections the user opens here later.
            Command::AddUser { .. } => Some(self.registry.hub_or_create(hub)),
            _ => self.registry.hub(hub),
        };
        let Some(h) = h else { return };
        match cmd {
            Command::Close {
                selector,
                reason,
                excluded,
            } => {
                for c in selected(&h, selector) {
                    if !excluded.iter().any(|e| **e == *c.id) {
                        c.close(reason, close::NO_RECOVERY);
                    }
                }
            }
            Command::Join { conn, group } => {
                if let Some(c) = h.connection(conn) {
                    let _ = self.join(&h, &c, group, Announce::Yes);
                }
            }
            Command::Leave { conn, group } => {
                if let Some(c) = h.connection(conn) {
                    self.leave_some(&h, &c, group.as_deref());
                }
            }
            Command::AddUser { user, group } => {
                h.bind_user_to_group(user, group);
                for c in h.user_connections(user) {
                    let _ = self.join(&h, &c, group, Announce::Yes);
                }
            }
            Command::RemoveUser { user, group } => {
                for c in h.user_connections(user) {
                    self.leave_some(&h, &c, group.as_deref());
                }
                match group {
                    Some(g) => h.unbind_user_from_group(user, g),
                    None => h.unbind_user_from_all_groups(user),
                }
            }
            Command::Filtered {
                filter,
                groups,
                add,
            } => {
                let Ok(f) = Filter::parse(filter) else { return };
                for c in h.all_connections() {
                    if !c.matches(&f) {
                        continue;
                    }
                    for g in groups {
                        if *add {
                            let _ = self.join(&h, &c, g, Announce::Yes);
                        } else {
                            self.leave(&h, &c, g);
                        }
                    }
                }
            }
            Command::Permission {
                conn,
                permission,
                target,
                grant,
            } => {
                if let (Some(c), Some(p)) = (h.connection(conn), Permission::parse(permission)) {
                    self.set_permission(&c, p, target.as_deref(), *grant);
                }
            }
            Command::Takeover { conn } => {
                if let Some(c) = h.connection(conn) {
                    c.hand_over();
                }
            }
        }
    }

    fn leave_some(&self, h: &Hub, c: &Connection, group: Option<&str>) {
        match group {
            Some(g) => {
                self.leave(h, c, g);
            }
            None => self.leave_all(h, c),
        }
    }

    /// Tells the application's event handlers about a connection.
    pub fn announce(&self, conn: &Connection, notice: Notice) {
        let up = &self.upstream;
        up.notify(up.context(conn.event_context()), notice);
    }
}

fn selected(h: &Hub, selector: &Selector) -> Vec<Arc<Connection>> {
    match selector {
        Selector::All => h.all_connections(),
        Selector::User(u) => h.user_connections(u),
        Selector::Group(g) => h.group(g).map(|g| g.members()).unwrap_or_default(),
        Selector::Connection(id) => h.connection(id).into_iter().collect(),
    }
}
