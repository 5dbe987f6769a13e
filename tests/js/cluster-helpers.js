// Cluster helpers for the official-SDK tests: a real `redis-server` on a free port and
// several `nerve` nodes sharing it (one access key, fast heartbeats), ready when /readyz is 200.
"use strict";

const { spawn } = require("node:child_process");
const fs = require("node:fs");
const net = require("node:net");
const os = require("node:os");
const path = require("node:path");
const { startHub, waitFor } = require("./helpers");

const liveRedis = new Set();
process.on("exit", () => {
  for (const child of liveRedis) child.kill("SIGKILL");
});

/** A free TCP port on 127.0.0.1. */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Whether a Redis answers PING on `port`. */
function pings(port) {
  return new Promise((resolve) => {
    const sock = net.connect(port, "127.0.0.1");
    sock.setTimeout(500, () => sock.destroy());
    sock.once("error", () => resolve(false));
    sock.once("close", () => resolve(false));
    sock.once("connect", () => sock.write("PING\r\n"));
    sock.once("data", (d) => {
      resolve(d.toString().startsWith("+PONG"));
      sock.destroy();
    });
  });
}

/** Starts a throwaway `redis-server` (no persistence); `stop()` kills it. */
async function startRedis() {
  const port = await freePort();
  const bin = process.env.NERVE_REDIS_SERVER || "redis-server";
  const child = spawn(bin, ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
    stdio: "ignore",
  });
  liveRedis.add(child);
  await waitFor(() => pings(port), { timeout: 10_000, interval: 20, what: "redis-server PONG" });
  return {
    port,
    url: `redis://127.0.0.1:${port}/`,
    stop() {
      child.kill("SIGKILL");
      liveRedis.delete(child);
    },
  };
}

/** Answers whether GET /readyz of a node is 200. */
async function isReady(port) {
  try {
    const r = await fetch(`http://127.0.0.1:${port}/readyz`);
    return r.status === 200;
  } catch {
    return false;
  }
}

/** Starts `count` nodes on one Redis with the same access key; resolves when all are ready. */
async function startCluster(count, redisUrl) {
  const accessKey = "nerve-cluster-key-" + Math.random().toString(36).slice(2);
  const config = path.join(os.tmpdir(), `nerve-cluster-${process.pid}-${Date.now()}.toml`);
  fs.writeFileSync(config, "[cluster]\nheartbeat_ms = 200\npresence_ttl_ms = 1000\n");
  const nodes = [];
  for (let i = 0; i < count; i++) {
    nodes.push(await startHub({ accessKey, config, args: ["--redis", redisUrl, "--node-id", `js${i}`] }));
  }
  for (const n of nodes) {
    await waitFor(() => isReady(n.port), { timeout: 20_000, interval: 25, what: `node ${n.port} ready` });
  }
  return {
    nodes,
    async stop() {
      await Promise.all(nodes.map((n) => n.stop()));
      fs.rmSync(config, { force: true });
    },
  };
}

/**
 * A TCP proxy standing in for a load balancer: it forwards to one node, `setTarget` moves new
 * connections to another, `dropAll` cuts the current ones.
 */
async function startSwitchProxy(targetPort) {
  let target = targetPort;
  const sockets = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(target, "127.0.0.1");
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: server.address().port,
    setTarget(port) {
      target = port;
    },
    dropAll() {
      for (const s of sockets) s.destroy();
    },
    close() {
      this.dropAll();
      server.close();
    },
  };
}

module.exports = { freePort, isReady, startCluster, startRedis, startSwitchProxy };
