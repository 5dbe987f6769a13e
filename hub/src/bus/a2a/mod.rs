//! The A2A gateway: A2A v1.0 JSON-RPC on `POST /a2a` and the agent card at
//! `/.well-known/agent-card.json`, mapped onto bus tasks, so any A2A client can use the agents
//! on the bus. A message becomes a task for a capability (`metadata.capability` or
//! `metadata.skill`, else `[bus] a2a_capability`, else the only capability agents serve).
//! Task updates reach webhooks as A2A push notifications (`push.rs` for the settings,
//! `webhook.rs` for delivery).

mod card;
mod push;
mod rpc;
mod stream;
pub mod webhook;

use axum::Router as HttpRouter;
use axum::routing::{get, post};

use crate::bus::BridgeCell;

/// JSON-RPC error codes of A2A v1.0 and JSON-RPC 2.0.
pub mod codes {
    /// The body is not JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// Not a JSON-RPC request.
    pub const INVALID_REQUEST: i64 = -32600;
    /// Unknown method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Bad parameters.
    pub const INVALID_PARAMS: i64 = -32602;
    /// Server-side failure.
    pub const INTERNAL: i64 = -32603;
    /// No such task.
    pub const TASK_NOT_FOUND: i64 = -32001;
    /// The task is terminal.
    pub const TASK_NOT_CANCELABLE: i64 = -32002;
    /// The operation is not possible (e.g. a message to a finished task).
    pub const UNSUPPORTED_OPERATION: i64 = -32004;
    /// No extended card is configured.
    pub const EXTENDED_CARD_NOT_CONFIGURED: i64 = -32007;
}

/// The gateway's routes.
pub fn routes() -> HttpRouter<BridgeCell> {
    HttpRouter::new()
        .route("/a2a", post(rpc::handle))
        .route("/.well-known/agent-card.json", get(card::agent_card))
        .route("/.well-known/agent.json", get(card::agent_card))
}
