//! The shared transport suite on the in-memory transport.

mod common;
mod suite;

use common::MemoryHarness;

transport_suite!(MemoryHarness::new());
