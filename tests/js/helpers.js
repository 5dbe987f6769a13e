// Shared helpers for the official-SDK end-to-end tests: start a real `nerve` process on a free
// port, parse its connection string, connect official clients, wait for what users observe
// (always with a deadline), open raw WebSockets, and cut TCP connections through a small proxy.
"use strict";

const { spawn } = require("node:child_process");
const http = require("node:http");
const net = require("node:net");
const path = require("node:path");
const readline = require("node:readline");
const { setTimeout: delay } = require("node:timers/promises");
const WebSocket = require("ws");
const { WebPubSubServiceClient } = require("@azure/web-pubsub");
const { WebPubSubClient, WebPubSubJsonReliableProtocol } = require("@azure/web-pubsub-client");

const REPO_ROOT = path.resolve(__dirname, "..", "..");
const START_TIMEOUT_MS = 20_000;
const DEFAULT_WAIT_MS = 10_000;

/** Path of the hub binary: $NERVE_BIN, else the debug build in the cargo target dir. */
function hubBinary() {
  if (process.env.NERVE_BIN) return process.env.NERVE_BIN;
  const target = process.env.CARGO_TARGET_DIR || path.join(REPO_ROOT, "target");
  return path.join(target, "debug", "nerve");
}

/** Splits an AWPS connection string into its parts (case-insensitive keys, like the SDK). */
function parseConnectionString(cs) {
  const parts = {};
  for (const part of cs.split(";")) {
    const eq = part.indexOf("=");
    if (eq <= 0) continue;
    parts[part.slice(0, eq).trim().toLowerCase()] = part.slice(eq + 1).trim();
  }
  if (!parts.endpoint || !parts.accesskey) {
    throw new Error(`not a connection string: ${JSON.stringify(cs)}`);
  }
  const url = new URL(parts.endpoint);
  if (parts.port) url.port = parts.port;
  return {
    endpoint: parts.endpoint,
    accessKey: parts.accesskey,
    version: parts.version,
    host: url.hostname,
    port: Number(url.port || (url.protocol === "https:" ? 443 : 80)),
  };
}

/** Polls `check` until it returns a truthy value, failing with `what` (or `what()`) after `timeout` ms. */
async function waitFor(check, { timeout = DEFAULT_WAIT_MS, interval = 10, what = "condition" } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${typeof what === "function" ? what() : what}`);
    }
    await delay(interval);
  }
}

/** Resolves with `promise`, or rejects if it has not settled after `ms`. */
async function withDeadline(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const liveHubs = new Set();
process.on("exit", () => {
  for (const child of liveHubs) child.kill("SIGKILL");
});

/** A running `nerve` process; `stop()` sends SIGTERM and waits for it to exit. */
class Hub {
  constructor(child, connectionString, stderr) {
    this.child = child;
    this.connectionString = connectionString;
    this.stderrLines = stderr;
    const parsed = parseConnectionString(connectionString);
    this.endpoint = parsed.endpoint;
    this.accessKey = parsed.accessKey;
    this.port = parsed.port;
    this.exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  }

  /** A server SDK client for `hub` over plain http. */
  service(hub, connectionString = this.connectionString) {
    return new WebPubSubServiceClient(connectionString, hub, { allowInsecureConnection: true });
  }

  /** The hub's stderr so far, for failure messages. */
  logs() {
    return this.stderrLines.join("\n");
  }

  /** Graceful stop (SIGTERM), then SIGKILL if it does not exit within the deadline. */
  async stop() {
    if (this.child.exitCode !== null || this.child.signalCode !== null) {
      liveHubs.delete(this.child);
      return this.exited;
    }
    this.child.kill("SIGTERM");
    try {
      return await withDeadline(this.exited, 10_000, "hub exit after SIGTERM");
    } catch (err) {
      this.child.kill("SIGKILL");
      await this.exited;
      throw err;
    } finally {
      liveHubs.delete(this.child);
    }
  }
}

/** Answers the status code of `HEAD url`, or 0 if the connection fails. */
function headStatus(url) {
  return new Promise((resolve) => {
    const req = http.request(url, { method: "HEAD", timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(0));
    req.end();
  });
}

/** Starts `nerve` on an ephemeral port and waits until `HEAD /api/health` answers 200. */
async function startHub({ accessKey = "nerve-test-key-" + Math.random().toString(36).slice(2), config, args = [] } = {}) {
  const argv = ["--listen", "127.0.0.1:0", "--access-key", accessKey, "--log-level", "warn", ...args];
  if (config) argv.push("--config", config);
  const child = spawn(hubBinary(), argv, { stdio: ["ignore", "pipe", "pipe"] });
  liveHubs.add(child);
  const stderr = [];
  readline.createInterface({ input: child.stderr }).on("line", (line) => {
    stderr.push(line);
    if (stderr.length > 500) stderr.shift();
  });
  const stdout = readline.createInterface({ input: child.stdout });
  let connectionString;
  try {
    connectionString = await withDeadline(
      new Promise((resolve, reject) => {
        stdout.on("line", (line) => {
          const m = line.match(/Endpoint=[^\s]+;AccessKey=[^\s;]+;Version=[^\s;]+;?/);
          if (m) resolve(m[0]);
        });
        child.once("error", reject);
        child.once("exit", (code, signal) =>
          reject(new Error(`nerve exited early (code ${code}, signal ${signal}): ${stderr.join("\n")}`)),
        );
      }),
      START_TIMEOUT_MS,
      "the connection string on the hub's stdout",
    );
    const hub = new Hub(child, connectionString, stderr);
    assertEqualKey(hub.accessKey, accessKey);
    await waitFor(async () => (await headStatus(`http://127.0.0.1:${hub.port}/api/health`)) === 200, {
      timeout: START_TIMEOUT_MS,
      interval: 25,
      what: "HEAD /api/health = 200",
    });
    stdout.on("line", () => {}); // keep draining stdout
    return hub;
  } catch (err) {
    child.kill("SIGKILL");
    liveHubs.delete(child);
    throw err;
  }
}

function assertEqualKey(printed, given) {
  if (printed !== given) throw new Error(`hub printed AccessKey=${printed}, expected ${given}`);
}

/** A unique hub name per test, so tests sharing one process do not see each other. */
function uniqueHub(prefix = "hub") {
  return `${prefix}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
}

/**
 * An official WebPubSubClient plus everything it has observed: connected / disconnected /
 * stopped events, group and server messages. Waits are polls with a deadline.
 */
class ObservedClient {
  constructor(client) {
    this.client = client;
    this.connected = [];
    this.disconnected = [];
    this.stopped = 0;
    this.groupMessages = [];
    this.serverMessages = [];
    this.rejoinFailures = [];
    client.on("connected", (e) => this.connected.push(e));
    client.on("disconnected", (e) => this.disconnected.push(e));
    client.on("stopped", () => this.stopped++);
    client.on("group-message", (e) => this.groupMessages.push(e.message));
    client.on("server-message", (e) => this.serverMessages.push(e.message));
    client.on("rejoin-group-failed", (e) => this.rejoinFailures.push(e));
  }

  /** The connection id from the latest `connected` event. */
  get connectionId() {
    return this.connected.at(-1)?.connectionId;
  }

  /** Group messages received so far, optionally only those of `group`. */
  messagesIn(group) {
    return group === undefined ? this.groupMessages : this.groupMessages.filter((m) => m.group === group);
  }

  /** Waits until `count` group messages (of `group`, if given) have arrived; returns them. */
  async waitGroupMessages(count, { group, timeout = DEFAULT_WAIT_MS } = {}) {
    await waitFor(() => this.messagesIn(group).length >= count, {
      timeout,
      what: () => `${count} group message(s)${group ? ` in ${group}` : ""} (have ${this.messagesIn(group).length})`,
    });
    return this.messagesIn(group);
  }

  /** Waits until `count` server messages have arrived; returns them. */
  async waitServerMessages(count, { timeout = DEFAULT_WAIT_MS } = {}) {
    await waitFor(() => this.serverMessages.length >= count, {
      timeout,
      what: () => `${count} server message(s) (have ${this.serverMessages.length})`,
    });
    return this.serverMessages;
  }

  /** Waits until the client has seen `count` `connected` events. */
  async waitConnected(count = 1, timeout = DEFAULT_WAIT_MS) {
    await waitFor(() => this.connected.length >= count, { timeout, what: `connected event #${count}` });
    return this.connected[count - 1];
  }

  /** Waits until the client has seen `count` `disconnected` events. */
  async waitDisconnected(count = 1, timeout = DEFAULT_WAIT_MS) {
    await waitFor(() => this.disconnected.length >= count, { timeout, what: `disconnected event #${count}` });
    return this.disconnected[count - 1];
  }

  /**
   * Stops the client (idempotent). Stop clients before their hub: the SDK's stop() does not end
   * an automatic reconnect loop that is already running, which would keep the process alive.
   */
  stop() {
    this.client.stop();
  }
}

/**
 * Options every test client uses. The SDK's keep-alive timers sleep their whole interval even
 * after `stop()`, which would hold a finished test process open for 40 s with the defaults
 * (120 s timeout, checked every 40 s); short timers end quickly and also make every test rely on
 * the hub answering `ping` with `pong`, since a client that hears nothing for 9 s drops.
 */
const CLIENT_DEFAULTS = Object.freeze({ keepAliveIntervalInMs: 2000, keepAliveTimeoutInMs: 9000 });

/** Creates an official client with the test defaults, wrapped to record what it observes. */
function newClient(credentialOrUrl, options = {}) {
  return new ObservedClient(
    new WebPubSubClient(credentialOrUrl, { protocol: WebPubSubJsonReliableProtocol(), ...CLIENT_DEFAULTS, ...options }),
  );
}

/**
 * Connects an official client whose URL comes from `service.getClientAccessToken(tokenOptions)`
 * (fetched again on every reconnect, as a browser app does) and waits for `connected`.
 */
async function connectClient(service, tokenOptions = {}, clientOptions = {}) {
  const credential = {
    getClientAccessUrl: async () => (await service.getClientAccessToken(tokenOptions)).url,
  };
  const observed = newClient(credential, clientOptions);
  await withDeadline(observed.client.start(), DEFAULT_WAIT_MS, "client start()");
  await observed.waitConnected(1);
  return observed;
}

/** Opens a raw `ws` WebSocket and records every frame it receives (parsed when JSON). */
async function openRawSocket(url, subprotocol) {
  const ws = subprotocol === undefined ? new WebSocket(url) : new WebSocket(url, subprotocol);
  const frames = [];
  const raw = [];
  let closed;
  const closedPromise = new Promise((resolve) => {
    ws.on("close", (code, reason) => {
      closed = { code, reason: reason.toString() };
      resolve(closed);
    });
  });
  ws.on("message", (data, isBinary) => {
    raw.push({ data, isBinary });
    if (!isBinary) {
      try {
        frames.push(JSON.parse(data.toString()));
      } catch {
        frames.push({ unparsed: data.toString() });
      }
    }
  });
  await withDeadline(
    new Promise((resolve, reject) => {
      ws.once("open", resolve);
      ws.once("error", reject);
      ws.once("unexpected-response", (_req, res) => reject(new Error(`handshake answered HTTP ${res.statusCode}`)));
    }),
    DEFAULT_WAIT_MS,
    `WebSocket open ${url}`,
  );
  return {
    ws,
    frames,
    raw,
    closedPromise,
    get closed() {
      return closed;
    },
    send(obj) {
      ws.send(typeof obj === "string" ? obj : JSON.stringify(obj));
    },
    /** Waits for the first frame matching `pred` (already received ones count). */
    async waitFrame(pred, what = "frame", timeout = DEFAULT_WAIT_MS) {
      return waitFor(() => frames.find(pred), { timeout, what: () => `${what}; frames so far: ${JSON.stringify(frames)}` });
    },
    /** Waits for `count` frames matching `pred`; returns all matching. */
    async waitFrames(pred, count, what = "frames", timeout = DEFAULT_WAIT_MS) {
      await waitFor(() => frames.filter(pred).length >= count, {
        timeout,
        what: () => `${count} ${what}; frames so far: ${JSON.stringify(frames)}`,
      });
      return frames.filter(pred);
    },
    close() {
      ws.terminate();
    },
  };
}

/**
 * A TCP proxy in front of the hub whose connections can be cut at will (`dropAll()`), the way a
 * flaky network or a load balancer restart cuts a client off.
 */
async function startDropProxy(targetPort) {
  const pairs = new Set();
  let accepted = 0;
  let paused = false;
  const server = net.createServer((clientSide) => {
    if (paused) {
      clientSide.destroy();
      return;
    }
    accepted++;
    const hubSide = net.connect(targetPort, "127.0.0.1");
    const pair = { clientSide, hubSide };
    pairs.add(pair);
    const done = () => {
      clientSide.destroy();
      hubSide.destroy();
      pairs.delete(pair);
    };
    clientSide.on("error", done).on("close", done);
    hubSide.on("error", done).on("close", done);
    clientSide.pipe(hubSide);
    hubSide.pipe(clientSide);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: server.address().port,
    /** Number of TCP connections accepted so far. */
    get accepted() {
      return accepted;
    },
    /** Number of TCP connections open right now. */
    get open() {
      return pairs.size;
    },
    /** Refuses new connections (they are closed at once) until `resume()`. */
    pause() {
      paused = true;
    },
    /** Accepts and forwards new connections again. */
    resume() {
      paused = false;
    },
    /** Destroys every open connection on both sides without a WebSocket close handshake. */
    dropAll() {
      for (const { clientSide, hubSide } of pairs) {
        clientSide.resetAndDestroy ? clientSide.resetAndDestroy() : clientSide.destroy();
        hubSide.resetAndDestroy ? hubSide.resetAndDestroy() : hubSide.destroy();
      }
      pairs.clear();
    },
    close() {
      this.dropAll();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Builds a connection string for the same hub reached through `port` (e.g. a proxy). */
function connectionStringVia(hub, port) {
  return `Endpoint=http://127.0.0.1:${port};AccessKey=${hub.accessKey};Version=1.0;`;
}

module.exports = {
  CLIENT_DEFAULTS,
  Hub,
  ObservedClient,
  connectClient,
  connectionStringVia,
  delay,
  headStatus,
  hubBinary,
  newClient,
  openRawSocket,
  parseConnectionString,
  startDropProxy,
  startHub,
  uniqueHub,
  waitFor,
  withDeadline,
};
