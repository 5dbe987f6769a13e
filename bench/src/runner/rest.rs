//! Scenario 4: backend services publishing over HTTP. Nerve gets the Azure data-plane call
//! (`POST /api/hubs/{hub}/groups/{group}/:send` with a Bearer token); the Socket.IO peer and the
//! raw server expose `POST /publish/{group}`, the least a backend would add to them.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use tokio::time::{Instant, sleep};

use super::report::RestRow;
use super::saturation::to_measure;
use super::scenarios::{Ctx, PER_WORKER};
use super::targets::{Kind, Server, Target};
use super::workers::{Fleet, FleetTarget};
use nerve_bench::{payload, stats, token};

/// Groups the requests rotate over, and members in each.
const GROUPS: usize = 10;
const MEMBERS: usize = 10;
/// Sender id in REST payloads; no client has it.
const REST_SENDER: u64 = u64::MAX / 2;

struct Burst {
    accepted: u64,
    errors: u64,
    first_error: Option<String>,
    hist: Histogram<u64>,
}

/// Measures REST publishing against a fresh instance of `server`.
pub async fn rest(ctx: &Ctx, server: &Server) -> Result<RestRow> {
    let target = Target::start(server, &ctx.env).await?;
    let result = rest_on(ctx, &target).await;
    target.stop().await;
    result
}

async fn rest_on(ctx: &Ctx, target: &Target) -> Result<RestRow> {
    let s = &ctx.settings;
    let groups = (0..GROUPS * MEMBERS)
        .map(|i| Some(format!("rest{}", i % GROUPS)))
        .collect();
    let fleet_target = FleetTarget {
        dialect: target.dialect(),
        endpoints: &target.endpoints,
        key: target.key.as_deref(),
    };
    let (mut fleet, c) = Fleet::connect(&ctx.env.exe, fleet_target, groups, PER_WORKER).await?;
    if c.failed > 0 {
        fleet.quit().await;
        bail!(
            "{} clients failed to connect: {:?}",
            c.failed,
            c.first_error
        );
    }
    let requests = Arc::new(requests(target)?);
    let warm = burst(ctx, &requests, s.warmup_s).await;
    if warm.accepted == 0 {
        fleet.quit().await;
        bail!(
            "no request accepted: {}",
            warm.first_error.unwrap_or_default()
        );
    }
    fleet.reset().await?;
    let measured = burst(ctx, &requests, s.measure_s).await;
    let window = fleet.snapshot().await?;
    fleet.quit().await;
    Ok(RestRow {
        target: target.name.clone(),
        requests_per_s: measured.accepted as f64 / window.elapsed_s.max(1e-9),
        accepted: measured.accepted,
        errors: measured.errors,
        first_error: measured.first_error,
        http_latency: stats::summarize(&measured.hist),
        deliveries: to_measure(
            &super::workers::Window {
                sent: measured.accepted,
                ..window
            },
            MEMBERS as f64,
        ),
    })
}

/// One prepared request per group: URL and the Authorization header value, if any.
fn requests(target: &Target) -> Result<Vec<(String, Option<String>)>> {
    (0..GROUPS)
        .map(|g| {
            let ep = target.endpoints[g % target.endpoints.len()];
            Ok(match target.kind {
                Kind::Nerve => {
                    let url = format!("http://{ep}/api/hubs/bench/groups/rest{g}/:send");
                    let key = target.key.as_deref().unwrap_or_default();
                    let jwt = token::sign(key, &url, None, &[])?;
                    (
                        format!("{url}?api-version=2024-01-01"),
                        Some(format!("Bearer {jwt}")),
                    )
                }
                Kind::SocketIo | Kind::Raw => (format!("http://{ep}/publish/rest{g}"), None),
            })
        })
        .collect()
}

/// `rest_concurrency` tasks posting back to back for `secs`.
async fn burst(ctx: &Ctx, requests: &Arc<Vec<(String, Option<String>)>>, secs: f64) -> Burst {
    let s = &ctx.settings;
    let client = reqwest::Client::new();
    let shared = Arc::new(Mutex::new(Burst {
        accepted: 0,
        errors: 0,
        first_error: None,
        hist: stats::new_histogram(),
    }));
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for worker in 0..s.rest_concurrency {
        let (client, requests, shared) =
            (client.clone(), Arc::clone(requests), Arc::clone(&shared));
        let size = s.payload_bytes;
        tasks.push(tokio::spawn(async move {
            let mut i = worker;
            while Instant::now() < deadline {
                let (url, auth) = &requests[i % requests.len()];
                i += 1;
                let started = Instant::now();
                let body = payload::build(payload::now_nanos(), REST_SENDER, size);
                let mut req = client
                    .post(url)
                    .header("content-type", "text/plain")
                    .body(body);
                if let Some(auth) = auth {
                    req = req.header("authorization", auth);
                }
                let outcome = match req.send().await {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(format!("HTTP {}", r.status())),
                    Err(e) => Err(e.to_string()),
                };
                let micros = started.elapsed().as_micros() as u64;
                let refused_all = {
                    let mut b = shared.lock();
                    match outcome {
                        Ok(()) => {
                            b.accepted += 1;
                            stats::record(&mut b.hist, micros);
                        }
                        Err(e) => {
                            b.errors += 1;
                            b.first_error.get_or_insert(e);
                        }
                    }
                    b.errors > 0 && b.accepted == 0
                };
                if refused_all {
                    // A server that refuses everything is not worth hammering.
                    sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut b = shared.lock();
    Burst {
        accepted: b.accepted,
        errors: b.errors,
        first_error: b.first_error.take(),
        hist: b.hist.clone(),
    }
}
