//! The servers under test, started fresh for each measurement: Nerve (one or more builds, each
//! under its own name), the Socket.IO peer (one or more Node processes sharing rooms through the
//! Redis adapter) and the raw-limit server.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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

/// One server a run measures, under the name its rows carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// The name in every table and in the JSON: `nerve` (or a `--nerve` name), `socketio`, `raw`.
    pub name: String,
    /// Which server.
    pub kind: Kind,
    /// The binary, for Nerve.
    pub nerve_bin: Option<PathBuf>,
    /// A configuration file the Nerve build starts with (`--nerve-config`).
    pub nerve_config: Option<PathBuf>,
    /// The dialect its clients speak.
    pub dialect: Dialect,
}

/// What the name of a Nerve build's MQTT rows ends with.
pub const MQTT_SUFFIX: &str = "-mqtt";

impl Server {
    /// A Nerve build named `name`.
    pub fn nerve(name: &str, bin: PathBuf) -> Server {
        Server {
            name: name.to_string(),
            kind: Kind::Nerve,
            nerve_bin: Some(bin),
            nerve_config: None,
            dialect: Dialect::Azure,
        }
    }

    /// The same Nerve build with its clients speaking MQTT, named `<name>-mqtt`.
    pub fn mqtt(&self) -> Server {
        Server {
            name: format!("{}{MQTT_SUFFIX}", self.name),
            dialect: Dialect::Mqtt,
            ..self.clone()
        }
    }

    /// The Socket.IO peer or the raw limit, named after its kind.
    pub fn peer(kind: Kind) -> Server {
        Server {
            name: kind.to_string(),
            kind,
            nerve_bin: None,
            nerve_config: None,
            dialect: match kind {
                Kind::Nerve => Dialect::Azure,
                Kind::SocketIo => Dialect::SocketIo,
                Kind::Raw => Dialect::Raw,
            },
        }
    }
}

/// A Nerve binary named on the command line as `NAME=PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NerveBuild {
    /// The name its rows carry.
    pub name: String,
    /// The binary.
    pub path: PathBuf,
}

impl std::str::FromStr for NerveBuild {
    type Err = String;

    fn from_str(s: &str) -> Result<NerveBuild, String> {
        let (name, path) = s
            .split_once('=')
            .ok_or_else(|| format!("expected NAME=PATH, got {s:?}"))?;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(format!(
                "name {name:?} must be letters, digits, '-', '_' or '.'"
            ));
        }
        // Rows are told apart by name alone.
        if [Kind::SocketIo, Kind::Raw]
            .iter()
            .any(|k| k.to_string() == name)
        {
            return Err(format!("name {name:?} is taken by another server"));
        }
        if name.ends_with(MQTT_SUFFIX) {
            return Err(format!(
                "name {name:?} ends with {MQTT_SUFFIX:?}, which names a build's MQTT rows"
            ));
        }
        if path.is_empty() {
            return Err(format!("no path for {name:?}"));
        }
        Ok(NerveBuild {
            name: name.to_string(),
            path: PathBuf::from(path),
        })
    }
}

/// Checks a list of `--nerve` builds and `--nerve-config` files before a long run starts:
/// names unique, binaries and files present, every configuration for a named build.
pub fn check_builds(builds: &[NerveBuild], configs: &[NerveBuild]) -> Result<()> {
    for (i, b) in builds.iter().enumerate() {
        if builds[..i].iter().any(|o| o.name == b.name) {
            bail!("--nerve {} is named twice", b.name);
        }
        if !b.path.is_file() {
            bail!("--nerve {}={}: no such file", b.name, b.path.display());
        }
    }
    for (i, c) in configs.iter().enumerate() {
        if configs[..i].iter().any(|o| o.name == c.name) {
            bail!("--nerve-config {} is named twice", c.name);
        }
        if !builds.iter().any(|b| b.name == c.name) {
            bail!("--nerve-config {}: no --nerve build has that name", c.name);
        }
        if !c.path.is_file() {
            bail!(
                "--nerve-config {}={}: no such file",
                c.name,
                c.path.display()
            );
        }
    }
    Ok(())
}

/// The file name of a binary, without the directories it lives in.
pub fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |f| f.to_string_lossy().into(),
    )
}

/// Where the runner finds the programs it starts.
#[derive(Debug, Clone)]
pub struct Env {
    /// This program (for `raw-server` and `loadgen`).
    pub exe: PathBuf,
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
    /// Its name in the results.
    pub name: String,
    /// Which server.
    pub kind: Kind,
    /// Addresses clients connect to (one per process).
    pub endpoints: Vec<SocketAddr>,
    /// Access key (Nerve).
    pub key: Option<String>,
    dialect: Dialect,
    children: Vec<Child>,
}

/// The access key the runner gives Nerve.
const KEY: &str = "bench-access-key-0123456789abcdef";

impl Target {
    /// Starts a fresh instance of `server` and waits until it answers.
    pub async fn start(server: &Server, env: &Env) -> Result<Target> {
        let kind = server.kind;
        let name = &server.name;
        let mut target = Target {
            name: name.clone(),
            kind,
            endpoints: Vec::new(),
            key: None,
            dialect: server.dialect,
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
                    let Some(bin) = server.nerve_bin.as_ref().filter(|b| b.exists()) else {
                        bail!(
                            "the nerve binary is not built (cargo build --release -p nerve-hub --bin nerve)"
                        );
                    };
                    target.key = Some(KEY.to_string());
                    let mut c = Command::new(bin);
                    c.args(["--listen", "127.0.0.1:0", "--access-key", KEY]);
                    c.args(["--log-level", "warn"]);
                    if let Some(config) = &server.nerve_config {
                        c.arg("--config").arg(config);
                    }
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
            let log = std::fs::File::create(env.log_dir.join(format!("{name}-{i}.log")))?;
            cmd.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::from(log))
                .kill_on_drop(true);
            let mut child = cmd.spawn().with_context(|| format!("starting {name}"))?;
            let stdout = child.stdout.take().context("child stdout")?;
            target.children.push(child);
            let port = timeout(START_TIMEOUT, read_port(stdout))
                .await
                .map_err(|_| anyhow!("{name} printed no address in {START_TIMEOUT:?}"))??;
            target
                .endpoints
                .push(SocketAddr::from(([127, 0, 0, 1], port)));
        }
        target.wait_healthy().await?;
        Ok(target)
    }

    /// The dialect its clients speak.
    pub fn dialect(&self) -> Dialect {
        self.dialect
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
                    bail!("{} at {ep} never answered {path}", self.name);
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
    fn nerve_builds_from_name_equals_path() {
        let b: NerveBuild = "nerve-before=path/to/old/nerve".parse().unwrap();
        assert_eq!(b.name, "nerve-before");
        assert_eq!(b.path, PathBuf::from("path/to/old/nerve"));
        // Only the first '=' splits, so a path may hold one.
        let b: NerveBuild = "a=dir=x/nerve".parse().unwrap();
        assert_eq!(b.path, PathBuf::from("dir=x/nerve"));
        for bad in [
            "nerve",
            "=path",
            "a b=path",
            "raw=path",
            "socketio=path",
            "x=",
        ] {
            assert!(bad.parse::<NerveBuild>().is_err(), "{bad}");
        }
    }

    #[test]
    fn builds_need_unique_names() {
        let exe = std::env::current_exe().unwrap();
        let build = |name: &str| NerveBuild {
            name: name.into(),
            path: exe.clone(),
        };
        assert!(check_builds(&[build("a"), build("b")], &[]).is_ok());
        assert!(check_builds(&[build("a"), build("a")], &[]).is_err());
        let missing = NerveBuild {
            name: "c".into(),
            path: exe.with_file_name("no-such-nerve"),
        };
        assert!(check_builds(std::slice::from_ref(&missing), &[]).is_err());
        // A configuration names a build, and its file exists.
        assert!(check_builds(&[build("a")], &[build("a")]).is_ok());
        assert!(check_builds(&[build("a")], &[build("b")]).is_err());
        assert!(check_builds(&[build("c")], &[missing]).is_err());
        assert!(check_builds(&[build("a")], &[build("a"), build("a")]).is_err());
        assert_eq!(
            file_name(Path::new("path/to/nerve-5408da0")),
            "nerve-5408da0"
        );
    }

    #[test]
    fn vm_rss_in_kib() {
        let s = "Name:\tnerve\nVmPeak:\t 100 kB\nVmRSS:\t   12345 kB\nThreads: 3\n";
        assert_eq!(parse_vm_rss(s), Some(12345));
    }
}
