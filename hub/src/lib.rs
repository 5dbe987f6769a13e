//! Nerve hub: a real-time WebSocket pub/sub hub, wire-compatible with Azure Web PubSub.
//!
//! The modules stand in layers and depend only downwards (`ARCHITECTURE.md` beside this
//! crate draws them, with the path of one message):
//!
//! ```text
//! http                 routes, serving, the client handshake, the REST API, errors → responses
//! session   bus        one task per connection (and `session::open`, the one way one starts);
//!                      the agent bus bridge and the A2A gateway
//! node                 the node's shared state and `ops`, the one home of every registry operation
//! cluster              Broker, SessionStore and the Inbound callback; in-memory and Redis engines
//! registry             hubs, connections, users, groups, encode-once fan-out into outboxes
//! leaves               auth, config, filter, limits, livetrace, metrics, names, socket,
//!                      telemetry, tls, upstream
//! ```
//!
//! Only what the `nerve` binary, the fuzz targets and the tests need is public.
//!
//! The wire format (frames, codecs, close codes) is the `nerve_protocol` crate, below them all.

pub mod auth;
mod bus;
mod cluster;
pub mod config;
pub mod filter;
mod http;
mod limits;
mod livetrace;
mod metrics;
mod names;
mod node;
mod registry;
mod session;
mod socket;
pub mod telemetry;
mod tls;
mod upstream;

pub use config::Config;
pub use http::serve;
pub use node::Node;
