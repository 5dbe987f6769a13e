//! The data-plane REST API as the server SDKs call it: sends, membership, management, errors,
//! and calls that cross nodes sharing one Redis.

mod api;
mod cluster;
mod errors;
mod manage;

use crate::harness::Hub;

/// A hub with one known key, as the single-node REST tests use.
fn hub() -> Hub {
    Hub::start_with(&["rest-test-primary-key"], "", &[])
}
