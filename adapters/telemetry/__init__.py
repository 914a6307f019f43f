"""OpenTelemetry from the log: spans goal → task → attempt projected from a goal's events."""

from baton.telemetry.spans import SpanRecord, goal_spans

__all__ = ["SpanRecord", "goal_spans"]
