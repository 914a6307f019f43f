"""`baton status`, `stats`, `escalations` and `projections …`: everything read from the read models.

They read tables, never aggregates, so they stay fast with many goals. They are as fresh as the
last `run`/`resume`/`resolve`/`cancel`/`fork`/`import` (which catch up before exiting) or the
running `baton projections follow`; a lag is reported on stderr rather than hidden.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from datetime import UTC
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from adapters import readmodels
from adapters.commands.common import store_from
from adapters.render import _STATUS_STYLE as STATUS_STYLE
from adapters.render import print_json
from adapters.store import BatonStore, GoalNotFound
from adapters.views_export import EXPORT_FORMATS, export_views, stats_csv

__all__ = ["register"]


def register(sub: Any) -> None:
    status = sub.add_parser(
        "status", help="all goals, or one goal's tasks",
        description="Without GOAL, every goal (newest first); with GOAL, its tasks. Read from "
        "the goal_summary and task_status read models.",
    )
    status.add_argument("goal", nargs="?", help="goal id")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_status)

    stats = sub.add_parser(
        "stats", help="analytics per agent from the read models",
        description="Per agent: attempts, successes, failures, retries, escalations, rejected "
        "outputs, tokens, cost and latency percentiles (exact, nearest rank).",
    )
    stats.add_argument("--json", action="store_true", help="same as --format json")
    stats.add_argument("--format", choices=("table", "json", "csv"), default="table")
    stats.set_defaults(func=_stats)

    escalations = sub.add_parser("escalations", help="what waits for a human",
                                 description="Escalated tasks of goals that have not ended.")
    escalations.add_argument("--json", action="store_true")
    escalations.set_defaults(func=_escalations)

    views = sub.add_parser(
        "projections", help="the read models: rebuild, update, status, follow, export",
        description="goal_summary, task_status and agent_stats are tables in the store, "
        "derived from the events exactly once. Commands that write events bring them up to "
        "date before they exit.",
    )
    actions = views.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    rebuild = actions.add_parser("rebuild", help="drop the rows and project every event again")
    rebuild.add_argument("--json", action="store_true")
    rebuild.set_defaults(func=_rebuild)
    update = actions.add_parser(
        "update", help="apply the events not projected yet, then exit (e.g. from cron)")
    update.add_argument("--json", action="store_true")
    update.set_defaults(func=_update)
    where = actions.add_parser("status", help="the read models' position against the event log")
    where.add_argument("--json", action="store_true")
    where.set_defaults(func=_where)
    follow = actions.add_parser(
        "follow", help="keep the read models current until interrupted",
        description="PostgreSQL: LISTEN/NOTIFY through eventsourcing's ProjectionRunner. SQLite: "
        "poll every --interval seconds. Stop with Ctrl-C or SIGTERM.",
    )
    follow.add_argument("--interval", type=float, default=1.0, help="seconds (default 1)")
    follow.set_defaults(func=_follow)
    export = actions.add_parser(
        "export", help="write the read models for analysts (Parquet, DuckDB or CSV)",
        description="parquet / csv: PATH is a directory, one file per table. duckdb: PATH is a "
        "database file with one table each. Parquet and DuckDB need `pip install "
        "'baton[analytics]'`.",
    )
    export.add_argument("path")
    export.add_argument("--format", choices=EXPORT_FORMATS, default="parquet")
    export.set_defaults(func=_export)


def _warn_lag(store: BatonStore) -> None:
    where = readmodels.state(store)
    if where.lag:
        print(f"baton: note: the read models are {where.lag} event(s) behind the log; "
              f"`baton projections follow` (or any run/resume) catches up", file=sys.stderr)


# --- status ---


def goal_status_json(goal: dict[str, Any], tasks: list[dict[str, Any]]) -> dict[str, Any]:
    """CONTRACT.md §4 `status GOAL`: the same shape as `run --json`."""
    return {
        "goal_id": goal["goal_id"],
        "status": goal["status"],
        "output": goal["output"],
        "reason": goal["reason"],
        "tasks": {row["task_id"]: {"status": row["status"], "attempts": row["attempts"]}
                  for row in tasks},
    }


def _status(args: argparse.Namespace) -> int:
    store = store_from(args)
    if args.goal:
        found = readmodels.goal_rows(store, args.goal)
        if not found:
            _warn_lag(store)
            store.get(args.goal)  # GoalNotFound when it is not in the log either
            raise GoalNotFound(args.goal)
        tasks = readmodels.task_rows(store, args.goal)
        if args.json:
            print_json(goal_status_json(found[0], tasks))
        else:
            _print_goal(found[0], tasks)
        _warn_lag(store)
        return 0
    goals = readmodels.goal_rows(store)
    if args.json:
        print_json({"goals": [_goal_line(row) for row in goals]})
    else:
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        table.add_column("goal", overflow="fold")
        table.add_column("plan", overflow="fold")
        table.add_column("status", no_wrap=True)
        table.add_column("done", justify="right", no_wrap=True)
        table.add_column("updated (UTC)", no_wrap=True)
        for row in goals:
            done = row["tasks_succeeded"]
            table.add_row(row["goal_id"], row["plan"], _styled(row["status"]),
                          f"{done}/{row['tasks']}",
                          row["updated_at"].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"))
        Console().print(table)
    _warn_lag(store)
    return 0


def _goal_line(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "goal_id": row["goal_id"],
        "plan": row["plan"],
        "status": row["status"],
        "updated_at": row["updated_at"].isoformat(),
        "started_at": row["started_at"].isoformat(),
        "ended_at": row["ended_at"].isoformat() if row["ended_at"] else None,
        "attempts": row["attempts"],
        "tokens": row["tokens"],
        "cost_usd": row["cost_usd"],
    }


def _styled(status: str) -> str:
    style = STATUS_STYLE.get(status, "")
    return f"[{style}]{status}[/]" if style else status


def _print_goal(goal: dict[str, Any], tasks: list[dict[str, Any]]) -> None:
    console = Console()
    table = Table(title=f"goal {goal['goal_id']} · {goal['plan']}", title_justify="left")
    for name in ("task", "agent", "status"):
        table.add_column(name)
    table.add_column("attempts", justify="right")
    table.add_column("ms", justify="right")
    table.add_column("note", overflow="fold", max_width=60)
    for row in tasks:
        note = row["last_error"] if row["status"] in ("failed", "escalated") else ""
        if row["status"] in ("skipped", "abandoned", "escalated", "cancelled") and not note:
            note = row["last_reason"] or ""
        table.add_row(row["task_id"], row["agent"], _styled(row["status"]), str(row["attempts"]),
                      f"{row['duration_ms']:.1f}" if row["attempts"] else "", note or "")
    console.print(table)
    reason = goal["reason"] if goal["reason"] and goal["status"] != "completed" else ""
    console.print(f"status: {_styled(goal['status'])}" + (f" — {reason}" if reason else ""))


# --- stats ---


# The terminal table keeps to what fits 80 columns; --json and --format csv have every field.
_STATS_TABLE = (("attempts", "tries"), ("succeeded", "ok"), ("failed", "fail"),
                ("retries", "retry"), ("escalations", "esc"), ("rejected_outputs", "rej"),
                ("tokens", "tokens"), ("cost_usd", "cost $"), ("p50_ms", "p50ms"),
                ("p95_ms", "p95ms"))
_STATS_FIELDS = ("attempts", "succeeded", "failed", "retries", "escalations", "rejected_outputs",
                 "timed_out", "interrupted", "tokens", "cost_usd", "p50_ms", "p95_ms")


def _stats(args: argparse.Namespace) -> int:
    store = store_from(args)
    rows = readmodels.agent_rows(store)
    fmt = "json" if args.json else args.format
    if fmt == "json":
        print_json({"agents": {row["agent"]: {k: row[k] for k in _STATS_FIELDS} for row in rows}})
    elif fmt == "csv":
        sys.stdout.write(stats_csv(rows))
    else:
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        table.add_column("agent", overflow="fold", min_width=8)
        for _, header in _STATS_TABLE:
            table.add_column(header, justify="right", no_wrap=True)
        for row in rows:
            cells = []
            for field, _ in _STATS_TABLE:
                value = row[field]
                cells.append("" if value is None else
                             f"{value:.4f}" if field == "cost_usd" else
                             f"{value:.1f}" if field.endswith("_ms") else str(value))
            table.add_row(row["agent"], *cells)
        Console().print(table)
    _warn_lag(store)
    return 0


# --- escalations ---


def _escalations(args: argparse.Namespace) -> int:
    store = store_from(args)
    rows = [
        {"goal_id": row["goal_id"], "task": row["task_id"], "reason": row["last_reason"],
         "since": row["status_since"].isoformat(), "agent": row["agent"],
         "attempts": row["attempts"], "last_error": row["last_error"]}
        for row in readmodels.escalation_rows(store)
    ]
    if args.json:
        print_json({"escalations": rows})
    elif not rows:
        print("nothing waits for a human")
    else:
        for row in rows:
            print(f"{row['goal_id']}  {row['task']}  since {row['since']}\n    {row['reason']}")
    _warn_lag(store)
    return 0


# --- projections ---


def _rebuild(args: argparse.Namespace) -> int:
    return _project(args, rebuild=True)


def _update(args: argparse.Namespace) -> int:
    return _project(args, rebuild=False)


def _project(args: argparse.Namespace, *, rebuild: bool) -> int:
    store = store_from(args)
    applied = (readmodels.rebuild if rebuild else readmodels.refresh)(store)
    if args.json:
        print_json({"applied": applied, "rebuilt": rebuild, **readmodels.state(store).as_json()})
    elif rebuild:
        print(f"read models rebuilt from {applied} event(s)")
    else:
        print(f"applied {applied} event(s) to the read models")
    return 0


def _where(args: argparse.Namespace) -> int:
    store = store_from(args)
    where = readmodels.state(store)
    if args.json:
        print_json({"projections": [where.as_json()]})
    else:
        print(f"{where.name}: at event {where.position} of {where.head}; lag {where.lag} "
              f"event(s)")
    return 0


def _follow(args: argparse.Namespace) -> int:
    store = store_from(args)
    stop = threading.Event()

    def stopping(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, stopping)
    signal.signal(signal.SIGINT, stopping)
    print(f"following the event log into the read models (every {args.interval:g}s on SQLite, "
          f"LISTEN/NOTIFY on PostgreSQL); Ctrl-C stops", file=sys.stderr, flush=True)
    readmodels.follow(store, interval_s=args.interval, stop=stop)
    return 0


def _export(args: argparse.Namespace) -> int:
    store = store_from(args)
    written = export_views(store, args.path, fmt=args.format)
    for line in written:
        print(line)
    _warn_lag(store)
    return 0
