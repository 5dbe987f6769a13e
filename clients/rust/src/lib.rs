//! Nerve client for Rust: a hub client for the Azure Web PubSub JSON subprotocols (acks,
//! exactly-once recovery after a dropped socket, rejoin on a new connection, from the last
//! offset seen when the hub keeps the group's history) and the agent
//! SDK for the hub's bus socket (`hub/docs/agent-protocol.md`). It depends on the wire
//! protocols only: the frames, codecs and shared types come from `nerve-protocol`.
//!
//! ```no_run
//! # async fn demo(url: &str) -> nerve_client::Result<()> {
//! use nerve_client::{HubClient, HubOptions, Payload};
//! let (client, mut events) = HubClient::connect(url, HubOptions::default()).await?;
//! client.join_group("room").await?;
//! client.send_to_group("room", Payload::Text("hi".into()), false).await?;
//! let message = events.next_message().await;
//! # Ok(()) }
//! ```

mod agent;
mod bus;
mod error;
mod hub;
mod session;
mod task;
mod tokens;
mod ws;

pub use agent::{Agent, AgentHandle, Artifact, TaskContext, TaskError};
pub use bus::{BusClient, Until};
pub use error::{ClientError, Result};
pub use hub::{HubClient, HubEvent, HubEvents, HubOptions, HubStats, Message, Payload};
pub use nerve_protocol::Offset;
pub use nerve_protocol::a2a::{AgentCard, AgentSkill as Skill, TaskState};
pub use nerve_protocol::bus::{Push, Submitted, TaskPush, TaskRecord, message_text};
pub use nerve_protocol::subprotocol::{JSON, JSON_RELIABLE as RELIABLE};
pub use task::Submit;
pub use tokens::{
    CONNECTION_STRING_ENV, ClientProtocol, ClientToken, ConnectionString,
    connection_string_from_env, rest_token,
};
pub use ws::bus_url;
