//! Permissions of one connection: which groups it may join/leave and send to.
//!
//! Roles come from the token (`role` claim), the upstream `connect` reply, and the REST
//! permission API; all three end up here.

use std::collections::HashSet;

/// Role granting join/leave on every group.
pub const JOIN_LEAVE: &str = "webpubsub.joinLeaveGroup";
/// Role granting publish to every group.
pub const SEND_TO_GROUP: &str = "webpubsub.sendToGroup";

/// A permission the REST API can grant or revoke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// Join and leave groups.
    JoinLeaveGroup,
    /// Publish to groups.
    SendToGroup,
}

impl Permission {
    /// Parses the REST path segment (`joinLeaveGroup` / `sendToGroup`, any case).
    pub fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("joinLeaveGroup") {
            Some(Permission::JoinLeaveGroup)
        } else if s.eq_ignore_ascii_case("sendToGroup") {
            Some(Permission::SendToGroup)
        } else {
            None
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Grant {
    all: bool,
    groups: HashSet<String>,
}

impl Grant {
    fn allows(&self, group: &str) -> bool {
        self.all || self.groups.contains(group)
    }
}

/// The roles of one connection.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Roles {
    join_leave: Grant,
    send: Grant,
}

impl Roles {
    /// Builds roles from role strings; unknown roles are ignored (they may mean something to
    /// the application's upstream).
    pub fn from_claims<S: AsRef<str>>(roles: &[S]) -> Self {
        let mut r = Roles::default();
        for role in roles {
            let role = role.as_ref();
            if role == JOIN_LEAVE {
                r.join_leave.all = true;
            } else if let Some(g) = role.strip_prefix("webpubsub.joinLeaveGroup.") {
                r.join_leave.groups.insert(g.to_string());
            } else if role == SEND_TO_GROUP {
                r.send.all = true;
            } else if let Some(g) = role.strip_prefix("webpubsub.sendToGroup.") {
                r.send.groups.insert(g.to_string());
            }
        }
        r
    }

    /// The role strings these roles were built from (the inverse of [`Roles::from_claims`]).
    pub fn to_claims(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (grant, role) in [(&self.join_leave, JOIN_LEAVE), (&self.send, SEND_TO_GROUP)] {
            if grant.all {
                out.push(role.to_string());
            }
            let mut groups: Vec<&String> = grant.groups.iter().collect();
            groups.sort();
            out.extend(groups.into_iter().map(|g| format!("{role}.{g}")));
        }
        out
    }

    /// May join or leave `group`.
    pub fn can_join_leave(&self, group: &str) -> bool {
        self.join_leave.allows(group)
    }

    /// May publish to `group`.
    pub fn can_send(&self, group: &str) -> bool {
        self.send.allows(group)
    }

    fn grant_mut(&mut self, p: Permission) -> &mut Grant {
        match p {
            Permission::JoinLeaveGroup => &mut self.join_leave,
            Permission::SendToGroup => &mut self.send,
        }
    }

    /// Grants a permission on one group, or on all when `target` is `None`.
    pub fn grant(&mut self, p: Permission, target: Option<&str>) {
        let g = self.grant_mut(p);
        match target {
            None => g.all = true,
            Some(t) => {
                g.groups.insert(t.to_string());
            }
        }
    }

    /// Revokes a permission on one group, or every grant of it when `target` is `None`.
    pub fn revoke(&mut self, p: Permission, target: Option<&str>) {
        let g = self.grant_mut(p);
        match target {
            None => *g = Grant::default(),
            Some(t) => {
                g.groups.remove(t);
            }
        }
    }

    /// Whether the permission is held (on `target`, or on all groups when `None`).
    pub fn has(&self, p: Permission, target: Option<&str>) -> bool {
        let g = match p {
            Permission::JoinLeaveGroup => &self.join_leave,
            Permission::SendToGroup => &self.send,
        };
        match target {
            None => g.all,
            Some(t) => g.allows(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_scoped_roles() {
        let r = Roles::from_claims(&["webpubsub.joinLeaveGroup.a", "webpubsub.sendToGroup"]);
        assert!(r.can_join_leave("a"));
        assert!(!r.can_join_leave("b"));
        assert!(r.can_send("anything"));
        let none = Roles::from_claims::<&str>(&[]);
        assert!(!none.can_send("a") && !none.can_join_leave("a"));
    }

    #[test]
    fn grant_and_revoke() {
        let mut r = Roles::default();
        r.grant(Permission::SendToGroup, Some("g"));
        assert!(r.has(Permission::SendToGroup, Some("g")));
        assert!(!r.has(Permission::SendToGroup, None));
        r.grant(Permission::JoinLeaveGroup, None);
        assert!(r.has(Permission::JoinLeaveGroup, Some("x")));
        r.revoke(Permission::JoinLeaveGroup, None);
        assert!(!r.has(Permission::JoinLeaveGroup, Some("x")));
        assert_eq!(
            Permission::parse("SENDTOGROUP"),
            Some(Permission::SendToGroup)
        );
    }
}
