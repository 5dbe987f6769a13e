/**
 * OpenTelemetry traces of the client, exported over OTLP/HTTP as the hub exports its own.
 *
 * Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set (Node) when the first bus connection opens,
 * or `enableTracing()` is called. Then the bus client's spans (`nerve.connect`, one span per
 * bus operation such as `bus.submit`, and an agent's `bus.deliver`) go in batches to
 * `<endpoint>/v1/traces`, and W3C `traceparent` travels as `data.traceparent` of every bus
 * operation; an agent's `bus.deliver` continues the `traceparent` of the task's push. Needs
 * the optional peer packages `@opentelemetry/api`, `@opentelemetry/core`,
 * `@opentelemetry/resources`, `@opentelemetry/sdk-trace-base` and
 * `@opentelemetry/exporter-trace-otlp-http`, loaded only when tracing is on. Attributes never
 * hold a URL (it carries the token), a token or a key.
 */

import type * as OtelApi from "@opentelemetry/api";

/** The standard variable naming the OTLP/HTTP collector. */
export const ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT";

interface State {
  api: typeof OtelApi;
  tracer: OtelApi.Tracer;
  propagator: OtelApi.TextMapPropagator;
  provider: { shutdown(): Promise<void> };
}

let state: State | undefined;
let envChecked = false;

function env(name: string): string | undefined {
  return (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.[name] || undefined;
}

/** The URL spans are posted to for an OTLP base `endpoint` (`/v1/traces` added once). */
export function tracesUrl(endpoint: string): string {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new Error(`OTLP endpoint '${endpoint}' is not a URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new Error(`OTLP endpoint '${endpoint}' must be an http:// or https:// URL (OTLP/HTTP, e.g. http://127.0.0.1:4318)`);
  }
  const base = endpoint.replace(/\/+$/, "");
  return base.endsWith("/v1/traces") ? base : `${base}/v1/traces`;
}

/** Starts exporting spans to `endpoint` (default: `OTEL_EXPORTER_OTLP_ENDPOINT`); the service
 * name defaults to `OTEL_SERVICE_NAME`, else `nerve-client`. */
export async function enableTracing(options: { endpoint?: string; serviceName?: string } = {}): Promise<void> {
  const endpoint = options.endpoint ?? env(ENDPOINT_ENV);
  if (!endpoint) throw new Error(`no OTLP endpoint: pass one or set ${ENDPOINT_ENV}`);
  const url = tracesUrl(endpoint);
  const [api, core, resources, sdk, otlp] = await Promise.all([
    import("@opentelemetry/api"),
    import("@opentelemetry/core"),
    import("@opentelemetry/resources"),
    import("@opentelemetry/sdk-trace-base"),
    import("@opentelemetry/exporter-trace-otlp-http"),
  ]);
  await shutdownTracing();
  const resource = resources.resourceFromAttributes({
    "service.name": options.serviceName ?? env("OTEL_SERVICE_NAME") ?? "nerve-client",
  });
  const provider = new sdk.BasicTracerProvider({
    resource,
    spanProcessors: [new sdk.BatchSpanProcessor(new otlp.OTLPTraceExporter({ url }))],
  });
  state = { api, tracer: provider.getTracer("@nerve/client"), propagator: new core.W3CTraceContextPropagator(), provider };
  envChecked = true;
}

/** Exports the spans still queued and stops exporting. */
export async function shutdownTracing(): Promise<void> {
  const s = state;
  state = undefined;
  if (s) await s.provider.shutdown();
}

/** Starts export from the variable the first time it is asked; resolves whether it is on. */
export async function tracingReady(): Promise<boolean> {
  if (!state && !envChecked) {
    envChecked = true;
    if (env(ENDPOINT_ENV)) {
      try {
        await enableTracing();
      } catch (e) {
        console.warn(`nerve: ${ENDPOINT_ENV} is set but spans are not exported:`, e instanceof Error ? e.message : e);
      }
    }
  }
  return state !== undefined;
}

/** A started span: `traceparent` names it, `end()` ends it (with an error status if given). */
export interface ClientSpan {
  /** The W3C traceparent naming this span. */
  readonly traceparent?: string;
  /** Sets an attribute. */
  set(key: string, value: string | number): void;
  /** Ends the span; `error` marks it failed. */
  end(error?: string): void;
}

const NONE: ClientSpan = { set() {}, end() {} };

/** Starts a span named `name` (a child of `parent`, a traceparent, when given), or a no-op
 * when tracing is off. */
export function startSpan(name: string, kind: "client" | "producer" | "consumer", attributes: Record<string, unknown>, parent?: string | null): ClientSpan {
  const s = state;
  if (!s) return NONE;
  const { api } = s;
  const getter = { get: (c: Record<string, string>, k: string) => c[k], keys: (c: Record<string, string>) => Object.keys(c) };
  const setter = { set: (c: Record<string, string>, k: string, v: string) => void (c[k] = v) };
  const parentCtx = parent ? s.propagator.extract(api.ROOT_CONTEXT, { traceparent: parent }, getter) : api.context.active();
  const attrs: OtelApi.Attributes = {};
  for (const [k, v] of Object.entries(attributes)) if (typeof v === "string" || typeof v === "number") attrs[k] = v;
  const spanKind = { client: api.SpanKind.CLIENT, producer: api.SpanKind.PRODUCER, consumer: api.SpanKind.CONSUMER }[kind];
  const span = s.tracer.startSpan(name, { kind: spanKind, attributes: attrs }, parentCtx);
  const carrier: Record<string, string> = {};
  s.propagator.inject(api.trace.setSpan(parentCtx, span), carrier, setter);
  return {
    traceparent: carrier.traceparent,
    set: (k, v) => void span.setAttribute(k, v),
    end(error) {
      if (error) span.setStatus({ code: api.SpanStatusCode.ERROR, message: error });
      span.end();
    },
  };
}
