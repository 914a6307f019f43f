"""`baton status`, `stats`, `escalations` and `projections …`: everything read from the read models.

They read tables, never aggregates, so they stay fast with many goals. They are as fresh as the
last `run`/`resume`/`resolve`/`cancel`/`fork`/`import` (which catch up before exiting) or the
running `baton projections follow`; a lag is reported on stderr rather than hidden.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from datetime import UTC, date, datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from baton.cli import exits
from baton.cli.commands.common import positive_seconds, store_from
from baton.cli.durations import task_durations
from baton.cli.render import (
    TaskLine,
    decide_with,
    goal_json,
    goes_on,
    print_goal,
    print_json,
    print_summary,
    shown,
    styled,
    terminal_safe,
)
from baton.readmodels import reading as readmodels
from baton.readmodels.export import EXPORT_FORMATS, export_views, stats_csv
from baton.readmodels.reading import ReadModels, goal_status_json
from baton.store.eventstore import GoalNotFound
from baton.store.ownership import owner_json

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
    for name, summary, func in (
        ("rebuild", "drop the rows and project every event again", _rebuild),
        ("update", "apply the events not projected yet, then exit (e.g. from cron)", _update),
        ("status", "the read models' position against the event log", _where),
    ):
        action = actions.add_parser(name, help=summary, description=summary)
        action.add_argument("--json", action="store_true")
        action.set_defaults(func=func)
    follow = actions.add_parser(
        "follow", help="keep the read models current until interrupted",
        description="PostgreSQL: LISTEN/NOTIFY through eventsourcing's ProjectionRunner. SQLite: "
        "poll every --interval seconds. Stop with Ctrl-C or SIGTERM.",
    )
    follow.add_argument("--interval", type=positive_seconds, default=1.0,
                        help="seconds (default 1)")
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


def _warn_lag(models: ReadModels) -> None:
    lag = models.behind()  # counted no further than LAG_COUNTED
    if not lag.events:
        return
    if lag.position == 0:  # empty: a store no catch-up has run on, or an upgrade's rebuild
        print(f"baton: note: the read models are {lag} event(s) behind the log and have "
              "applied none yet (after an upgrade they are rebuilt from the log); `baton "
              "projections update` fills them now", file=sys.stderr)
        return
    print(f"baton: note: the read models are {lag} event(s) behind the log; `baton projections "
          "update` catches up now (as a worker, `projections follow` or any run/resume does)",
          file=sys.stderr)


# --- status ---


def _status(args: argparse.Namespace) -> int:
    store = store_from(args)
    if args.goal and store.missing:
        raise GoalNotFound(args.goal)  # as for a store that holds other goals
    with readmodels.read(store) as models:
        if args.goal:
            _status_of_goal(models, args.goal, as_json=args.json)
        else:
            _status_of_all(models, as_json=args.json)
        _warn_lag(models)
    return exits.OK


def _status_of_goal(models: ReadModels, goal_id: str, *, as_json: bool) -> None:
    found = None
    if not models.behind(0).more:
        with contextlib.suppress(GoalNotFound):  # then from the log, below
            found = models.goal_with_tasks(goal_id)  # one snapshot: the goal as its tasks stand
    if found is None:
        # Behind the log (a goal still running, or one whose runner was killed before it
        # caught the read models up): the goal's own events are the live state. A goal that
        # exists is never "not found"; GoalNotFound only when the log has no such goal.
        live = models.store.get(goal_id)
        owner = owner_json(models.store, goal_id, status=live.state.status)
        if as_json:
            print_json({**goal_json(live), "owner": owner})
        else:
            print_goal(live, task_durations(models.store, goal_id))
            _print_owner(goal_id, live.state.status, owner)
        return
    goal, tasks = found
    # From the store's lock, not the read models; none for a dead owner of a goal ended since.
    owner = owner_json(models.store, goal_id, status=goal["status"])
    if as_json:
        print_json({**goal_status_json(goal, tasks), "owner": owner})
        return
    lines = [
        # No measured time (attempts that timed out, were cancelled or are still running
        # report none) is blank, as `run` prints it from the events, not "0.0" ms.
        TaskLine(row["task_id"], row["agent"], row["status"], row["attempts"],
                 row["duration_ms"] or None, row["last_error"], row["last_reason"],
                 row.get("waiting_for"))
        for row in tasks
    ]
    print_summary(goal_id=goal["goal_id"], plan=goal["plan"], status=goal["status"],
                  reason=goal["reason"], output=goal["output"], lines=lines)
    _print_owner(goal_id, goal["status"], owner)


def _print_owner(goal_id: str, status: str, owner: dict[str, Any] | None) -> None:
    """Who drives the goal. A running goal nobody alive drives (its runner was killed, or it
    was submitted, forked or parked on a backoff) moves only when taken up: say how. Shown
    whether or not the read models caught up, since a killed runner leaves them behind."""
    if owner is not None:
        state = "alive" if owner["alive"] else "died while driving it"
        print(terminal_safe(
            f"owner: {owner['host']} pid {owner['pid']} since {owner['since']} ({state})"))
    if status == "running" and (owner is None or not owner["alive"]):
        print(f"no live process drives it: {goes_on(goal_id)}")


# What `status` of all goals reads: the columns it shows, not the whole row (no `output`).
_LISTED = ("goal_id", "plan", "status", "updated_at", "started_at", "ended_at", "attempts",
           "tokens", "cost_usd", "tasks", "tasks_succeeded")


def _status_of_all(models: ReadModels, *, as_json: bool) -> None:
    goals = models.all_goals(_LISTED)
    if as_json:
        print_json({"goals": [_goal_line(row) for row in goals]})
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    # A goal id is what the reader copies into the next command: it never wraps (a UUID
    # takes 36 of 80 columns); the plan's name folds instead, and the time is short, as `ls -l`
    # shows it: the time of day for today's goals, the date and minute for older ones.
    # Below 80 columns the other four no longer fit beside a whole UUID: the id folds then,
    # split across lines rather than cut short.
    console = Console()
    table.add_column("goal", no_wrap=console.width >= 80, overflow="fold")
    table.add_column("plan", overflow="fold", min_width=6)
    table.add_column("status", no_wrap=True)
    table.add_column("done", justify="right", no_wrap=True)
    table.add_column("updated (UTC)", no_wrap=True)
    today = datetime.now(UTC).date()
    for row in goals:
        table.add_row(shown(row["goal_id"]), shown(row["plan"]), styled(row["status"]),
                      f"{row['tasks_succeeded']}/{row['tasks']}",
                      _short_time(row["updated_at"].astimezone(UTC), today))
    console.print(table)


def _short_time(moment: datetime, today: date) -> str:
    return moment.strftime("%H:%M:%S" if moment.date() == today else "%Y-%m-%d %H:%M")


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


# --- stats ---


# The terminal table keeps to what fits 80 columns; --json and --format csv have every field.
_STATS_TABLE = (("attempts", "tries"), ("succeeded", "ok"), ("failed", "fail"),
                ("retries", "retry"), ("escalations", "esc"), ("rejected_outputs", "rej"),
                ("tokens", "tokens"), ("cost_usd", "cost $"), ("p50_ms", "p50ms"),
                ("p95_ms", "p95ms"))
_STATS_FIELDS = ("attempts", "succeeded", "failed", "retries", "escalations", "rejected_outputs",
                 "timed_out", "interrupted", "tokens", "cost_usd", "p50_ms", "p95_ms")


def _stats(args: argparse.Namespace) -> int:
    with readmodels.read(store_from(args)) as models:
        agents, per_model = models.usage()
        _print_stats(agents, "json" if args.json else args.format, per_model)
        _warn_lag(models)
    return exits.OK


_MODEL_FIELDS = ("results", "requests", "input_tokens", "output_tokens", "cache_read_tokens",
                 "cache_write_tokens", "tokens", "cost_usd")


def _print_stats(
    rows: list[dict[str, Any]], fmt: str, per_model: list[dict[str, Any]] | None = None
) -> None:
    per_model = per_model or []
    if fmt == "json":
        print_json({
            "agents": {row["agent"]: {k: row[k] for k in _STATS_FIELDS} for row in rows},
            "models": [{"agent": row["agent"], "model": row["model"],
                        **{k: row[k] for k in _MODEL_FIELDS}} for row in per_model],
        })
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
            table.add_row(shown(row["agent"]), *cells)
        Console().print(table)
        if per_model:
            Console().print(_model_table(per_model))


def _model_table(rows: list[dict[str, Any]]) -> Table:
    """Tokens and cost per agent and model (model_stats)."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
                  title="per model", title_justify="left")
    for header in ("agent", "model"):
        table.add_column(header, overflow="fold")
    for header in ("requests", "in tok", "out tok", "tokens", "cost $"):
        table.add_column(header, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(shown(row["agent"]), shown(row["model"]), str(row["requests"]),
                      str(row["input_tokens"]), str(row["output_tokens"]), str(row["tokens"]),
                      f"{row['cost_usd']:.6f}")
    return table


# --- escalations ---


def _escalations(args: argparse.Namespace) -> int:
    with readmodels.read(store_from(args)) as models:
        rows = [_escalation(row) for row in models.escalations()]
        _warn_lag(models)
    if args.json:
        print_json({"escalations": rows})
    elif not rows:
        print("nothing waits for a human")
    else:
        for row in rows:
            print(terminal_safe(
                f"{row['goal_id']}  {row['task']}  {row['kind']}  since {row['since']}\n"
                f"    {row['reason']}"))
            if "question" in row:
                print(terminal_safe(f"    question: {row['question']}"))
            elif "input" in row:
                print(terminal_safe(f"    input: {json.dumps(row['input'], sort_keys=True)}"))
            print(terminal_safe("    " + decide_with(row["goal_id"], row["task"], row["kind"])))
    return exits.OK


def _escalation(row: dict[str, Any]) -> dict[str, Any]:
    """One entry of `escalations --json`: `kind` says what the task waits for; a clarification
    carries its `question`, an approval the `input` the task will be sent."""
    entry = {"goal_id": row["goal_id"], "task": row["task_id"], "kind": row["waiting_for"],
             "reason": row["last_reason"], "since": row["status_since"].isoformat(),
             "agent": row["agent"], "attempts": row["attempts"], "last_error": row["last_error"]}
    if row["waiting_for"] == "clarification":
        entry["question"] = row["question"]
    if row["waiting_for"] == "approval":
        entry["input"] = row["approval_input"]
    return entry


# --- projections ---


def _rebuild(args: argparse.Namespace) -> int:
    return _project(args, rebuild=True)


def _update(args: argparse.Namespace) -> int:
    return _project(args, rebuild=False)


def _project(args: argparse.Namespace, *, rebuild: bool) -> int:
    store = store_from(args)
    applied = (readmodels.rebuild if rebuild else readmodels.refresh)(store)
    if args.json:
        with readmodels.read(store) as models:
            print_json({"applied": applied, "rebuilt": rebuild, **models.state().as_json()})
    elif rebuild:
        print(f"read models rebuilt from {applied} event(s)")
    else:
        print(f"applied {applied} event(s) to the read models")
    return exits.OK


def _where(args: argparse.Namespace) -> int:
    with readmodels.read(store_from(args)) as models:
        where = models.state()
    if args.json:
        print_json({"projections": [where.as_json()]})
    else:
        print(f"{where.name}: at event {where.position} of {where.head}; lag {where.lag} "
              f"event(s)")
    return exits.OK


def _follow(args: argparse.Namespace) -> int:
    store = store_from(args, creates=True)  # follows a store from before its first goal
    stop = threading.Event()

    def stopping(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, stopping)
    signal.signal(signal.SIGINT, stopping)
    print(f"following the event log into the read models (every {args.interval:g}s on SQLite, "
          f"LISTEN/NOTIFY on PostgreSQL); Ctrl-C stops", file=sys.stderr, flush=True)
    readmodels.follow(store, interval_s=args.interval, stop=stop)
    return exits.OK


def _export(args: argparse.Namespace) -> int:
    with readmodels.read(store_from(args)) as models:
        for line in export_views(models, args.path, fmt=args.format):
            print(line)
        _warn_lag(models)
    return exits.OK
