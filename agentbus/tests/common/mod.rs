//! Test harnesses: each gives fresh `Bus` handles on one backend (in-memory or a real
//! `redis-server` started for the test), so the shared suite runs unchanged on both.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nerve_agentbus::transport::MemoryTransport;
use nerve_agentbus::{
    Agent, AgentCard, AgentHandle, AgentSkill, Bus, BusConfig, Envelope, Message, TaskHandle,
    TaskState,
};
use nerve_testkit::eventually;
use nerve_testkit::{RedisCluster, RedisServer};

/// A backend that hands out bus handles sharing one store.
pub trait Harness: Send + Sync {
    /// A new handle (for Redis: a new connection, like another process would have).
    fn bus(&self, config: BusConfig) -> impl std::future::Future<Output = Bus> + Send;
}

/// In-memory backend: every handle shares one `MemoryTransport`.
pub struct MemoryHarness {
    transport: MemoryTransport,
}

impl MemoryHarness {
    pub fn new() -> Self {
        MemoryHarness {
            transport: MemoryTransport::default(),
        }
    }
}

impl Harness for MemoryHarness {
    async fn bus(&self, config: BusConfig) -> Bus {
        Bus::new(Arc::new(self.transport.clone()), config)
    }
}

/// Redis backend: a real `redis-server` on a free port, killed when the harness drops.
pub struct RedisHarness {
    pub server: RedisServer,
}

impl RedisHarness {
    pub fn new() -> Self {
        RedisHarness {
            server: RedisServer::start(),
        }
    }
}

impl Harness for RedisHarness {
    async fn bus(&self, config: BusConfig) -> Bus {
        Bus::redis(&self.server.url(), config)
            .await
            .expect("connect to test redis")
    }
}

/// Redis Cluster backend: three real cluster-enabled `redis-server`s, killed on drop.
pub struct ClusterHarness {
    pub cluster: RedisCluster,
}

impl ClusterHarness {
    pub fn new() -> Self {
        ClusterHarness {
            cluster: RedisCluster::start(3),
        }
    }
}

impl Harness for ClusterHarness {
    async fn bus(&self, config: BusConfig) -> Bus {
        Bus::redis_cluster(&self.cluster.urls(), config)
            .await
            .expect("connect to test cluster")
    }
}

/// Fast settings for tests: 1 s lease, 4 partitions, short retries.
pub fn config() -> BusConfig {
    BusConfig {
        partitions: 4,
        ..BusConfig::fast()
    }
}

/// An agent card serving the given capabilities.
pub fn card(id: &str, capabilities: &[&str]) -> AgentCard {
    AgentCard {
        id: id.to_string(),
        name: id.to_string(),
        description: format!("test agent {id}"),
        version: "1.0.0".to_string(),
        skills: capabilities
            .iter()
            .map(|c| AgentSkill {
                id: c.to_string(),
                name: c.to_string(),
                ..AgentSkill::default()
            })
            .collect(),
        ..AgentCard::default()
    }
}

/// A generous deadline for things that should happen within a few leases.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Starts an agent that completes every task at once and counts how many it ran.
pub async fn counting_agent(
    bus: &Bus,
    id: &str,
    capability: &str,
) -> (AgentHandle, Arc<AtomicUsize>) {
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let agent = Agent::builder(bus, card(id, &[capability]))
        .on_task(move |_| {
            let r = r.clone();
            async move {
                r.fetch_add(1, Ordering::SeqCst);
                Ok(None)
            }
        })
        .start()
        .await
        .expect("start counting agent");
    (agent, runs)
}

/// Whether an event reports a completed task.
pub fn is_completion(e: &Envelope) -> bool {
    e.data
        .as_ref()
        .is_some_and(|d| d.to_string().contains("TASK_STATE_COMPLETED"))
}

/// After the consumer holding `handle`'s task crashed: starts agent "survivor" on `capability`
/// and checks the task completes there, on its second delivery, exactly once. Returns the chain.
pub async fn completes_once_on_survivor(
    bus: &Bus,
    capability: &str,
    handle: &TaskHandle,
) -> (AgentHandle, Vec<Envelope>) {
    let runs = Arc::new(Mutex::new(Vec::<u32>::new()));
    let r = runs.clone();
    let survivor = Agent::builder(bus, card("survivor", &[capability]))
        .on_task(move |ctx| {
            let r = r.clone();
            async move {
                r.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(ctx.deliveries());
                Ok(Some(Message::agent_text("done")))
            }
        })
        .start()
        .await
        .expect("start survivor");
    let rec = handle.result(DEADLINE).await.expect("result");
    assert_eq!(rec.state(), TaskState::Completed);
    assert_eq!(rec.agent.as_deref(), Some("survivor"));
    let runs = runs.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(runs, vec![2], "handled once more, as the second delivery");
    // The event is recorded just after the record changes; wait for it to land.
    let chain = eventually(DEADLINE, "completion recorded", || async {
        let chain = bus
            .transport()
            .correlation(&handle.correlation_id)
            .await
            .ok()?;
        chain
            .iter()
            .any(|e| e.source == "agent://survivor" && is_completion(e))
            .then_some(chain)
    })
    .await;
    let completions = chain.iter().filter(|e| is_completion(e)).count();
    assert_eq!(completions, 1, "completed exactly once");
    (survivor, chain)
}
