"""`baton validate PLAN` and `baton graph PLAN|GOAL`."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from baton.cli import exits
from baton.cli.commands.common import store_from
from baton.cli.render import render_graph
from baton.domain.errors import BatonError, PlanError, one_line
from baton.runtime.loading import load_plan_file
from baton.store.eventstore import GoalNotFound

__all__ = ["register"]

PLAN_SUFFIXES = (".yaml", ".yml", ".json")


def register(sub: Any) -> None:
    validate = sub.add_parser(
        "validate", help="check a plan and its contracts; nothing is stored",
        description="Check the plan, import its agents and check every binding against their "
        "contracts. Exit 0 when valid, 2 with one line per problem otherwise.",
    )
    validate.add_argument("plan", help="plan file (YAML or JSON)")
    validate.set_defaults(func=_validate)

    graph = sub.add_parser("graph", help="the task graph of a plan or a goal",
                           description="Print the DAG as Mermaid or DOT; for a goal, with "
                           "each task's status.")
    graph.add_argument("target", help="a plan file, or a goal id in the store")
    graph.add_argument("--format", choices=["mermaid", "dot"], default="mermaid")
    graph.set_defaults(func=_graph)


def _validate(args: argparse.Namespace) -> int:
    try:
        loaded = load_plan_file(args.plan)
    except PlanError as exc:
        for issue in exc.issues:
            print(f"{one_line(args.plan)}: {exc.located(issue)}", file=sys.stderr)
        return exits.INVALID
    print(f"{args.plan}: ok — plan {loaded.plan.name!r}, "
          f"{_counted(len(loaded.plan.tasks), 'task')}, "
          f"{_counted(len(loaded.contracts), 'agent')} checked")
    return exits.OK


def _graph(args: argparse.Namespace) -> int:
    # a file, as the other GOAL|FILE commands decide (history_of): a goal named like a
    # directory of the working directory (`examples`) is drawn, not refused as "Is a directory"
    if os.path.isfile(args.target):
        plan, statuses = load_plan_file(args.target).plan, None
    else:
        store = store_from(args)
        try:
            goal = store.get(args.target)
        except GoalNotFound:
            if os.path.splitext(args.target)[1].lower() not in PLAN_SUFFIXES:
                raise
            # It names a plan file, misspelt: the goal it was then taken for is beside the point.
            raise BatonError(f"{args.target}: no such plan file (and no goal {args.target!r} "
                             "in this store)") from None
        plan = goal.state.plan  # with the tasks planners and maps added, drawn from `parent`
        statuses = {tid: task.status for tid, task in goal.state.tasks.items()}
    print(render_graph(plan, statuses, args.format))
    return exits.OK


def _counted(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
