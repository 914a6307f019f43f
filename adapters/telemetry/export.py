"""Span records as OpenTelemetry SDK spans, and the exporter the standard `OTEL_*` settings name.

The spans are built with their recorded ids and times (`ReadableSpan` takes both), not through a
tracer that would draw random ids and read the clock: a trace exported today from a run file is
the trace the run emitted live. Needs the `otel` extra (`pip install 'baton[otel]'`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from baton.domain.errors import BatonError
from baton.telemetry.spans import SpanRecord, trace_id

try:
    from opentelemetry import trace as trace_api
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.sdk.trace.export import (
        ConsoleSpanExporter,
        SpanExporter,
        SpanExportResult,
    )
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import Status, StatusCode
except ImportError:  # pragma: no cover - exercised only without the extra
    trace_api = None  # type: ignore[assignment]

__all__ = [
    "TelemetryError",
    "export_spans",
    "exporter_from_env",
    "reporting_exporter",
    "require_otel",
    "resource",
    "to_sdk_spans",
]

SCOPE_NAME = "baton"


class TelemetryError(BatonError):
    """OpenTelemetry is not installed, misconfigured, or the collector refused the spans."""


def require_otel() -> None:
    if trace_api is None:
        raise TelemetryError(
            "OpenTelemetry is not installed: pip install 'baton[otel]'"
        )


@functools.cache  # read once per process, as the SDK's own providers do (and it costs ~1 ms)
def resource() -> Resource:
    """OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME as the SDK reads them; service `baton` when
    neither names a service."""
    found = Resource.create()
    if str(found.attributes.get("service.name", "")).startswith("unknown_service"):
        found = found.merge(Resource({"service.name": "baton"}))
    return found


@functools.cache
def _scope() -> InstrumentationScope:
    from importlib.metadata import PackageNotFoundError, version

    try:
        own = version("baton")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        own = "0"
    return InstrumentationScope(SCOPE_NAME, own)


def to_sdk_spans(goal_id: str, records: Sequence[SpanRecord]) -> list[ReadableSpan]:
    """SDK spans with the records' own ids, parents, times, attributes, events and status."""
    require_otel()
    trace = trace_id(goal_id)
    flags = trace_api.TraceFlags(trace_api.TraceFlags.SAMPLED)
    res, scope = resource(), _scope()

    def context(span_id: int) -> trace_api.SpanContext:
        return trace_api.SpanContext(trace, span_id, is_remote=False, trace_flags=flags)

    spans = []
    for record in records:
        if record.error is not None:
            status = Status(StatusCode.ERROR, record.error[:500])
        elif record.ok:
            status = Status(StatusCode.OK)
        else:
            status = Status(StatusCode.UNSET)
        spans.append(
            ReadableSpan(
                name=record.name,
                context=context(record.span_id),
                parent=None if record.parent_id is None else context(record.parent_id),
                resource=res,
                attributes=dict(record.attributes),
                events=[Event(e.name, dict(e.attributes), timestamp=e.at_ns)
                        for e in record.events],
                kind=trace_api.SpanKind.INTERNAL,
                status=status,
                start_time=record.start_ns,
                end_time=record.end_ns,
                instrumentation_scope=scope,
            )
        )
    return spans


def _protocol() -> str:
    return (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf")


def exporter_from_env(*, console: bool = False) -> SpanExporter | None:
    """The exporter OTEL_TRACES_EXPORTER names (default `otlp`, over HTTP/protobuf, endpoint
    and headers from OTEL_EXPORTER_OTLP_*); `console` prints spans as JSON on stdout.
    None for `none`."""
    require_otel()
    if console:
        return ConsoleSpanExporter()
    names = [n.strip() for n in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    name = names[0] if names else "otlp"
    if name == "none":
        return None
    if name == "console":
        return ConsoleSpanExporter()
    if name != "otlp":
        raise TelemetryError(
            f"OTEL_TRACES_EXPORTER={name!r} is not supported (otlp, console or none)"
        )
    if _protocol() != "http/protobuf":
        raise TelemetryError(
            f"OTLP protocol {_protocol()!r} is not supported: Baton exports http/protobuf "
            "(set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf)"
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def export_spans(exporter: Any, spans: Sequence[ReadableSpan]) -> None:
    """Export at once; a refusal is a TelemetryError naming where the spans went."""
    if not spans:
        return
    with _exporter_logs() as logged:
        result = exporter.export(list(spans))
    if result is not SpanExportResult.SUCCESS:
        raise TelemetryError(_undelivered(exporter, f"{len(spans)} spans", logged))


def _undelivered(exporter: Any, what: str, logged: list[logging.LogRecord]) -> str:
    where = getattr(exporter, "_endpoint", type(exporter).__name__)
    why = f" ({_cause(logged)})" if logged else ""
    return f"the span exporter could not deliver {what} to {where}{why}"


def reporting_exporter(exporter: SpanExporter, warn: Callable[[str], None]) -> SpanExporter:
    """`exporter` for live export: a failed export is one line through `warn` (the same for
    every batch, so a warn-once shows it once), not the exporter's log line per retry."""

    class Reporting(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            with _exporter_logs() as logged:
                result = exporter.export(spans)
            if result is not SpanExportResult.SUCCESS:
                warn(f"live traces: {_undelivered(exporter, 'spans', logged)}; "
                     "spans of this run are missing there")
            return result

        def shutdown(self) -> None:
            exporter.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return exporter.force_flush(timeout_millis)

    return Reporting()


@contextlib.contextmanager
def _exporter_logs() -> Iterator[list[logging.LogRecord]]:
    """What the OTLP exporter logs while it retries (a line per retry, then one more), kept
    off stderr: a failed export is one line, Baton's, which quotes the first cause."""
    handler = _Kept()
    logger = logging.getLogger("opentelemetry.exporter")
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _cause(records: list[logging.LogRecord]) -> str:
    """Why, short: the first retry's cause (`[Errno 111] Connection refused` out of urllib3's
    paragraph), else the exporter's last line (a refusal's status, or that it gave up)."""
    retried = [r for r in records if r.getMessage().startswith("Transient error")]
    record = retried[0] if retried else records[-1]
    text = " ".join(record.getMessage().split())
    errno = re.search(r"\[Errno -?\d+\] [^'\")]+", text)
    return errno.group(0) if errno else text[:160]
