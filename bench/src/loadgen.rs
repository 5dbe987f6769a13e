//! The load-generator process: holds thousands of clients and obeys the runner's commands.
//!
//! Why a separate process: each process may open at most 20,000 files, so the runner spreads
//! large groups over several of these, each binding its own loopback source addresses.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use futures_util::StreamExt;
use futures_util::stream;
use tokio::io::{AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::watch;

use crate::client::{self, ConnectSpec, Plan, Tally};
use crate::control::{Command, ConnectJob, Event, Snapshot};
use crate::stats;

/// Serves commands from stdin until `quit` or end of input.
pub async fn serve() -> std::io::Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut out = tokio::io::stdout();
    let tally = Arc::new(Tally::default());
    let (plan_tx, plan_rx) = watch::channel(Plan::idle());
    let mut window_start = Instant::now();
    while let Some(line) = lines.next_line().await? {
        let cmd: Command = match serde_json::from_str(&line) {
            Ok(c) => c,
            Err(e) => {
                let message = format!("bad command: {e}");
                emit(&mut out, &Event::Failed { message }).await?;
                continue;
            }
        };
        match cmd {
            Command::Connect(job) => {
                let ev = connect_all(job, &tally, &plan_rx).await;
                emit(&mut out, &ev).await?;
            }
            Command::Plan {
                senders,
                mode,
                payload_bytes,
            } => {
                let max = senders.iter().copied().max().map_or(0, |m| m + 1);
                let mut flags = vec![false; max];
                for s in senders {
                    flags[s] = true;
                }
                plan_tx.send_replace(Plan {
                    senders: Arc::new(flags),
                    mode,
                    payload_bytes,
                });
            }
            Command::Reset => {
                tally.reset();
                window_start = Instant::now();
            }
            Command::Snapshot => {
                let ev = match stats::encode(&tally.histogram()) {
                    Ok(hist) => Event::Stats(Snapshot {
                        elapsed_s: window_start.elapsed().as_secs_f64(),
                        received: tally.received.load(Ordering::Relaxed),
                        sent: tally.sent.load(Ordering::Relaxed),
                        stalls: tally.stalls.load(Ordering::Relaxed),
                        closed: tally.closed.load(Ordering::Relaxed),
                        hist,
                    }),
                    Err(e) => Event::Failed {
                        message: e.to_string(),
                    },
                };
                emit(&mut out, &ev).await?;
            }
            Command::Quit => break,
        }
    }
    // Dropping the plan sender makes every client close its socket.
    drop(plan_tx);
    Ok(())
}

async fn connect_all(job: ConnectJob, tally: &Arc<Tally>, plan: &watch::Receiver<Plan>) -> Event {
    if job.endpoints.is_empty() || job.sources.is_empty() {
        return Event::Failed {
            message: "connect needs endpoints and source addresses".into(),
        };
    }
    let started = Instant::now();
    let job = Arc::new(job);
    let results = stream::iter(0..job.groups.len())
        .map(|i| {
            let job = Arc::clone(&job);
            async move {
                let spec = ConnectSpec {
                    dialect: job.dialect,
                    addr: job.endpoints[i % job.endpoints.len()],
                    hub: job.hub.clone(),
                    key: job.key.clone(),
                    group: job.groups[i].clone(),
                    source: job.sources[i % job.sources.len()],
                    id: job.id_base + i as u64,
                };
                (i, spec.clone(), client::connect(&spec).await)
            }
        })
        .buffer_unordered(job.concurrency.max(1));
    tokio::pin!(results);
    let (mut ok, mut failed, mut first_error) = (0, 0, None);
    while let Some((i, spec, result)) = results.next().await {
        match result {
            Ok(ws) => {
                ok += 1;
                tokio::spawn(client::run(
                    ws,
                    spec.dialect,
                    spec.group,
                    i,
                    spec.id,
                    Arc::clone(tally),
                    plan.clone(),
                ));
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    Event::Connected {
        ok,
        failed,
        first_error,
        secs: started.elapsed().as_secs_f64(),
    }
}

async fn emit(out: &mut (impl AsyncWrite + Unpin), ev: &Event) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(ev).map_err(std::io::Error::other)?;
    line.push(b'\n');
    out.write_all(&line).await?;
    out.flush().await
}
