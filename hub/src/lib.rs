//! Nerve hub: a real-time WebSocket pub/sub hub, wire-compatible with Azure Web PubSub.
//!
//! The data flow: [`transport`] accepts a WebSocket (token, subprotocol, reconnection), a
//! [`session`] runs per connection, the [`router`] holds every hub's connections, users and
//! groups and fans messages out into per-connection outboxes. The wire format is the
//! `nerve_protocol` crate (frames, codecs, close codes); [`server`] wires the HTTP routes
//! together.

pub mod auth;
pub mod bus;
pub mod cluster;
pub mod config;
pub mod filter;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod names;
pub mod node;
pub mod registry;

pub mod session;
pub mod socket;
pub mod telemetry;
pub mod tls;
pub mod upstream;

pub use config::Config;
pub use http::serve;
pub use node::Node;
