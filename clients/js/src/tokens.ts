/**
 * Tokens from a connection string, so a program can reach a hub without JWT code.
 * `ConnectionString` reads `Endpoint=…;AccessKey=…;Version=1.0;` (what `nerve` prints at start
 * and the Azure server SDKs read) and signs HS256 tokens with the key through Web Crypto
 * (browsers and Node 20+): client tokens with a user, roles and groups, and REST tokens whose
 * `aud` is the URL of the call.
 */

/** The environment variable the examples read the connection string from. */
export const CONNECTION_STRING_ENV = "NERVE_CONNECTION_STRING";

const PATHS: Record<string, string> = {
  default: "client/hubs",
  mqtt: "clients/mqtt/hubs",
  socketio: "clients/socketio/hubs",
};

/** What a client token carries; the names follow `getClientAccessToken` of `@azure/web-pubsub`. */
export interface ClientTokenOptions {
  /** User id (`sub`). */
  userId?: string;
  /** Roles: `webpubsub.joinLeaveGroup[.<group>]`, `bus.serve.<capability>`, … */
  roles?: string[];
  /** Groups joined on connect. */
  groups?: string[];
  /** Lifetime in minutes (default 60). */
  expirationTimeInMinutes?: number;
  /** `default` (what this hub serves), `mqtt` or `socketio`. */
  clientProtocol?: "default" | "mqtt" | "socketio";
}

function base64url(bytes: Uint8Array): string {
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** An HS256 JWT of `claims` signed with the UTF-8 bytes of `key`. */
export async function sign(claims: Record<string, unknown>, key: string): Promise<string> {
  const enc = new TextEncoder();
  const head = base64url(enc.encode(JSON.stringify({ alg: "HS256", typ: "JWT" })));
  const body = base64url(enc.encode(JSON.stringify(claims)));
  const hmac = await crypto.subtle.importKey("raw", enc.encode(key), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", hmac, enc.encode(`${head}.${body}`)));
  return `${head}.${body}.${base64url(mac)}`;
}

/** A hub's endpoint and access key. */
export class ConnectionString {
  /** The endpoint, without a trailing `/`. */
  readonly endpoint: string;
  readonly #key: string;

  constructor(text: string) {
    const fields = new Map<string, string>();
    for (const part of text.trim().split(";")) {
      if (!part.trim()) continue;
      const eq = part.indexOf("=");
      if (eq < 0) throw new Error(`connection string: '${part}' is not Name=value`);
      fields.set(part.slice(0, eq).trim().toLowerCase(), part.slice(eq + 1).trim());
    }
    let endpoint = (fields.get("endpoint") ?? "").replace(/\/+$/, "");
    if (!/^https?:\/\//.test(endpoint)) throw new Error("connection string: needs Endpoint=http(s)://…");
    const key = fields.get("accesskey");
    if (!key) throw new Error("connection string: needs AccessKey=…");
    const port = fields.get("port");
    if (port && !new URL(endpoint).port) endpoint = `${endpoint}:${port}`;
    this.endpoint = endpoint;
    this.#key = key;
  }

  /** The connection string in `process.env[name]` (Node). */
  static fromEnv(name = CONNECTION_STRING_ENV): ConnectionString {
    const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
    const text = env?.[name];
    if (!text) {
      throw new Error(`set ${name} to the connection string the hub printed at start (also on its start page, http://127.0.0.1:8080/)`);
    }
    return new ConnectionString(text);
  }

  /** A client token for `hub`. */
  async clientToken(hub: string, opts: ClientTokenOptions = {}): Promise<string> {
    const path = PATHS[opts.clientProtocol ?? "default"];
    if (!path) throw new Error(`unknown client protocol '${opts.clientProtocol}'; expected default, mqtt or socketio`);
    const now = Math.floor(Date.now() / 1000);
    const claims: Record<string, unknown> = {
      aud: `${this.endpoint}/${path}/${hub}`,
      iat: now,
      exp: now + Math.round((opts.expirationTimeInMinutes ?? 60) * 60),
    };
    if (opts.userId) claims.sub = opts.userId;
    if (opts.roles?.length) claims.role = opts.roles;
    if (opts.groups?.length) claims["webpubsub.group"] = opts.groups;
    return sign(claims, this.#key);
  }

  /** `ws(s)://…/client/hubs/<hub>?access_token=…`. */
  async clientUrl(hub: string, opts: ClientTokenOptions = {}): Promise<string> {
    const token = await this.clientToken(hub, opts);
    const ws = this.endpoint.replace(/^http/, "ws");
    return `${ws}/${PATHS[opts.clientProtocol ?? "default"]}/${encodeURIComponent(hub)}?access_token=${token}`;
  }

  /** A bearer token for the REST call at `path` (`/api/hubs/chat/:send`) or full URL. */
  async restToken(path: string, expirationTimeInMinutes = 60): Promise<string> {
    let target = path.split("?")[0];
    if (!/^https?:\/\//.test(target)) target = `${this.endpoint}/${target.replace(/^\/+/, "")}`;
    const now = Math.floor(Date.now() / 1000);
    return sign({ aud: target, iat: now, exp: now + Math.round(expirationTimeInMinutes * 60) }, this.#key);
  }

  /** The key stays out of logs. */
  toString(): string {
    return `ConnectionString(${this.endpoint}, AccessKey=…)`;
  }
}
