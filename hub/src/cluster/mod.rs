//! The cluster seam: how a message or a registry operation reaches connections on other nodes.
//!
//! Sessions and the REST API talk to a [`Broker`] only. Two implementations run behind it: the
//! in-memory [`LocalBroker`] (one node, the embedded default: a send is a direct fan-out into
//! local outboxes, no copy and no hop) and the Redis broker (many nodes acting as one hub:
//! pub/sub between nodes, presence with heartbeats, group history for reliable clients).

pub mod envelope;
pub mod history;
mod local;
pub mod redis;

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use history::{HistoryEntry, HistoryPage, HistoryPolicy};
pub use local::LocalBroker;

use crate::filter::Filter;
use crate::registry::{Connection, Delivery, FanOut, Hub, Membership, Registry};

/// Who a message is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// Every connection of the hub.
    All,
    /// Every connection of a user.
    User(String),
    /// One connection.
    Connection(String),
    /// Every member of a group.
    Group(String),
}

/// Which connections a command applies to.
pub type Selector = Target;

/// Connections left out of a send or close: excluded ids and an OData filter (its source, so
/// each node parses and evaluates it against its own connections).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// Connection ids left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<String>,
    /// A filter recipients must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
}

impl Scope {
    /// Whether nobody is left out.
    pub fn is_empty(&self) -> bool {
        self.excluded.is_empty() && self.filter.is_none()
    }

    /// A scope leaving out one connection (a client's `noEcho`).
    pub fn without(conn: &str) -> Self {
        Scope {
            excluded: vec![conn.to_string()],
            filter: None,
        }
    }

    /// The predicate local fan-out uses. A filter that no longer parses matches nobody.
    pub fn skipper(&self) -> impl Fn(&Connection) -> bool + '_ {
        let filter = self.filter.as_deref().map(Filter::parse);
        move |c: &Connection| {
            self.excluded.iter().any(|e| **e == *c.id)
                || match &filter {
                    None => false,
                    Some(Ok(f)) => !c.matches(f),
                    Some(Err(_)) => true,
                }
        }
    }
}

/// A registry operation another node runs on its own connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Close the selected connections (except `excluded`) with a reason.
    Close {
        /// Which connections.
        selector: Selector,
        /// Reason given to clients.
        reason: String,
        /// Connection ids spared.
        excluded: Vec<String>,
    },
    /// A connection joins a group.
    Join {
        /// Connection id.
        conn: String,
        /// Group.
        group: String,
    },
    /// A connection leaves a group (every group when `group` is `None`).
    Leave {
        /// Connection id.
        conn: String,
        /// Group, or all.
        group: Option<String>,
    },
    /// A user joins a group, now and for connections opened later.
    AddUser {
        /// User id.
        user: String,
        /// Group.
        group: String,
    },
    /// A user leaves a group (every group when `group` is `None`).
    RemoveUser {
        /// User id.
        user: String,
        /// Group, or all.
        group: Option<String>,
    },
    /// Every connection matching a filter joins (or leaves) every listed group.
    Filtered {
        /// OData filter source.
        filter: String,
        /// Groups.
        groups: Vec<String>,
        /// Join when true, leave when false.
        add: bool,
    },
    /// Grant (or revoke) a permission to a connection.
    Permission {
        /// Connection id.
        conn: String,
        /// `joinLeaveGroup` or `sendToGroup`.
        permission: String,
        /// A group, or all groups.
        target: Option<String>,
        /// Grant when true, revoke when false.
        grant: bool,
    },
    /// Another node resumes this reliable session: end it here without a goodbye.
    Takeover {
        /// Connection id.
        conn: String,
    },
}

/// A cluster-wide answer about who is connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Connection id.
    pub connection_id: String,
    /// User id, if any.
    pub user_id: Option<String>,
}

/// What a broker delivers into: this node's registry, and the node's own handling of the
/// commands other nodes send (which may notify upstream handlers). The node implements it;
/// the broker holds it weakly, since the node owns the broker.
pub trait Inbound: Send + Sync {
    /// The registry messages from other nodes are fanned out into.
    fn registry(&self) -> &Registry;
    /// Runs a command another node sent on this node's connections.
    fn run(&self, hub: &str, cmd: &Command);
}

/// The seam between this node's registry and the other nodes.
#[async_trait]
pub trait Broker: Membership {
    /// This node's id.
    fn node_id(&self) -> &str;

    /// Gives the broker the node it delivers into (called once, after the node exists).
    fn attach(&self, inbound: Weak<dyn Inbound>);

    /// Whether the broker can reach the other nodes (readiness).
    fn is_ready(&self) -> bool;

    /// Delivers a message to every recipient on every node, exactly once. `local` is this
    /// node's hub, when it exists.
    fn publish(
        &self,
        hub: &str,
        local: Option<&Arc<Hub>>,
        target: Target,
        scope: Scope,
        d: Arc<Delivery>,
    ) -> FanOut;

    /// Runs a command on the other nodes that may hold its connections (the caller runs it
    /// locally itself).
    fn command(&self, hub: &str, cmd: Command);

    /// Waits (briefly) until messages to `group` published from now on reach this node.
    async fn group_ready(&self, hub: &str, group: &str);

    /// Whether a connection is open on another node.
    async fn remote_connection(&self, hub: &str, id: &str) -> bool;

    /// Whether a user has a connection on another node.
    async fn remote_user(&self, hub: &str, user: &str) -> bool;

    /// Members of a group on other nodes.
    async fn remote_members(&self, hub: &str, group: &str) -> Vec<Member>;

    /// Every connection of a hub on other nodes (this node's may be among them).
    async fn remote_connections(&self, _hub: &str) -> Vec<Member> {
        Vec::new()
    }

    /// Every group of a hub with a member on another node (this node's may be among them).
    async fn remote_groups(&self, _hub: &str) -> Vec<String> {
        Vec::new()
    }

    /// The role strings of a connection open on another node.
    async fn remote_roles(&self, hub: &str, id: &str) -> Option<Vec<String>>;

    /// Groups a user was added to through any node (joined by the user's new connections).
    async fn user_groups(&self, _hub: &str, _user: &str) -> Vec<String> {
        Vec::new()
    }

    /// Shares this node's latest console sample (JSON) with the other nodes.
    fn share_stats(&self, _json: String) {}

    /// The latest console sample of every live node, this one included, by node id (empty
    /// for a single node).
    fn node_stats(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Up to `top` entries of a group's history after `after`, or the newest `top`: empty
    /// when the group keeps none, `None` when it cannot be read now (Redis out of reach).
    async fn history_page(
        &self,
        hub: &str,
        group: &str,
        after: Option<nerve_protocol::Offset>,
        top: usize,
    ) -> Option<HistoryPage>;

    /// The store of reliable sessions shared by the nodes, if there is one.
    fn sessions(&self) -> Option<&dyn SessionStore>;

    /// Waits (briefly) until queued work has reached the other nodes: the last step of a
    /// drain.
    async fn flush(&self) {}
}

/// A reliable session as another node needs it to resume: identity, permissions, groups, the
/// unacknowledged frames and where each group's history was read up to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Hub (lowercase).
    pub hub: String,
    /// User id.
    pub user: Option<String>,
    /// Role strings the connection was opened with.
    pub roles: Vec<String>,
    /// SHA-256 of the reconnection token, hex.
    pub token_hash: String,
    /// The node holding the session now, empty when released.
    pub node: String,
}

/// A session's state loaded for resumption.
#[derive(Debug, Clone, Default)]
pub struct Resumable {
    /// Identity and permissions.
    pub record: SessionRecord,
    /// Groups, each with the last history entry the session stamped (if any).
    pub groups: Vec<(String, Option<(u64, u64)>)>,
    /// Unacknowledged frames, oldest first, with their sequence ids.
    pub frames: Vec<(u64, String)>,
    /// The last sequence id the session stamped (the client may have seen it).
    pub last_sequence_id: u64,
    /// Per group, the latest message its node published that the session was given before
    /// the message reached the group's history (`registry::Published`: origin and number).
    /// Replaying the history, that node's messages up to the number are not sent again.
    pub published: Vec<(String, (u64, u64))>,
}

/// What a reliable session did since its last write to the store, written in one go.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Progress {
    /// How many of the oldest frames the client acknowledged.
    pub acked: usize,
    /// Frames stamped, with their sequence ids, before they reach the client.
    pub frames: Vec<(u64, String)>,
    /// Groups whose history position moved, and where to.
    pub positions: Vec<(Arc<str>, (u64, u64))>,
    /// Groups whose latest message from the session's node moved (origin, number).
    pub published: Vec<(Arc<str>, (u64, u64))>,
}

impl Progress {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.acked == 0
            && self.frames.is_empty()
            && self.positions.is_empty()
            && self.published.is_empty()
    }
}

/// Reliable sessions shared by the nodes.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Saves a new session's identity.
    async fn create(&self, conn: &str, record: &SessionRecord);
    /// Records what the session did: forgets acknowledged frames, keeps new ones before they
    /// are written to the client, and moves the groups' positions.
    async fn append(&self, conn: &str, progress: &Progress);
    /// Writes a session again, whole, after the store may have lost it (Redis came back
    /// empty, or this node was cut off from it), unless another node holds it now.
    async fn rewrite(&self, conn: &str, whole: &Resumable);
    /// Records that the session joined a group; its history is replayed from where it ends now.
    async fn joined(&self, hub: &str, conn: &str, group: &str);
    /// Records that the session left a group.
    async fn left(&self, conn: &str, group: &str);
    /// Loads a session and claims it for this node, taking it over from a live node if needed.
    async fn claim(&self, hub: &str, conn: &str, token: &str) -> Option<Resumable>;
    /// History entries of a group after `after`, oldest first, as deliveries with the scope
    /// they were sent with.
    async fn history(
        &self,
        hub: &str,
        group: &str,
        after: (u64, u64),
    ) -> Vec<(Arc<Delivery>, Scope)>;
    /// Lets another node claim the session (this node stops serving it).
    async fn release(&self, conn: &str);
    /// Deletes a session that is over.
    async fn remove(&self, conn: &str);
}

/// Fans a message out to this node's recipients.
pub fn deliver_local(hub: &Hub, target: &Target, scope: &Scope, d: &Arc<Delivery>) -> FanOut {
    let skip = scope.skipper();
    match target {
        Target::All => hub.send_to_all(d, skip),
        Target::User(u) => hub.send_to_user(u, d, skip),
        Target::Group(g) => hub.send_to_group(g, d, skip),
        Target::Connection(id) => {
            let mut out = FanOut::default();
            if let Some(c) = hub.connection(id)
                && !skip(&c)
                && c.push(d).is_ok()
            {
                out.delivered = 1;
            }
            out
        }
    }
}

/// SHA-256 of a reconnection token, hex, as sessions are stored.
pub fn token_hash(token: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(token.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}
