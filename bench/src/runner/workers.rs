//! A fleet of load-generator processes driven as one: clients are numbered globally and split
//! into contiguous blocks, one block per process, each process binding its own loopback source
//! addresses.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::time::timeout;

use nerve_bench::client::SendMode;
use nerve_bench::control::{self, ConnectJob, Event};
use nerve_bench::dialect::Dialect;
use nerve_bench::stats;

/// Source addresses each process binds (ephemeral ports are per source address).
const SOURCES_PER_WORKER: u8 = 4;
/// How long a fleet may take to connect.
const CONNECT_DEADLINE: Duration = Duration::from_secs(300);
/// How long any other answer may take.
const ANSWER_DEADLINE: Duration = Duration::from_secs(30);

struct Worker {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Worker {
    fn spawn(exe: &Path) -> Result<Worker> {
        let mut child = Command::new(exe)
            .arg("loadgen")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting a load generator")?;
        let stdin = child.stdin.take().context("loadgen stdin")?;
        let stdout = child.stdout.take().context("loadgen stdout")?;
        Ok(Worker {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        })
    }

    async fn send(&mut self, cmd: &control::Command) -> Result<()> {
        let mut line = serde_json::to_vec(cmd)?;
        line.push(b'\n');
        self.stdin.write_all(&line).await?;
        self.stdin.flush().await?;
        Ok(())
    }

    async fn recv(&mut self, within: Duration) -> Result<Event> {
        let line = timeout(within, self.lines.next_line())
            .await
            .map_err(|_| anyhow!("load generator did not answer in {within:?}"))??
            .ok_or_else(|| anyhow!("load generator exited"))?;
        match serde_json::from_str(&line)? {
            Event::Failed { message } => bail!("load generator: {message}"),
            ev => Ok(ev),
        }
    }
}

/// Outcome of connecting a fleet.
#[derive(Debug, Clone, Default)]
pub struct Connected {
    /// Clients connected and joined.
    pub ok: usize,
    /// Clients that failed.
    pub failed: usize,
    /// The first failure.
    pub first_error: Option<String>,
    /// Seconds the slowest process took.
    pub secs: f64,
}

/// Merged counters of one measurement window.
pub struct Window {
    /// Longest window among the processes, in seconds.
    pub elapsed_s: f64,
    /// Messages received by all clients.
    pub received: u64,
    /// Messages sent by all clients.
    pub sent: u64,
    /// Window stalls (own message not seen within a second).
    pub stalls: u64,
    /// Clients closed by the server so far (not reset).
    pub closed: u64,
    /// Latency of every received message, in µs.
    pub hist: Histogram<u64>,
}

/// Load generators holding one scenario's clients.
pub struct Fleet {
    workers: Vec<Worker>,
    per_worker: usize,
    /// Clients that connected.
    pub clients: usize,
}

/// What every client of a fleet connects to.
pub struct FleetTarget<'a> {
    /// Wire dialect.
    pub dialect: Dialect,
    /// Server addresses.
    pub endpoints: &'a [SocketAddr],
    /// Access key (Nerve).
    pub key: Option<&'a str>,
}

impl Fleet {
    /// Starts enough processes for `groups.len()` clients and connects them all in parallel.
    pub async fn connect(
        exe: &Path,
        target: FleetTarget<'_>,
        groups: Vec<Option<String>>,
        per_worker: usize,
    ) -> Result<(Fleet, Connected)> {
        let per_worker = per_worker.max(1);
        let mut workers = Vec::new();
        for (w, chunk) in groups.chunks(per_worker).enumerate() {
            let mut worker = Worker::spawn(exe)?;
            // 127.0.0.2 onwards; the servers listen on 127.0.0.1.
            let sources = (0..SOURCES_PER_WORKER)
                .map(|s| {
                    let n = (w % 60) as u8 * SOURCES_PER_WORKER + s;
                    Ipv4Addr::new(127, 0, 0, 2 + n)
                })
                .collect();
            worker
                .send(&control::Command::Connect(ConnectJob {
                    dialect: target.dialect,
                    endpoints: target.endpoints.to_vec(),
                    hub: "bench".into(),
                    key: target.key.map(str::to_string),
                    groups: chunk.to_vec(),
                    id_base: (w * per_worker) as u64,
                    sources,
                    concurrency: 128,
                }))
                .await?;
            workers.push(worker);
        }
        let mut total = Connected::default();
        for worker in &mut workers {
            match worker.recv(CONNECT_DEADLINE).await? {
                Event::Connected {
                    ok,
                    failed,
                    first_error,
                    secs,
                } => {
                    total.ok += ok;
                    total.failed += failed;
                    total.secs = total.secs.max(secs);
                    if total.first_error.is_none() {
                        total.first_error = first_error;
                    }
                }
                other => bail!("unexpected answer to connect: {other:?}"),
            }
        }
        Ok((
            Fleet {
                workers,
                per_worker,
                clients: total.ok,
            },
            total,
        ))
    }

    /// Makes the clients with these global indices send in `mode`; everyone else stops sending.
    pub async fn plan(
        &mut self,
        senders: &[usize],
        mode: SendMode,
        payload_bytes: usize,
    ) -> Result<()> {
        for (w, worker) in self.workers.iter_mut().enumerate() {
            let base = w * self.per_worker;
            let local = senders
                .iter()
                .filter(|&&g| g >= base && g < base + self.per_worker)
                .map(|&g| g - base)
                .collect();
            worker
                .send(&control::Command::Plan {
                    senders: local,
                    mode,
                    payload_bytes,
                })
                .await?;
        }
        Ok(())
    }

    /// Starts a measurement window in every process.
    pub async fn reset(&mut self) -> Result<()> {
        for worker in &mut self.workers {
            worker.send(&control::Command::Reset).await?;
        }
        Ok(())
    }

    /// Ends a measurement window: collects and merges every process's counters.
    pub async fn snapshot(&mut self) -> Result<Window> {
        for worker in &mut self.workers {
            worker.send(&control::Command::Snapshot).await?;
        }
        let mut window = Window {
            elapsed_s: 0.0,
            received: 0,
            sent: 0,
            stalls: 0,
            closed: 0,
            hist: stats::new_histogram(),
        };
        for worker in &mut self.workers {
            match worker.recv(ANSWER_DEADLINE).await? {
                Event::Stats(s) => {
                    window.elapsed_s = window.elapsed_s.max(s.elapsed_s);
                    window.received += s.received;
                    window.sent += s.sent;
                    window.stalls += s.stalls;
                    window.closed += s.closed;
                    stats::merge(&mut window.hist, &stats::decode(&s.hist)?)?;
                }
                other => bail!("unexpected answer to snapshot: {other:?}"),
            }
        }
        Ok(window)
    }

    /// Closes every client and ends the processes.
    pub async fn quit(mut self) {
        for worker in &mut self.workers {
            let _ = worker.send(&control::Command::Quit).await;
        }
        for worker in &mut self.workers {
            if timeout(Duration::from_secs(10), worker.child.wait())
                .await
                .is_err()
            {
                let _ = worker.child.kill().await;
            }
        }
    }
}
