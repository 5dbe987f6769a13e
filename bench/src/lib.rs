//! Nerve's benchmark harness as a library: the load-generator client that speaks Nerve's Azure
//! protocol, Socket.IO and raw frames with one code path, the raw-limit server, latency
//! statistics, and the control protocol between the runner and its load-generator processes.
//! The runner itself lives in the `nerve-bench` binary.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod client;
pub mod control;
pub mod dialect;
pub mod loadgen;
pub mod payload;
pub mod rawserver;
pub mod stats;
pub mod token;
