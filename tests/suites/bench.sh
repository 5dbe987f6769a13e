#!/usr/bin/env bash
# Benchmark smoke run: builds the hub and the bench in release mode, installs the Socket.IO peer
# from its lock file, runs `nerve-bench run --quick` and checks that every scenario produced sane,
# non-zero numbers and plots. It never judges how fast anything is.
set -euo pipefail
cd "$(dirname "$0")/../.."

cargo build --release --locked -p nerve-hub -p nerve-bench --bins
(cd bench/peers/socketio && npm ci --no-audit --no-fund --loglevel=error)

out=bench/results/tmp/suite
rm -rf "$out"
started=$(date +%s)
timeout 600 "${CARGO_TARGET_DIR:-target}/release/nerve-bench" run --quick --out "$out"
echo "bench --quick took $(( $(date +%s) - started )) s"

node - "$out" <<'JS'
const fs = require("fs");
const path = require("path");
const out = process.argv[2];
const r = JSON.parse(fs.readFileSync(path.join(out, "quick.json"), "utf8"));
const problems = [];
const check = (ok, what) => { if (!ok) problems.push(what); };
const sane = (m, what) => {
  check(m.sent > 0 && m.received > 0, `${what}: nothing sent or received`);
  check(m.msgs_per_s > 0 && m.deliveries_per_s > 0, `${what}: zero rate`);
  const l = m.latency;
  check(l.count > 0 && l.p50_us > 0, `${what}: no latency samples`);
  check(l.p50_us <= l.p99_us && l.p99_us <= l.p999_us && l.p999_us <= l.max_us, `${what}: percentiles out of order`);
  check(m.delivered_fraction > 0.5, `${what}: only ${m.delivered_fraction} delivered`);
};
const targets = ["nerve", "socketio", "raw"];
for (const t of targets) {
  const idle = r.idle.find((x) => x.target === t);
  check(idle && idle.connected === idle.requested && idle.rss_after_kib > 0, `idle ${t}: missing or short`);
  for (const n of r.settings.fanout_sizes) {
    const row = r.fanout.find((x) => x.target === t && x.size === n);
    check(row, `fanout ${t} N=${n}: missing`);
    if (row) { sane(row.saturation, `fanout ${t} N=${n} saturation`); sane(row.half, `fanout ${t} N=${n} half`); }
  }
  const rooms = r.rooms.find((x) => x.target === t);
  check(rooms, `rooms ${t}: missing`);
  if (rooms) sane(rooms.saturation, `rooms ${t}`);
  const rest = r.rest.find((x) => x.target === t);
  // Nerve's REST API may not exist yet; then the run must say why instead of inventing numbers.
  const restSkipped = r.skipped.some((s) => s.scenario === "rest" && s.target === t);
  check(rest || (t === "nerve" && restSkipped), `rest ${t}: missing`);
  if (rest) {
    check(rest.accepted > 0 && rest.requests_per_s > 0, `rest ${t}: no request accepted`);
    sane(rest.deliveries, `rest ${t} deliveries`);
  }
}
// The fan-out table measures the same hub with MQTT clients beside the JSON ones.
for (const n of r.settings.fanout_sizes) {
  const row = r.fanout.find((x) => x.target === "nerve-mqtt" && x.size === n);
  check(row, `fanout nerve-mqtt N=${n}: missing`);
  if (row) { sane(row.saturation, `fanout nerve-mqtt N=${n} saturation`); sane(row.half, `fanout nerve-mqtt N=${n} half`); }
}
for (const t of targets) {
  const row = r.cluster.find((x) => x.target === t);
  check(row, `cluster ${t}: missing`);
  if (row) sane(row.saturation, `cluster ${t}`);
}
for (const engine of ["memory", "redis", "raw-redis"]) {
  const row = r.agentbus.find((x) => x.engine === engine);
  check(row && row.completed === row.tasks && row.per_s > 0, `agentbus ${engine}: missing or incomplete`);
}
for (const f of ["quick.md", "plots/fanout-throughput.svg", "plots/fanout-latency-cdf.svg"]) {
  const p = path.join(out, f);
  check(fs.existsSync(p) && fs.statSync(p).size > 200, `${f}: missing or empty`);
}
if (problems.length) {
  console.error("bench smoke run produced bad results:\n  " + problems.join("\n  "));
  process.exit(1);
}
console.log(`bench smoke run ok: ${r.fanout.length} fan-out, ${r.rooms.length} rooms, ${r.rest.length} REST, ${r.cluster.length} cluster, ${r.agentbus.length} agent-bus rows`);
JS
