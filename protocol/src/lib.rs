//! Nerve's wire protocols, in one place and as pure code (no I/O, no runtime).
//!
//! The hub, the Rust client, the load generator and the agent bus all speak the same bytes:
//! the Azure Web PubSub client protocols, the agent socket that carries the bus over them, and
//! the A2A shapes of tasks and messages. Written once here, a frame cannot mean one thing to the
//! hub and another to a client, and every parser of network input can be unit-tested and fuzzed
//! alone.
//!
//! - [`client_frame`] and [`server_frame`]: the frames in each direction, typed.
//! - [`codec`]: the [`Codec`] seam a session speaks through, with the JSON, reliable JSON and raw
//!   (simple client) encodings; [`subprotocol`] picks one from a handshake.
//! - [`payload`]: message data, validated once and shared as bytes; [`metadata`]: the string
//!   pairs a message may carry.
//! - [`close`]: the one table of close codes and error names.
//! - [`bus`] and [`a2a`]: what the agent socket carries, and the A2A v1.0 shapes.
//! - [`access`]: connection strings and the client endpoints tokens are for.

#![warn(missing_docs)]

pub mod a2a;
pub mod access;
pub mod bus;
pub mod client_frame;
pub mod close;
pub mod codec;
pub mod id;
pub mod metadata;
pub mod offset;
pub mod payload;
pub mod server_frame;
pub mod subprotocol;

pub use client_frame::{ClientFrame, FrameError};
pub use close::ErrorName;
pub use codec::json::{ServerFrameError, parse_client_frame};
pub use codec::{Codec, DecodeError, Encoding, Frame, FrameRef, Request};
pub use metadata::{Metadata, MetadataError};
pub use offset::{Offset, OffsetError};
pub use payload::{Data, DataType, Payload, PayloadError};
pub use server_frame::{ErrorBody, MessageFrame, Sender, ServerFrame};
pub use subprotocol::Subprotocol;
