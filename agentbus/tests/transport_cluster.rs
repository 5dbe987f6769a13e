//! The shared transport suite on a three-node Redis Cluster: every script must stay in one
//! slot (hash-tagged keys), or these tests fail with CROSSSLOT.

mod common;
mod suite;

use common::ClusterHarness;

transport_suite!(ClusterHarness::new());
