//! The named scenarios. Each starts a fresh server per measurement, connects a fleet of clients,
//! measures, and tears everything down, so one server's leftovers never colour the next.

use std::time::Duration;

use anyhow::{Result, bail};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::{Instant, sleep};

use super::report::{IdleRow, LoadRow, Settings};
use super::saturation::{Probe, saturate};
use super::targets::{Env, Server, Target};
use super::workers::{Fleet, FleetTarget};

/// Clients per load-generator process (each process may open 20,000 files).
pub const PER_WORKER: usize = 9_500;

/// What every scenario needs.
#[derive(Clone)]
pub struct Ctx {
    /// Programs and paths.
    pub env: Env,
    /// Sizes and durations.
    pub settings: Settings,
    /// Servers to measure, in the order each measurement visits them.
    pub servers: Vec<Server>,
}

fn fleet_target(t: &Target) -> FleetTarget<'_> {
    FleetTarget {
        dialect: t.dialect(),
        endpoints: &t.endpoints,
        key: t.key.as_deref(),
    }
}

/// Runs `body` against a fresh instance of `server`, stopping it afterwards.
async fn with_target<T>(
    ctx: &Ctx,
    server: &Server,
    body: impl AsyncFnOnce(&Target) -> Result<T>,
) -> Result<T> {
    let target = Target::start(server, &ctx.env).await?;
    let result = body(&target).await;
    target.stop().await;
    result
}

/// Scenario 1: how much memory each idle connection costs the server.
pub async fn idle(ctx: &Ctx, server: &Server) -> Result<IdleRow> {
    let n = ctx.settings.idle_connections;
    with_target(ctx, server, async |target| {
        let rss_before_kib = settled_rss(target).await;
        let (fleet, c) = Fleet::connect(
            &ctx.env.exe,
            fleet_target(target),
            vec![None; n],
            PER_WORKER,
        )
        .await?;
        let rss_after_kib = settled_rss(target).await;
        fleet.quit().await;
        if c.ok == 0 {
            bail!("no connection succeeded: {:?}", c.first_error);
        }
        Ok(IdleRow {
            target: server.name.clone(),
            requested: n,
            connected: c.ok,
            first_error: c.first_error,
            rss_before_kib,
            rss_after_kib,
            bytes_per_conn: rss_after_kib.saturating_sub(rss_before_kib) as f64 * 1024.0
                / c.ok as f64,
            connect_s: c.secs,
        })
    })
    .await
}

/// Waits until the server's RSS stops moving (within 0.5% over 250 ms, at most 5 s).
async fn settled_rss(target: &Target) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = target.rss_kib();
    loop {
        sleep(Duration::from_millis(250)).await;
        let now = target.rss_kib();
        if now.abs_diff(last) * 200 <= last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// Scenario 2: one publisher (client 0, a member itself) to a group of `n` subscribers.
pub async fn fanout(ctx: &Ctx, server: &Server, n: usize) -> Result<LoadRow> {
    let s = &ctx.settings;
    with_target(ctx, server, async |target| {
        let groups = vec![Some("fanout".to_string()); n + 1];
        let (mut fleet, c) =
            Fleet::connect(&ctx.env.exe, fleet_target(target), groups, PER_WORKER).await?;
        if c.failed > 0 {
            fleet.quit().await;
            bail!(
                "{} of {} clients failed to connect: {:?}",
                c.failed,
                n + 1,
                c.first_error
            );
        }
        let probe = Probe {
            senders: &[0],
            recipients_per_msg: c.ok as f64,
            window: s.fanout_window,
        };
        let found = saturate(ctx, &mut fleet, probe).await;
        fleet.quit().await;
        let (estimate, sat, half) = found?;
        Ok(LoadRow {
            target: server.name.clone(),
            size: n,
            rooms: None,
            connected: c.ok,
            failed: c.failed,
            estimate: Some(estimate),
            saturation: sat,
            half: Some(half),
        })
    })
    .await
}

/// Scenario 3: `clients` spread over rooms of 2–50, one random sender per room.
pub async fn rooms(ctx: &Ctx, server: &Server, clients: usize) -> Result<LoadRow> {
    let (groups, senders, room_count) = plan_rooms(clients, 7);
    let mean_room = clients as f64 / room_count.max(1) as f64;
    with_target(ctx, server, async |target| {
        let (mut fleet, c) =
            Fleet::connect(&ctx.env.exe, fleet_target(target), groups, PER_WORKER).await?;
        if c.failed > 0 {
            fleet.quit().await;
            bail!(
                "{} clients failed to connect: {:?}",
                c.failed,
                c.first_error
            );
        }
        let probe = Probe {
            senders: &senders,
            recipients_per_msg: mean_room,
            window: 2,
        };
        let found = saturate(ctx, &mut fleet, probe).await;
        fleet.quit().await;
        let (estimate, sat, half) = found?;
        Ok(LoadRow {
            target: server.name.clone(),
            size: clients,
            rooms: Some(room_count),
            connected: c.ok,
            failed: c.failed,
            estimate: Some(estimate),
            saturation: sat,
            half: Some(half),
        })
    })
    .await
}

/// Assigns clients to rooms of random size 2–50 and picks one random sender per room.
pub fn plan_rooms(clients: usize, seed: u64) -> (Vec<Option<String>>, Vec<usize>, usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut groups = Vec::with_capacity(clients);
    let mut senders = Vec::new();
    let mut room = 0;
    while groups.len() < clients {
        let left = clients - groups.len();
        let mut size = rng.random_range(2..=50).min(left);
        // Never leave a room of one behind.
        if left - size == 1 {
            size += 1;
        }
        senders.push(groups.len() + rng.random_range(0..size));
        groups.extend(std::iter::repeat_n(Some(format!("room{room}")), size));
        room += 1;
    }
    (groups, senders, room)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_cover_every_client_with_sizes_2_to_51() {
        let (groups, senders, rooms) = plan_rooms(1000, 1);
        assert_eq!(groups.len(), 1000);
        assert_eq!(senders.len(), rooms);
        let mut sizes = std::collections::HashMap::new();
        for g in groups.iter().flatten() {
            *sizes.entry(g.clone()).or_insert(0) += 1;
        }
        assert_eq!(sizes.len(), rooms);
        assert!(sizes.values().all(|&n| (2..=51).contains(&n)), "{sizes:?}");
        for &s in &senders {
            assert!(groups[s].is_some());
        }
    }
}
