//! Upstream event handlers: the hub calling a real HTTP or HTTPS webhook with CloudEvents, and
//! how it behaves when that webhook hangs, fails or refuses.

mod events;
mod failures;
mod tls;
