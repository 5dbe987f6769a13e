//! Measures full task lifecycles per second (submit → working → completed, with the result read
//! back by the submitter) on the in-memory bus or on Redis.
//!
//! ```text
//! cargo run --release -p nerve-agentbus --example lifecycles -- [TASKS] [WORKERS] [REDIS_URL]
//! ```

use std::time::Duration;

use nerve_agentbus::load::{LifecycleLoad, run_lifecycles};
use nerve_agentbus::{Bus, BusConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let tasks = args.first().and_then(|s| s.parse().ok()).unwrap_or(5000);
    let workers = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(4);
    let config = BusConfig {
        fetch_wait: Duration::from_millis(100),
        ..BusConfig::default()
    };
    let (bus, backend) = match args.get(2) {
        Some(url) => (Bus::redis(url, config).await?, format!("redis {url}")),
        None => (Bus::memory(config), "memory".to_string()),
    };
    let load = LifecycleLoad {
        tasks,
        workers,
        capability: format!("bench-{}", nerve_agentbus::Bus::new_id().to_lowercase()),
        ..LifecycleLoad::default()
    };
    let report = run_lifecycles(&bus, &load).await?;
    println!(
        "{backend}: {} of {tasks} tasks completed by {workers} workers in {:.2?} = {:.0} lifecycles/s (handler runs: {})",
        report.completed,
        report.elapsed,
        report.per_second(),
        report.handled
    );
    Ok(())
}
