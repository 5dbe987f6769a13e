"""OpenTelemetry traces of the client, exported over OTLP/HTTP as the hub exports its own.

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set when the first connection opens, or
``enable_tracing()`` is called. Then the client's spans (``nerve.connect``, ``nerve.publish``,
``nerve.send_event``, one span per bus operation such as ``bus.submit`` or
``bus.task.complete``, and an agent's ``bus.deliver``) go in batches to
``<endpoint>/v1/traces`` (protobuf), and W3C ``traceparent`` is carried where the hub's
protocol has room for it: the WebSocket upgrade request, and ``data.traceparent`` of every bus
operation. An agent's ``bus.deliver`` span is a child of the ``traceparent`` in the task's
push, so one trace runs from the submitter through the hub to the agent's work.

Needs the optional packages (``pip install 'nerve_client[otel]'``); without them and without an
explicit ``enable_tracing()``, the client runs untraced. Span attributes name operations,
capabilities, task ids, groups and the server's host and port: never a URL (it holds the
access token), a token or a key.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Iterator, Optional
from urllib.parse import urlsplit

ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
DEFAULT_SERVICE = "nerve-client"
log = logging.getLogger("nerve_client.tracing")


class _State:
    provider: Any = None
    tracer: Any = None
    env_checked = False


_state = _State()


def traces_url(endpoint: str) -> str:
    """The URL spans are posted to for an OTLP base ``endpoint`` (``/v1/traces`` added once)."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"OTLP endpoint '{endpoint}' must be an http:// or https:// URL "
                         "(OTLP/HTTP, e.g. http://127.0.0.1:4318)")
    base = endpoint.rstrip("/")
    return base if base.endswith("/v1/traces") else f"{base}/v1/traces"


def enable_tracing(endpoint: Optional[str] = None, *, service_name: Optional[str] = None) -> None:
    """Starts exporting spans to the OTLP/HTTP collector at ``endpoint`` (default: the
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` variable). ``service_name`` defaults to
    ``OTEL_SERVICE_NAME``, else ``nerve-client``. Raises ImportError without the
    ``otel`` extra, ValueError for a missing or malformed endpoint."""
    endpoint = endpoint or os.environ.get(ENDPOINT_ENV)
    if not endpoint:
        raise ValueError(f"no OTLP endpoint: pass one or set {ENDPOINT_ENV}")
    url = traces_url(endpoint)
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as e:
        raise ImportError("tracing needs the OpenTelemetry packages: "
                          "pip install 'nerve_client[otel]'") from e
    shutdown_tracing()
    name = service_name or os.environ.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE
    from . import __version__

    resource = Resource.create({"service.name": name, "service.version": __version__})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
    _state.provider = provider
    _state.tracer = provider.get_tracer("nerve_client", __version__)
    _state.env_checked = True


def shutdown_tracing() -> None:
    """Exports the spans still queued and stops exporting (also done at interpreter exit)."""
    provider, _state.provider, _state.tracer = _state.provider, None, None
    if provider is not None:
        provider.shutdown()


def enabled() -> bool:
    """Whether spans are exported; the first call starts export if the variable is set."""
    return _tracer() is not None


def _tracer() -> Any:
    if _state.tracer is None and not _state.env_checked:
        _state.env_checked = True
        if os.environ.get(ENDPOINT_ENV):
            try:
                enable_tracing()
            except (ImportError, ValueError) as e:
                log.warning("%s is set but spans are not exported: %s", ENDPOINT_ENV, e)
    return _state.tracer


_KINDS = ("client", "producer", "consumer")


@contextlib.contextmanager
def span(name: str, kind: str = "client", *, parent: Optional[str] = None,
         attributes: Optional[dict] = None) -> Iterator[Any]:
    """Runs the block in a span (the current one meanwhile), or in none when export is off
    (yields None). ``parent``: a W3C traceparent to continue instead of the current span."""
    tracer = _tracer()
    if tracer is None:
        yield None
        return
    from opentelemetry.trace import SpanKind

    ctx = None
    if parent:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        ctx = TraceContextTextMapPropagator().extract({"traceparent": parent})
    attrs = {k: v for k, v in (attributes or {}).items() if v is not None}
    with tracer.start_as_current_span(name, context=ctx, kind=getattr(SpanKind, kind.upper()),
                                      attributes=attrs) as s:
        yield s


def traceparent() -> Optional[str]:
    """The W3C ``traceparent`` of the current span, or None when there is none (or no export)."""
    if _state.tracer is None:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent")


def headers() -> dict[str, str]:
    """``{"traceparent": …}`` naming the current span, for an outgoing request; else empty."""
    tp = traceparent()
    return {"traceparent": tp} if tp else {}


def set_error(s: Any, description: str) -> None:
    """Marks span ``s`` (None: no-op) as failed with ``description``."""
    if s is None:
        return
    from opentelemetry.trace import Status, StatusCode

    s.set_status(Status(StatusCode.ERROR, description))


def server_attributes(url: str) -> dict:
    """``server.address`` and ``server.port`` of a URL: never its path or query (the token)."""
    parts = urlsplit(url)
    default = 443 if parts.scheme in ("https", "wss") else 80
    return {"server.address": parts.hostname or "", "server.port": parts.port or default}
