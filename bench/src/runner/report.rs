//! The results of a run: the JSON written under `bench/results/` and the Markdown comparison
//! table printed at the end and kept in `bench/README.md`.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use super::agentbus::BusRow;
use nerve_bench::stats::Latency;

/// The name of the single Nerve build a run measures unless `--nerve` names others.
pub const DEFAULT_NERVE: &str = "nerve";

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
    /// The Nerve builds measured, in the order `--nerve` named them (empty: the one `nerve`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nerve_builds: Vec<BuildRecord>,
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

/// A Nerve build measured under its own name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildRecord {
    /// The name its rows carry.
    pub name: String,
    /// The binary's file name (its directory is left out, so results carry no local paths).
    pub binary: String,
    /// The file name of the configuration it started with (`--nerve-config`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
}

impl Results {
    /// Names of the Nerve builds measured, in order; the first is the baseline the others are
    /// compared with, the last the one the "÷ server" columns speak for.
    pub fn nerve_names(&self) -> Vec<&str> {
        if self.nerve_builds.is_empty() {
            vec![DEFAULT_NERVE]
        } else {
            self.nerve_builds.iter().map(|b| b.name.as_str()).collect()
        }
    }
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
    /// Server name: `nerve` (or a `--nerve` build's name), `socketio` or `raw`.
    pub target: String,
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
    /// Server name (see [`IdleRow::target`]).
    pub target: String,
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
    /// Server name (see [`IdleRow::target`]).
    pub target: String,
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
    /// Server name, when only one was affected.
    pub target: Option<String>,
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

/// What the fan-out heading says of MQTT rows, when the run has them.
fn mqtt_note(rows: &[LoadRow]) -> String {
    rows.iter()
        .find(|r| r.target.ends_with(super::targets::MQTT_SUFFIX))
        .map_or_else(String::new, |r| {
            format!(
                "; `{}` is the same hub with every client on MQTT 3.1.1 over WebSocket, QoS 0, \
                 instead of the JSON subprotocol",
                r.target
            )
        })
}

fn ratio(a: f64, b: Option<f64>) -> String {
    match b {
        Some(b) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "–".to_string(),
    }
}

/// The Nerve build a "÷ server" column divides by every row: the last one named.
struct Subject<'a> {
    name: &'a str,
    header: String,
}

impl<'a> Subject<'a> {
    fn of(names: &[&'a str]) -> Subject<'a> {
        let name = names.last().copied().unwrap_or(DEFAULT_NERVE);
        let header = if names.len() > 1 {
            format!("{name} ÷ server")
        } else {
            "Nerve ÷ server".to_string()
        };
        Subject { name, header }
    }
}

fn load_table(
    out: &mut String,
    rows: &[LoadRow],
    size_label: &str,
    search: bool,
    subject: &Subject,
) {
    let _ = writeln!(
        out,
        "| {size_label} | server | deliveries/s at saturation | p50 / p99 / p99.9 ms at saturation | \
         deliveries/s at half | p50 / p99 / p99.9 ms at half | delivered | {} |",
        subject.header
    );
    let _ = writeln!(out, "|---:|---|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let nerve = rows
            .iter()
            .find(|r| r.target == subject.name && r.size == row.size)
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
            match nerve {
                Some(n) if row.target != subject.name => {
                    ratio(n, Some(row.saturation.deliveries_per_s))
                }
                _ => "–".to_string(),
            }
        );
    }
}

/// One measure of the builds comparison: a value per build (the number and how it reads).
struct Compared {
    label: String,
    values: Vec<Option<(f64, String)>>,
}

/// Each measure of every Nerve build side by side, and every later build ÷ the first.
fn builds_table(out: &mut String, r: &Results, names: &[&str]) {
    let search = r.settings.search;
    let mut lines = Vec::new();
    let mut line = |label: String, value: &dyn Fn(&str) -> Option<(f64, String)>| {
        let values: Vec<_> = names.iter().map(|n| value(n)).collect();
        if values.iter().any(Option::is_some) {
            lines.push(Compared { label, values });
        }
    };
    line(
        "idle: bytes per connection (lower is better)".into(),
        &|n| {
            let row = r.idle.iter().find(|x| x.target == n)?;
            Some((row.bytes_per_conn, format!("{:.0}", row.bytes_per_conn)))
        },
    );
    let loads: [(&str, &[LoadRow]); 3] = [
        ("fan-out N = {}", &r.fanout),
        ("rooms, {} clients", &r.rooms),
        ("cluster N = {}", &r.cluster),
    ];
    for (what, rows) in loads {
        let mut sizes: Vec<usize> = rows.iter().map(|x| x.size).collect();
        sizes.dedup();
        for size in sizes {
            let what = what.replace("{}", &size.to_string());
            let find = |n: &str| rows.iter().find(|x| x.target == n && x.size == size);
            line(format!("{what}: deliveries/s at saturation"), &|n| {
                let m = &find(n)?.saturation;
                let mark = if search && !m.sustained { " †" } else { "" };
                Some((
                    m.deliveries_per_s,
                    format!("{}{mark}", k(m.deliveries_per_s)),
                ))
            });
            line(format!("{what}: p99 ms at half (lower is better)"), &|n| {
                let m = find(n)?.half.as_ref()?;
                Some((m.latency.p99_us as f64, ms(m.latency.p99_us)))
            });
        }
    }
    line("REST: requests/s".into(), &|n| {
        let row = r.rest.iter().find(|x| x.target == n)?;
        Some((row.requests_per_s, k(row.requests_per_s)))
    });
    line("REST: HTTP p99 ms (lower is better)".into(), &|n| {
        let row = r.rest.iter().find(|x| x.target == n)?;
        Some((row.http_latency.p99_us as f64, ms(row.http_latency.p99_us)))
    });
    let (base, later) = (names[0], &names[1..]);
    let _ = writeln!(
        out,
        "**Nerve builds compared** (each later build ÷ `{base}`: above 1× is better for rates, \
         worse for memory and latency)\n"
    );
    let mut header = "| measure |".to_string();
    let mut rule = "|---|".to_string();
    for n in names {
        let _ = write!(header, " {n} |");
        rule.push_str("---:|");
    }
    for n in later {
        let _ = write!(header, " {n} ÷ {base} |");
        rule.push_str("---:|");
    }
    let _ = writeln!(out, "{header}\n{rule}");
    for l in &lines {
        let mut row = format!("| {} |", l.label);
        for v in &l.values {
            let _ = write!(row, " {} |", v.as_ref().map_or("–", |v| v.1.as_str()));
        }
        let base = l.values[0].as_ref().map(|v| v.0);
        for v in &l.values[1..] {
            let cell = match v {
                Some((v, _)) => ratio(*v, base),
                None => "–".to_string(),
            };
            let _ = write!(row, " {cell} |");
        }
        let _ = writeln!(out, "{row}");
    }
    out.push('\n');
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
    let names = r.nerve_names();
    let subject = Subject::of(&names);
    if names.len() > 1 {
        builds_table(&mut out, r, &names);
    }
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
            "**2. Broadcast fan-out** (1 publisher → N subscribers{})\n",
            mqtt_note(&r.fanout)
        );
        load_table(&mut out, &r.fanout, "N", s.search, &subject);
        out.push('\n');
    }
    if !r.rooms.is_empty() {
        let rooms = r.rooms.first().and_then(|x| x.rooms).unwrap_or(0);
        let _ = writeln!(
            out,
            "**3. Many small groups** ({rooms} rooms of 2–50, one random sender per room)\n"
        );
        load_table(&mut out, &r.rooms, "clients", s.search, &subject);
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
        load_table(&mut out, &r.cluster, "N", s.search, &subject);
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
            let who = s
                .target
                .as_ref()
                .map(|t| format!(" ({t})"))
                .unwrap_or_default();
            let _ = writeln!(out, "- {}{}: {}", s.scenario, who, s.reason);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed(file: &str) -> String {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
        std::fs::read_to_string(dir.join(file)).unwrap()
    }

    /// The first line where two texts differ (long texts make unreadable assertion failures).
    fn first_difference(got: &str, want: &str) -> Option<(usize, String, String)> {
        let (mut g, mut w) = (got.lines(), want.lines());
        for i in 1.. {
            match (g.next(), w.next()) {
                (None, None) => return None,
                (a, b) if a == b => continue,
                (a, b) => return Some((i, a.unwrap_or("").into(), b.unwrap_or("").into())),
            }
        }
        None
    }

    #[test]
    fn one_build_reads_and_renders_as_it_always_did() {
        for dir in ["", "coalesced-rest/", "agentbus/"] {
            let json = committed(&format!("{dir}full.json"));
            let r: Results = serde_json::from_str(&json).unwrap();
            assert_eq!(r.nerve_names(), [DEFAULT_NERVE]);
            // Same fields, same values (as text the last digit of a float may move).
            let again = serde_json::to_value(&r).unwrap();
            let want: serde_json::Value = serde_json::from_str(&json).unwrap();
            assert!(again == want, "{dir}full.json reads back differently");
            let md = markdown(&r);
            let want = committed(&format!("{dir}full.md"));
            assert_eq!(first_difference(&md, &want), None, "{dir}full.md");
        }
    }

    /// The committed full run, with its Nerve rows measured twice: `before` as they were and
    /// `after` at twice the rate and half the memory.
    fn before_after() -> Results {
        let mut r: Results = serde_json::from_str(&committed("full.json")).unwrap();
        r.nerve_builds = ["before", "after"]
            .map(|name| BuildRecord {
                name: name.into(),
                binary: format!("nerve-{name}"),
                config: None,
            })
            .into();
        fn twice(rows: &mut Vec<LoadRow>) {
            let mut out = Vec::new();
            for row in rows.drain(..) {
                if row.target == DEFAULT_NERVE {
                    let mut after = row.clone();
                    after.target = "after".into();
                    after.saturation.deliveries_per_s *= 2.0;
                    out.push(LoadRow {
                        target: "before".into(),
                        ..row
                    });
                    out.push(after);
                } else {
                    out.push(row);
                }
            }
            *rows = out;
        }
        twice(&mut r.fanout);
        twice(&mut r.rooms);
        twice(&mut r.cluster);
        let nerve = r.idle.remove(0);
        r.idle.insert(
            0,
            IdleRow {
                target: "after".into(),
                bytes_per_conn: nerve.bytes_per_conn / 2.0,
                ..nerve.clone()
            },
        );
        r.idle.insert(
            0,
            IdleRow {
                target: "before".into(),
                ..nerve
            },
        );
        r.rest.retain(|x| x.target != DEFAULT_NERVE);
        r
    }

    #[test]
    fn two_builds_are_compared_after_over_before() {
        let r = before_after();
        let md = markdown(&r);
        assert!(md.contains("**Nerve builds compared** (each later build ÷ `before`"));
        assert!(md.contains("| measure | before | after | after ÷ before |"));
        assert!(
            md.contains("| idle: bytes per connection (lower is better) | 8123 | 4061 | 0.50× |")
        );
        assert!(md.contains(
            "| fan-out N = 1000: deliveries/s at saturation | 170.7k | 341.5k | 2.00× |"
        ));
        assert!(md.contains(
            "| fan-out N = 18000: p99 ms at half (lower is better) | 358.14 | 358.14 | 1.00× |"
        ));
        assert!(md.contains(
            "| cluster N = 10000: deliveries/s at saturation | 98.7k | 197.4k | 2.00× |"
        ));
        // Neither build reached the REST table, so it has no line.
        assert!(!md.contains("| REST: requests/s"));
        // The "÷ server" columns speak for the last build, against the first too.
        assert!(md.contains("| delivered | after ÷ server |"));
        assert!(md.contains("| 1000 | before | 170.7k |"));
        assert!(md.contains("| 98.5% | 2.00× |\n| 1000 | after | 341.5k |"));
        assert!(md.contains("| 1000 | socketio | 58.8k |"));
        assert!(!md.contains("Nerve ÷ server"));
    }

    #[test]
    fn named_builds_are_recorded_and_read_back() {
        let r = before_after();
        let json = serde_json::to_string_pretty(&r).unwrap();
        assert!(json.contains("\"binary\": \"nerve-after\""));
        let back: Results = serde_json::from_str(&json).unwrap();
        assert_eq!(back.nerve_names(), ["before", "after"]);
    }
}
