//! The one path from an answered handshake, or a reliable client coming back, to a running
//! session: a place in the connection budget, registration in the registry, the groups the
//! connection opens with, upstream registration, the connection metrics, and the session
//! until it ends. A client that reconnects gets its detached session back on this node, or
//! the session another node (or a node that died) served, loaded from the cluster's store.

use std::sync::Arc;

use nerve_protocol::{Subprotocol, close};
use tracing::debug;

use super::{Session, SimpleMode};
use crate::limits::{Admission, LimitKind};
use crate::livetrace::{Kind, TraceEvent};
use crate::metrics;
use crate::node::{Announce, Node};
use crate::registry::{Connection, ConnectionReceivers, ConnectionSpec, Hub, Roles};
use crate::socket::Socket;
use crate::upstream::Notice;

/// A connection the handshake accepted, about to open.
pub struct Opening {
    /// Identity, protocol, permissions and outbox bounds.
    pub spec: ConnectionSpec,
    /// Groups from the token and the connect handler.
    pub groups: Vec<String>,
    /// The subprotocol the upstream handlers are told about.
    pub subprotocol: Option<String>,
    /// Connection state a connect handler set.
    pub state: Option<String>,
    /// How a simple client's frames are handled.
    pub simple_mode: SimpleMode,
    /// The connection's place in the budget, held until the session ends.
    pub admission: Admission,
}

/// Takes a place in the node's connection budget (per node and per user).
pub fn admit(node: &Node, user: Option<&str>) -> Result<Admission, LimitKind> {
    node.budget.admit(user.filter(|u| !u.is_empty()))
}

/// Runs a new connection's session on its socket.
pub async fn open(node: Arc<Node>, opening: Opening, socket: Socket) {
    let Opening {
        spec,
        groups,
        subprotocol,
        state,
        simple_mode,
        admission,
    } = opening;
    let hub = node.registry.hub_or_create(&spec.hub);
    let (conn, rx) = register(&node, &hub, spec, groups, subprotocol, state).await;
    node.announce(&conn, Notice::Connected);
    let session = Session::new(node.clone(), hub, conn, rx, simple_mode);
    node.tasks.track_future(session.run(socket)).await;
    drop(admission);
}

/// A reliable client reconnecting with its connection id and reconnection token: the session
/// continues on `socket`, or the client is told it must connect afresh.
///
/// A session continues only in the subprotocol it was opened with. The cluster's store keeps a
/// session's unacknowledged frames as JSON, so only JSON sessions move between nodes; a
/// protobuf session resumes on the node that holds it.
pub async fn reconnect(
    node: Arc<Node>,
    hub: &str,
    conn_id: &str,
    token: &str,
    protocol: Subprotocol,
    socket: Socket,
) {
    let here = node
        .registry
        .hub(hub)
        .and_then(|h| h.connection(conn_id))
        .filter(|c| {
            c.protocol == protocol
                && c.reconnection_token
                    .as_deref()
                    .is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes()))
        });
    let refused = match here {
        // The detached session still holds its place in the budget.
        Some(c) => c.reattach(Box::new(socket)).err().map(|s| s.map(|s| *s)),
        None if protocol == Subprotocol::JsonReliable => resume(node, hub, conn_id, token, socket)
            .await
            .err()
            .map(Some),
        None => Some(Some(socket)),
    };
    if let Some(Some(mut socket)) = refused {
        debug!(%conn_id, "reconnection refused: unknown or expired session");
        let reason =
            "The session is gone (unknown connection, wrong token or expired); connect again";
        // Only reliable clients reconnect; the goodbye is in the protocol they asked for.
        let codec = if protocol.is_reliable() {
            protocol.codec()
        } else {
            Subprotocol::JsonReliable.codec()
        };
        super::say_goodbye(
            &mut socket,
            codec,
            reason,
            close::NO_RECOVERY,
            "session not found",
        )
        .await;
    }
}

/// Resumes a session this node does not hold from the cluster's store (taking it over from
/// its node if that node still lives); gives the socket back when there is no such session.
async fn resume(
    node: Arc<Node>,
    hub: &str,
    conn_id: &str,
    token: &str,
    mut socket: Socket,
) -> Result<(), Socket> {
    let Some(store) = node.broker.sessions() else {
        return Err(socket);
    };
    let Some(saved) = store.claim(hub, conn_id, token).await else {
        return Err(socket);
    };
    let admission = match admit(&node, saved.record.user.as_deref()) {
        Ok(a) => a,
        Err(kind) => {
            kind.count();
            // The session stays in the store for a node with room.
            store.release(conn_id).await;
            let reason = "This node is at its connection limit; reconnect to another node";
            let codec = Subprotocol::JsonReliable.codec();
            super::say_goodbye(&mut socket, codec, reason, close::TRY_AGAIN_LATER, reason).await;
            return Ok(());
        }
    };
    let limits = &node.config.limits;
    let spec = ConnectionSpec {
        id: Arc::from(conn_id),
        hub: Arc::from(hub),
        user_id: saved.record.user.as_deref().map(Arc::from),
        protocol: Subprotocol::JsonReliable,
        roles: Roles::from_claims(&saved.record.roles),
        reconnection_token: Some(token.into()),
        max_queued_messages: limits.outbox_messages,
        max_queued_bytes: limits.outbox_bytes,
    };
    let h = node.registry.hub_or_create(hub);
    let groups = saved.groups.iter().map(|(g, _)| g.clone()).collect();
    // The connection's upstream state (from a connect handler) stays with its first node.
    let protocol = Subprotocol::JsonReliable.name().map(str::to_string);
    let (conn, rx) = register(&node, &h, spec, groups, protocol, None).await;
    // Subscribed first (in `register`), then read the history: nothing falls between the two.
    let mut history = Vec::new();
    for (g, pos) in &saved.groups {
        if let Some(p) = pos {
            history.extend(store.history(hub, g, *p).await);
        }
    }
    debug!(
        conn = conn_id,
        frames = saved.frames.len(),
        replay = history.len(),
        "resuming a session from the cluster"
    );
    metrics::global().reconnections.inc();
    let mut session = Session::new(node.clone(), h, conn, rx, SimpleMode::SendEvent);
    if session.resume(saved, history).is_err() {
        debug!(
            conn = conn_id,
            "too much to replay; the client must reconnect afresh"
        );
    }
    node.tasks.track_future(session.run(socket)).await;
    drop(admission);
    Ok(())
}

/// Puts a connection in the registry with its groups (and its user's), subscribed across the
/// cluster before it returns, and registers it with the upstream handlers.
pub(super) async fn register(
    node: &Node,
    hub: &Arc<Hub>,
    spec: ConnectionSpec,
    mut groups: Vec<String>,
    subprotocol: Option<String>,
    state: Option<String>,
) -> (Arc<Connection>, ConnectionReceivers) {
    let (conn, rx) = Connection::new(spec);
    hub.add_connection(&conn);
    node.trace.emit(|| {
        TraceEvent::new(Kind::Connect, &hub.name)
            .of(&conn.id, conn.user_id.as_deref())
            .detail(conn.protocol.name().unwrap_or("websocket"))
    });
    if let Some(user) = &conn.user_id {
        groups.extend(hub.user_groups(user).iter().map(|g| g.to_string()));
        // Groups the user was added to through other nodes, before this node knew it.
        groups.extend(node.broker.user_groups(&hub.name, user).await);
    }
    for g in &groups {
        if let Err(refused) = node.join(hub, &conn, g, Announce::No) {
            debug!(group = %g, "{refused}");
            continue;
        }
        node.broker.group_ready(&hub.name, g).await;
    }
    node.upstream
        .register(&conn.event_context(), subprotocol, state);
    let m = metrics::global();
    m.connections.inc();
    m.connections_opened.inc();
    (conn, rx)
}

/// Compares secrets in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn tokens_compare_in_constant_time() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
