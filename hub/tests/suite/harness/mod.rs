//! The one harness of the suite: the real `nerve` binary on a free port ([`Hub`]), a WebSocket
//! client that speaks the JSON protocols frame by frame ([`Client`]), a REST caller that signs
//! as the server SDKs do ([`Rest`]), a recording webhook ([`Upstream`]), a client of the agent
//! bus ([`BusClient`]) and readers of `/metrics`.

mod bus;
mod client;
mod hub;
mod metrics;
mod rest;
mod server;
mod temp;
mod upstream;

use std::time::Duration;

pub use bus::{BusClient, FAST_BUS, card, post};
pub use client::{Client, refused};
pub use hub::{Hub, config_check, run_nerve};
pub use metrics::{http_get, http_get_as, labelled, metric, violations};
pub use rest::Rest;
pub use server::Server;
pub use temp::TempFile;
pub use upstream::{Seen, Upstream, handler_toml, handler_toml_at};

/// The reliable JSON subprotocol.
pub const RELIABLE: &str = "json.reliable.webpubsub.azure.v1";
/// The plain JSON subprotocol.
pub const JSON: &str = "json.webpubsub.azure.v1";
/// Roles that allow joining and publishing anywhere.
pub const ALL_ROLES: &[&str] = &["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"];
/// How long a test waits for any single expected frame or condition.
pub const WAIT: Duration = Duration::from_secs(10);
