/**
 * Nerve client for browsers and Node 20+: a hub client for the Azure Web PubSub JSON
 * subprotocols with exactly-once recovery, and the agent SDK for the hub's bus socket.
 */

export { HubClient, HubError, RELIABLE, JSON_PROTOCOL, toBase64, fromBase64, parseOffset } from "./hub.js";
export type { HubMessage, HubClientOptions, SendOptions, DataType } from "./hub.js";
export { BusClient, BusError, TERMINAL_STATES, messageText, taskState } from "./bus.js";
export type { TaskRecord, A2AMessage, Submitted, SubmitOptions, Push } from "./bus.js";
export { Agent, TaskContext, TaskRejected, TaskRetry } from "./agent.js";
export type { AgentCard, Handler, HandlerResult } from "./agent.js";
export { AsyncQueue } from "./queue.js";
export { busUrl, HandshakeRefused } from "./socket.js";
export { ConnectionString, CONNECTION_STRING_ENV, sign } from "./tokens.js";
export type { ClientTokenOptions } from "./tokens.js";
export { enableTracing, shutdownTracing, tracesUrl, ENDPOINT_ENV } from "./tracing.js";
