//! Finding saturation honestly. A closed loop (each sender keeps a few of its own messages in
//! flight) gives a first estimate, but a sender sees its own copy long before the slowest of
//! 10,000 receivers sees theirs, so that estimate can sit above what the server sustains. The
//! search therefore offers open-loop rates around it and keeps the highest one at which the
//! server still delivers (almost) everything with bounded latency; "half" is then half of that.

use std::time::Duration;

use anyhow::Result;
use tokio::time::{Instant, sleep};

use super::report::Measure;
use super::scenarios::Ctx;
use super::workers::{Fleet, Window};
use nerve_bench::client::SendMode;
use nerve_bench::stats;

/// A rate is sustained when at least this fraction of the expected deliveries arrived...
const MIN_DELIVERED: f64 = 0.97;
/// ...the senders managed this fraction of the offered rate...
const MIN_SENT: f64 = 0.95;
/// ...no more than this fraction arrived (more means a backlog from before was still draining)...
const MAX_DELIVERED: f64 = 1.03;
/// ...and 99% of deliveries took less than this (one message to 10,000 sockets already takes
/// about 100 ms on two shared cores, for the raw server too).
const MAX_P99_US: u64 = 500_000;
/// Rates tried above and below the estimate.
const MAX_STEPS_UP: usize = 3;
const MAX_STEPS_DOWN: usize = 6;
/// Factor between successive rates.
const STEP: f64 = 1.5;
/// How long queues may take to drain between windows.
const DRAIN_DEADLINE: Duration = Duration::from_secs(30);

/// Who sends during a search and how many receive each message.
#[derive(Debug, Clone, Copy)]
pub struct Probe<'a> {
    /// Global indices of the sending clients.
    pub senders: &'a [usize],
    /// Deliveries expected per published message (group size, sender included).
    pub recipients_per_msg: f64,
    /// Messages in flight per sender for the closed-loop estimate.
    pub window: u32,
}

/// Returns (closed-loop estimate, highest sustained rate, half of it). When no rate tried was
/// sustained, the lowest one tried stands in for saturation and its `sustained` is false.
pub async fn saturate(
    ctx: &Ctx,
    fleet: &mut Fleet,
    probe: Probe<'_>,
) -> Result<(Measure, Measure, Measure)> {
    let estimate = measure(ctx, fleet, probe, SendMode::Window(probe.window), None).await?;
    let senders = probe.senders.len().max(1) as f64;
    // When latency outgrows the window, senders barely send while the server is still
    // delivering their backlog: what it delivered is then the better estimate.
    let shown = estimate.deliveries_per_s / probe.recipients_per_msg.max(1.0);
    let mut rate = estimate.msgs_per_s.max(shown).max(senders * 0.5);
    if !ctx.settings.search {
        let half_rate = rate / 2.0;
        let mode = SendMode::Rate(half_rate / senders);
        let half = measure(ctx, fleet, probe, mode, Some(half_rate)).await?;
        return Ok((estimate.clone(), estimate, half));
    }
    let mut best: Option<Measure> = None;
    let mut last = None;
    for _ in 0..MAX_STEPS_DOWN {
        let m = measure(
            ctx,
            fleet,
            probe,
            SendMode::Rate(rate / senders),
            Some(rate),
        )
        .await?;
        let ok = sustained(&m, rate);
        last = Some(m.clone());
        let mut m = m;
        m.sustained = ok;
        if ok {
            best = Some(m);
            break;
        }
        rate /= STEP;
    }
    if best.is_some() && rate >= estimate.msgs_per_s * 0.99 {
        // The estimate held; look above it.
        for _ in 0..MAX_STEPS_UP {
            let up = rate * STEP;
            let m = measure(ctx, fleet, probe, SendMode::Rate(up / senders), Some(up)).await?;
            if !sustained(&m, up) {
                break;
            }
            rate = up;
            best = Some(Measure {
                sustained: true,
                ..m
            });
        }
    }
    let Some(sat) = best.or(last) else {
        anyhow::bail!("no rate measured");
    };
    let half_rate = sat.offered_msgs_per_s.unwrap_or(sat.msgs_per_s) / 2.0;
    let half = measure(
        ctx,
        fleet,
        probe,
        SendMode::Rate(half_rate / senders),
        Some(half_rate),
    )
    .await?;
    Ok((estimate, sat, half))
}

/// Whether a window at `offered` messages/s kept up. With few messages in a window, one message
/// straddling its start or end moves the delivered fraction by 1/sent, so that much is tolerated.
pub fn sustained(m: &Measure, offered: f64) -> bool {
    let edge = 1.0 / m.sent.max(1) as f64;
    (MIN_DELIVERED - edge..=MAX_DELIVERED + edge).contains(&m.delivered_fraction)
        && m.msgs_per_s >= MIN_SENT * offered
        && m.latency.p99_us <= MAX_P99_US
        && m.closed == 0
}

/// One warm-up plus one measurement window, then waits for queues to drain.
async fn measure(
    ctx: &Ctx,
    fleet: &mut Fleet,
    probe: Probe<'_>,
    mode: SendMode,
    offered: Option<f64>,
) -> Result<Measure> {
    let s = &ctx.settings;
    let closed_before = fleet_closed(fleet).await?;
    fleet.plan(probe.senders, mode, s.payload_bytes).await?;
    sleep(Duration::from_secs_f64(s.warmup_s)).await;
    fleet.reset().await?;
    sleep(Duration::from_secs_f64(s.measure_s)).await;
    let w = fleet.snapshot().await?;
    fleet.plan(&[], SendMode::Idle, s.payload_bytes).await?;
    drain(fleet).await?;
    // Clients the server cut off earlier no longer receive.
    let alive = 1.0 - closed_before as f64 / fleet.clients.max(1) as f64;
    let mut m = to_measure(&w, probe.recipients_per_msg * alive);
    m.closed = w.closed.saturating_sub(closed_before);
    m.offered_msgs_per_s = offered;
    eprintln!(
        "      {:>12} offered {:>9} sent/s {:>10.0} delivered/s {:>10.0} ({:.1}%) p99 {:.1} ms, {} cut off",
        match mode {
            SendMode::Window(w) => format!("window {w}"),
            _ => "open loop".to_string(),
        },
        offered.map_or("-".into(), |o| format!("{o:.0}")),
        m.msgs_per_s,
        m.deliveries_per_s,
        m.delivered_fraction * 100.0,
        m.latency.p99_us as f64 / 1000.0,
        m.closed
    );
    Ok(m)
}

/// Clients the server has closed so far.
async fn fleet_closed(fleet: &mut Fleet) -> Result<u64> {
    Ok(fleet.snapshot().await?.closed)
}

/// Waits until no client receives anything for a moment, so the next window starts empty.
pub async fn drain(fleet: &mut Fleet) -> Result<()> {
    let deadline = Instant::now() + DRAIN_DEADLINE;
    loop {
        fleet.reset().await?;
        sleep(Duration::from_millis(300)).await;
        if fleet.snapshot().await?.received == 0 || Instant::now() > deadline {
            return Ok(());
        }
    }
}

/// Turns a merged window into rates.
pub fn to_measure(w: &Window, recipients_per_msg: f64) -> Measure {
    let secs = w.elapsed_s.max(1e-9);
    let expected = w.sent as f64 * recipients_per_msg;
    Measure {
        offered_msgs_per_s: None,
        sustained: false,
        msgs_per_s: w.sent as f64 / secs,
        deliveries_per_s: w.received as f64 / secs,
        delivered_fraction: if expected > 0.0 {
            w.received as f64 / expected
        } else {
            0.0
        },
        sent: w.sent,
        received: w.received,
        stalls: w.stalls,
        closed: w.closed,
        elapsed_s: w.elapsed_s,
        latency: stats::summarize(&w.hist),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nerve_bench::stats::Latency;

    fn m(delivered: f64, sent_rate: f64, p99_us: u64) -> Measure {
        m_sent(delivered, sent_rate, p99_us, 1000)
    }

    fn m_sent(delivered: f64, sent_rate: f64, p99_us: u64, sent: u64) -> Measure {
        Measure {
            offered_msgs_per_s: None,
            sustained: false,
            msgs_per_s: sent_rate,
            deliveries_per_s: 0.0,
            delivered_fraction: delivered,
            sent,
            received: 1,
            stalls: 0,
            closed: 0,
            elapsed_s: 1.0,
            latency: Latency {
                p99_us,
                ..Latency::default()
            },
        }
    }

    #[test]
    fn sustained_needs_deliveries_rate_and_bounded_latency() {
        assert!(sustained(&m(0.99, 100.0, 5_000), 100.0));
        assert!(!sustained(&m(0.90, 100.0, 5_000), 100.0));
        assert!(!sustained(&m(0.99, 80.0, 5_000), 100.0));
        assert!(!sustained(&m(0.99, 100.0, 2_000_000), 100.0));
        assert!(!sustained(&m(1.10, 100.0, 5_000), 100.0));
        // 12 messages in the window: one cut at the edge is 1/12 of the deliveries.
        assert!(sustained(&m_sent(0.92, 100.0, 5_000, 12), 100.0));
        assert!(!sustained(&m_sent(0.80, 100.0, 5_000, 12), 100.0));
    }
}
