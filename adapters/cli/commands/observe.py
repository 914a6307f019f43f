"""`baton trace`, `baton serve` and `baton timeline`: seeing a run (docs/reference.md)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from baton.cli.commands.common import store_from
from baton.domain.goal import GoalEvent
from baton.history.runfile import read_run

__all__ = ["register"]


def register(sub: Any) -> None:
    trace = sub.add_parser(
        "trace",
        help="the run as OpenTelemetry spans, through the standard OTEL_* settings",
        description="Export a goal's spans (goal → task → attempt, built from its events, so a "
        "run file gives the same trace) to the exporter OTEL_TRACES_EXPORTER names (default "
        "OTLP over HTTP to OTEL_EXPORTER_OTLP_ENDPOINT). Needs the `otel` extra.",
    )
    trace.add_argument("target", metavar="GOAL|FILE")
    trace.add_argument("--console", action="store_true",
                       help="print the spans as JSON on stdout instead")
    trace.set_defaults(func=_trace)


def history_of(args: argparse.Namespace) -> tuple[str, list[GoalEvent]]:
    """GOAL|FILE: a run file's events when the target is a file, else the stored goal's."""
    if os.path.isfile(args.target):
        run = read_run(args.target)
        return run.goal_id, run.events
    return args.target, list(store_from(args).events(args.target))


def _trace(args: argparse.Namespace) -> int:
    from baton.telemetry.export import (
        TelemetryError,
        export_spans,
        exporter_from_env,
        require_otel,
        to_sdk_spans,
    )
    from baton.telemetry.spans import goal_spans, trace_id

    require_otel()
    goal_id, events = history_of(args)
    exporter = exporter_from_env(console=args.console)
    if exporter is None:
        raise TelemetryError("OTEL_TRACES_EXPORTER is none: nowhere to send the spans")
    spans = to_sdk_spans(goal_id, goal_spans(events))
    try:
        export_spans(exporter, spans)
    finally:
        exporter.shutdown()
    print(f"exported {len(spans)} spans of goal {goal_id} (trace {trace_id(goal_id):032x})",
          file=sys.stderr)
    return 0
