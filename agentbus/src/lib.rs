//! Nerve agent bus: correlation-tracked task and context events between agents, with the
//! delivery guarantees of a message broker (leases, retries, dead letters, dedupe, scheduling,
//! per-key order) on an in-memory transport or on Redis Streams.
//!
//! Start with [`Bus`] (submit tasks, wait, cancel, share context, request/reply) and [`Agent`]
//! (serve a capability). The [`transport::Transport`] trait is the seam between the bus logic
//! and its storage engine.

#![warn(missing_docs)]

pub use nerve_protocol::a2a;
mod agent;
mod bus;
pub mod clock;
pub mod config;
mod consumer;
pub mod correlation;
pub mod envelope;
mod error;
mod handler;
pub mod load;
mod rpc;
mod stats;
mod submit;
pub mod task;
pub mod telemetry;
pub mod trace;
pub mod transport;
mod waiters;
mod watch;
mod worker;

pub use a2a::{AgentCard, AgentSkill, Artifact, Message, Part, StreamResponse, TaskState};
pub use agent::{Agent, AgentBuilder, AgentHandle, MAX_DELIVERY_COUNT_EXCEEDED, TTL_EXPIRED};
pub use bus::Bus;
pub use config::BusConfig;
pub use correlation::{CorrelationTree, EventSummary, TaskNode};
pub use envelope::{Envelope, EnvelopeError};
pub use error::{BusError, RpcError};
pub use handler::{HandlerError, TaskContext, TaskResult};
pub use rpc::Request;
pub use stats::{BusStats, BusStatsSnapshot};
pub use submit::{DEAD_LETTERED, SubmitRequest, TaskHandle};
pub use task::{Lifecycle, TaskEvent, TaskRecord};
pub use transport::{DeadLetter, EnqueueOutcome, Partition, QueueLevels, SharedContext, Transport};
pub use watch::TaskUpdates;
pub use worker::{Settle, WorkerHandle};
