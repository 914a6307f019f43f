"""Live span export while a goal runs, when the standard OTEL_* settings configure an exporter.

The spans are the same projection `baton trace` exports later (same ids, same times): each one
is handed to a batching processor as soon as the events that close it are stored. Agents run
inside their attempt span's context, so spans they make themselves (an HTTP client, an LLM
library) nest under it; when nothing else has set a global tracer provider, Baton sets one that
exports through the same processor.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from baton.domain.goal import Goal, GoalEvent
from baton.telemetry.spans import SpanProjector, attempt_span_id, trace_id

__all__ = ["LiveTelemetry", "attempt_context", "configured", "live_telemetry"]

_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_lock = threading.Lock()
_processor: Any = None


def configured() -> bool:
    """Do the OTEL_* settings ask for traces? (An exporter or an OTLP endpoint is named, and the
    SDK is not disabled.)"""
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "").strip()
    if exporter:
        return exporter != "none"
    return any(os.environ.get(name) for name in _ENDPOINTS)


def _shared_processor() -> Any:
    """One batching processor per process, flushed at exit; also behind the global tracer
    provider when Baton is the one to set it."""
    global _processor
    with _lock:
        if _processor is None:
            from opentelemetry import trace
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            from baton.telemetry.export import exporter_from_env, reporting_exporter, resource

            exporter = exporter_from_env()
            if exporter is None:
                return None
            _processor = BatchSpanProcessor(reporting_exporter(exporter, _warn_once))
            atexit.register(_processor.shutdown)
            if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
                provider = TracerProvider(resource=resource(), shutdown_on_exit=False)
                provider.add_span_processor(_processor)
                trace.set_tracer_provider(provider)
        return _processor


def live_telemetry(store: Any) -> LiveTelemetry | None:
    """A LiveTelemetry observer when OTEL_* asks for traces and the `otel` extra is installed."""
    if not configured():
        return None
    try:
        processor = _shared_processor()
    except ImportError:
        _warn_once("OTEL_* settings ask for traces but OpenTelemetry is not installed "
                   "(pip install 'baton[otel]'); no spans are exported")
        return None
    except Exception as exc:  # a bad setting: say so, run anyway
        _warn_once(f"no live traces: {exc}")
        return None
    return None if processor is None else LiveTelemetry(store=store, processor=processor)


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    """Once per process: a worker builds a runner per goal, the warning is the same each time."""
    if message not in _warned:
        _warned.add(message)
        print(f"baton: warning: {message}", file=sys.stderr)


def attempt_context(goal_id: str, task: str, attempt: int) -> Any:
    """An OpenTelemetry context whose current span is the attempt's span."""
    from opentelemetry import trace

    span = trace.NonRecordingSpan(
        trace.SpanContext(
            trace_id(goal_id), attempt_span_id(goal_id, task, attempt), is_remote=False,
            trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
        )
    )
    return trace.set_span_in_context(span)


class LiveTelemetry:
    """A run observer that exports each span once the stored events close it."""

    def __init__(self, *, store: Any, processor: Any) -> None:
        self.store = store
        self.processor = processor
        self._projectors: dict[str, SpanProjector] = {}

    def saved(self, goal: Goal, events: Sequence[GoalEvent]) -> None:
        from baton.telemetry.export import to_sdk_spans

        try:
            projector = self._projector(goal, events)
            projector.feed(events)
            for span in to_sdk_spans(goal.id, projector.take_closed()):
                self.processor.on_end(span)
            if goal.state.status != "running":
                # Ended, or waiting for a human: this process may never see it again (a worker
                # drives thousands). If it does, `_projector` rebuilds from the stored events.
                self._projectors.pop(goal.id, None)
        except Exception as exc:  # telemetry must never stop a run
            print(f"baton: warning: live trace export: {exc}", file=sys.stderr)

    def _projector(self, goal: Goal, events: Sequence[GoalEvent]) -> SpanProjector:
        projector = self._projectors.get(goal.id)
        if projector is None:
            projector = self._projectors[goal.id] = SpanProjector()
            first = events[0].originator_version if events else goal.version + 1
            if first > 1:  # a resumed goal: what was recorded earlier was exported then
                projector.feed(list(self.store.events(goal.id))[: first - 1])
                projector.take_closed()
        return projector

    def calling(
        self, goal_id: str, task: str, attempt: int, agent: Callable[..., Any]
    ) -> Callable[..., Any]:
        from opentelemetry import context

        ctx = attempt_context(goal_id, task, attempt)
        if inspect.iscoroutinefunction(agent):

            @functools.wraps(agent)
            async def in_span_async(*args: Any, **kwargs: Any) -> Any:
                token = context.attach(ctx)
                try:
                    return await agent(*args, **kwargs)
                finally:
                    context.detach(token)

            return in_span_async

        @functools.wraps(agent)
        def in_span(*args: Any, **kwargs: Any) -> Any:
            token = context.attach(ctx)
            try:
                return agent(*args, **kwargs)
            finally:
                context.detach(token)

        return in_span
