//! Scenario 6: full agent-bus task lifecycles (submit → claim → complete → result) per second,
//! on the in-memory transport, on Redis Streams, and raw Redis doing the bare stream operations
//! a lifecycle needs (XADD task, XREADGROUP claim, XADD result + XACK, XREAD result), so the
//! bus's Redis figure reads as a fraction of what Redis itself allows.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nerve_agentbus::load::{LifecycleLoad, run_lifecycles};
use nerve_agentbus::{Bus, BusConfig};
use redis::AsyncCommands;
use redis::streams::StreamReadReply;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use nerve_bench::payload::now_nanos;
use nerve_bench::stats::{self, Latency};

/// Worker agents (or raw consumers) and what each takes at once.
const WORKERS: usize = 4;
const WORKER_IN_FLIGHT: usize = 16;
/// Unfinished tasks at most.
const WINDOW: usize = 256;
/// Concurrent submitters in the raw-Redis run.
const PRODUCERS: usize = 16;

/// One engine's lifecycle figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BusRow {
    /// `memory`, `redis` or `raw-redis`.
    pub engine: String,
    /// Tasks submitted.
    pub tasks: usize,
    /// Tasks that completed.
    pub completed: usize,
    /// Full lifecycles per second.
    pub per_s: f64,
    /// Mean lifecycle latency by Little's law (window ÷ rate), ms.
    pub mean_latency_ms: f64,
    /// Measured per-task latency (raw Redis only; the bus's load runner reports no latency).
    pub latency: Option<Latency>,
}

fn load(tasks: usize) -> LifecycleLoad {
    LifecycleLoad {
        capability: "bench".into(),
        tasks,
        workers: WORKERS,
        worker_in_flight: WORKER_IN_FLIGHT,
        window: WINDOW,
        timeout: Duration::from_secs(120),
    }
}

fn row(
    engine: &str,
    tasks: usize,
    completed: usize,
    secs: f64,
    latency: Option<Latency>,
) -> BusRow {
    let per_s = completed as f64 / secs.max(1e-9);
    BusRow {
        engine: engine.into(),
        tasks,
        completed,
        per_s,
        mean_latency_ms: if per_s > 0.0 {
            WINDOW.min(tasks) as f64 / per_s * 1000.0
        } else {
            0.0
        },
        latency,
    }
}

/// Lifecycles on the in-memory bus.
pub async fn memory(tasks: usize) -> Result<BusRow> {
    let bus = Bus::memory(BusConfig::default());
    let r = run_lifecycles(&bus, &load(tasks)).await?;
    Ok(row(
        "memory",
        tasks,
        r.completed,
        r.elapsed.as_secs_f64(),
        None,
    ))
}

/// Lifecycles on the Redis Streams bus.
pub async fn redis_bus(url: &str, tasks: usize) -> Result<BusRow> {
    let bus = Bus::redis(url, BusConfig::default()).await?;
    let r = run_lifecycles(&bus, &load(tasks)).await?;
    Ok(row(
        "redis",
        tasks,
        r.completed,
        r.elapsed.as_secs_f64(),
        None,
    ))
}

/// The same stream operations straight on Redis.
pub async fn raw_redis(url: &str, tasks: usize) -> Result<BusRow> {
    let client = redis::Client::open(url)?;
    let mut con = client.get_multiplexed_async_connection().await?;
    let _: () = redis::cmd("XGROUP")
        .arg(&["CREATE", "raw:tasks", "workers", "$", "MKSTREAM"])
        .query_async(&mut con)
        .await
        .context("creating the consumer group")?;
    let done = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let mut con = client.get_multiplexed_async_connection().await?;
        let done = Arc::clone(&done);
        workers.push(tokio::spawn(async move {
            let consumer = format!("w{w}");
            while !done.load(Ordering::Relaxed) {
                let reply: redis::RedisResult<Option<StreamReadReply>> = redis::cmd("XREADGROUP")
                    .arg(&["GROUP", "workers", &consumer, "COUNT"])
                    .arg(WORKER_IN_FLIGHT)
                    .arg(&["BLOCK", "100", "STREAMS", "raw:tasks", ">"])
                    .query_async(&mut con)
                    .await;
                let Ok(Some(reply)) = reply else { continue };
                let mut pipe = redis::pipe();
                for entry in reply.keys.iter().flat_map(|k| &k.ids) {
                    let ts: String = entry.get("ts").unwrap_or_default();
                    pipe.cmd("XADD")
                        .arg(&["raw:results", "*", "ts", &ts])
                        .ignore();
                    pipe.cmd("XACK")
                        .arg(&["raw:tasks", "workers", &entry.id])
                        .ignore();
                }
                let _: redis::RedisResult<()> = pipe.query_async(&mut con).await;
            }
        }));
    }

    let window = Arc::new(Semaphore::new(WINDOW));
    // Several producers share one multiplexed connection, so submissions overlap like the
    // bus's do instead of waiting on each other's round trips.
    // Not the reader's connection: its blocking XREAD would hold every command queued behind it.
    let submit_con = client.get_multiplexed_async_connection().await?;
    let mut producers = Vec::new();
    let per_producer = tasks.div_ceil(PRODUCERS);
    for p in 0..PRODUCERS {
        let mut con = submit_con.clone();
        let window = Arc::clone(&window);
        let mine = per_producer.min(tasks.saturating_sub(p * per_producer));
        producers.push(tokio::spawn(async move {
            for _ in 0..mine {
                let Ok(permit) = window.acquire().await else {
                    return;
                };
                permit.forget();
                let ts = now_nanos().to_string();
                let _: redis::RedisResult<String> =
                    con.xadd("raw:tasks", "*", &[("ts", ts.as_str())]).await;
            }
        }));
    }

    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    let mut hist = stats::new_histogram();
    let mut last = "0-0".to_string();
    let mut completed = 0;
    while completed < tasks && Instant::now() < deadline {
        let reply: Option<StreamReadReply> = redis::cmd("XREAD")
            .arg(&[
                "COUNT",
                "512",
                "BLOCK",
                "100",
                "STREAMS",
                "raw:results",
                &last,
            ])
            .query_async(&mut con)
            .await?;
        for entry in reply.iter().flat_map(|r| &r.keys).flat_map(|k| &k.ids) {
            let ts: u64 = entry
                .get::<String>("ts")
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            stats::record(&mut hist, now_nanos().saturating_sub(ts) / 1000);
            completed += 1;
            last.clone_from(&entry.id);
            window.add_permits(1);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    for p in producers {
        p.abort();
    }
    for w in workers {
        let _ = w.await;
    }
    if completed == 0 {
        bail!("raw Redis completed nothing");
    }
    Ok(row(
        "raw-redis",
        tasks,
        completed,
        secs,
        Some(stats::summarize(&hist)),
    ))
}
