"""`baton submit` and `baton worker`: goals stored now, driven by whichever worker claims them."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
from typing import Any

from baton.cli.commands.common import goal_id_argument, json_argument, positive_int, store_from
from baton.cli.render import print_json
from baton.domain.errors import one_line
from baton.runtime.loading import load_plan_file
from baton.runtime.runner import DEFAULT_CONCURRENCY
from baton.runtime.service import submit_goal
from baton.runtime.worker import Worker

__all__ = ["register"]


def register(sub: Any) -> None:
    submit = sub.add_parser(
        "submit", help="store a goal without running it; a worker drives it",
        description="Check the plan, validate the input and store the goal (only its Started "
        "event). Prints the goal id; `baton worker` (or `baton resume`) drives it.",
    )
    submit.add_argument("plan", help="plan file (YAML or JSON)")
    submit.add_argument("--input", default="{}", help="goal input: JSON, or @FILE")
    submit.add_argument("--goal-id", default=None, type=goal_id_argument,
                        help="id for the new goal (default: a UUID)")
    submit.add_argument("--concurrency", type=positive_int, default=DEFAULT_CONCURRENCY,
                        help=f"tasks of this goal run at once (default {DEFAULT_CONCURRENCY})")
    submit.add_argument("--json", action="store_true", help='print {"goal_id", "status"}')
    submit.set_defaults(func=_submit)

    worker = sub.add_parser(
        "worker", help="drive runnable goals until stopped",
        description="Claims goals nobody drives (submitted, a backoff fell due, resolved by a "
        "human, their owner died) and drives them, one owner per goal. Start as many as you "
        "like against one PostgreSQL. SIGTERM: take no new goal and leave each at a safe point "
        "(a second SIGTERM: after the current save).",
    )
    worker.add_argument("--concurrency", type=positive_int, default=4,
                        help="goals driven at once (default 4)")
    worker.add_argument("--burst", action="store_true",
                        help="exit 0 once no goal is runnable")
    worker.set_defaults(func=_worker)


def _submit(args: argparse.Namespace) -> int:
    loaded = load_plan_file(args.plan)  # before the store: an invalid plan stores nothing
    goal_input = json_argument(args.input, name="--input")
    store = store_from(args, creates=True)
    goal = submit_goal(store, loaded, goal_input, goal_id=args.goal_id,
                       concurrency=args.concurrency)
    if args.json:
        print_json({"goal_id": goal.id, "status": goal.state.status})
    else:
        print(goal.id)
    return 0


class _OneLineFormatter(logging.Formatter):
    """A log line is one line, and text: an agent's error or a goal's reason holding a newline
    or an ESC sequence (data, from agents) neither splits a worker's line in two for the log
    collector nor reaches an operator's terminal as a sequence it obeys. A traceback, from
    `log.exception`, still follows on lines of its own."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = one_line(record.message)
        return super().formatMessage(record)


def _worker(args: argparse.Namespace) -> int:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter(
        f"%(asctime)s baton worker {socket.gethostname()}:{os.getpid()} %(levelname)s "
        "%(message)s"
    ))
    logger = logging.getLogger("baton.worker")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    worker = Worker(store=store_from(args, creates=True), concurrency=args.concurrency,
                    burst=args.burst)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: worker.request_stop())
    worker.run()
    if worker.failed is not None:
        raise worker.failed  # one line, exit 2: restarted, it opens the file now there
    return 0
