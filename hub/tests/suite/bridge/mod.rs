//! The agent bridge: agents and browsers on the bus through the hub's sockets and groups, the
//! bus shared by two hubs over Redis, and the demo pages.

mod agents;
mod demo;
mod inspect;
mod redis;
mod watch;

use serde_json::Value;

/// The task state in a group message carrying a bus status update, if it is one.
fn task_state(msg: &Value) -> Option<&str> {
    msg["data"]["envelope"]["data"]["statusUpdate"]["status"]["state"].as_str()
}
