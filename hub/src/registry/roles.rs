//! Permissions of one connection: which groups it may join/leave and send to.
//!
//! Roles come from the token (`role` claim), the upstream `connect` reply, and the REST
//! permission API; all three end up here.
//!
//! Besides the literal roles (`webpubsub.sendToGroup.{group}`), the plural pattern roles
//! `webpubsub.sendToGroups.{pattern}` and `webpubsub.joinLeaveGroups.{pattern}` grant every
//! group the pattern matches, as Azure's wildcard group roles do: `.` separates segments,
//! `?` is one character and `*` any run of characters within a segment, `**` any run across
//! segments, `\` escapes `\`, `*` and `?`, and a pattern holds at most five `*`. A pattern
//! outside that grammar grants nothing.

use std::collections::HashSet;

/// Role granting join/leave on every group.
pub const JOIN_LEAVE: &str = "webpubsub.joinLeaveGroup";
/// Role granting publish to every group.
pub const SEND_TO_GROUP: &str = "webpubsub.sendToGroup";
/// Prefix of the roles granting join/leave on the groups a pattern matches.
const JOIN_LEAVE_PATTERN: &str = "webpubsub.joinLeaveGroups.";
/// Prefix of the roles granting publish to the groups a pattern matches.
const SEND_PATTERN: &str = "webpubsub.sendToGroups.";
/// At most this many `*` characters in one pattern (a `**` counts two), as Azure allows.
const MAX_PATTERN_STARS: usize = 5;

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
    patterns: Vec<Pattern>,
}

impl Grant {
    fn allows(&self, group: &str) -> bool {
        self.all || self.groups.contains(group) || self.patterns.iter().any(|p| p.matches(group))
    }

    fn add_pattern(&mut self, source: &str) {
        match Pattern::parse(source) {
            Some(p) if !self.patterns.contains(&p) => self.patterns.push(p),
            Some(_) => {}
            None => tracing::debug!(pattern = source, "group role pattern ignored: not valid"),
        }
    }
}

/// One piece of a group pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    /// This character.
    Char(char),
    /// `?`: one character other than `.`.
    One,
    /// `*`: any run of characters other than `.`.
    Segment,
    /// `**`: any run of characters.
    Any,
}

/// A parsed group pattern; keeps its source to give the role back.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    source: String,
    pieces: Vec<Piece>,
}

impl Pattern {
    /// Parses a pattern, or `None` when it breaks the grammar (a dangling or unknown escape,
    /// more than [`MAX_PATTERN_STARS`] stars, nothing at all).
    fn parse(source: &str) -> Option<Pattern> {
        let mut pieces = Vec::with_capacity(source.len());
        let mut stars = 0;
        let mut chars = source.chars().peekable();
        while let Some(c) = chars.next() {
            let piece = match c {
                '\\' => match chars.next()? {
                    e @ ('\\' | '*' | '?') => Piece::Char(e),
                    _ => return None,
                },
                '?' => Piece::One,
                '*' if chars.peek() == Some(&'*') => {
                    chars.next();
                    stars += 2;
                    Piece::Any
                }
                '*' => {
                    stars += 1;
                    Piece::Segment
                }
                c => Piece::Char(c),
            };
            pieces.push(piece);
        }
        (!pieces.is_empty() && stars <= MAX_PATTERN_STARS).then(|| Pattern {
            source: source.to_string(),
            pieces,
        })
    }

    /// Whether `group` matches, in time proportional to pattern length × group length.
    fn matches(&self, group: &str) -> bool {
        let name: Vec<char> = group.chars().collect();
        let n = name.len();
        // after[j]: the pieces after the current one match name[j..].
        let mut after = vec![false; n + 1];
        after[n] = true;
        let mut here = vec![false; n + 1];
        for piece in self.pieces.iter().rev() {
            for j in (0..=n).rev() {
                let c = name.get(j).copied();
                here[j] = match *piece {
                    Piece::Char(p) => c == Some(p) && after[j + 1],
                    Piece::One => c.is_some_and(|c| c != '.') && after[j + 1],
                    Piece::Segment => after[j] || (c.is_some_and(|c| c != '.') && here[j + 1]),
                    Piece::Any => after[j] || (c.is_some() && here[j + 1]),
                };
            }
            std::mem::swap(&mut after, &mut here);
        }
        after[0]
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
            } else if let Some(p) = role.strip_prefix(JOIN_LEAVE_PATTERN) {
                r.join_leave.add_pattern(p);
            } else if let Some(p) = role.strip_prefix(SEND_PATTERN) {
                r.send.add_pattern(p);
            }
        }
        r
    }

    /// The role strings these roles were built from (the inverse of [`Roles::from_claims`]).
    pub fn to_claims(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (grant, role, pattern) in [
            (&self.join_leave, JOIN_LEAVE, JOIN_LEAVE_PATTERN),
            (&self.send, SEND_TO_GROUP, SEND_PATTERN),
        ] {
            if grant.all {
                out.push(role.to_string());
            }
            let mut groups: Vec<&String> = grant.groups.iter().collect();
            groups.sort();
            out.extend(groups.into_iter().map(|g| format!("{role}.{g}")));
            out.extend(
                grant
                    .patterns
                    .iter()
                    .map(|p| format!("{pattern}{}", p.source)),
            );
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

    /// Azure's table of examples for its wildcard group roles, and the edges of the grammar.
    #[test]
    fn pattern_roles_match_as_azure_documents() {
        let cases: &[(&str, &[&str], &[&str])] = &[
            (
                "chat-*",
                &["chat-1", "chat-room", "chat-"],
                &["chat.1", "xchat-1"],
            ),
            (
                "clientA.*",
                &["clientA.alpha", "clientA.1"],
                &["clientA.alpha.room1", "clientB.alpha"],
            ),
            (
                "clientA.**",
                &["clientA.alpha", "clientA.alpha.room1"],
                &["clientB.anything", "clienta.x"],
            ),
            (
                "clientA.rooms.?1",
                &["clientA.rooms.a1", "clientA.rooms.11"],
                &["clientA.rooms.1", "clientA.rooms.a.1"],
            ),
            (r"literal\*star", &["literal*star"], &["literalXstar"]),
            (r"a\\b\?", &[r"a\b?"], &["a\\bx"]),
            ("**", &["", "a", "a.b.c"], &[]),
            ("*.*", &["a.b", "."], &["a", "a.b.c"]),
            (
                "a**b*c",
                &["ax.bc", "axx.yybzzc", "abc"],
                &["ab.c.d", "ab.xc.d"],
            ),
        ];
        for (pattern, yes, no) in cases {
            let r = Roles::from_claims(&[format!("webpubsub.sendToGroups.{pattern}")]);
            for g in *yes {
                assert!(r.can_send(g), "{pattern} should match {g:?}");
                assert!(!r.can_join_leave(g), "a send pattern grants no join");
            }
            for g in *no {
                assert!(!r.can_send(g), "{pattern} should not match {g:?}");
            }
        }
        let join = Roles::from_claims(&["webpubsub.joinLeaveGroups.public.*"]);
        assert!(join.can_join_leave("public.lobby") && !join.can_send("public.lobby"));
    }

    #[test]
    fn patterns_outside_the_grammar_grant_nothing() {
        for bad in ["", "a\\", r"a\x", "******", "***.***", "a*b*c*d*e*f*"] {
            let r = Roles::from_claims(&[format!("webpubsub.sendToGroups.{bad}")]);
            assert_eq!(r, Roles::default(), "{bad:?} must grant nothing");
        }
        // Five stars is the limit, not past it.
        assert!(Roles::from_claims(&["webpubsub.sendToGroups.**.*.**"]).can_send("x.y.z"));
        // The singular role is literal: its star is a character of the group's name.
        let literal = Roles::from_claims(&["webpubsub.sendToGroup.chat-*"]);
        assert!(literal.can_send("chat-*") && !literal.can_send("chat-1"));
    }

    #[test]
    fn pattern_roles_round_trip_through_claims() {
        let claims = [
            "webpubsub.joinLeaveGroups.team.**",
            "webpubsub.sendToGroup.a",
            "webpubsub.sendToGroups.chat-?",
        ];
        let r = Roles::from_claims(&claims);
        assert_eq!(r.to_claims(), claims.map(String::from));
        assert_eq!(Roles::from_claims(&r.to_claims()), r);
        // A long group name against a pattern full of stars stays linear, not exponential.
        let long = "a".repeat(1024) + ".b";
        let stars = Roles::from_claims(&["webpubsub.sendToGroups.*a*a*a*a*c"]);
        assert!(!stars.can_send(&long));
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
