//! The results of a run: the JSON written under `bench/results/` and the Markdown comparison
//! table printed at the end and kept in `bench/README.md`.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use super::agentbus::BusRow;
use super::targets::Kind;
use nerve_bench::stats::Latency;

/// Everything one run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    /// `quick` or `full`.
    pub mode: String,
    /// The command that produced these results.
    pub command: String,
    /// The repository revision measured (`git describe --always --dirty`).
    pub revision: String,
    /// Start time, seconds since the Unix epoch.
    pub started_unix: u64,
    /// Wall time of the whole run.
    pub duration_s: f64,
    /// The machine.
    pub machine: Machine,
    /// Sizes and durations used.
    pub settings: Settings,
    /// Scenario 1.
    pub idle: Vec<IdleRow>,
    /// Scenario 2.
    pub fanout: Vec<LoadRow>,
    /// Scenario 3.
    pub rooms: Vec<LoadRow>,
    /// Scenario 4.
    pub rest: Vec<RestRow>,
    /// Scenario 5: fan-out on three nodes per server.
    pub cluster: Vec<LoadRow>,
    /// Scenario 6.
    pub agentbus: Vec<BusRow>,
    /// What was not measured and why.
    pub skipped: Vec<Skipped>,
}

/// The machine the run was on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    /// Logical CPUs.
    pub cpus: usize,
    /// CPU model name.
    pub cpu_model: String,
    /// Memory in MiB.
    pub mem_total_mib: u64,
    /// Kernel release.
    pub kernel: String,
    /// Open-file limit of each process (soft, hard).
    pub nofile: (u64, u64),
}

/// Sizes and durations used.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// Payload bytes per message.
    pub payload_bytes: usize,
    /// Seconds of warm-up before each window.
    pub warmup_s: f64,
    /// Seconds per measurement window.
    pub measure_s: f64,
    /// Messages a saturating sender keeps in flight.
    pub fanout_window: u32,
    /// Whether saturation is searched with open-loop rates (full) or taken from the closed loop.
    pub search: bool,
    /// Node processes of the Socket.IO peer.
    pub socketio_workers: usize,
    /// Idle connections requested.
    pub idle_connections: usize,
    /// Fan-out group sizes (subscribers besides the publisher).
    pub fanout_sizes: Vec<usize>,
    /// Clients in the small-rooms scenario.
    pub room_clients: usize,
    /// REST requests in flight.
    pub rest_concurrency: usize,
    /// Task lifecycles per agent-bus engine.
    pub bus_tasks: usize,
    /// Group size in the cluster scenario.
    pub cluster_size: usize,
}

/// Scenario 1 for one server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdleRow {
    /// Server.
    pub target: Kind,
    /// Connections attempted.
    pub requested: usize,
    /// Connections open at the end.
    pub connected: usize,
    /// First connect failure.
    pub first_error: Option<String>,
    /// Server RSS before any client, KiB.
    pub rss_before_kib: u64,
    /// Server RSS with all clients connected, KiB.
    pub rss_after_kib: u64,
    /// (after - before) / connected.
    pub bytes_per_conn: f64,
    /// Seconds to connect them all.
    pub connect_s: f64,
}

/// One measurement window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measure {
    /// Open-loop rate asked of the senders (none for a closed-loop window).
    pub offered_msgs_per_s: Option<f64>,
    /// Whether the saturation search judged this rate sustained.
    pub sustained: bool,
    /// Messages published per second.
    pub msgs_per_s: f64,
    /// Messages delivered to clients per second.
    pub deliveries_per_s: f64,
    /// Deliveries / (published × recipients per message).
    pub delivered_fraction: f64,
    /// Messages published.
    pub sent: u64,
    /// Messages delivered.
    pub received: u64,
    /// Saturating senders that waited over 5 s for their own message.
    pub stalls: u64,
    /// Clients the server closed during the window.
    pub closed: u64,
    /// Window length, seconds.
    pub elapsed_s: f64,
    /// Publish → receive latency.
    pub latency: Latency,
}

/// Scenario 2 or 3 for one server and size.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadRow {
    /// Server.
    pub target: Kind,
    /// Subscribers per group (fan-out) or clients in total (rooms).
    pub size: usize,
    /// Rooms (scenario 3).
    pub rooms: Option<usize>,
    /// Clients connected.
    pub connected: usize,
    /// Clients that failed to connect.
    pub failed: usize,
    /// The closed-loop first estimate the saturation search started from.
    pub estimate: Option<Measure>,
    /// The highest open-loop rate the server sustained.
    pub saturation: Measure,
    /// Senders at half the saturation rate.
    pub half: Option<Measure>,
}

/// Scenario 4 for one server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestRow {
    /// Server.
    pub target: Kind,
    /// Accepted requests per second.
    pub requests_per_s: f64,
    /// Accepted requests.
    pub accepted: u64,
    /// Failed requests.
    pub errors: u64,
    /// First failure.
    pub first_error: Option<String>,
    /// Request → response latency.
    pub http_latency: Latency,
    /// What the subscribers got.
    pub deliveries: Measure,
}

/// A measurement that was not made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Skipped {
    /// Scenario name.
    pub scenario: String,
    /// Server, when only one was affected.
    pub target: Option<Kind>,
    /// Why.
    pub reason: String,
}

fn k(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn lat(l: &Latency) -> String {
    format!("{} / {} / {}", ms(l.p50_us), ms(l.p99_us), ms(l.p999_us))
}

fn ratio(a: f64, b: Option<f64>) -> String {
    match b {
        Some(b) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "–".to_string(),
    }
}

fn load_table(out: &mut String, rows: &[LoadRow], size_label: &str, search: bool) {
    let _ = writeln!(
        out,
        "| {size_label} | server | deliveries/s at saturation | p50 / p99 / p99.9 ms at saturation | \
         deliveries/s at half | p50 / p99 / p99.9 ms at half | delivered | Nerve ÷ server |"
    );
    let _ = writeln!(out, "|---:|---|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let nerve = rows
            .iter()
            .find(|r| r.target == Kind::Nerve && r.size == row.size)
            .map(|r| r.saturation.deliveries_per_s);
        let half = row.half.as_ref();
        let _ = writeln!(
            out,
            "| {} | {} | {}{} | {} | {} | {} | {:.1}% | {} |",
            row.size,
            row.target,
            k(row.saturation.deliveries_per_s),
            if search && !row.saturation.sustained {
                " †"
            } else {
                ""
            },
            lat(&row.saturation.latency),
            half.map_or("–".into(), |h| k(h.deliveries_per_s)),
            half.map_or("–".into(), |h| lat(&h.latency)),
            row.saturation.delivered_fraction * 100.0,
            match (row.target, nerve) {
                (Kind::Nerve, _) => "–".to_string(),
                (_, Some(n)) => ratio(n, Some(row.saturation.deliveries_per_s)),
                (_, None) => "–".to_string(),
            }
        );
    }
}

/// The Markdown comparison tables.
pub fn markdown(r: &Results) -> String {
    let mut out = String::new();
    let m = &r.machine;
    let _ = writeln!(
        out,
        "Run: `{}` at revision `{}` ({} mode, {:.0} s) on {} × {}, {} MiB, Linux {}, open \
         files {}.\n",
        r.command,
        r.revision,
        r.mode,
        r.duration_s,
        m.cpus,
        m.cpu_model,
        m.mem_total_mib,
        m.kernel,
        m.nofile.1
    );
    let s = &r.settings;
    let saturation = if s.search {
        "saturation = the highest open-loop message rate the server sustained (97–103% of \
         deliveries arrived, p99 ≤ 500 ms, no client cut off), searched in steps of 1.5× from \
         a closed-loop estimate (each sender keeps a few of its own messages in flight)"
            .to_string()
    } else {
        format!(
            "saturation = closed loop, each sender keeps {} (fan-out) or 2 (rooms) of its own \
             messages in flight (no search in quick mode)",
            s.fanout_window
        )
    };
    let _ = writeln!(
        out,
        "Payload {} B; windows of {} s after {} s warm-up; {saturation}; half = open loop at \
         half the saturation message rate; Socket.IO runs {} Node process(es) with the Redis \
         adapter. Latency is publish → receive. \"delivered\" is deliveries ÷ (messages × \
         recipients) at saturation.\n",
        s.payload_bytes, s.measure_s, s.warmup_s, s.socketio_workers
    );
    if !r.idle.is_empty() {
        let _ = writeln!(out, "**1. Idle connections**\n");
        let _ = writeln!(
            out,
            "| server | connections | RSS before | RSS after | bytes per connection |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|");
        for row in &r.idle {
            let _ = writeln!(
                out,
                "| {} | {} of {} | {} MiB | {} MiB | {:.0} |",
                row.target,
                row.connected,
                row.requested,
                row.rss_before_kib / 1024,
                row.rss_after_kib / 1024,
                row.bytes_per_conn
            );
        }
        out.push('\n');
    }
    if !r.fanout.is_empty() {
        let _ = writeln!(
            out,
            "**2. Broadcast fan-out** (1 publisher → N subscribers)\n"
        );
        load_table(&mut out, &r.fanout, "N", s.search);
        out.push('\n');
    }
    if !r.rooms.is_empty() {
        let rooms = r.rooms.first().and_then(|x| x.rooms).unwrap_or(0);
        let _ = writeln!(
            out,
            "**3. Many small groups** ({rooms} rooms of 2–50, one random sender per room)\n"
        );
        load_table(&mut out, &r.rooms, "clients", s.search);
        out.push('\n');
        out.push('\n');
    }
    if s.search
        && [&r.fanout, &r.rooms, &r.cluster]
            .iter()
            .any(|rows| rows.iter().any(|x| !x.saturation.sustained))
    {
        let _ = writeln!(
            out,
            "† no rate tried met the sustained criteria; the row shows the last (lowest) rate tried.\n"
        );
    }
    if !r.rest.is_empty() {
        let _ = writeln!(
            out,
            "**4. REST send-to-group** ({} requests in flight)\n",
            s.rest_concurrency
        );
        let _ = writeln!(
            out,
            "| server | requests/s | HTTP p50 / p99 / p99.9 ms | deliveries/s | delivery p50 / p99 / p99.9 ms | errors |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
        for row in &r.rest {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                row.target,
                k(row.requests_per_s),
                lat(&row.http_latency),
                k(row.deliveries.deliveries_per_s),
                lat(&row.deliveries.latency),
                row.errors
            );
        }
        out.push('\n');
    }
    if !r.cluster.is_empty() {
        let _ = writeln!(
            out,
            "**5. Cluster fan-out** (3 Nerve nodes sharing one Redis vs 3 Socket.IO processes \
             with the Redis adapter; clients spread over the nodes; raw = one process, for \
             reference)\n"
        );
        load_table(&mut out, &r.cluster, "N", s.search);
        out.push('\n');
    }
    if !r.agentbus.is_empty() {
        let _ = writeln!(
            out,
            "**6. Agent bus** ({} task lifecycles per engine: submit → claim → complete → \
             result; 4 workers × 16 in flight, 256 unfinished at most)\n",
            s.bus_tasks
        );
        let _ = writeln!(
            out,
            "| engine | lifecycles/s | mean latency ms (window ÷ rate) | measured p50 / p99 / p99.9 ms |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|");
        for row in &r.agentbus {
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} | {} |",
                row.engine,
                k(row.per_s),
                row.mean_latency_ms,
                row.latency.as_ref().map_or("–".into(), lat)
            );
        }
        let raw = r.agentbus.iter().find(|x| x.engine == "raw-redis");
        if let (Some(bus), Some(raw)) = (r.agentbus.iter().find(|x| x.engine == "redis"), raw) {
            let _ = writeln!(
                out,
                "\nThe Redis bus reaches {:.0}% of raw Redis doing the bare stream operations.",
                bus.per_s / raw.per_s.max(1e-9) * 100.0
            );
        }
        out.push('\n');
    }
    if !r.skipped.is_empty() {
        let _ = writeln!(out, "**Not measured**\n");
        for s in &r.skipped {
            let who = s.target.map(|t| format!(" ({t})")).unwrap_or_default();
            let _ = writeln!(out, "- {}{}: {}", s.scenario, who, s.reason);
        }
    }
    out
}
