//! The hub's end-to-end suite: every test starts the real `nerve` binary on a free port and
//! speaks to it as users do, over WebSocket, REST, webhooks and the agent bus. One binary holds
//! every area, so the suite links once and shares one harness. [`layers`] alone reads the
//! source instead: it keeps the hub's modules in their layers.

mod harness;

mod a2a;
mod a2a_push;
mod bridge;
mod console;
mod first_steps;
mod history;
mod layers;
mod limits;
mod metadata;
mod mqtt;
mod otel;
mod presence_events;
mod rest;
mod security;
mod soak;
mod upstream;
mod ws;
