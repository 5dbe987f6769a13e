//! `nerve-bench`: `run` measures Nerve against Socket.IO and the raw-socket limit; `loadgen`
//! and `raw-server` are the child processes the runner starts.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod runner;

#[cfg(feature = "alloc-mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(all(feature = "alloc-jemalloc", not(feature = "alloc-mimalloc")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "nerve-bench",
    about = "Benchmarks Nerve against Socket.IO and the raw-socket limit"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the scenarios and print the comparison table.
    Run(runner::RunArgs),
    /// A load-generator process, driven by JSON lines on stdin (started by `run`).
    Loadgen,
    /// The raw-limit server; prints `listening PORT` (started by `run`).
    RawServer {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
}

async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Run(args) => {
            // Dropping the run on a signal kills every server and load generator it started.
            tokio::select! {
                r = runner::run(args) => r,
                _ = interrupted() => anyhow::bail!("interrupted"),
            }
        }
        Cmd::Loadgen => {
            let _ = rlimit::increase_nofile_limit(u64::MAX);
            Ok(nerve_bench::loadgen::serve().await?)
        }
        Cmd::RawServer { listen } => {
            let _ = rlimit::increase_nofile_limit(u64::MAX);
            let listener = tokio::net::TcpListener::bind(&listen).await?;
            println!("listening {}", listener.local_addr()?.port());
            Ok(nerve_bench::rawserver::serve(listener).await?)
        }
    }
}
