"""`baton trace`, `baton serve` and `baton timeline`: seeing a run (docs/seeing-a-run.md)."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from typing import Any

from baton.cli.commands.common import store_from
from baton.domain.errors import BatonError
from baton.domain.goal import GoalEvent
from baton.domain.history import fold, started_event
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

    serve = sub.add_parser(
        "serve",
        help="the web view: goals, a goal's graph, timeline and decisions, escalations",
        description="Serve the web view over this store. Bound to 127.0.0.1 by default; bound "
        "to any other address it requires a token (--token or $BATON_WEB_TOKEN). Needs the "
        "`web` extra.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=8470, help="port (default 8470)")
    serve.add_argument("--token", default=None,
                       help="require this token (default $BATON_WEB_TOKEN); needed off loopback")
    serve.set_defaults(func=_serve)

    picture = sub.add_parser(
        "timeline",
        help="a picture of the run's attempts, backoffs and human waits (PNG or SVG)",
        description="Draw the attempt timeline of a goal (or of a run file) to FILE.png or "
        "FILE.svg. Needs the `timeline` extra (matplotlib).",
    )
    picture.add_argument("target", metavar="GOAL|FILE")
    picture.add_argument("-o", "--output", required=True, metavar="FILE.png|svg")
    picture.set_defaults(func=_timeline)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0..65535, got {value}")
    return value


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ServeError(BatonError):
    pass


def _serve(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get("BATON_WEB_TOKEN") or None
    if not _loopback(args.host) and not token:
        raise ServeError(f"--host {args.host} is not loopback: set --token or BATON_WEB_TOKEN "
                         "so that only people holding it can see and resolve goals")
    try:
        import uvicorn

        from baton.web.app import create_app
    except ImportError as exc:
        raise ServeError(f"the web view needs the web extra: pip install 'baton[web]' ({exc})"
                         ) from None
    app = create_app(store_from(args, creates=True), token=token)  # shows goals as they come
    print(f"baton serve: http://{args.host}:{args.port}/", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _timeline(args: argparse.Namespace) -> int:
    from baton.web.timeline import timeline_of

    suffix = os.path.splitext(args.output)[1].lower()
    if suffix not in (".png", ".svg"):
        raise ServeError(f"-o {args.output}: the picture must be a .png or .svg file")
    try:
        import matplotlib  # noqa: F401  (checked here: the error names the extra)

        from baton.web.plot import draw_timeline
    except ImportError:
        raise ServeError("baton timeline needs matplotlib: pip install 'baton[timeline]'"
                         ) from None
    goal_id, events = history_of(args)
    started = started_event(events)
    status = fold(events).state.status
    title = f"goal {goal_id} · {started.plan.get('name', '?')} · {status}"
    figure = draw_timeline(timeline_of(events, now=datetime.now(UTC)), title=title)
    try:
        figure.savefig(args.output, dpi=120)
    except OSError as exc:
        raise ServeError(f"-o {args.output}: {exc.strerror or exc}") from None
    print(f"wrote the timeline of goal {goal_id} to {args.output}", file=sys.stderr)
    return 0


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
