//! The runner: `nerve-bench run` starts Redis, the servers and the load generators, runs the
//! named scenarios against Nerve (one build, or several named with `--nerve`), Socket.IO and the
//! raw limit side by side, and writes the JSON results, the Markdown table and the plots.

mod agentbus;
mod plot;
mod report;
mod rest;
mod saturation;
mod scenarios;
mod targets;
mod workers;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use report::{BuildRecord, DEFAULT_NERVE, Machine, Results, Settings, Skipped};
use scenarios::Ctx;
use targets::{Env, Kind, NerveBuild, Server};

/// Scenarios in the order they run.
const SCENARIOS: [&str; 6] = ["idle", "fanout", "rooms", "rest", "cluster", "agentbus"];
/// Nodes per server in the cluster scenario.
const CLUSTER_NODES: usize = 3;
/// Markers around the generated table in `bench/README.md`.
const BEGIN: &str = "<!-- results:begin -->";
const END: &str = "<!-- results:end -->";

/// Options of `nerve-bench run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// CI-sized run: small groups, short windows (about a minute).
    #[arg(long)]
    quick: bool,
    /// Run only these scenarios (idle, fanout, rooms, rest, cluster, agentbus); repeatable.
    #[arg(long = "scenario")]
    scenarios: Vec<String>,
    /// Directory for the JSON, Markdown and plots (default: bench/results, or
    /// bench/results/tmp with --quick).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The nerve binary (default: next to this program).
    #[arg(long)]
    nerve_bin: Option<PathBuf>,
    /// Measure this nerve binary under NAME, beside the other servers; repeat it to compare
    /// builds in one run. The first is the baseline, the last the one the "÷ server" columns
    /// speak for (default: the --nerve-bin binary, named `nerve`).
    #[arg(long = "nerve", value_name = "NAME=PATH", conflicts_with = "nerve_bin")]
    nerve: Vec<NerveBuild>,
    /// Start the `--nerve` build NAME with `--config FILE` (the same binary under two names,
    /// with two configurations, compares settings in one run).
    #[arg(long = "nerve-config", value_name = "NAME=FILE")]
    nerve_config: Vec<NerveBuild>,
    /// Node processes for the Socket.IO peer (they share rooms through Redis).
    #[arg(long, default_value_t = 2)]
    socketio_workers: usize,
    /// Nerve nodes for every scenario (more than one share a Redis started by the runner);
    /// with `--scenario idle` this spreads connections past one process's open-file limit.
    #[arg(long, default_value_t = 1)]
    nerve_nodes: usize,
    /// Override the fan-out group sizes (comma separated).
    #[arg(long, value_delimiter = ',')]
    sizes: Vec<usize>,
    /// Override the idle connection count.
    #[arg(long)]
    idle_connections: Option<usize>,
    /// Measure only these servers (nerve, socketio, raw); repeatable.
    #[arg(long = "target", value_enum)]
    targets: Vec<Kind>,
    /// Leave bench/README.md alone even in a full run of every scenario.
    #[arg(long)]
    no_readme: bool,
}

fn settings(args: &RunArgs) -> Settings {
    let mut s = if args.quick {
        Settings {
            payload_bytes: 64,
            warmup_s: 0.5,
            measure_s: 1.5,
            fanout_window: 16,
            search: false,
            socketio_workers: args.socketio_workers,
            idle_connections: 1_000,
            fanout_sizes: vec![100, 1_000],
            room_clients: 500,
            rest_concurrency: 16,
            bus_tasks: 500,
            cluster_size: 1_000,
        }
    } else {
        Settings {
            payload_bytes: 64,
            warmup_s: 1.5,
            measure_s: 4.0,
            fanout_window: 16,
            search: true,
            socketio_workers: args.socketio_workers,
            idle_connections: 19_000,
            fanout_sizes: vec![1_000, 5_000, 10_000, 18_000],
            room_clients: 10_000,
            rest_concurrency: 32,
            bus_tasks: 20_000,
            cluster_size: 10_000,
        }
    };
    if !args.sizes.is_empty() {
        s.fanout_sizes = args.sizes.clone();
    }
    if let Some(n) = args.idle_connections {
        s.idle_connections = n;
    }
    s
}

/// Runs the benchmark.
pub async fn run(args: RunArgs) -> Result<()> {
    let started = Instant::now();
    let nofile = raise_nofile();
    let chosen: Vec<&str> = if args.scenarios.is_empty() {
        SCENARIOS.to_vec()
    } else {
        for s in &args.scenarios {
            if !SCENARIOS.contains(&s.as_str()) {
                bail!("unknown scenario {s}; choose from {SCENARIOS:?}");
            }
        }
        SCENARIOS
            .iter()
            .copied()
            .filter(|s| args.scenarios.iter().any(|a| a == s))
            .collect()
    };
    let bench_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = args.out.clone().unwrap_or_else(|| {
        if args.quick {
            bench_dir.join("results/tmp")
        } else {
            bench_dir.join("results")
        }
    });
    let log_dir = bench_dir.join("results/tmp/logs");
    std::fs::create_dir_all(&log_dir)?;
    std::fs::create_dir_all(&out)?;
    let exe = std::env::current_exe()?;
    let peer_dir = bench_dir.join("peers/socketio");
    targets::check_builds(&args.nerve, &args.nerve_config)?;
    let servers = servers(&args, &exe);
    // Only the WebSocket scenarios start the Socket.IO peer, and only when it is measured.
    if chosen.iter().any(|s| *s != "agentbus") && servers.iter().any(|s| s.kind == Kind::SocketIo) {
        ensure_npm(&peer_dir)?;
    }
    let redis = nerve_testkit::RedisServer::start();
    let env = Env {
        exe,
        peer_dir,
        redis_url: redis.url(),
        socketio_workers: args.socketio_workers,
        nerve_nodes: args.nerve_nodes.max(1),
        log_dir,
    };
    let ctx = Ctx {
        env,
        settings: settings(&args),
        servers,
    };
    let mode = if args.quick { "quick" } else { "full" };
    let mut command = "cargo run --release -p nerve-bench -- run".to_string();
    if args.quick {
        command.push_str(" --quick");
    }
    for s in &args.scenarios {
        command.push_str(&format!(" --scenario {s}"));
    }
    for t in &args.targets {
        command.push_str(&format!(" --target {t}"));
    }
    for b in &args.nerve {
        let file = targets::file_name(&b.path);
        command.push_str(&format!(" --nerve {}=path/to/{file}", b.name));
    }
    for c in &args.nerve_config {
        let file = targets::file_name(&c.path);
        command.push_str(&format!(" --nerve-config {}=path/to/{file}", c.name));
    }
    let mut results = Results {
        mode: mode.to_string(),
        command,
        revision: revision(&bench_dir),
        started_unix: nerve_bench::payload::now_nanos() / 1_000_000_000,
        duration_s: 0.0,
        machine: machine(nofile),
        settings: ctx.settings.clone(),
        nerve_builds: args
            .nerve
            .iter()
            .map(|b| BuildRecord {
                name: b.name.clone(),
                binary: targets::file_name(&b.path),
                config: config_of(&args, &b.name).map(|c| targets::file_name(&c)),
            })
            .collect(),
        idle: Vec::new(),
        fanout: Vec::new(),
        rooms: Vec::new(),
        rest: Vec::new(),
        agentbus: Vec::new(),
        cluster: Vec::new(),
        skipped: Vec::new(),
    };
    for scenario in &chosen {
        run_scenario(&ctx, scenario, &mut results).await;
    }
    results.duration_s = started.elapsed().as_secs_f64();
    drop(redis);

    let table = report::markdown(&results);
    std::fs::write(
        out.join(format!("{mode}.json")),
        serde_json::to_string_pretty(&results)?,
    )?;
    std::fs::write(out.join(format!("{mode}.md")), &table)?;
    let plots = plot::render(&results, &out.join("plots"))?;
    println!("{table}");
    println!("results: {}", out.join(format!("{mode}.json")).display());
    for p in plots {
        println!("plot: {p}");
    }
    if !args.quick
        && args.scenarios.is_empty()
        && args.targets.is_empty()
        && args.nerve.is_empty()
        && !args.no_readme
    {
        update_readme(&bench_dir.join("README.md"), &table)?;
        println!("updated bench/README.md");
    }
    Ok(())
}

/// Every server to measure, in the order each measurement visits them: the Nerve builds as
/// named, then Socket.IO and the raw limit, keeping only the kinds `--target` asks for.
fn servers(args: &RunArgs, exe: &Path) -> Vec<Server> {
    let nerve = if args.nerve.is_empty() {
        let bin = args
            .nerve_bin
            .clone()
            .unwrap_or_else(|| exe.with_file_name("nerve"));
        vec![Server::nerve(DEFAULT_NERVE, bin)]
    } else {
        args.nerve
            .iter()
            .map(|b| Server {
                nerve_config: config_of(args, &b.name),
                ..Server::nerve(&b.name, b.path.clone())
            })
            .collect()
    };
    nerve
        .into_iter()
        .chain([Server::peer(Kind::SocketIo), Server::peer(Kind::Raw)])
        .filter(|s| args.targets.is_empty() || args.targets.contains(&s.kind))
        .collect()
}

/// The servers with, right after the last Nerve build, that build again with MQTT clients: the
/// fan-out table's MQTT rows beside the JSON ones, measured in the same run.
fn with_mqtt(servers: &[Server]) -> Vec<Server> {
    let mut all = servers.to_vec();
    if let Some(last) = all.iter().rposition(|s| s.kind == Kind::Nerve) {
        let mqtt = all[last].mqtt();
        all.insert(last + 1, mqtt);
    }
    all
}

async fn run_scenario(ctx: &Ctx, scenario: &str, results: &mut Results) {
    let skip = |target: Option<&Server>, reason: String| Skipped {
        scenario: scenario.to_string(),
        target: target.map(|s| s.name.clone()),
        reason,
    };
    eprintln!("== scenario {scenario}");
    match scenario {
        "idle" => {
            for server in &ctx.servers {
                match scenarios::idle(ctx, server).await {
                    Ok(row) => results.idle.push(row),
                    Err(e) => results.skipped.push(skip(Some(server), format!("{e:#}"))),
                }
            }
        }
        "fanout" => {
            for &n in &ctx.settings.fanout_sizes {
                // The server holds n + 1 sockets plus its own files in one process.
                if n + 1_000 > results.machine.nofile.1 as usize {
                    results.skipped.push(skip(
                        None,
                        format!(
                            "N = {n}: the server process would need more than its {} open files",
                            results.machine.nofile.1
                        ),
                    ));
                    continue;
                }
                for server in &with_mqtt(&ctx.servers) {
                    eprintln!("   {} N={n}", server.name);
                    match scenarios::fanout(ctx, server, n).await {
                        Ok(row) => results.fanout.push(row),
                        Err(e) => results
                            .skipped
                            .push(skip(Some(server), format!("N = {n}: {e:#}"))),
                    }
                }
            }
        }
        "rooms" => {
            for server in &ctx.servers {
                match scenarios::rooms(ctx, server, ctx.settings.room_clients).await {
                    Ok(row) => results.rooms.push(row),
                    Err(e) => results.skipped.push(skip(Some(server), format!("{e:#}"))),
                }
            }
        }
        "rest" => {
            for server in &ctx.servers {
                match rest::rest(ctx, server).await {
                    Ok(row) => results.rest.push(row),
                    Err(e) => results.skipped.push(skip(Some(server), format!("{e:#}"))),
                }
            }
        }
        "cluster" => {
            // Three nodes of each server share one Redis; clients spread over the nodes, so
            // most deliveries cross nodes. The raw limit stays one process, as the reference.
            let mut cluster = ctx.clone();
            cluster.env.nerve_nodes = CLUSTER_NODES;
            cluster.env.socketio_workers = CLUSTER_NODES;
            let n = ctx.settings.cluster_size;
            for server in &ctx.servers {
                eprintln!("   {} N={n} (cluster)", server.name);
                match scenarios::fanout(&cluster, server, n).await {
                    Ok(row) => results.cluster.push(row),
                    Err(e) => results
                        .skipped
                        .push(skip(Some(server), format!("N = {n}: {e:#}"))),
                }
            }
        }
        "agentbus" => {
            let n = ctx.settings.bus_tasks;
            match agentbus::memory(n).await {
                Ok(row) => results.agentbus.push(row),
                Err(e) => results.skipped.push(skip(None, format!("memory: {e:#}"))),
            }
            // A fresh Redis for each, so neither sees the other's streams.
            let redis = nerve_testkit::RedisServer::start();
            match agentbus::redis_bus(&redis.url(), n).await {
                Ok(row) => results.agentbus.push(row),
                Err(e) => results.skipped.push(skip(None, format!("redis: {e:#}"))),
            }
            drop(redis);
            let redis = nerve_testkit::RedisServer::start();
            match agentbus::raw_redis(&redis.url(), n).await {
                Ok(row) => results.agentbus.push(row),
                Err(e) => results
                    .skipped
                    .push(skip(None, format!("raw redis: {e:#}"))),
            }
        }
        _ => {}
    }
}

/// The repository revision, so a result names the code it measured.
fn revision(dir: &Path) -> String {
    std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .current_dir(dir)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

/// Raises this process's open-file limit to the hard limit; children inherit it.
fn raise_nofile() -> (u64, u64) {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((0, 0))
}

/// Installs the Socket.IO peer's locked npm packages if they are missing.
fn ensure_npm(peer_dir: &Path) -> Result<()> {
    if peer_dir.join("node_modules/socket.io").exists() {
        return Ok(());
    }
    eprintln!("installing the Socket.IO peer (npm ci)");
    let status = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(peer_dir)
        .status()
        .context("running npm ci")?;
    if !status.success() {
        bail!("npm ci failed in {}", peer_dir.display());
    }
    Ok(())
}

fn machine(nofile: (u64, u64)) -> Machine {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let meminfo = read("/proc/meminfo");
    Machine {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model: cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_default(),
        mem_total_mib: meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            / 1024,
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        nofile,
    }
}

/// Replaces the generated block of the README with `table`.
fn update_readme(readme: &Path, table: &str) -> Result<()> {
    let text = std::fs::read_to_string(readme)?;
    let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) else {
        bail!("{} has no {BEGIN} … {END} block", readme.display());
    };
    let updated = format!("{}{BEGIN}\n{table}\n{}", &text[..b], &text[e..]);
    std::fs::write(readme, updated)?;
    Ok(())
}

/// The configuration file `--nerve-config` gives the build `name`.
fn config_of(args: &RunArgs, name: &str) -> Option<PathBuf> {
    args.nerve_config
        .iter()
        .find(|c| c.name == name)
        .map(|c| c.path.clone())
}
