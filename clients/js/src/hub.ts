/**
 * Hub client for the Azure Web PubSub JSON subprotocols. It keeps one logical connection
 * across dropped sockets: on the reliable protocol it recovers the session
 * (`awps_connection_id` + `awps_reconnection_token`), resends unanswered requests (a repeated
 * ackId is answered `Duplicate`) and drops redelivered messages by sequence id, so each
 * message arrives exactly once; when the session is gone (close 1008) it opens a new
 * connection and rejoins its groups, each after the last offset seen in it: a hub keeping the
 * group's history sends what was missed meanwhile, and messages at or before that offset are
 * dropped as already seen.
 */

import { AsyncQueue } from "./queue.js";
import { delay, HandshakeRefused, openSocket, recoveryUrl, refusalName, type Socket } from "./socket.js";

/** Subprotocol with sequence ids and recovery (the default). */
export const RELIABLE = "json.reliable.webpubsub.azure.v1";
/** Subprotocol without recovery. */
export const JSON_PROTOCOL = "json.webpubsub.azure.v1";
const NO_RECOVERY = 1008;

/** How `data` is encoded on the wire. */
export type DataType = "json" | "text" | "binary";

/** A group or server message. */
export interface HubMessage {
  /** "group" or "server". */
  source: "group" | "server";
  /** The group, for group messages. */
  group?: string;
  /** The sender's user id, for group messages. */
  fromUserId?: string;
  /** The wire data type. */
  dataType: DataType;
  /** The value: JSON value, string, or Uint8Array for binary. */
  data: unknown;
  /** The sequence id on the reliable protocol. */
  sequenceId?: number;
  /** Its place in the group's history (`"<ms>-<seq>"`), when the hub keeps one. */
  offset?: string;
}

/** An offset as a pair that orders as the history does, or undefined if it is not one. */
export function parseOffset(offset: unknown): [bigint, bigint] | undefined {
  if (typeof offset !== "string") return undefined;
  const m = /^(\d{1,20})(?:-(\d{1,20}))?$/.exec(offset);
  return m ? [BigInt(m[1]), BigInt(m[2] ?? "0")] : undefined;
}

function offsetAfter(a: [bigint, bigint], b: [bigint, bigint]): boolean {
  return a[0] > b[0] || (a[0] === b[0] && a[1] > b[1]);
}

/** The hub refused a request (`Forbidden`, `NotFound`, ...), or the connection failed. */
export class HubError extends Error {
  /** The hub's error name, or ConnectionLost / ConnectionFailed / Unauthorized / Timeout /
   * Closed. */
  readonly errorName: string;
  /** The HTTP status of a refused handshake (401 for a bad token), when the platform tells. */
  readonly status?: number;
  constructor(errorName: string, message: string, status?: number) {
    super(`${errorName}: ${message}`);
    this.errorName = errorName;
    this.status = status;
  }
}

/** Settings; the defaults match the Web PubSub JS client. */
export interface HubClientOptions {
  /** RELIABLE (default) or JSON_PROTOCOL. */
  protocol?: string;
  /** How long a request waits for its ack (10 s). */
  ackTimeoutMs?: number;
  /** How often a ping frame is sent (20 s). */
  pingIntervalMs?: number;
  /** How often the highest sequence id is acknowledged (1 s; at once after 300). */
  sequenceAckIntervalMs?: number;
  /** How long recovery is attempted before a new connection (30 s). */
  recoveryWindowMs?: number;
  /** Capacity of each `messages()` stream and of the offline outbox (10000). */
  queueSize?: number;
}

/** Options of a send. */
export interface SendOptions {
  /** json (default), text or binary (Uint8Array/ArrayBuffer data). */
  dataType?: DataType;
  /** Do not deliver the message back to this connection. */
  noEcho?: boolean;
  /** Do not ask for an ack. */
  fireAndForget?: boolean;
}

type Events = {
  "group-message": (m: HubMessage) => void;
  "server-message": (m: HubMessage) => void;
  connected: (connectionId: string, recovered: boolean) => void;
  disconnected: (reason: string) => void;
  "rejoin-failed": (group: string, error: Error) => void;
};

interface Pending {
  frame: Record<string, unknown>;
  resolve: () => void;
  reject: (e: Error) => void;
  joins?: string;
}

/** Base64 of bytes, in browsers and Node. */
export function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

/** Bytes of base64, in browsers and Node. */
export function fromBase64(text: string): Uint8Array {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

function encode(data: unknown, dataType: DataType): unknown {
  if (dataType === "binary") {
    if (data instanceof ArrayBuffer) return toBase64(new Uint8Array(data));
    if (data instanceof Uint8Array) return toBase64(data);
    throw new TypeError("binary data must be a Uint8Array or ArrayBuffer");
  }
  if (dataType === "text" && typeof data !== "string") throw new TypeError("text data must be a string");
  return data;
}

/** A Web PubSub client connection. */
export class HubClient {
  /** The current connection id. */
  connectionId?: string;
  /** The user id the hub assigned. */
  userId?: string;
  /** Recoveries, new connections after the first, dropped redeliveries, keep-alive answers. */
  readonly stats = { recoveries: 0, reconnects: 0, duplicates: 0, pongs: 0 };

  private readonly opts: Required<HubClientOptions>;
  private socket?: Socket;
  private ready = false;
  private stopped = false;
  private started = false;
  private session?: { id: string; token: string };
  private lostAt?: number;
  private nextAck = 0;
  private readonly pending = new Map<number, Pending>();
  private readonly outbox: string[] = [];
  private readonly groups = new Set<string>();
  /** The last offset seen per group. */
  private readonly offsets = new Map<string, string>();
  private lastSeq = 0;
  private ackedSeq = 0;
  private readonly handlers: { [K in keyof Events]?: Events[K][] } = {};
  private readonly streams = new Set<AsyncQueue<HubMessage>>();
  private timers: ReturnType<typeof setInterval>[] = [];
  private onFirst?: { resolve: () => void; reject: (e: Error) => void };

  constructor(private readonly url: string, options: HubClientOptions = {}) {
    this.opts = {
      protocol: RELIABLE,
      ackTimeoutMs: 10_000,
      pingIntervalMs: 20_000,
      sequenceAckIntervalMs: 1_000,
      recoveryWindowMs: 30_000,
      queueSize: 10_000,
      ...options,
    };
    if (this.opts.protocol !== RELIABLE && this.opts.protocol !== JSON_PROTOCOL) {
      throw new Error(`unsupported subprotocol ${this.opts.protocol}`);
    }
  }

  /** Connects and resolves on `connected`; rejects if the hub refuses. */
  start(): Promise<void> {
    if (this.started) return Promise.reject(new Error("already started"));
    this.started = true;
    const first = new Promise<void>((resolve, reject) => (this.onFirst = { resolve, reject }));
    this.timers.push(setInterval(() => this.flushSequenceAck(), this.opts.sequenceAckIntervalMs));
    this.timers.push(setInterval(() => this.ready && this.socket?.send('{"type":"ping"}'), this.opts.pingIntervalMs));
    void this.loop();
    return first;
  }

  /** Closes for good; pending requests fail and message streams end. */
  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    this.socket?.close(1000, "client stopped");
    this.failPending(new HubError("Closed", "client stopped"));
    for (const s of this.streams) s.end();
  }

  /** Cuts the socket without a close handshake, as a network failure would. */
  dropSocket(): void {
    this.socket?.abort();
  }

  /** Adds a callback; returns a function that removes it. */
  on<K extends keyof Events>(event: K, handler: Events[K]): () => void {
    const list = (this.handlers[event] ??= []) as Events[K][];
    list.push(handler);
    return () => list.splice(list.indexOf(handler), 1);
  }

  /** Every group and server message from now on, in order (`for await` or `next(ms)`). */
  messages(): AsyncQueue<HubMessage> {
    const q: AsyncQueue<HubMessage> = new AsyncQueue(this.opts.queueSize, () => this.streams.delete(q));
    this.streams.add(q);
    return q;
  }

  /** Joins a group (rejoined automatically on a new connection). */
  async joinGroup(group: string): Promise<void> {
    await this.request({ type: "joinGroup", group }, group);
  }

  /** Leaves a group. */
  async leaveGroup(group: string): Promise<void> {
    this.groups.delete(group);
    this.offsets.delete(group);
    await this.request({ type: "leaveGroup", group });
  }

  /** Publishes to a group; waits for the ack unless `fireAndForget`. */
  async sendToGroup(group: string, data: unknown, options: SendOptions = {}): Promise<void> {
    const dataType = options.dataType ?? "json";
    const frame = { type: "sendToGroup", group, dataType, data: encode(data, dataType), noEcho: !!options.noEcho };
    if (options.fireAndForget) return this.sendFrame(frame);
    await this.request(frame);
  }

  /** Sends a user event to the upstream handler; waits for the ack unless `fireAndForget`. */
  async sendEvent(event: string, data: unknown, options: SendOptions = {}): Promise<void> {
    const dataType = options.dataType ?? "json";
    const frame = { type: "event", event, dataType, data: encode(data, dataType) };
    if (options.fireAndForget) return this.sendFrame(frame);
    await this.request(frame);
  }

  private request(frame: Record<string, unknown>, joins?: string): Promise<void> {
    if (this.stopped) return Promise.reject(new HubError("Closed", "client stopped"));
    const ackId = ++this.nextAck;
    const full = { ...frame, ackId };
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(ackId);
        reject(new HubError("Timeout", `no ack for ${String(frame.type)} within ${this.opts.ackTimeoutMs} ms`));
      }, this.opts.ackTimeoutMs);
      this.pending.set(ackId, {
        frame: full,
        joins,
        resolve: () => (clearTimeout(timer), resolve()),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
      this.sendFrame(full);
    });
  }

  private sendFrame(frame: Record<string, unknown>): void {
    const text = JSON.stringify(frame);
    if (this.ready && this.socket?.send(text)) return;
    if ("ackId" in frame) return; // pending: resent after recovery, failed on a new connection
    if (this.outbox.length >= this.opts.queueSize) throw new HubError("Overflow", "offline outbox is full");
    this.outbox.push(text);
  }

  private emit<K extends keyof Events>(event: K, ...args: Parameters<Events[K]>): void {
    for (const h of this.handlers[event] ?? []) {
      try {
        (h as (...a: unknown[]) => void)(...args);
      } catch (e) {
        console.error(`nerve: ${event} handler failed`, e);
      }
    }
  }

  private failPending(e: Error): void {
    for (const p of [...this.pending.values()]) p.reject(e);
    this.pending.clear();
  }

  private forget(why: string): void {
    this.session = undefined;
    this.lostAt = undefined;
    this.lastSeq = this.ackedSeq = 0;
    this.failPending(new HubError("ConnectionLost", why));
  }

  private async loop(): Promise<void> {
    let backoff = 200;
    while (!this.stopped) {
      const recovering = this.session !== undefined;
      const url = this.session ? recoveryUrl(this.url, this.session.id, this.session.token) : this.url;
      let socket: Socket;
      try {
        socket = await openSocket(url, this.opts.protocol, (text, s) => this.onText(text, s, recovering));
      } catch (e) {
        if (this.onFirst) {
          const error = e instanceof HandshakeRefused
            ? new HubError(refusalName(e.status), e.message, e.status)
            : new HubError("ConnectionFailed", (e as Error).message);
          this.onFirst.reject(error);
          this.onFirst = undefined;
          this.stop();
          return;
        }
        if (this.lostAt !== undefined && Date.now() - this.lostAt > this.opts.recoveryWindowMs) {
          this.forget("the session could not be recovered in time");
        }
        await delay(backoff + Math.random() * backoff);
        backoff = Math.min(backoff * 2, 5_000);
        continue;
      }
      backoff = 200;
      if (this.stopped) return socket.close();
      this.socket = socket;
      const code = await socket.closed;
      this.ready = false;
      if (this.stopped) return;
      if (this.onFirst) {
        this.onFirst.reject(new HubError("ConnectionLost", `closed before connected (${code})`));
        this.onFirst = undefined;
        this.stop();
        return;
      }
      this.lostAt ??= Date.now();
      this.emit("disconnected", `socket closed (${code})`);
      if (code === NO_RECOVERY || this.opts.protocol !== RELIABLE) {
        this.forget("the connection was closed and cannot be recovered");
      }
    }
  }

  private onText(text: string, socket: Socket, recovering: boolean): void {
    let f: Record<string, unknown>;
    try {
      f = JSON.parse(text);
    } catch {
      return;
    }
    if (typeof f !== "object" || f === null) return;
    switch (f.type) {
      case "message":
        return this.onMessage(f, socket);
      case "ack":
        return this.onAck(f);
      case "pong":
        this.stats.pongs++;
        return;
      case "system":
        if (f.event === "connected") return this.onConnected(f, socket, recovering);
        if (f.event === "disconnected") this.emit("disconnected", String(f.message ?? ""));
    }
  }

  private onMessage(f: Record<string, unknown>, socket: Socket): void {
    const seq = typeof f.sequenceId === "number" ? f.sequenceId : undefined;
    if (seq !== undefined) {
      if (seq <= this.lastSeq) {
        this.stats.duplicates++;
        return;
      }
      this.lastSeq = seq;
      if (seq - this.ackedSeq >= 300) this.flushSequenceAck(socket);
    }
    const offset = parseOffset(f.offset);
    const group = typeof f.group === "string" ? f.group : undefined;
    if (group !== undefined && offset !== undefined) {
      const last = parseOffset(this.offsets.get(group));
      if (last !== undefined && !offsetAfter(offset, last)) {
        this.stats.duplicates++;
        return;
      }
      this.offsets.set(group, f.offset as string);
    }
    const dataType = (f.dataType as DataType) ?? "json";
    let data = f.data;
    if (dataType === "binary" && typeof data === "string") data = fromBase64(data);
    const m: HubMessage = {
      source: f.from === "group" ? "group" : "server",
      group: f.group as string | undefined,
      fromUserId: f.fromUserId as string | undefined,
      dataType,
      data,
      sequenceId: seq,
      offset: offset !== undefined ? (f.offset as string) : undefined,
    };
    this.emit(m.source === "group" ? "group-message" : "server-message", m);
    for (const q of this.streams) q.push(m);
  }

  private onAck(f: Record<string, unknown>): void {
    const p = this.pending.get(Number(f.ackId));
    if (!p) return;
    this.pending.delete(Number(f.ackId));
    const err = (f.error ?? {}) as { name?: string; message?: string };
    if (f.success === true || err.name === "Duplicate") {
      if (p.joins !== undefined) this.groups.add(p.joins);
      p.resolve();
    } else {
      p.reject(new HubError(err.name ?? "Error", err.message ?? ""));
    }
  }

  private onConnected(f: Record<string, unknown>, socket: Socket, recovering: boolean): void {
    const id = String(f.connectionId);
    const resumed = recovering && this.session?.id === id;
    const token = typeof f.reconnectionToken === "string" ? f.reconnectionToken : undefined;
    this.session = token ? { id, token } : undefined;
    this.connectionId = id;
    this.userId = typeof f.userId === "string" ? f.userId : undefined;
    this.lostAt = undefined;
    // `ws` can deliver this frame before openSocket() returns, so take the socket from here.
    this.socket = socket;
    this.ready = true;
    if (resumed) {
      this.stats.recoveries++;
      for (const p of this.pending.values()) socket.send(JSON.stringify(p.frame));
    } else if (!this.onFirst) {
      this.stats.reconnects++;
      this.lastSeq = this.ackedSeq = 0;
      for (const g of this.groups) {
        const after = this.offsets.get(g);
        const join = after === undefined ? { type: "joinGroup", group: g } : { type: "joinGroup", group: g, after };
        this.request(join, g).catch((e) => this.emit("rejoin-failed", g, e));
      }
    }
    for (const text of this.outbox.splice(0)) socket.send(text);
    if (this.onFirst) {
      this.onFirst.resolve();
      this.onFirst = undefined;
    }
    this.emit("connected", id, resumed);
  }

  private flushSequenceAck(socket = this.socket): void {
    if (!this.ready || !socket || this.opts.protocol !== RELIABLE || this.lastSeq <= this.ackedSeq) return;
    if (socket.send(JSON.stringify({ type: "sequenceAck", sequenceId: this.lastSeq }))) this.ackedSeq = this.lastSeq;
  }
}
