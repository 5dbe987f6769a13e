//! The hub ↔ bus bridge: the one place that knows both the hub and the agent bus.
//!
//! The hub runs the bus in-process (memory, or Redis Streams shared with other nodes and agent
//! processes). Every recorded bus event is published into groups of the bus hub (`task.<id>`,
//! `context.<id>`, `correlation.<id>`, `agent.<id>`) so browsers watch chains live with the
//! ordinary hub protocol; `bus.history` gives them a cursor-based catch-up after a reconnect.
//! Agents that cannot reach Redis use the bus over `/bus/ws` (see `docs/agent-protocol.md`),
//! and pages call the same operations over `POST /bus/api/{op}`.

pub mod a2a;
pub(crate) mod demo;
mod grants;
mod history;
mod inspect;
mod levels;
mod ops;
mod remote;

mod ws;

use crate::config::bus::{BusSettings, BusTransport};
pub use demo::demo_refusal;
pub use grants::{Grants, Verb, verify as grants_of};
pub use ops::OpError;

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use axum::Router as HttpRouter;
use axum::routing::{any, post};
use nerve_agentbus::{Bus, BusConfig, Envelope};
use nerve_protocol::bus::Push;
use nerve_protocol::{Payload, Sender};
use parking_lot::Mutex;
use tokio::sync::OnceCell;
use tokio::sync::broadcast::error::RecvError;

use crate::node::Node;
use crate::registry::Delivery;

/// How many group names the bridge remembers for resync notices after the live feed lagged.
const RECENT_GROUPS: usize = 4096;
/// Delay between attempts to reach the bus's Redis at startup.
const CONNECT_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// The running bridge: the bus and the hub it publishes into.
pub struct Bridge {
    /// The hub's state.
    pub app: Arc<Node>,
    /// The in-process bus.
    pub bus: Bus,
    recent: Mutex<RecentGroups>,
}

/// Group names published to lately, oldest first, with a set for cheap membership checks.
#[derive(Default)]
struct RecentGroups {
    order: VecDeque<String>,
    names: HashSet<String>,
}

impl RecentGroups {
    fn touch(&mut self, group: &str) {
        if self.names.contains(group) {
            return;
        }
        if self.order.len() >= RECENT_GROUPS
            && let Some(old) = self.order.pop_front()
        {
            self.names.remove(&old);
        }
        self.order.push_back(group.to_string());
        self.names.insert(group.to_string());
    }
}

/// The bridge once its bus is up (a Redis bus connects in the background).
#[derive(Clone)]
pub struct BridgeCell {
    /// The hub's state.
    pub app: Arc<Node>,
    cell: Arc<OnceCell<Arc<Bridge>>>,
}

impl BridgeCell {
    /// The bridge, or `OpError::Unavailable` while the bus is still connecting.
    pub fn get(&self) -> Result<Arc<Bridge>, OpError> {
        self.cell
            .get()
            .cloned()
            .ok_or_else(|| OpError::Unavailable("the agent bus is still connecting".into()))
    }
}

fn bus_config(settings: &BusSettings) -> BusConfig {
    if settings.fast {
        BusConfig::fast()
    } else {
        BusConfig::default()
    }
}

/// Starts the bus and the bridge in the background; the returned cell fills once it is up.
pub fn start(app: Arc<Node>) -> BridgeCell {
    let cell = BridgeCell {
        app: app.clone(),
        cell: Arc::new(OnceCell::new()),
    };
    let settings = app.config.bus.clone();
    if settings.transport == BusTransport::Memory {
        let bridge = Bridge::new(app, Bus::memory(bus_config(&settings)));
        let _ = cell.cell.set(bridge.clone());
        a2a::webhook::start(bridge.clone());
        tokio::spawn(bridge.fan_out());
        return cell;
    }
    let url = settings
        .redis_url
        .clone()
        .or_else(|| app.config.redis_urls.first().cloned())
        .unwrap_or_else(|| "redis://127.0.0.1:6379/".into());
    let c = cell.clone();
    tokio::spawn(async move {
        loop {
            match Bus::redis(&url, bus_config(&settings)).await {
                Ok(bus) => {
                    let bridge = Bridge::new(c.app.clone(), bus);
                    let _ = c.cell.set(bridge.clone());
                    a2a::webhook::start(bridge.clone());
                    bridge.fan_out().await;
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "agent bus: cannot reach Redis; retrying"),
            }
            tokio::select! {
                _ = c.app.shutdown.cancelled() => return,
                _ = tokio::time::sleep(CONNECT_RETRY) => {}
            }
        }
    });
    cell
}

/// The bridge's HTTP routes: the agent WebSocket, the operations API, the A2A gateway and the
/// demo pages.
pub fn routes(app: Arc<Node>) -> HttpRouter<Arc<Node>> {
    let cell = start(app);
    HttpRouter::new()
        .route("/bus/ws", any(ws::upgrade))
        .route("/bus/api/{op}", post(ops::http))
        .merge(a2a::routes())
        .merge(demo::routes())
        .with_state(cell)
}

impl Bridge {
    fn new(app: Arc<Node>, bus: Bus) -> Arc<Self> {
        tokio::spawn(levels::mirror(bus.clone(), app.shutdown.clone()));
        Arc::new(Bridge {
            app,
            bus,
            recent: Mutex::new(RecentGroups::default()),
        })
    }

    /// The hub groups an event belongs to.
    pub fn groups_of(env: &Envelope) -> Vec<String> {
        let mut out = Vec::with_capacity(4);
        if let Some(t) = &env.taskid {
            out.push(format!("task.{t}"));
        }
        if let Some(c) = &env.contextid {
            out.push(format!("context.{c}"));
        }
        if let Some(c) = &env.correlationid
            && !c.starts_with("context:")
        {
            out.push(format!("correlation.{c}"));
        }
        if let Some(a) = env.source.strip_prefix("agent://") {
            out.push(format!("agent.{a}"));
        }
        out
    }

    /// Publishes every recorded bus event into its hub groups until the hub shuts down.
    async fn fan_out(self: Arc<Self>) {
        let mut live = self.bus.transport().live();
        let shutdown = self.app.shutdown.clone();
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                n = live.recv() => n,
            };
            match next {
                Ok(env) => self.publish(&env),
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "bus bridge lagged; asking watchers to resync");
                    self.resync();
                }
                Err(RecvError::Closed) => return,
            }
        }
    }

    fn publish(&self, env: &Envelope) {
        let event = Push::Event {
            group: None,
            cursor: env.id.clone(),
            envelope: serde_json::to_value(env).unwrap_or_default(),
        };
        let Ok(body) = Payload::json_of(&event) else {
            return;
        };
        let Some(hub) = self.app.registry.hub(&self.app.config.bus.hub) else {
            return;
        };
        for group in Self::groups_of(env) {
            self.send(&hub, &group, &body);
            self.recent.lock().touch(&group);
        }
    }

    fn send(&self, hub: &crate::registry::Hub, group: &str, body: &Payload) {
        let d: Arc<Delivery> = Delivery::new(Sender::group(group, None), body.clone());
        hub.send_to_group(group, &d, |_| false);
    }

    /// Tells watchers of every recently active group to catch up with `bus.history`.
    fn resync(&self) {
        let Some(hub) = self.app.registry.hub(&self.app.config.bus.hub) else {
            return;
        };
        let groups: Vec<String> = self.recent.lock().order.iter().cloned().collect();
        let Ok(body) = Payload::json_of(&Push::Resync) else {
            return;
        };
        for g in groups {
            self.send(&hub, &g, &body);
        }
    }
}
