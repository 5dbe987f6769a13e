//! Redis key and channel names. Every key of one group (history, members, channel) shares a
//! hash tag, so a Redis Cluster keeps them in one slot and one script can touch them all.

/// Prefix of every key.
pub const PREFIX: &str = "nerve";

/// A group's history stream.
pub fn history(hub: &str, group: &str) -> String {
    format!("{PREFIX}:{{g:{hub}:{group}}}:h")
}

/// The newest entry id trimmed from a group's history (groups whose history clients read).
pub fn history_trimmed(hub: &str, group: &str) -> String {
    format!("{PREFIX}:{{g:{hub}:{group}}}:t")
}

/// A group's members on every node: connection id → `node\nuser`.
pub fn members(hub: &str, group: &str) -> String {
    format!("{PREFIX}:{{g:{hub}:{group}}}:m")
}

/// A group's channel.
pub fn group_channel(hub: &str, group: &str) -> String {
    format!("{PREFIX}:{{g:{hub}:{group}}}:ch")
}

/// Whether a channel name is a group's channel.
pub fn is_group_channel(channel: &[u8]) -> bool {
    channel.starts_with(format!("{PREFIX}:{{g:").as_bytes())
}

/// A hub's connections on every node: connection id → `node\nuser`.
pub fn connections(hub: &str) -> String {
    format!("{PREFIX}:{{c:{hub}}}:conns")
}

/// A hub's groups with members on every node: `group\nnode#epoch` → `node#epoch`.
pub fn groups(hub: &str) -> String {
    format!("{PREFIX}:{{c:{hub}}}:groups")
}

/// A user's connections: connection id → node.
pub fn user(hub: &str, user: &str) -> String {
    format!("{PREFIX}:{{u:{hub}:{user}}}:c")
}

/// Groups a user was added to, for connections the user opens later on any node.
pub fn user_groups(hub: &str, user: &str) -> String {
    format!("{PREFIX}:{{u:{hub}:{user}}}:g")
}

/// Live nodes: member `node#epoch`, score the last heartbeat in milliseconds.
pub fn nodes() -> String {
    format!("{PREFIX}:{{nodes}}")
}

/// The channel every node listens on (hub-wide sends and commands).
pub fn broadcast_channel() -> String {
    format!("{PREFIX}:{{all}}:ch")
}

/// The channel of one node (sends and commands for its connections).
pub fn node_channel(node: &str) -> String {
    format!("{PREFIX}:{{n:{node}}}:ch")
}

/// A reliable session's record (hash).
pub fn session(conn: &str) -> String {
    format!("{PREFIX}:{{s:{conn}}}:meta")
}

/// A reliable session's unacknowledged frames (list of `seq\nframe`).
pub fn session_frames(conn: &str) -> String {
    format!("{PREFIX}:{{s:{conn}}}:buf")
}

/// Every reliable session a node holds: connection id → `node#epoch\nhub\nuser`. Beside the
/// node heartbeats (one slot), so one script finds the sessions of dead nodes.
pub fn held_sessions() -> String {
    format!("{PREFIX}:{{nodes}}:sessions")
}

/// Reliable sessions no node holds (their node died or released them) and not resumed yet:
/// connection id → `node#epoch\nhub\nuser\nsince-ms`.
pub fn detached_sessions() -> String {
    format!("{PREFIX}:{{nodes}}:detached")
}

/// The latest number of each node's messages on each node or broadcast channel, written
/// with its heartbeats: `node\nchannel` → `origin.number`.
pub fn numbers() -> String {
    format!("{PREFIX}:{{nodes}}:numbers")
}

/// Every node's latest console sample: `node#epoch` → JSON, read by the other nodes' consoles.
pub fn node_stats() -> String {
    format!("{PREFIX}:{{nodes}}:stats")
}
