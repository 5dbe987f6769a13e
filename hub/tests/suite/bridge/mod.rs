//! The agent bridge: agents and browsers on the bus through the hub's sockets and groups, the
//! bus shared by two hubs over Redis, and the demo pages.

mod agents;
mod demo;
mod redis;
mod watch;
