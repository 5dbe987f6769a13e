//! The HTTP edge: routes, serving, the WebSocket handshake, the REST API and how errors
//! become responses.

pub mod error;
pub mod upgrade;
