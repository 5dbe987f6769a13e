/**
 * One WebSocket shape for browsers and Node: the `ws` package in Node (it shows a refused
 * handshake's status and body, so a 401 says why), the global WebSocket in browsers. The
 * clients see text frames, a close code, and `abort()` to cut the socket as a network
 * failure would.
 */

/** A connected text-frame socket. */
export interface Socket {
  /** Sends a text frame; false if the socket is no longer open. */
  send(text: string): boolean;
  /** Closes with a handshake. */
  close(code?: number, reason?: string): void;
  /** Cuts the connection without a close handshake where the platform allows it. */
  abort(): void;
  /** Resolves with the close code once the socket is closed. */
  readonly closed: Promise<number>;
}

interface RawSocket {
  readyState: number;
  protocol: string;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  terminate?: () => void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  /** `ws` only: the answer of a handshake that was not upgraded. */
  on?(event: "unexpected-response", listener: (req: { destroy(): void }, res: RefusedResponse) => void): void;
}

interface RefusedResponse {
  statusCode?: number;
  statusMessage?: string;
  setEncoding(enc: string): void;
  on(event: "data", listener: (chunk: string) => void): void;
  on(event: "end" | "error", listener: () => void): void;
}

/** The hub answered the handshake with an HTTP error: `status` (401 for a bad token) and the
 * hub's `reason`. Browsers hide both; there the socket just fails. */
export class HandshakeRefused extends Error {
  constructor(readonly status: number, readonly reason: string) {
    super(`the hub refused the connection (HTTP ${status}): ${reason}`);
  }
}

/** The error name a refused handshake's status stands for. */
export function refusalName(status: number): string {
  return status === 401 ? "Unauthorized" : status === 403 ? "Forbidden" : "ConnectionFailed";
}

/** The reason in a refused handshake's body: the `message` of the hub's JSON, or its text. */
function reasonOf(body: string, fallback: string): string {
  try {
    const parsed = JSON.parse(body) as { message?: unknown; code?: unknown };
    if (typeof parsed.message === "string" && parsed.message) return parsed.message;
  } catch {
    // A plain-text body is the reason itself.
  }
  return body.trim() || fallback;
}

type RawCtor = new (url: string, protocols: string | string[]) => RawSocket;

let ctorPromise: Promise<RawCtor> | null = null;

function webSocketCtor(): Promise<RawCtor> {
  const global = (globalThis as { WebSocket?: RawCtor }).WebSocket;
  const node = typeof process !== "undefined" && typeof process.versions?.node === "string";
  if (global && !node) return Promise.resolve(global);
  ctorPromise ??= import("ws").then(
    (m) => (m.WebSocket ?? m.default) as unknown as RawCtor,
    (e) => {
      if (global) return global;
      throw e;
    },
  );
  return ctorPromise;
}

const OPEN = 1;

/** Opens `url` offering one subprotocol; rejects if the handshake fails or times out. */
export async function openSocket(
  url: string,
  protocol: string,
  onText: (text: string, socket: Socket) => void,
  timeoutMs = 10_000,
): Promise<Socket> {
  const Ctor = await webSocketCtor();
  const raw = new Ctor(url, [protocol]);
  let resolveClosed!: (code: number) => void;
  const closed = new Promise<number>((r) => (resolveClosed = r));
  const socket: Socket = {
    send(text) {
      if (raw.readyState !== OPEN) return false;
      raw.send(text);
      return true;
    },
    close(code, reason) {
      raw.close(code, reason);
    },
    abort() {
      if (raw.terminate) raw.terminate();
      else raw.close(4000, "dropped");
    },
    closed,
  };
  raw.onmessage = (ev) => {
    // Hub frames are JSON text; binary frames are not part of these protocols.
    if (typeof ev.data === "string") onText(ev.data, socket);
  };
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`connecting to the hub timed out after ${timeoutMs} ms`));
      socket.abort();
    }, timeoutMs);
    raw.onopen = () => {
      clearTimeout(timer);
      resolve();
    };
    raw.onerror = (ev) => {
      clearTimeout(timer);
      const message = (ev as { message?: string })?.message ?? "websocket error";
      reject(new Error(message));
    };
    raw.onclose = (ev) => {
      clearTimeout(timer);
      reject(new Error(`socket closed during the handshake (${ev.code})`));
      resolveClosed(ev.code);
    };
    raw.on?.("unexpected-response", (req, res) => {
      clearTimeout(timer);
      const status = res.statusCode ?? 0;
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk) => {
        if (body.length < 4096) body += chunk;
      });
      const done = () => {
        reject(new HandshakeRefused(status, reasonOf(body, res.statusMessage ?? "")));
        resolveClosed(1006);
        req.destroy();
      };
      res.on("end", done);
      res.on("error", done);
    });
  });
  raw.onerror = () => {};
  raw.onclose = (ev) => resolveClosed(ev.code);
  return socket;
}

/** `ws(s)://host/bus/ws?access_token=…` from an http(s) or ws(s) hub endpoint. */
export function busUrl(endpoint: string, token: string): string {
  const u = new URL(endpoint);
  u.protocol = u.protocol === "https:" || u.protocol === "wss:" ? "wss:" : "ws:";
  const path = u.pathname.replace(/\/+$/, "");
  u.pathname = path.endsWith("/bus/ws") ? path : `${path}/bus/ws`;
  u.search = "";
  u.searchParams.set("access_token", token);
  return u.toString();
}

/** The client URL with the recovery parameters (the access token is kept). */
export function recoveryUrl(url: string, connectionId: string, token: string): string {
  const u = new URL(url);
  u.searchParams.delete("awps_connection_id");
  u.searchParams.delete("awps_reconnection_token");
  u.searchParams.set("awps_connection_id", connectionId);
  u.searchParams.set("awps_reconnection_token", token);
  return u.toString();
}

/** Resolves after `ms` (used for reconnect backoff only). */
export function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
