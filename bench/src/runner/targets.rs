//! The servers under test, started fresh for each measurement: Nerve, the Socket.IO peer (one or
//! more Node processes sharing rooms through the Redis adapter) and the raw-limit server.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep, timeout};

use nerve_bench::dialect::Dialect;

/// How long a server may take to print its address and answer its health check.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lowercase")]
pub enum Kind {
    /// The Nerve hub.
    Nerve,
    /// Socket.IO with the Redis adapter.
    SocketIo,
    /// The raw-socket limit.
    Raw,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Nerve => "nerve",
            Kind::SocketIo => "socketio",
            Kind::Raw => "raw",
        })
    }
}

/// Where the runner finds the programs it starts.
#[derive(Debug, Clone)]
pub struct Env {
    /// This program (for `raw-server` and `loadgen`).
    pub exe: PathBuf,
    /// The `nerve` binary.
    pub nerve_bin: PathBuf,
    /// The Socket.IO peer's directory (with `server.js` and `node_modules`).
    pub peer_dir: PathBuf,
    /// Redis the Socket.IO adapter uses.
    pub redis_url: String,
    /// Node processes for the peer.
    pub socketio_workers: usize,
    /// Nerve processes; more than one form a cluster over `redis_url`.
    pub nerve_nodes: usize,
    /// Where server logs go.
    pub log_dir: PathBuf,
}

/// A running server.
pub struct Target {
    /// Which server.
    pub kind: Kind,
    /// Addresses clients connect to (one per process).
    pub endpoints: Vec<SocketAddr>,
    /// Access key (Nerve).
    pub key: Option<String>,
    children: Vec<Child>,
}

/// The access key the runner gives Nerve.
const KEY: &str = "bench-access-key-0123456789abcdef";

impl Target {
    /// Starts a fresh server of `kind` and waits until it answers.
    pub async fn start(kind: Kind, env: &Env) -> Result<Target> {
        let mut target = Target {
            kind,
            endpoints: Vec::new(),
            key: None,
            children: Vec::new(),
        };
        let count = match kind {
            Kind::Nerve => env.nerve_nodes.max(1),
            Kind::SocketIo => env.socketio_workers.max(1),
            Kind::Raw => 1,
        };
        for i in 0..count {
            let mut cmd = match kind {
                Kind::Nerve => {
                    if !env.nerve_bin.exists() {
                        bail!(
                            "the nerve binary is not built (cargo build --release -p nerve-hub --bin nerve)"
                        );
                    }
                    target.key = Some(KEY.to_string());
                    let mut c = Command::new(&env.nerve_bin);
                    c.args(["--listen", "127.0.0.1:0", "--access-key", KEY]);
                    c.args(["--log-level", "warn"]);
                    if count > 1 {
                        c.args(["--redis", &env.redis_url]);
                    }
                    c
                }
                Kind::SocketIo => {
                    let mut c = Command::new("node");
                    c.arg(env.peer_dir.join("server.js"));
                    c.env("PORT", "0").env("REDIS_URL", &env.redis_url);
                    c
                }
                Kind::Raw => {
                    let mut c = Command::new(&env.exe);
                    c.args(["raw-server", "--listen", "127.0.0.1:0"]);
                    c
                }
            };
            let log = std::fs::File::create(env.log_dir.join(format!("{kind}-{i}.log")))?;
            cmd.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::from(log))
                .kill_on_drop(true);
            let mut child = cmd.spawn().with_context(|| format!("starting {kind}"))?;
            let stdout = child.stdout.take().context("child stdout")?;
            target.children.push(child);
            let port = timeout(START_TIMEOUT, read_port(stdout))
                .await
                .map_err(|_| anyhow!("{kind} printed no address in {START_TIMEOUT:?}"))??;
            target
                .endpoints
                .push(SocketAddr::from(([127, 0, 0, 1], port)));
        }
        target.wait_healthy().await?;
        Ok(target)
    }

    /// The dialect its clients speak.
    pub fn dialect(&self) -> Dialect {
        match self.kind {
            Kind::Nerve => Dialect::Azure,
            Kind::SocketIo => Dialect::SocketIo,
            Kind::Raw => Dialect::Raw,
        }
    }

    /// Resident memory of all its processes, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.children
            .iter()
            .filter_map(|c| c.id())
            .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
            .filter_map(|s| parse_vm_rss(&s))
            .sum()
    }

    /// Kills every process and waits for it.
    pub async fn stop(mut self) {
        for c in &mut self.children {
            let _ = c.kill().await;
        }
    }

    async fn wait_healthy(&self) -> Result<()> {
        let client = reqwest::Client::new();
        let path = match self.kind {
            Kind::Nerve => "/api/health",
            Kind::SocketIo => "/health",
            Kind::Raw => "/",
        };
        let deadline = Instant::now() + START_TIMEOUT;
        for ep in &self.endpoints {
            let url = format!("http://{ep}{path}");
            loop {
                let ok = client
                    .head(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("{} at {ep} never answered {path}", self.kind);
                }
                sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }
}

/// Reads stdout until a line names the port, then keeps draining it in the background.
async fn read_port(stdout: tokio::process::ChildStdout) -> Result<u16> {
    let mut lines = BufReader::new(stdout).lines();
    while let Some(line) = lines.next_line().await? {
        if let Some(port) = parse_port(&line) {
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok(port);
        }
    }
    bail!("exited before printing its address")
}

/// Finds the port in `Endpoint=http://127.0.0.1:PORT;...` or `listening PORT`.
pub fn parse_port(line: &str) -> Option<u16> {
    if let Some(rest) = line.strip_prefix("listening ") {
        return rest.trim().parse().ok();
    }
    let endpoint = line
        .split(';')
        .find_map(|part| part.trim().strip_prefix("Endpoint="))?;
    let after_host = endpoint.rsplit_once(':')?.1;
    after_host.trim_end_matches('/').parse().ok()
}

/// The `VmRSS` of a `/proc/PID/status` text, in KiB.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_from_both_announcements() {
        assert_eq!(
            parse_port("Endpoint=http://127.0.0.1:41234;AccessKey=k;Version=1.0;"),
            Some(41234)
        );
        assert_eq!(parse_port("listening 5000"), Some(5000));
        assert_eq!(parse_port("some log line"), None);
    }

    #[test]
    fn vm_rss_in_kib() {
        let s = "Name:\tnerve\nVmPeak:\t 100 kB\nVmRSS:\t   12345 kB\nThreads: 3\n";
        assert_eq!(parse_vm_rss(s), Some(12345));
    }
}
