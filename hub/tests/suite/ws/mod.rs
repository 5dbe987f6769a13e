//! Client connections over WebSocket: the JSON and reliable subprotocols, simple clients, and
//! what bad input from one client does (and does not do) to everyone else.

mod bad_input;
mod protocol;
mod reliable;
mod simple;
