//! A reliable client reconnecting to a node that does not hold its session: the session is
//! loaded from the cluster's store (taken over from its node if that node still lives), its
//! groups are joined here, and what the client missed is replayed from group history.

use std::sync::Arc;

use crate::socket::Socket;
use tracing::debug;

use crate::protocol::Subprotocol;
use crate::registry::{Connection, ConnectionSpec, Roles};
use crate::server::AppState;
use crate::session::{Session, SimpleMode};

/// Resumes session `conn_id` on this node; gives the socket back when there is no such
/// session (or the token does not match).
pub async fn resume(
    app: Arc<AppState>,
    hub: &str,
    conn_id: &str,
    token: &str,
    socket: Socket,
) -> Result<(), Socket> {
    let Some(store) = app.broker.sessions() else {
        return Err(socket);
    };
    let Some(saved) = store.claim(hub, conn_id, token).await else {
        return Err(socket);
    };
    let limits = &app.config.limits;
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
    let h = app.router.hub_or_create(hub);
    let (conn, rx) = Connection::new(spec);
    h.add_connection(&conn);
    // The connection's upstream state (from a connect handler) stays with its first node.
    let protocol = Subprotocol::JsonReliable.name().map(str::to_string);
    app.upstream.register(&conn.event_context(), protocol, None);
    let mut positions = Vec::new();
    for (g, pos) in &saved.groups {
        h.join(&conn, g);
        app.broker.group_ready(hub, g).await;
        if let Some(p) = pos {
            positions.push((Arc::<str>::from(g.as_str()), *p));
        }
    }
    // Subscribed first, then read the history: nothing falls between the two.
    let mut history = Vec::new();
    for (g, p) in &positions {
        history.extend(store.history(hub, g, *p).await);
    }
    debug!(
        conn = conn_id,
        frames = saved.frames.len(),
        replay = history.len(),
        "resuming a session from the cluster"
    );
    crate::metrics::global().connections.inc();
    let mut session = Session::new(app.clone(), h, conn, rx, SimpleMode::SendEvent);
    if session
        .resume(saved.frames, saved.last_sequence_id, positions, history)
        .is_err()
    {
        debug!(
            conn = conn_id,
            "too much to replay; the client must reconnect afresh"
        );
    }
    app.tasks.track_future(session.run(socket)).await;
    Ok(())
}
