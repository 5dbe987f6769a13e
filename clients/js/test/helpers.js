// Starts the real `nerve` binary on a free port and mints tokens for it.
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import path from "node:path";

export const KEY = "js-client-test-key";
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");

const b64url = (buf) => Buffer.from(buf).toString("base64url");

/** HS256 JWT signed with the UTF-8 key bytes. */
export function mint(aud, sub, roles) {
  const now = Math.floor(Date.now() / 1000);
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64url(JSON.stringify({ aud, sub, role: roles, iat: now, exp: now + 3600 }));
  const sig = createHmac("sha256", Buffer.from(KEY, "utf8")).update(`${head}.${body}`).digest();
  return `${head}.${body}.${b64url(sig)}`;
}

/** Starts nerve (with `extra` arguments); resolves with {endpoint, clientUrl(), busToken(), stop()}. */
export async function startHub(extra = []) {
  const bin = process.env.NERVE_BIN ?? path.join(root, "target/debug/nerve");
  const child = spawn(bin, ["--listen", "127.0.0.1:0", "--access-key", KEY, "--log-level", "warn", ...extra], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  // A test file that dies early must not leave its hub behind.
  const reap = () => child.kill("SIGKILL");
  process.once("exit", reap);
  child.once("exit", () => process.off("exit", reap));
  const endpoint = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("nerve printed no endpoint")), 20_000);
    child.once("exit", (code) => reject(new Error(`nerve exited with ${code}`)));
    createInterface({ input: child.stdout }).on("line", (line) => {
      const m = /^Endpoint=(http:\/\/[^;]+);/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
  });
  return {
    endpoint,
    clientUrl(hub, user, roles) {
      const token = mint(`${endpoint}/client/hubs/${hub}`, user, roles);
      return `${endpoint.replace("http://", "ws://")}/client/hubs/${hub}?access_token=${token}`;
    },
    busToken(user, roles) {
      return mint(`${endpoint}/client/hubs/bus`, user, roles);
    },
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGKILL");
      await exited;
    },
  };
}

/** Polls `check` until it returns a truthy value, or throws after `timeoutMs`. */
export async function eventually(what, check, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
