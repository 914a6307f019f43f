"""`baton resolve`, `baton answer` and `baton cancel`: the human in the loop (`baton escalations`
reads the read models, in `baton.cli.commands.views`)."""

from __future__ import annotations

import argparse
from typing import Any

from baton.cli import exits
from baton.cli.commands.common import json_argument, store_from, who
from baton.cli.render import goal_json, goes_on, print_json
from baton.domain.goal import Goal
from baton.domain.lifecycle import GOAL_FINAL
from baton.runtime.service import answer_task, cancel_goal, resolve_task

__all__ = ["register"]


def _by_argument(parser: argparse.ArgumentParser, role: str) -> None:
    """`--by NAME`, recorded with the decision; `who()` fills it in when it is not given."""
    parser.add_argument("--by", default=None, help=f"{role} (default: $BATON_USER or $USER)")


def register(sub: Any) -> None:
    resolve = sub.add_parser(
        "resolve", help="record a human's decision on an escalated task",
        description="Retry the task, abandon it, or supply its output (validated against the "
        "task's output contract); approve or reject a task that waits for approval. Recorded as "
        "an event with who and why; a running `baton worker` continues the goal (without "
        "one: `baton resume`).",
    )
    resolve.add_argument("goal")
    resolve.add_argument("task")
    action = resolve.add_mutually_exclusive_group(required=True)
    action.add_argument("--retry", action="store_true", help="try the task again")
    action.add_argument("--abandon", action="store_true", help="give the task up")
    action.add_argument("--output", help="the task's output: JSON, or @FILE")
    action.add_argument("--approve", action="store_true",
                        help="let a task with `approval: required` run")
    action.add_argument("--reject", action="store_true",
                        help="refuse it: the task is abandoned and its dependants skipped")
    resolve.add_argument("--reason", required=True, help="why (recorded in the audit trail)")
    _by_argument(resolve, "who decided")
    resolve.add_argument("--json", action="store_true")
    resolve.set_defaults(func=_resolve)

    answer = sub.add_parser(
        "answer", help="answer the question a task asked",
        description="Record the answer to a task's clarification question, with who answered; "
        "the task runs again with every question and answer in its input's `clarifications` "
        "field (a running `baton worker` continues the goal; without one: `baton resume`).",
    )
    answer.add_argument("goal")
    answer.add_argument("task")
    answer.add_argument("text", help="the answer")
    _by_argument(answer, "who answered")
    answer.add_argument("--json", action="store_true")
    answer.set_defaults(func=_answer)

    cancel = sub.add_parser(
        "cancel", help="stop a goal",
        description="Record that the goal was cancelled, with who and why: running tasks are "
        "cancelled and nothing more is dispatched. Exit 0 once the cancellation is recorded.",
    )
    cancel.add_argument("goal", help="goal id")
    cancel.add_argument("--reason", required=True, help="why (recorded in the audit trail)")
    _by_argument(cancel, "who decided")
    cancel.add_argument("--json", action="store_true", help="print the goal as JSON")
    cancel.set_defaults(func=_cancel)


def _resolve(args: argparse.Namespace) -> int:
    store = store_from(args)
    if args.output is not None:
        action, output = "output", json_argument(args.output, name="--output")
    else:
        flags = ("retry", "abandon", "approve", "reject")
        action, output = next(flag for flag in flags if getattr(args, flag)), None
    goal = resolve_task(store, args.goal, args.task, action=action, reason=args.reason,
                        by=who(args), output=output)
    if args.json:
        print_json(goal_json(goal))
    else:
        print(_recorded(f"{action} of {args.task} by {who(args)}", goal))
    return exits.OK


def _answer(args: argparse.Namespace) -> int:
    goal = answer_task(store_from(args), args.goal, args.task, answer=args.text, by=who(args))
    if args.json:
        print_json(goal_json(goal))
    else:
        print(_recorded(f"answer to {args.task} by {who(args)}", goal))
    return exits.OK


def _recorded(what: str, goal: Goal) -> str:
    """The one line a human's decision prints: what was recorded, and how the goal goes on (a
    running `baton worker` takes it up by itself; `baton resume` is for a store without one)."""
    line = f"recorded: {what}; goal {goal.id} is {goal.state.status}"
    if goal.state.status in GOAL_FINAL:
        return line
    return f"{line} — {goes_on(goal.id)}"


def _cancel(args: argparse.Namespace) -> int:
    store = store_from(args)
    goal = cancel_goal(store, args.goal, reason=args.reason, by=who(args))
    if args.json:
        print_json(goal_json(goal))
    else:
        print(f"goal {goal.id} cancelled")
    return 0  # the command did what was asked; a goal's own failure is `status`'s to report
