"""`baton run` and `baton resume`."""

from __future__ import annotations

import argparse
from typing import Any

from baton.cli.commands.common import (
    exit_code,
    goal_id_argument,
    json_argument,
    positive_int,
    store_from,
)
from baton.cli.durations import task_durations
from baton.cli.progress import live_progress
from baton.cli.render import goal_json, print_goal, print_json, quoted
from baton.domain.errors import GoalOwned, one_line
from baton.domain.goal import Goal
from baton.runtime.loading import load_plan_file
from baton.runtime.runner import DEFAULT_CONCURRENCY
from baton.runtime.service import CommandError, resume_goal, start_goal

__all__ = ["register"]


_WAIT_HELP = "if another live process drives the goal, wait for it to let go (default: exit 2)"


def register(sub: Any) -> None:
    run = sub.add_parser(
        "run", help="start a goal and drive it until it ends or waits for a human",
        description="Check the plan, validate the input, store the goal and run it. Exit 0 "
        "completed, 1 failed or cancelled, 2 invalid, 3 waiting for a human.",
    )
    run.add_argument("plan", help="plan file (YAML or JSON)")
    run.add_argument("--input", default="{}", help="goal input: JSON, or @FILE")
    run.add_argument("--goal-id", default=None, type=goal_id_argument,
                     help="id for the new goal (default: a UUID)")
    run.add_argument("--concurrency", type=positive_int, default=DEFAULT_CONCURRENCY,
                     help=f"tasks run at once (default {DEFAULT_CONCURRENCY})")
    run.add_argument("--json", action="store_true", help="print the result as JSON")
    run.add_argument("--wait", action="store_true", help=_WAIT_HELP)
    run.set_defaults(func=_run)

    resume = sub.add_parser(
        "resume", help="drive an interrupted or resolved goal on from its events",
        description="Continue a goal from its events: after a crash (attempts left in flight "
        "are re-dispatched, or escalated when unsafe) or after a human's resolution.",
    )
    resume.add_argument("goal", help="goal id")
    resume.add_argument("--concurrency", type=positive_int, default=None)
    resume.add_argument("--json", action="store_true")
    resume.add_argument("--wait", action="store_true", help=_WAIT_HELP)
    resume.set_defaults(func=_resume)


def _report(goal: Goal, as_json: bool, store: Any) -> int:
    if as_json:
        print_json(goal_json(goal))
    else:
        print_goal(goal, task_durations(store, goal.id))
    return exit_code(goal)


def _run(args: argparse.Namespace) -> int:
    loaded = load_plan_file(args.plan)  # before the store: an invalid plan stores nothing
    loaded.check_calls(args.plan)  # and neither does a model no call could reach
    goal_input = json_argument(args.input, name="--input")
    store = store_from(args, creates=True)
    with live_progress(enabled=not args.json) as progress:
        goal = start_goal(
            store, loaded, goal_input, goal_id=args.goal_id, concurrency=args.concurrency,
            wait=args.wait, observer=progress,
        )
    return _report(goal, args.json, store)


def _resume(args: argparse.Namespace) -> int:
    store = store_from(args)
    try:
        with live_progress(enabled=not args.json) as progress:
            goal = resume_goal(
                store, args.goal, concurrency=args.concurrency, wait=args.wait,
                observer=progress,
            )
    except GoalOwned as exc:  # who drives it, and what this command can do about it
        raise CommandError(
            f"{exc}; `baton resume {one_line(quoted(args.goal))} --wait` waits for it to let go"
        ) from None
    return _report(goal, args.json, store)
