"""Optional Langfuse tracing: a trace per question (retrieve, generate) and per ingestion job (each page's fetch,
chunk, embed, store), when the `langfuse` package is installed and keys are set (settings or LANGFUSE_* env).

Without keys, or without the package, every call here is a no-op. Spans are exported by a background thread
with a short timeout, so an unreachable Langfuse never slows a request; the first failed export logs one
warning, later ones stay quiet. A job's tasks may run in several processes: they all join one trace whose id is
derived from the job id.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from bitbd.settings import Settings

log = logging.getLogger(__name__)
_lock = threading.Lock()
_tracers: dict[str, Tracer] = {}


class Span:
    """What a `with tracer.span(...)` block may add to its span; does nothing when tracing is off."""

    def __init__(self, inner: Any = None) -> None:
        self.inner = inner

    def update(self, **fields: Any) -> None:
        """Add fields (output, metadata, ...) to the span; nothing when tracing is off."""
        if self.inner is not None:
            self.inner.update(**fields)


class Tracer:
    """Spans to Langfuse, or a no-op without a client; get the process's own with `tracer(settings)`."""

    def __init__(self, client: Any = None) -> None:
        self.client = client

    @property
    def enabled(self) -> bool:
        """Whether spans go anywhere: a Langfuse client is configured."""
        return self.client is not None

    @contextlib.contextmanager
    def span(self, name: str, trace_seed: str | None = None, **fields: Any) -> Iterator[Span]:
        """A span, nested under the current one; with `trace_seed`, in the trace that seed names (a job id)."""
        if self.client is None:
            yield Span()
            return
        extra: dict[str, Any] = {}
        if trace_seed is not None:
            extra["trace_context"] = {"trace_id": self.client.create_trace_id(seed=trace_seed)}
        with self.client.start_as_current_observation(as_type="span", name=name, **extra, **fields) as inner:
            yield Span(inner)

    def flush(self) -> None:
        """Export the spans still buffered; blocks up to `tracing.timeout`, so call it off the event loop."""
        if self.client is not None:
            self.client.flush()

    def close(self) -> None:
        """Shut the Langfuse client down; nothing when tracing is off."""
        if self.client is not None:
            self.client.shutdown()


def tracer(settings: Settings) -> Tracer:
    """The process's tracer for these settings (one Langfuse client per process)."""
    cfg = settings.tracing
    public = cfg.public_key or os.environ.get("LANGFUSE_PUBLIC_KEY", "")
    secret = cfg.secret_key.get_secret_value() or os.environ.get("LANGFUSE_SECRET_KEY", "")
    host = cfg.host or os.environ.get("LANGFUSE_HOST") or os.environ.get("LANGFUSE_BASE_URL", "")
    # By public key (and host) only: Langfuse itself keeps one resource manager, exporter included, per public
    # key per process, so a second secret or timeout for the same public key could not take effect anyway. A
    # process has one settings object; only tests build several.
    key = f"{public}|{host}"
    with _lock:
        if key not in _tracers:
            _tracers[key] = _build(public, secret, host, cfg.timeout)
        return _tracers[key]


def _build(public: str, secret: str, host: str, timeout: float) -> Tracer:
    if not (public or secret):
        return Tracer()  # not configured: no tracing, nothing to say
    if not (public and secret and host):
        missing = [n for n, v in (("public key", public), ("secret key", secret), ("host", host)) if not v]
        log.warning("Langfuse tracing is off: its %s is not set (tracing.* or LANGFUSE_*)", " and ".join(missing))
        return Tracer()
    try:
        from langfuse import Langfuse
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        log.warning("Langfuse keys are set but the langfuse package is not installed: pip install langfuse")
        return Tracer()
    # Our own exporter: Langfuse's OTLP endpoint with a short timeout, and one warning when it cannot be reached
    # instead of an error line (and a retry storm) for every batch.
    logging.getLogger("opentelemetry.exporter.otlp.proto.http.trace_exporter").setLevel(logging.CRITICAL)
    auth = base64.b64encode(f"{public}:{secret}".encode()).decode()
    exporter = _warn_once(
        OTLPSpanExporter(
            endpoint=host.rstrip("/") + "/api/public/otel/v1/traces",
            headers={"Authorization": f"Basic {auth}"},
            timeout=timeout,
        ),
        host,
    )
    client = Langfuse(
        public_key=public, secret_key=secret, base_url=host, timeout=int(timeout) or 1, span_exporter=exporter
    )
    log.info("Langfuse tracing on", extra={"host": host})
    return Tracer(client)


def _warn_once(inner: Any, host: str) -> Any:
    """A span exporter that hands batches to Langfuse's OTLP endpoint and says once when that fails."""
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class WarnOnce(SpanExporter):
        warned = False

        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            try:
                result: SpanExportResult = inner.export(spans)
            except Exception:
                result = SpanExportResult.FAILURE
            if result != SpanExportResult.SUCCESS and not self.warned:
                self.warned = True
                log.warning("Langfuse unreachable; traces are dropped until it answers", extra={"host": host})
            elif result == SpanExportResult.SUCCESS:
                self.warned = False
            return result

        def shutdown(self) -> None:
            inner.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return bool(inner.force_flush(timeout_millis))

    return WarnOnce()
