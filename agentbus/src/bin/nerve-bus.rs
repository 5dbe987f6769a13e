//! `nerve-bus`: operate an agent bus on Redis from the shell: list tasks, show a correlation
//! chain as a tree, inspect and redrive dead letters, watch live events, list agents, submit a
//! task, or run a demo echo agent.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use nerve_agentbus::{
    Agent, AgentCard, AgentSkill, Bus, BusConfig, Message, SubmitRequest, correlation,
};
use tokio::sync::broadcast::error::RecvError;

#[derive(Parser)]
#[command(
    name = "nerve-bus",
    about = "Inspect and operate a Nerve agent bus on Redis"
)]
struct Cli {
    /// Redis URL of the bus; several comma-separated node URLs mean a Redis Cluster.
    #[arg(
        long,
        env = "NERVE_REDIS_URL",
        default_value = "redis://127.0.0.1:6379/"
    )]
    redis: String,
    /// Partitions per capability (must match the agents').
    #[arg(long, default_value_t = 8)]
    partitions: u16,
    /// Lease in milliseconds for agents started by this command.
    #[arg(long, default_value_t = 30_000)]
    lease_ms: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the newest tasks.
    Tasks {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Print one task record as JSON.
    Task {
        /// Task id.
        id: String,
    },
    /// Show a correlation chain as a tree with timings.
    Chain {
        /// Correlation id (the root task id for task chains).
        id: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Inspect or redrive the dead-letter queue.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Print live events as JSON lines.
    Watch {
        /// Only events of this correlation chain.
        #[arg(long)]
        correlation: Option<String>,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<usize>,
    },
    /// List registered agents.
    Agents {
        /// Only agents serving this capability.
        #[arg(long)]
        capability: Option<String>,
    },
    /// Submit a text task and optionally wait for its result.
    Submit {
        /// Capability.
        capability: String,
        /// Request text.
        text: String,
        /// Seconds to wait for the result (0: do not wait).
        #[arg(long, default_value_t = 0)]
        wait: u64,
    },
    /// Run a demo agent that echoes requests after `work_ms` of simulated work.
    Agent {
        /// Agent id.
        #[arg(long)]
        id: String,
        /// Capability to serve.
        #[arg(long)]
        capability: String,
        /// Simulated work per task, in milliseconds.
        #[arg(long, default_value_t = 0)]
        work_ms: u64,
    },
}

#[derive(Subcommand)]
enum DlqAction {
    /// List dead letters.
    List {
        /// Only this capability (default: all).
        #[arg(long)]
        capability: Option<String>,
    },
    /// Put dead letters back on their queue.
    Redrive {
        /// Capability.
        capability: String,
        /// Only this dead-letter entry id (default: all of the capability).
        #[arg(long)]
        entry: Option<String>,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let config = BusConfig {
        partitions: cli.partitions,
        lease: Duration::from_millis(cli.lease_ms.max(100)),
        ..BusConfig::default()
    };
    let bus = if cli.redis.contains(',') {
        let nodes: Vec<String> = cli.redis.split(',').map(str::to_string).collect();
        Bus::redis_cluster(&nodes, config).await
    } else {
        Bus::redis(&cli.redis, config).await
    }
    .with_context(|| format!("connecting to {}", cli.redis))?;
    match cli.command {
        Command::Tasks { limit } => {
            for r in bus.recent_tasks(limit).await? {
                println!(
                    "{}  {:<26}  {:<12}  v{:<3} {}",
                    r.task.id,
                    r.state(),
                    r.capability,
                    r.version,
                    r.agent.as_deref().unwrap_or("-")
                );
            }
        }
        Command::Task { id } => match bus.task(&id).await? {
            Some(r) => println!("{}", serde_json::to_string_pretty(&r)?),
            None => bail!("task {id} not found"),
        },
        Command::Chain { id, json } => {
            let tree = bus.correlation_tree(&id).await?;
            if tree.roots.is_empty() && tree.other_events.is_empty() {
                bail!("no events recorded for correlation id {id}");
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&tree)?);
            } else {
                print!("{}", correlation::render(&tree));
            }
        }
        Command::Dlq { action } => dlq(&bus, action).await?,
        Command::Watch { correlation, count } => watch(&bus, correlation, count).await?,
        Command::Agents { capability } => {
            let cards = match capability {
                Some(c) => bus.agents_for(&c).await?,
                None => bus.transport().agents().await?,
            };
            for c in cards {
                let skills: Vec<&str> = c.skills.iter().map(|s| s.id.as_str()).collect();
                println!(
                    "{}  {} v{}  [{}]",
                    c.id,
                    c.name,
                    c.version,
                    skills.join(", ")
                );
            }
        }
        Command::Submit {
            capability,
            text,
            wait,
        } => {
            let handle = bus.submit(SubmitRequest::text(capability, text)).await?;
            println!("{}", handle.task_id);
            if wait > 0 {
                let rec = handle.result(Duration::from_secs(wait)).await?;
                let msg = rec.task.status.message.as_ref().map(Message::text);
                println!("{} {}", rec.state(), msg.unwrap_or_default());
            }
        }
        Command::Agent {
            id,
            capability,
            work_ms,
        } => run_demo_agent(&bus, id, capability, work_ms).await?,
    }
    Ok(())
}

async fn dlq(bus: &Bus, action: DlqAction) -> Result<()> {
    match action {
        DlqAction::List { capability } => {
            let caps = match capability {
                Some(c) => vec![c],
                None => bus
                    .transport()
                    .capabilities()
                    .await?
                    .into_iter()
                    .map(|(c, _)| c)
                    .collect(),
            };
            for cap in caps {
                for d in bus.dead_letters(&cap).await? {
                    println!(
                        "{cap}  p{}  {}  {}  deliveries={}  task={}  {}",
                        d.partition.index,
                        d.entry_id,
                        d.reason,
                        d.deliveries,
                        d.envelope.taskid.as_deref().unwrap_or("-"),
                        d.description
                    );
                }
            }
        }
        DlqAction::Redrive { capability, entry } => {
            let mut n = 0;
            for d in bus.dead_letters(&capability).await? {
                if entry.as_deref().is_none_or(|e| e == d.entry_id) && bus.redrive(&d).await? {
                    n += 1;
                }
            }
            println!("redrove {n} message(s)");
        }
    }
    Ok(())
}

async fn watch(bus: &Bus, correlation: Option<String>, count: Option<usize>) -> Result<()> {
    let mut live = bus.transport().live();
    let mut printed = 0;
    loop {
        let env = tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            r = live.recv() => match r {
                Ok(e) => e,
                Err(RecvError::Lagged(n)) => {
                    eprintln!("(skipped {n} events)");
                    continue;
                }
                Err(RecvError::Closed) => return Ok(()),
            },
        };
        if correlation
            .as_deref()
            .is_some_and(|c| c != env.correlation_id())
        {
            continue;
        }
        println!("{}", env.to_json());
        printed += 1;
        if count.is_some_and(|c| printed >= c) {
            return Ok(());
        }
    }
}

async fn run_demo_agent(bus: &Bus, id: String, capability: String, work_ms: u64) -> Result<()> {
    let card = AgentCard {
        id: id.clone(),
        name: format!("demo agent {id}"),
        description: "echoes its requests after simulated work".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        skills: vec![AgentSkill {
            id: capability.clone(),
            name: capability,
            ..AgentSkill::default()
        }],
        ..AgentCard::default()
    };
    let agent = Agent::builder(bus, card)
        .on_task(move |ctx| async move {
            let _ = ctx.progress("working").await;
            let token = ctx.cancelled();
            tokio::select! {
                _ = token.cancelled() => return Ok(None),
                _ = tokio::time::sleep(Duration::from_millis(work_ms)) => {}
            }
            Ok(Some(Message::agent_text(format!("echo: {}", ctx.text()))))
        })
        .start()
        .await?;
    eprintln!("agent {id} running; Ctrl-C to stop");
    tokio::signal::ctrl_c().await?;
    agent.stop().await;
    Ok(())
}
