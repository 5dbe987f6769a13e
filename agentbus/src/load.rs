//! Load generation for benchmarks: run N full task lifecycles (submit → working → completed)
//! through M worker agents and report the rate. Kept in the library so the bench harness and the
//! example measure the same thing.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::a2a::{AgentCard, AgentSkill, Message, TaskState};
use crate::agent::Agent;
use crate::bus::Bus;
use crate::error::BusError;
use crate::submit::SubmitRequest;

/// What to run.
#[derive(Debug, Clone)]
pub struct LifecycleLoad {
    /// Capability the workers serve.
    pub capability: String,
    /// Tasks to run.
    pub tasks: usize,
    /// Worker agents.
    pub workers: usize,
    /// Tasks each worker runs at once.
    pub worker_in_flight: usize,
    /// Tasks submitted but not yet finished, at most (the producer's window).
    pub window: usize,
    /// Deadline for the whole run.
    pub timeout: Duration,
}

impl Default for LifecycleLoad {
    fn default() -> Self {
        LifecycleLoad {
            capability: "bench".into(),
            tasks: 1000,
            workers: 4,
            worker_in_flight: 16,
            window: 256,
            timeout: Duration::from_secs(300),
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct LifecycleReport {
    /// Tasks that completed.
    pub completed: usize,
    /// Handler invocations (more than `completed` means redeliveries).
    pub handled: usize,
    /// Wall time from first submit to last completion.
    pub elapsed: Duration,
}

impl LifecycleReport {
    /// Full lifecycles per second.
    pub fn per_second(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Starts `workers` echo agents, submits `tasks` tasks (at most `window` unfinished at once),
/// waits for every result, stops the agents, and reports.
pub async fn run_lifecycles(bus: &Bus, load: &LifecycleLoad) -> Result<LifecycleReport, BusError> {
    let handled = Arc::new(AtomicUsize::new(0));
    let mut agents = Vec::new();
    for i in 0..load.workers.max(1) {
        let card = AgentCard {
            id: format!("{}-worker-{i}", load.capability),
            name: format!("bench worker {i}"),
            skills: vec![AgentSkill {
                id: load.capability.clone(),
                name: load.capability.clone(),
                ..AgentSkill::default()
            }],
            ..AgentCard::default()
        };
        let h = handled.clone();
        let agent = Agent::builder(bus, card)
            .max_in_flight(load.worker_in_flight)
            .on_task(move |ctx| {
                let h = h.clone();
                async move {
                    h.fetch_add(1, Ordering::Relaxed);
                    Ok(Some(Message::agent_text(ctx.text())))
                }
            })
            .start()
            .await?;
        agents.push(agent);
    }
    // Partitions are shared out over a few heartbeats; measure the steady state, not that.
    let partitions = usize::from(bus.config().partitions.max(1));
    let fair = partitions.div_ceil(agents.len());
    let settle = Instant::now() + bus.config().heartbeat_interval() * 20;
    while Instant::now() < settle {
        let owned: Vec<usize> = agents.iter().map(|a| a.owned_partitions()).collect();
        if owned.iter().sum::<usize>() == partitions && owned.iter().all(|n| *n <= fair) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let window = Arc::new(Semaphore::new(load.window.max(1)));
    let started = Instant::now();
    let deadline = load.timeout;
    let mut waits = tokio::task::JoinSet::new();
    for i in 0..load.tasks {
        let permit = window
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| BusError::Timeout(deadline, "load window".into()))?;
        let bus = bus.clone();
        let capability = load.capability.clone();
        // Submit and wait in one job, so submissions overlap instead of queueing behind each
        // other's round trips.
        waits.spawn(async move {
            let handle = bus
                .submit(SubmitRequest::text(capability, format!("task {i}")))
                .await?;
            let r = handle.result(deadline).await;
            drop(permit);
            r.map(|rec| rec.state() == TaskState::Completed)
        });
    }
    let mut completed = 0;
    while let Some(r) = waits.join_next().await {
        if matches!(r, Ok(Ok(true))) {
            completed += 1;
        }
    }
    let elapsed = started.elapsed();
    for a in agents {
        a.stop().await;
    }
    Ok(LifecycleReport {
        completed,
        handled: handled.load(Ordering::Relaxed),
        elapsed,
    })
}
