"""Helpers shared by the commands: the store, JSON arguments, goal exit codes."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from baton.cli import exits
from baton.domain.errors import BatonError
from baton.domain.goal import Goal
from baton.runtime import service
from baton.runtime.loading import parse_json_value
from baton.store.eventstore import BatonStore, open_store

__all__ = ["exit_code", "goal_id_argument", "json_argument", "positive_int", "store_from", "who"]


class ArgumentError(BatonError):
    pass


def store_from(args: argparse.Namespace, *, creates: bool = False) -> BatonStore:
    """The store of `--store` / $BATON_STORE, opened once per command (kept on `args`, so the
    CLI can bring its read models up to date after a command that wrote events). Only a
    command that `creates` goals (or waits for them) makes a new SQLite file."""
    store: BatonStore | None = getattr(args, "opened_store", None)
    if store is None:
        store = open_store(args.store, creates=creates)
        args.opened_store = store
    elif creates:
        store.creates = True
    return store


def json_argument(value: str, *, name: str) -> Any:
    """Parse `JSON` or `@FILE` (JSON or YAML file); one-line errors naming the option."""
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ArgumentError(f"{name} {value}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise ArgumentError(f"{name} {value}: not a text file (expected JSON)") from None
        where = f"{name} {value}"
    else:
        text, where = value, name
    try:
        return parse_json_value(text)
    except ValueError as exc:
        raise ArgumentError(f"{where}: {exc}") from None


def exit_code(goal: Goal) -> int:
    return exits.for_status(goal.state.status)


def who(args: argparse.Namespace) -> str:
    return service.who(getattr(args, "by", None))

def goal_id_argument(text: str) -> str:
    """`--goal-id`: an id the user chose, never silently replaced by a generated one."""
    problem = service.goal_id_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem.replace("the goal id", "--goal-id"))
    return text


def positive_seconds(text: str) -> float:
    """An argparse type for a period such as `--interval`: a finite number of seconds above 0
    (0, a negative or nan made `projections follow` poll without pause, a core at 100%)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An argparse type for counts such as `--concurrency`: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
