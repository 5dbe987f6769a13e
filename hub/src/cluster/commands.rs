//! Runs a [`Command`] against this node's registry: how a REST call made on another node
//! reaches the connections held here. Upstream notifications fire on the node that holds the
//! connection, as they would for a local call.

use std::sync::Arc;

use super::{Command, Selector};
use crate::filter::Filter;
use crate::registry::{CLOSE_NO_RECOVERY, Connection, Hub, Permission};
use crate::server::AppState;
use crate::upstream::Notice;

/// Applies a command to the connections of `hub` on this node.
pub fn apply(app: &AppState, hub: &str, cmd: &Command) {
    let h = match cmd {
        // A user's groups also bind connections the user opens here later.
        Command::AddUser { .. } => Some(app.router.hub_or_create(hub)),
        _ => app.router.hub(hub),
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
                    c.close(reason, CLOSE_NO_RECOVERY);
                }
            }
        }
        Command::Join { conn, group } => {
            if let Some(c) = h.connection(conn)
                && h.join(&c, group)
            {
                notify(app, &c, group, true);
            }
        }
        Command::Leave { conn, group } => {
            if let Some(c) = h.connection(conn) {
                leave(app, &h, &c, group.as_deref());
            }
        }
        Command::AddUser { user, group } => {
            let newly: Vec<_> = h
                .user_connections(user)
                .into_iter()
                .filter(|c| !c.in_group(group))
                .collect();
            h.add_user_to_group(user, group);
            for c in newly {
                notify(app, &c, group, true);
            }
        }
        Command::RemoveUser { user, group } => {
            for c in h.user_connections(user) {
                leave(app, &h, &c, group.as_deref());
            }
            match group {
                Some(g) => h.remove_user_from_group(user, g),
                None => h.remove_user_from_all_groups(user),
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
                    if *add && h.join(&c, g) {
                        notify(app, &c, g, true);
                    } else if !*add && h.leave(&c, g) {
                        notify(app, &c, g, false);
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
                {
                    let mut roles = c.roles.lock();
                    if *grant {
                        roles.grant(p, target.as_deref());
                    } else {
                        roles.revoke(p, target.as_deref());
                    }
                }
                app.broker.roles_changed(&c);
            }
        }
        Command::Takeover { conn } => {
            if let Some(c) = h.connection(conn) {
                c.hand_over();
            }
        }
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

fn leave(app: &AppState, h: &Hub, c: &Connection, group: Option<&str>) {
    match group {
        Some(g) => {
            if h.leave(c, g) {
                notify(app, c, g, false);
            }
        }
        None => {
            for g in h.leave_all(c) {
                notify(app, c, &g, false);
            }
        }
    }
}

fn notify(app: &AppState, c: &Connection, group: &str, joined: bool) {
    let up = &app.upstream;
    let group = group.to_string();
    let notice = if joined {
        Notice::Joined { group }
    } else {
        Notice::Left { group }
    };
    up.notify(up.context(c.event_context()), notice);
}
