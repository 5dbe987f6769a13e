//! `nerve-bus`: operate an agent bus from the shell, on Redis or through a running hub's HTTP
//! API (which also reaches the hub's in-memory bus): list tasks, show a correlation chain as a
//! tree, inspect and redrive dead letters, watch live events, list agents, submit a task, or
//! run a demo echo agent (Redis only).

mod hub;
mod telemetry;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use nerve_agentbus::correlation::CorrelationTree;
use nerve_agentbus::transport::DeadLetter;
use nerve_agentbus::{
    Agent, AgentCard, AgentSkill, Bus, BusConfig, Message, SubmitRequest, TaskRecord, correlation,
};
use nerve_protocol::access::ConnectionString;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use hub::HubApi;

/// Redis URL used when neither a hub nor Redis is named.
const DEFAULT_REDIS: &str = "redis://127.0.0.1:6379/";
/// How often `watch` asks a hub for new events of its chain.
const WATCH_POLL: Duration = Duration::from_millis(500);
/// Longest wait of one `bus.task.wait` call on a hub (its cap).
const HUB_WAIT_MS: u64 = 300_000;

#[derive(Parser)]
#[command(
    name = "nerve-bus",
    about = "Inspect and operate a Nerve agent bus, on Redis or through a running hub",
    after_help = "Which bus: --hub URL (the hub's HTTP API), else --redis URL, else the hub of \
                  NERVE_CONNECTION_STRING when it is set, else redis://127.0.0.1:6379/."
)]
struct Cli {
    /// Redis URL of the bus; several comma-separated node URLs mean a Redis Cluster.
    #[arg(long, env = "NERVE_REDIS_URL")]
    redis: Option<String>,
    /// A running hub (`http://127.0.0.1:8080`): use its bus through its HTTP API.
    #[arg(long, conflicts_with = "redis")]
    hub: Option<String>,
    /// The hub's connection string, to sign a bus.admin token with (as `nerve` prints it).
    #[arg(long, env = "NERVE_CONNECTION_STRING", hide_env_values = true)]
    connection_string: Option<String>,
    /// A bus token for the hub instead of the connection string (its roles decide what works).
    #[arg(long, env = "NERVE_BUS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Partitions per capability (must match the agents'; Redis only).
    #[arg(long, default_value_t = 8)]
    partitions: u16,
    /// Lease in milliseconds for agents started by this command.
    #[arg(long, default_value_t = 30_000)]
    lease_ms: u64,
    /// OTLP/HTTP collector to export traces to, e.g. `http://127.0.0.1:4318` (spans go to
    /// `<url>/v1/traces`); unset: no export.
    #[arg(long, env = "NERVE_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// `service.name` of the exported traces.
    #[arg(long, default_value = "nerve-bus")]
    service_name: String,
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

/// Where the bus is: a Redis the bus lives on, or a hub's operations API.
enum Source {
    Redis(Bus),
    Hub(HubApi),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let endpoint = cli
        .otlp_endpoint
        .clone()
        .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok())
        .filter(|e| !e.is_empty());
    // The exporter sends from a thread of its own, so it starts before the runtime.
    let telemetry = match telemetry::init(endpoint.as_deref(), &cli.service_name) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("nerve-bus: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("nerve-bus: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let exporting = telemetry.exporting();
    let result = runtime.block_on(run(cli, exporting));
    drop(runtime);
    telemetry.shutdown("nerve-bus");
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nerve-bus: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, exporting: bool) -> Result<()> {
    let source = connect(&cli).await?;
    match cli.command {
        Command::Tasks { limit } => {
            for r in source.recent_tasks(limit).await? {
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
        Command::Task { id } => match source.task(&id).await? {
            Some(r) => println!("{}", serde_json::to_string_pretty(&r)?),
            None => bail!("task {id} not found"),
        },
        Command::Chain { id, json } => {
            let tree = source.chain(&id).await?;
            if tree.roots.is_empty() && tree.other_events.is_empty() {
                bail!("no events recorded for correlation id {id}");
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&tree)?);
            } else {
                print!("{}", correlation::render(&tree));
            }
        }
        Command::Dlq { action } => dlq(&source, action).await?,
        Command::Watch { correlation, count } => match &source {
            Source::Redis(bus) => watch(bus, correlation, count).await?,
            Source::Hub(api) => {
                let Some(c) = correlation else {
                    bail!("watching through a hub follows one chain: pass --correlation ID");
                };
                watch_chain(api, &c, count).await?;
            }
        },
        Command::Agents { capability } => {
            for c in source.agents(capability.as_deref()).await? {
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
            let span = tracing::info_span!("nerve-bus.submit", otel.kind = "client", %capability);
            let traceparent = exporting
                .then(|| span.in_scope(telemetry::current_traceparent))
                .flatten();
            let submitted = source.submit(&capability, &text, wait, traceparent);
            let (task_id, done) = tracing::Instrument::instrument(submitted, span).await?;
            println!("{task_id}");
            if let Some(rec) = done {
                let msg = rec.task.status.message.as_ref().map(Message::text);
                println!("{} {}", rec.state(), msg.unwrap_or_default());
            }
        }
        Command::Agent {
            id,
            capability,
            work_ms,
        } => match &source {
            Source::Redis(bus) => run_demo_agent(bus, id, capability, work_ms).await?,
            Source::Hub(_) => bail!(
                "agents reach a hub over its WebSocket: write one with the agent SDK \
                 (clients/python, clients/js, clients/rust); `nerve-bus agent` needs --redis"
            ),
        },
    }
    Ok(())
}

/// The bus the command line names (see `after_help`).
async fn connect(cli: &Cli) -> Result<Source> {
    let signed = |endpoint: &str| -> Result<HubApi> {
        if let Some(t) = cli.token.clone().filter(|t| !t.is_empty()) {
            return Ok(HubApi::new(endpoint, t));
        }
        let Some(cs) = cli.connection_string.as_deref().filter(|c| !c.is_empty()) else {
            bail!(
                "a hub needs a token: set NERVE_CONNECTION_STRING to the connection string it \
                 printed (or pass --connection-string, or --token)"
            );
        };
        let mut cs =
            ConnectionString::parse(cs).map_err(|e| anyhow::anyhow!("connection string: {e}"))?;
        cs.endpoint = endpoint.trim_end_matches('/').to_string();
        HubApi::from_connection_string(&cs)
    };
    if let Some(hub) = &cli.hub {
        return Ok(Source::Hub(signed(hub)?));
    }
    if cli.redis.is_none()
        && let Some(cs) = cli.connection_string.as_deref().filter(|c| !c.is_empty())
    {
        let cs =
            ConnectionString::parse(cs).map_err(|e| anyhow::anyhow!("connection string: {e}"))?;
        return Ok(Source::Hub(signed(&cs.endpoint)?));
    }
    let url = cli.redis.clone().unwrap_or_else(|| DEFAULT_REDIS.into());
    let config = BusConfig {
        partitions: cli.partitions,
        lease: Duration::from_millis(cli.lease_ms.max(100)),
        ..BusConfig::default()
    };
    let bus = if url.contains(',') {
        let nodes: Vec<String> = url.split(',').map(str::to_string).collect();
        Bus::redis_cluster(&nodes, config).await
    } else {
        Bus::redis(&url, config).await
    }
    .with_context(|| format!("connecting to {url}"))?;
    Ok(Source::Redis(bus))
}

impl Source {
    async fn recent_tasks(&self, limit: usize) -> Result<Vec<TaskRecord>> {
        match self {
            Source::Redis(bus) => Ok(bus.recent_tasks(limit).await?),
            Source::Hub(api) => {
                api.field("bus.tasks", json!({"limit": limit}), "tasks")
                    .await
            }
        }
    }

    async fn task(&self, id: &str) -> Result<Option<TaskRecord>> {
        match self {
            Source::Redis(bus) => Ok(bus.task(id).await?),
            Source::Hub(api) => {
                match api
                    .field("bus.task.get", json!({"taskId": id}), "task")
                    .await
                {
                    Ok(r) => Ok(Some(r)),
                    Err(e) if e.to_string().contains("NotFound") => Ok(None),
                    Err(e) => Err(e),
                }
            }
        }
    }

    async fn chain(&self, id: &str) -> Result<CorrelationTree> {
        match self {
            Source::Redis(bus) => Ok(bus.correlation_tree(id).await?),
            Source::Hub(api) => api.call("bus.chain", json!({"correlationId": id})).await,
        }
    }

    async fn agents(&self, capability: Option<&str>) -> Result<Vec<AgentCard>> {
        match self {
            Source::Redis(bus) => Ok(match capability {
                Some(c) => bus.agents_for(c).await?,
                None => bus.transport().agents().await?,
            }),
            Source::Hub(api) => {
                let data = capability.map_or_else(|| json!({}), |c| json!({"capability": c}));
                api.field("bus.agents", data, "agents").await
            }
        }
    }

    async fn dead_letters(&self, capability: Option<&str>) -> Result<Vec<DeadLetter>> {
        match self {
            Source::Redis(bus) => Ok(bus.dead_letters_of(capability).await?),
            Source::Hub(api) => {
                let data = capability.map_or_else(|| json!({}), |c| json!({"capability": c}));
                api.field("bus.dlq.list", data, "deadLetters").await
            }
        }
    }

    async fn redrive(&self, capability: &str, entry: Option<&str>) -> Result<u64> {
        match self {
            Source::Redis(bus) => {
                let mut n = 0;
                for d in bus.dead_letters(capability).await? {
                    if entry.is_none_or(|e| e == d.entry_id) && bus.redrive(&d).await? {
                        n += 1;
                    }
                }
                Ok(n)
            }
            Source::Hub(api) => {
                let data = json!({"capability": capability, "entryId": entry});
                api.field("bus.dlq.redrive", data, "redriven").await
            }
        }
    }

    /// Submits a text task; with `wait` > 0 seconds, also its terminal record.
    async fn submit(
        &self,
        capability: &str,
        text: &str,
        wait: u64,
        traceparent: Option<String>,
    ) -> Result<(String, Option<TaskRecord>)> {
        match self {
            Source::Redis(bus) => {
                let mut req = SubmitRequest::text(capability, text);
                if let Some(tp) = traceparent {
                    req = req.traceparent(tp);
                }
                let handle = bus.submit(req).await?;
                let done = if wait > 0 {
                    Some(handle.result(Duration::from_secs(wait)).await?)
                } else {
                    None
                };
                Ok((handle.task_id, done))
            }
            Source::Hub(api) => {
                let sub: Value = api
                    .call(
                        "bus.submit",
                        json!({"capability": capability, "text": text}),
                    )
                    .await?;
                let id = sub["taskId"].as_str().unwrap_or_default().to_string();
                if wait == 0 {
                    return Ok((id, None));
                }
                // The hub caps one wait; a longer one is several.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
                loop {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    if left.is_zero() {
                        bail!("task {id} did not finish within {wait} s");
                    }
                    let ms = (left.as_millis() as u64).min(HUB_WAIT_MS);
                    match api
                        .field(
                            "bus.task.wait",
                            json!({"taskId": id, "timeoutMs": ms}),
                            "task",
                        )
                        .await
                    {
                        Ok(rec) => return Ok((id, Some(rec))),
                        Err(e) if e.to_string().contains("Timeout") => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }
}

async fn dlq(source: &Source, action: DlqAction) -> Result<()> {
    match action {
        DlqAction::List { capability } => {
            for d in source.dead_letters(capability.as_deref()).await? {
                println!(
                    "{}  p{}  {}  {}  deliveries={}  task={}  {}",
                    d.partition.capability,
                    d.partition.index,
                    d.entry_id,
                    d.reason,
                    d.deliveries,
                    d.envelope.taskid.as_deref().unwrap_or("-"),
                    d.description
                );
            }
        }
        DlqAction::Redrive { capability, entry } => {
            let n = source.redrive(&capability, entry.as_deref()).await?;
            println!("redrove {n} message(s)");
        }
    }
    Ok(())
}

/// Prints the events of chain `correlation` as a hub records them, by asking for what came
/// after the last one printed.
async fn watch_chain(api: &HubApi, correlation: &str, count: Option<usize>) -> Result<()> {
    let mut after: Option<String> = None;
    let mut printed = 0;
    loop {
        let mut data = json!({"correlationId": correlation});
        if let Some(a) = &after {
            data["after"] = json!(a);
        }
        match api.call::<Value>("bus.history", data).await {
            Ok(h) => {
                for e in h["events"].as_array().into_iter().flatten() {
                    println!("{}", e["envelope"]);
                    printed += 1;
                    if count.is_some_and(|c| printed >= c) {
                        return Ok(());
                    }
                }
                after = h["cursor"].as_str().map(str::to_string).or(after);
            }
            // The chain may not have its first event yet.
            Err(e) if e.to_string().contains("NotFound") => {}
            Err(e) => return Err(e),
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = tokio::time::sleep(WATCH_POLL) => {}
        }
    }
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
