/**
 * The agent bus over the hub's `/bus/ws` socket: operations are `invoke` frames answered by
 * `invokeResponse`, fire-and-forget ones are `event` frames, and the hub pushes tasks,
 * cancellations and subscribed events as `message` frames (see hub/docs/agent-protocol.md).
 */

import { AsyncQueue } from "./queue.js";
import { busUrl, HandshakeRefused, openSocket, refusalName, type Socket } from "./socket.js";
import { startSpan, tracingReady } from "./tracing.js";

const SUBPROTOCOL = "json.webpubsub.azure.v1";
const MAX_WAIT_MS = 300_000;

/** States after which a task no longer changes. */
export const TERMINAL_STATES = ["TASK_STATE_COMPLETED", "TASK_STATE_FAILED", "TASK_STATE_CANCELED", "TASK_STATE_REJECTED"];

/** A failed operation: `errorName` is Forbidden, BadRequest, NotFound, Conflict, Timeout,
 * Unavailable, ConnectionLost when the socket closed first, or Unauthorized when the hub
 * refused the token (the message says why). */
export class BusError extends Error {
  /** The error name. */
  readonly errorName: string;
  constructor(errorName: string, message: string) {
    super(`${errorName}: ${message}`);
    this.errorName = errorName;
  }
}

/** A task record: the A2A Task plus bus bookkeeping. */
export interface TaskRecord {
  /** The A2A v1.0 Task. */
  task: { id: string; contextId?: string; status: { state: string; message?: A2AMessage }; artifacts?: unknown[]; history?: A2AMessage[] };
  /** Goes up with every change. */
  version: number;
  /** The capability it was submitted to. */
  capability: string;
  /** The chain's correlation id. */
  correlationId: string;
  /** The agent that holds or held it. */
  agent?: string | null;
}

/** An A2A message. */
export interface A2AMessage {
  /** Message id. */
  messageId?: string;
  /** ROLE_USER or ROLE_AGENT. */
  role?: string;
  /** Text or data parts. */
  parts: Array<{ text?: string; data?: unknown }>;
  /** Free-form metadata. */
  metadata?: Record<string, unknown>;
}

/** The answer to `submit`. */
export interface Submitted {
  /** The task id. */
  taskId: string;
  /** The chain's correlation id. */
  correlationId: string;
  /** The conversation id. */
  contextId: string;
  /** True when an idempotency key matched an earlier task. */
  duplicate: boolean;
}

/** Options of `submit`. */
export interface SubmitOptions {
  /** A full A2A message instead of text. */
  message?: A2AMessage;
  /** The conversation. */
  contextId?: string;
  /** Makes resubmission idempotent. */
  idempotencyKey?: string;
  /** Expires the task if not taken in time. */
  ttlMs?: number;
  /** Orders tasks with the same key. */
  partitionKey?: string;
  /** Makes it a sub-task in that task's chain. */
  parentTaskId?: string;
}

/** A `message` frame's data on the bus socket. */
export interface Push {
  /** bus.task, bus.task.canceled, bus.event or bus.resync. */
  kind: string;
  [k: string]: unknown;
}

/** The text parts of an A2A message, joined. */
export function messageText(m?: A2AMessage | null): string {
  return (m?.parts ?? []).map((p) => (typeof p.text === "string" ? p.text : "")).join("");
}

/** A task record's state. */
export function taskState(r: TaskRecord): string {
  return r.task?.status?.state ?? "";
}

/** A connection to the hub's agent bus. */
export class BusClient {
  /** This socket's connection id. */
  connectionId?: string;
  /** The token's `sub`. */
  userId?: string;
  /** Called for pushes other than subscribed events (tasks, cancellations). */
  onPush: (p: Push) => void = () => {};
  /** Resolves when the socket closes. */
  closed: Promise<number> = Promise.resolve(0);

  private socket?: Socket;
  private nextId = 0;
  private readonly pending = new Map<string, { resolve: (v: any) => void; reject: (e: Error) => void }>();
  private readonly subscribers = new Map<string, Set<AsyncQueue<Push>>>();
  private pinger?: ReturnType<typeof setInterval>;

  /** `endpoint` is the hub's http(s) or ws(s) base URL; `token` a bus token. */
  constructor(private readonly endpoint: string, private readonly token: string, private readonly invokeTimeoutMs = 30_000) {}

  /** Opens the socket and waits for `connected`. */
  async connect(): Promise<this> {
    const tracing = await tracingReady();
    const { hostname, port, protocol } = new URL(this.endpoint);
    const span = tracing
      ? startSpan("nerve.connect", "client", { "nerve.hub": "bus", "server.address": hostname, "server.port": Number(port) || (protocol.endsWith("s:") ? 443 : 80) })
      : undefined;
    try {
      await this.open();
    } catch (e) {
      span?.end(e instanceof BusError ? e.errorName : "Error");
      throw e;
    }
    if (this.connectionId) span?.set("nerve.connection_id", this.connectionId);
    span?.end();
    return this;
  }

  private async open(): Promise<void> {
    let hello!: (f: Record<string, unknown>) => void;
    const connected = new Promise<Record<string, unknown>>((r) => (hello = r));
    const socket = await openSocket(busUrl(this.endpoint, this.token), SUBPROTOCOL, (text) => {
      let f: Record<string, unknown>;
      try {
        f = JSON.parse(text);
      } catch {
        return;
      }
      if (f.type === "system" && f.event === "connected") hello(f);
      else this.onFrame(f);
    }).catch((e: unknown) => {
      if (e instanceof HandshakeRefused) throw new BusError(refusalName(e.status), e.message);
      throw e;
    });
    this.socket = socket;
    this.closed = socket.closed.then((code) => {
      clearInterval(this.pinger);
      this.socket = undefined;
      for (const p of this.pending.values()) p.reject(new BusError("ConnectionLost", `socket closed (${code})`));
      this.pending.clear();
      for (const qs of this.subscribers.values()) for (const q of qs) q.end();
      return code;
    });
    const timeout = new Promise<never>((_, reject) =>
      setTimeout(() => reject(new BusError("Timeout", "no connected frame")), 10_000).unref?.(),
    );
    const f = await Promise.race([connected, timeout, this.closed.then((c) => Promise.reject(new BusError("ConnectionLost", `closed (${c})`)))]);
    this.connectionId = String(f.connectionId);
    this.userId = typeof f.userId === "string" ? f.userId : undefined;
    this.pinger = setInterval(() => this.socket?.send('{"type":"ping"}'), 20_000);
  }

  /** Cuts the socket without a close handshake, as a network failure would. */
  dropSocket(): void {
    this.socket?.abort();
  }

  /** Closes the socket. */
  close(): void {
    clearInterval(this.pinger);
    this.socket?.close(1000, "client closed");
  }

  /** Runs an operation and resolves with its result. With tracing on it runs in a span named
   * `op` (a child of `parent`, a traceparent, if given) whose traceparent goes along as
   * `data.traceparent`. */
  async invoke<T = any>(op: string, data: unknown, timeoutMs = this.invokeTimeoutMs, parent?: string): Promise<T> {
    const d = (data ?? {}) as Record<string, unknown>;
    if (op === "bus.heartbeat" || !(await tracingReady())) return this.send<T>(op, data, timeoutMs);
    const attrs = { "nerve.bus.op": op, "nerve.bus.capability": d.capability, "nerve.bus.task_id": d.taskId };
    const span = startSpan(op, op === "bus.submit" ? "producer" : "client", attrs, parent);
    try {
      const r = await this.send<T>(op, d.traceparent || !span.traceparent ? d : { ...d, traceparent: span.traceparent }, timeoutMs);
      const out = (r ?? {}) as Record<string, unknown>;
      if (op === "bus.submit") {
        span.set("nerve.bus.task_id", String(out.taskId ?? ""));
        span.set("nerve.bus.correlation_id", String(out.correlationId ?? ""));
      }
      span.end();
      return r;
    } catch (e) {
      span.end(e instanceof BusError ? e.errorName : "Error");
      throw e;
    }
  }

  private send<T>(op: string, data: unknown, timeoutMs: number): Promise<T> {
    const socket = this.socket;
    if (!socket) return Promise.reject(new BusError("ConnectionLost", "not connected"));
    const id = String(++this.nextId);
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new BusError("Timeout", `no answer to ${op}`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (v) => (clearTimeout(timer), resolve(v)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
      if (!socket.send(JSON.stringify({ type: "invoke", invocationId: id, event: op, dataType: "json", data }))) {
        this.pending.get(id)?.reject(new BusError("ConnectionLost", "socket closed"));
        this.pending.delete(id);
      }
    });
  }

  /** Runs an operation without waiting for an answer. */
  notify(op: string, data: unknown): void {
    if (!this.socket?.send(JSON.stringify({ type: "event", event: op, dataType: "json", data }))) {
      throw new BusError("ConnectionLost", "not connected");
    }
  }

  private onFrame(f: Record<string, unknown>): void {
    if (f.type === "invokeResponse") {
      const p = this.pending.get(String(f.invocationId));
      if (!p) return;
      this.pending.delete(String(f.invocationId));
      if (f.success === true) p.resolve(f.data ?? {});
      else {
        const e = (f.error ?? {}) as { name?: string; message?: string };
        p.reject(new BusError(e.name ?? "Error", e.message ?? ""));
      }
    } else if (f.type === "message" && f.data && typeof f.data === "object") {
      const push = f.data as Push;
      if (push.kind === "bus.event") {
        for (const q of this.subscribers.get(String(push.group)) ?? []) q.push(push);
      } else if (push.kind === "bus.resync") {
        for (const qs of this.subscribers.values()) for (const q of qs) q.push(push);
      } else {
        this.onPush(push);
      }
    }
  }

  /** Submits a task for `capability` with `text` (or `options.message`). */
  submit(capability: string, text: string, options: SubmitOptions = {}): Promise<Submitted> {
    const { message, ...rest } = options;
    return this.invoke("bus.submit", { capability, ...(message ? { message } : { text }), ...rest });
  }

  /** Waits until the task is terminal (or `settled`: also input-/auth-required); rejects with
   * BusError("Timeout") after `timeoutMs`. */
  async wait(taskId: string, options: { until?: "terminal" | "settled"; timeoutMs?: number; afterVersion?: number } = {}): Promise<TaskRecord> {
    const deadline = Date.now() + (options.timeoutMs ?? 30_000);
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) throw new BusError("Timeout", `task ${taskId} did not finish in time`);
      const step = Math.min(left, MAX_WAIT_MS);
      try {
        const r = await this.invoke<{ task: TaskRecord }>(
          "bus.task.wait",
          { taskId, until: options.until ?? "terminal", timeoutMs: step, afterVersion: options.afterVersion },
          step + 5_000,
        );
        return r.task;
      } catch (e) {
        if (!(e instanceof BusError) || e.errorName !== "Timeout" || Date.now() >= deadline) throw e;
      }
    }
  }

  /** Submits a task and waits for its terminal record. */
  async call(capability: string, text: string, timeoutMs = 30_000, options: SubmitOptions = {}): Promise<TaskRecord> {
    const s = await this.submit(capability, text, options);
    return this.wait(s.taskId, { timeoutMs });
  }

  /** A task's record. */
  async get(taskId: string): Promise<TaskRecord> {
    return (await this.invoke<{ task: TaskRecord }>("bus.task.get", { taskId })).task;
  }

  /** Cancels a task. */
  cancel(taskId: string): Promise<unknown> {
    return this.invoke("bus.task.cancel", { taskId });
  }

  /** Answers an input-required task. */
  reply(taskId: string, text: string): Promise<unknown> {
    return this.invoke("bus.task.reply", { taskId, text });
  }

  /** Publishes a shared context value; resolves with its version. */
  async publishContext(contextId: string, value: unknown): Promise<number> {
    return (await this.invoke<{ version: number }>("bus.context.publish", { contextId, value })).version;
  }

  /** Reads a shared context (`{contextId, version, value, updatedMs}` or null). */
  async readContext(contextId: string): Promise<{ contextId: string; version: number; value: unknown; updatedMs: number } | null> {
    return (await this.invoke("bus.context.get", { contextId })).context;
  }

  /** Registered agent cards, optionally only those serving `capability`. */
  async agents(capability?: string): Promise<Array<Record<string, unknown>>> {
    return (await this.invoke("bus.agents", capability ? { capability } : {})).agents;
  }

  /** `{snapshot, events:[{cursor, envelope}], cursor, reset}` for a task, chain or context. */
  history(selector: { taskId?: string; correlationId?: string; contextId?: string; after?: string }): Promise<any> {
    return this.invoke("bus.history", selector);
  }

  /** Every event envelope of a task, once each and in order, live until it is terminal
   * (needs `bus.watch`): subscribe, catch up by cursor, then follow. */
  async *watch(taskId: string, timeoutMs = 60_000): AsyncGenerator<Record<string, any>> {
    const group = `task.${taskId}`;
    const q = new AsyncQueue<Push>(10_000);
    const set = this.subscribers.get(group) ?? new Set();
    this.subscribers.set(group, set.add(q));
    const deadline = Date.now() + timeoutMs;
    const seen = new Set<string>();
    let cursor: string | undefined;
    try {
      await this.invoke("bus.subscribe", { group });
      let catchUp = true;
      for (;;) {
        let batch: Array<{ cursor: string; envelope: Record<string, any> }>;
        if (catchUp) {
          batch = (await this.history({ taskId, after: cursor })).events ?? [];
          catchUp = false;
        } else {
          const push = await q.next(Math.max(1, deadline - Date.now()));
          if (push.kind === "bus.resync") {
            catchUp = true;
            continue;
          }
          batch = [{ cursor: String(push.cursor), envelope: push.envelope as Record<string, any> }];
        }
        for (const e of batch) {
          if (seen.has(e.cursor)) continue;
          seen.add(e.cursor);
          cursor = e.cursor;
          yield e.envelope;
          const state = e.envelope?.data?.statusUpdate?.status?.state;
          if (TERMINAL_STATES.includes(state)) return;
        }
      }
    } finally {
      set.delete(q);
      if (this.socket) await this.invoke("bus.unsubscribe", { group }).catch(() => {});
    }
  }
}
