/**
 * The agent SDK: a card plus one async handler per skill. `run()` connects to the hub's bus
 * socket, registers the card (the hub heartbeats it while the socket lives), runs a handler
 * for each pushed task and settles the task from the handler's outcome; after a dropped
 * socket it connects and registers again (the hub requeues the tasks it held, so handlers
 * must be idempotent by task id).
 */

import { BusClient, BusError, messageText, type A2AMessage, type Push, type TaskRecord } from "./bus.js";
import { delay } from "./socket.js";
import { startSpan } from "./tracing.js";

/** Throw from a handler to reject the task. */
export class TaskRejected extends Error {}
/** Throw from a handler for a transient failure: the bus redelivers after a backoff. */
export class TaskRetry extends Error {}

/** An agent card; `skill()` adds missing skills. */
export interface AgentCard {
  /** Stable agent id. */
  id: string;
  /** Display name. */
  name: string;
  /** What it does. */
  description?: string;
  /** Skills; each id is a capability. */
  skills?: Array<{ id: string; name: string; description?: string; tags?: string[] }>;
}

/** What a handler returns: text or data completes the task, nothing completes it bare. */
export type HandlerResult = string | Record<string, unknown> | void;

/** A task handler. */
export type Handler = (task: TaskContext) => Promise<HandlerResult>;

/** A task held by this agent, handed to its handler. */
export class TaskContext {
  /** The task id. */
  readonly id: string;
  /** The capability it was submitted to. */
  readonly capability: string;
  /** The chain's correlation id. */
  readonly correlationId: string;
  /** How many times it has been delivered. */
  readonly deliveries: number;
  /** The conversation id. */
  readonly contextId?: string;
  /** The A2A Task as delivered. */
  readonly task: TaskRecord["task"];
  /** Aborted when someone cancels the task. */
  readonly signal: AbortSignal;
  /** The W3C trace context the push carried (the hub's delivery span), or undefined. */
  readonly traceparent?: string;
  /** The traceparent of this agent's `bus.deliver` span while tracing; its calls are children. */
  spanParent?: string;

  constructor(readonly bus: BusClient, push: Push, private readonly abort: AbortController) {
    this.task = push.task as TaskRecord["task"];
    this.id = this.task.id;
    this.capability = String(push.capability);
    this.correlationId = String(push.correlationId ?? "");
    this.deliveries = Number(push.deliveries ?? 1);
    this.contextId = this.task.contextId;
    this.signal = abort.signal;
    this.traceparent = typeof push.traceparent === "string" ? push.traceparent : undefined;
  }

  /** The request message. */
  get message(): A2AMessage {
    return this.task.history?.[0] ?? { parts: [] };
  }

  /** The request's text parts, joined. */
  get text(): string {
    return messageText(this.message);
  }

  /** The request's first data part. */
  get data(): unknown {
    return this.message.parts.find((p) => "data" in p)?.data;
  }

  /** True once someone canceled the task. */
  get canceled(): boolean {
    return this.abort.signal.aborted;
  }

  /** Reports progress (working, with a message); resolves with the task version. */
  async progress(text: string): Promise<number> {
    return (await this.bus.invoke("bus.task.status", { taskId: this.id, state: "TASK_STATE_WORKING", text }, undefined, this.spanParent)).version;
  }

  /** Streams an artifact (a string is a text part, an object a data part). */
  async artifact(
    content: string | Record<string, unknown>,
    options: { artifactId?: string; name?: string; append?: boolean; lastChunk?: boolean } = {},
  ): Promise<number> {
    const parts = typeof content === "string" ? [{ text: content }] : [{ data: content }];
    const artifact = { artifactId: options.artifactId ?? "result", parts, ...(options.name ? { name: options.name } : {}) };
    const data = { taskId: this.id, artifact, append: !!options.append, lastChunk: !!options.lastChunk };
    return (await this.bus.invoke("bus.task.artifact", data, undefined, this.spanParent)).version;
  }

  /** Asks a person (input-required) and resolves with the answer's text; people answer in
   * minutes, so it waits an hour by default. */
  async ask(question: string, timeoutMs = 3_600_000): Promise<string> {
    const r = await this.bus.invoke("bus.task.ask", { taskId: this.id, question, timeoutMs }, timeoutMs + 5_000, this.spanParent);
    return String(r.text ?? "");
  }

  /** Submits a sub-task in this task's chain and waits for its terminal record. */
  async delegate(capability: string, text: string, timeoutMs = 30_000): Promise<TaskRecord> {
    const s = await this.bus.submit(capability, text, { parentTaskId: this.id });
    return this.bus.wait(s.taskId, { timeoutMs });
  }
}

/** An agent: `new Agent(url, token, card)`, `agent.skill("cap", handler)`, `await agent.run()`. */
export class Agent {
  /** The live bus connection while registered. */
  bus?: BusClient;
  private readonly card: AgentCard;
  private readonly handlers = new Map<string, Handler>();
  private readonly running = new Map<string, AbortController>();
  private stopped = false;
  private stopSignal!: () => void;
  private readonly stopping = new Promise<void>((r) => (this.stopSignal = r));
  private registeredWaiters: Array<() => void> = [];

  /** Answered `bus.heartbeat` calls. */
  heartbeats = 0;

  /** `heartbeatMs`: how often the registration is checked (the socket's pings keep it alive). */
  constructor(
    private readonly endpoint: string,
    private readonly token: string,
    card: AgentCard,
    private readonly maxInFlight = 4,
    private readonly heartbeatMs = 10_000,
  ) {
    this.card = { ...card, skills: [...(card.skills ?? [])] };
  }

  /** Handles tasks of `capability`; adds the skill to the card if missing. */
  skill(capability: string, handler: Handler, description?: string): this {
    this.handlers.set(capability, handler);
    if (!this.card.skills!.some((s) => s.id === capability)) {
      this.card.skills!.push({ id: capability, name: capability, ...(description ? { description } : {}) });
    }
    return this;
  }

  /** Resolves once the card is registered on a live socket. */
  registered(): Promise<void> {
    if (this.bus) return Promise.resolve();
    return new Promise((r) => this.registeredWaiters.push(r));
  }

  /** Stops serving; `run()` resolves. */
  stop(): void {
    this.stopped = true;
    this.stopSignal();
    this.bus?.close();
  }

  /** Serves until `stop()`; rejects if the hub refuses the card, or (in Node) the token. */
  async run(): Promise<void> {
    let backoff = 200;
    while (!this.stopped) {
      const bus = new BusClient(this.endpoint, this.token);
      bus.onPush = (p) => this.onPush(bus, p);
      try {
        await bus.connect();
        await bus.invoke("bus.register", { card: this.card, maxInFlight: this.maxInFlight });
      } catch (e) {
        bus.close();
        // A refusal will not change by retrying (browsers do not say why a socket failed, so
        // there a bad token looks like an outage and is retried).
        if (e instanceof BusError && ["Unauthorized", "Forbidden", "BadRequest", "Conflict"].includes(e.errorName)) throw e;
        await Promise.race([delay(backoff), this.stopping]);
        backoff = Math.min(backoff * 2, 5_000);
        continue;
      }
      backoff = 200;
      this.bus = bus;
      for (const w of this.registeredWaiters.splice(0)) w();
      const beat = setInterval(() => {
        bus.invoke("bus.heartbeat", {}).then(
          () => this.heartbeats++,
          (e) => e instanceof BusError && e.errorName !== "ConnectionLost" && console.warn("nerve: heartbeat failed", e),
        );
      }, this.heartbeatMs);
      await Promise.race([bus.closed, this.stopping]);
      clearInterval(beat);
      this.bus = undefined;
      bus.close();
      for (const a of this.running.values()) a.abort(); // the hub requeues what this socket held
      this.running.clear();
    }
  }

  private onPush(bus: BusClient, push: Push): void {
    if (push.kind === "bus.task") {
      const abort = new AbortController();
      const task = new TaskContext(bus, push, abort);
      this.running.set(task.id, abort);
      void this.handle(bus, task);
    } else if (push.kind === "bus.task.canceled") {
      this.running.get(String(push.taskId))?.abort();
    }
  }

  private async handle(bus: BusClient, task: TaskContext): Promise<void> {
    // The handler and the settling call run in a span continuing the submitter's trace.
    const attrs = { "nerve.bus.capability": task.capability, "nerve.bus.task_id": task.id, "nerve.bus.correlation_id": task.correlationId, "nerve.bus.deliveries": task.deliveries, "nerve.bus.agent": this.card.id };
    const span = startSpan("bus.deliver", "consumer", attrs, task.traceparent);
    task.spanParent = span.traceparent;
    const op = await this.settle(bus, task);
    if (op) span.set("nerve.bus.outcome", op.slice(op.lastIndexOf(".") + 1));
    span.end(op === "bus.task.fail" ? "the handler failed" : undefined);
  }

  private async settle(bus: BusClient, task: TaskContext): Promise<string | undefined> {
    const handler = this.handlers.get(task.capability);
    let op = "bus.task.complete";
    let data: Record<string, unknown> = { taskId: task.id };
    try {
      if (!handler) throw new TaskRejected("no handler for this capability");
      const result = await handler(task);
      if (typeof result === "string") data.text = result;
      else if (result && typeof result === "object") data.message = { role: "ROLE_AGENT", parts: [{ data: result }] };
    } catch (e) {
      const reason = e instanceof Error ? e.message : String(e);
      if (e instanceof TaskRejected) op = "bus.task.reject";
      else if (e instanceof TaskRetry) op = "bus.task.retry";
      else op = "bus.task.fail";
      data = { taskId: task.id, reason: reason || op };
    } finally {
      this.running.delete(task.id);
    }
    if (task.canceled) return undefined; // a canceled task needs no settling
    await bus.invoke(op, data, undefined, task.spanParent).catch(() => {});
    return op;
  }
}
