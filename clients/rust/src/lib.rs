//! Nerve client for Rust: a hub client for the Azure Web PubSub JSON subprotocols (acks,
//! exactly-once recovery after a dropped socket, rejoin on a new connection) and the agent
//! SDK for the hub's bus socket (`hub/docs/agent-protocol.md`). It depends on the wire
//! protocols only.
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
pub mod frames;
mod hub;
mod session;
mod task;
mod ws;

pub use agent::{Agent, AgentCard, AgentHandle, Artifact, Skill, TaskContext, TaskError};
pub use bus::{BusClient, Until};
pub use error::{ClientError, Result};
pub use frames::{JSON, Message, Payload, RELIABLE};
pub use hub::{HubClient, HubEvent, HubEvents, HubOptions, HubStats};
pub use task::{Push, Submit, Submitted, TERMINAL_STATES, TaskPush, TaskRecord, message_text};
pub use ws::bus_url;
