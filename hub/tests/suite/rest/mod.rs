//! The data-plane REST API as the server SDKs call it: sends, membership, management, errors,
//! and calls that cross nodes sharing one Redis.

mod api;
mod cluster;
mod errors;
mod manage;
